"""Receiver app factory: verifies Standard Webhooks signatures, deduplicates by webhook-id, records every arrival.

It answers at once (204) and does no processing: what is measured is when a change reached the consumer.
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from pathlib import Path
from typing import AsyncIterator

from aiohttp import web

from bench.protocol import H_ID
from bench.records import JsonlWriter
from bench.signing import SignatureError, Signer

from ..common import loop_lag_ctx

__all__ = ["create_app", "DEDUP_CAPACITY"]

log = logging.getLogger("hookbench.receiver")

DEDUP_CAPACITY = 1_000_000  # ids remembered (oldest forgotten first); far above any run's deliveries

SIGNER: web.AppKey[Signer] = web.AppKey("signer")
SEEN: web.AppKey["OrderedDict[str, None]"] = web.AppKey("seen")
ARRIVALS: web.AppKey["JsonlWriter | None"] = web.AppKey("arrivals")
COUNTS: web.AppKey[dict] = web.AppKey("counts")


def _record(request: web.Request, t_obs: int, msg_id: str | None, change_id: str | None, status: int,
            verdict: str, reason: str | None) -> None:
    request.app[COUNTS][verdict] = request.app[COUNTS].get(verdict, 0) + 1
    writer = request.app[ARRIVALS]
    if writer is not None:
        writer.write({"t_obs_ns": t_obs, "webhook_id": msg_id, "change_id": change_id, "status": status,
                      "verdict": verdict, "reason": reason})


async def receive(request: web.Request) -> web.Response:
    body = await request.read()
    t_obs = time.time_ns()  # the change has reached the consumer once its body is in
    msg_id = request.headers.get(H_ID)
    try:
        request.app[SIGNER].verify(body, dict(request.headers))
    except SignatureError as e:
        log.warning("rejected %s: signature: %s", msg_id, e)
        _record(request, t_obs, msg_id, None, 401, "rejected", f"signature: {e}")
        raise web.HTTPUnauthorized(text=f"signature: {e}") from None
    try:
        event = json.loads(body)
        change_id = event["data"]["change_id"]
        if not isinstance(change_id, str) or not change_id:
            raise TypeError("change_id must be a non-empty string")
    except (ValueError, UnicodeDecodeError, KeyError, TypeError):
        log.warning("rejected %s: body is not a JSON change event", msg_id)
        _record(request, t_obs, msg_id, None, 400, "rejected", "body is not a JSON change event")
        raise web.HTTPBadRequest(text="body is not a JSON change event") from None
    seen = request.app[SEEN]
    assert msg_id is not None  # verify() requires it
    if msg_id in seen:
        _record(request, t_obs, msg_id, change_id, 204, "duplicate", None)
        return web.Response(status=204)
    seen[msg_id] = None
    if len(seen) > DEDUP_CAPACITY:
        seen.popitem(last=False)
    _record(request, t_obs, msg_id, change_id, 204, "accepted", None)
    return web.Response(status=204)


async def health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "role": "receiver", "counts": request.app[COUNTS]})


def create_app(secret: str, *, records_dir: str | Path | None = None) -> web.Application:
    """The receiver. Raises ValueError for an unusable secret."""
    app = web.Application()
    app[SIGNER] = Signer(secret)
    app[SEEN] = OrderedDict()
    app[COUNTS] = {}
    app[ARRIVALS] = None
    records = Path(records_dir) if records_dir is not None else None

    async def arrivals_ctx(app: web.Application) -> AsyncIterator[None]:
        if records is not None:
            app[ARRIVALS] = JsonlWriter(records / "arrivals.jsonl")
        try:
            yield
        finally:
            if app[ARRIVALS] is not None:
                app[ARRIVALS].close()

    app.router.add_post("/hooks", receive)
    app.router.add_get("/health", health)
    app.cleanup_ctx.append(loop_lag_ctx(records, "receiver"))
    app.cleanup_ctx.append(arrivals_ctx)
    return app
