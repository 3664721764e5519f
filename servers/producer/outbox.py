"""The durable outbox's delivery loop: one pump per outbox subscription, driven by rows in SQLite.

`Store.apply_change` writes a row per (outbox subscription, change) in the change's own transaction.
The pump sends due rows (earliest first, up to the subscription's concurrency), deletes a row on 2xx,
reschedules it on failure (next_ns) and moves it to `dead_letters` when its attempts run out. It sleeps
on an asyncio.Event (new rows, finished attempts, closing) or until the next row falls due; it never
polls. Rows left by a stopped or killed producer are simply due when the next one starts: at-least-once.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from .endpoint import Attempt, Endpoint
from .store import OutboxRow

if TYPE_CHECKING:
    from .dispatcher import Dispatcher

__all__ = ["pump"]


async def pump(d: Dispatcher, ep: Endpoint) -> None:
    store, sid = d.store, ep.sub.id
    while not ep.closed:
        ep.wake.clear()  # before looking, so a wake-up during the look is not lost
        rows = [r for r in store.outbox_due(sid, ep.cfg.concurrency + 1) if r.change["seq"] not in ep.sending]
        if not rows:
            await ep.wake.wait()
            continue
        row = rows[0]
        wait_s = (row.next_ns - time.time_ns()) / 1e9
        if wait_s > 0:
            try:
                await asyncio.wait_for(ep.wake.wait(), wait_s)
            except TimeoutError:
                pass
            continue
        if row.attempts >= ep.cfg.attempts:  # its last attempt was begun by a producer that then died
            _dead(d, ep, Attempt(row.change, row.attempts), "gave_up",
                  f"gave up: {row.attempts} attempts (the last one interrupted)")
            continue
        await ep.slots.acquire()
        probe = await ep.breaker.admit()  # waits while the breaker is open; None once the endpoint closes
        if probe is None:
            ep.slots.release()
            return
        ep.sending.add(row.change["seq"])
        d.spawn(_send(d, ep, row, probe))


async def _send(d: Dispatcher, ep: Endpoint, row: OutboxRow, probe: bool) -> None:
    store, sid, seq = d.store, ep.sub.id, row.change["seq"]
    try:
        number = store.outbox_begin(sid, seq)  # counted before sending: a crash cannot hand out the number twice
        a = await d.attempt(ep, row.change, number, probe)
        outcome, delay = d.decide(ep, a)
        if outcome == "ok":
            store.outbox_delivered(sid, seq)
            d.record(ep, a, outcome)
        elif outcome == "retry":
            store.outbox_retry(sid, seq, a.t_done + int(delay * 1e9))
            d.record(ep, a, outcome)
        elif outcome == "disabled":
            _dead(d, ep, a, outcome, f"disabled: {ep.disable_why}")
            d.disable(ep)
        elif outcome == "abandoned":
            _dead(d, ep, a, outcome, f"abandoned: {ep.close_reason}")
        else:
            _dead(d, ep, a, outcome, f"gave up after {a.number} attempts")
    finally:
        ep.sending.discard(seq)
        ep.slots.release()
        ep.wake.set()


def _dead(d: Dispatcher, ep: Endpoint, a: Attempt, outcome: str, reason: str) -> None:
    d.store.outbox_dead(ep.sub.id, [a.change["seq"]], reason, time.time_ns())
    d.record(ep, a, outcome, None if a.t_send else reason)
