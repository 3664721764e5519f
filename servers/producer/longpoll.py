"""Long polling on the change feed: GET /changes?after=SEQ&wait=S (views.get_changes) holds a poll that finds
nothing past `after` until a change is committed, S seconds pass, the producer stops, or the client goes away.

A held request sleeps on the ChangeNotifier (notify.py), which every committed change wakes; it then re-reads
the log's head from memory (`Store.head_seq`), so the store is never queried while a request waits, however
many wait. Its CPU is charged only while it runs, and it counts as held in its mode's gauge (ledger.Meter).
"""

from __future__ import annotations

import asyncio
import math

from aiohttp import web

from bench.protocol import LONG_WAIT_MAX_S

from .keys import NOTIFIER, STORE
from .ledger import METER

__all__ = ["wait_param", "hold_while_empty"]


def wait_param(request: web.Request) -> float | None:
    """The poll's `wait` in seconds (None: an ordinary poll); 400 naming the value unless in (0, LONG_WAIT_MAX_S]."""
    raw = request.query.get("wait")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= LONG_WAIT_MAX_S):
        raise web.HTTPBadRequest(text=f"wait={raw!r}: expected a number of seconds in (0, {LONG_WAIT_MAX_S:g}], "
                                      "e.g. wait=30 or wait=0.5")
    return value


async def hold_while_empty(request: web.Request, after: int, wait: float) -> None:
    """Return once the log has a change past `after`, or after `wait` seconds, or when the producer is stopping
    (the notifier is closed) or the client has gone (noticed at the next wake-up: aiohttp does not cancel
    handlers). The caller then answers as an ordinary poll does."""
    store, notifier = request.app[STORE], request.app[NOTIFIER]
    if after < store.head_seq or notifier.closed:
        return
    meter = request.get(METER)  # None for requests the ledger does not charge (the attack load's)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    if meter is not None:
        meter.hold()
    try:
        while after >= store.head_seq and not notifier.closed and request.transport is not None:
            remaining = deadline - loop.time()
            if remaining <= 0:  # a timer may fire a little early: wait out the rest
                break
            if meter is not None:
                meter.pause()  # the CPU of what the loop serves meanwhile is not this request's
            try:
                await notifier.wait(remaining)
            finally:
                if meter is not None:
                    meter.resume()
    finally:
        if meter is not None:
            meter.release()
