"""HTTP handlers of the producer: polling API, subscriptions, stats and the orchestrator's controls.

Handlers are thin: parse, call the store or dispatcher, translate problems into web.HTTP* errors.
"""

from __future__ import annotations

import json
import time

from aiohttp import web

from bench.protocol import etag_for

from .keys import DEFAULT_DELIVERY, DISPATCHER, GENERATOR, LEDGER, MARKS, SNAPSHOT, STORE
from .subscribe import EXAMPLE, SubscriptionError, parse_subscription

__all__ = ["routes"]

routes = web.RouteTableDef()


def _int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name}={raw!r}: expected an integer") from None
    if not lo <= value <= hi:
        raise web.HTTPBadRequest(text=f"{name}={value}: expected {lo}..{hi}")
    return value


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "role": "producer"})


def _none_match(header: str | None, etag: str) -> bool:
    """RFC 9110 If-None-Match: '*' or a comma-separated list of entity tags (weak ones compare weakly)."""
    if header is None:
        return False
    tags = [t.strip() for t in header.split(",")]
    return "*" in tags or any(t.removeprefix("W/") == etag for t in tags)


@routes.get(r"/resources/{id:\d{1,18}}", name="resource")
async def get_resource(request: web.Request) -> web.StreamResponse:
    rid = int(request.match_info["id"])  # the route admits only 1-18 digits: always a valid SQLite integer
    store = request.app[STORE]
    version = store.resource_version(rid)
    if version is None:
        raise web.HTTPNotFound(text=f"no resource {rid}")
    etag = etag_for(rid, version)
    if _none_match(request.headers.get("If-None-Match"), etag):
        return web.Response(status=304, headers={"ETag": etag})
    body = store.get_resource(rid)
    return web.json_response(body, headers={"ETag": etag}, dumps=lambda o: json.dumps(o, separators=(",", ":")))


@routes.get("/changes", name="changes")
async def get_changes(request: web.Request) -> web.Response:
    after = _int_param(request, "after", 0, 0, 2**62)
    limit = _int_param(request, "limit", 100, 1, 10_000)
    changes, has_more = request.app[STORE].changes_after(after, limit)
    next_after = changes[-1]["seq"] if changes else after
    return web.json_response({"changes": changes, "next_after": next_after, "has_more": has_more},
                             dumps=lambda o: json.dumps(o, separators=(",", ":")))


@routes.post("/subscriptions")
async def add_subscription(request: web.Request) -> web.Response:
    """Body: url, scheme, secrets (or "secret"), delivery, basic_auth, ca_file (see `subscribe.py`).

    The answer shows what was stored, except the secrets and the Basic Auth password.
    """
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise web.HTTPBadRequest(text=f"expected a JSON body such as {EXAMPLE}") from None
    try:
        req = parse_subscription(data, request.app[DEFAULT_DELIVERY])
    except SubscriptionError as e:
        raise web.HTTPBadRequest(text=str(e)) from None
    sub = request.app[STORE].add_subscription(req.url, req.scheme, req.secrets, req.delivery, time.time_ns(),
                                              basic_auth=req.basic_auth, ca_file=req.ca_file)
    request.app[DISPATCHER].add(sub)
    return web.json_response(sub.public(), status=201)


@routes.delete("/subscriptions/{id}")
async def delete_subscription(request: web.Request) -> web.Response:
    sid = request.match_info["id"]
    if not request.app[STORE].remove_subscription(sid):
        raise web.HTTPNotFound(text=f"no active subscription {sid}")
    await request.app[DISPATCHER].remove(sid)
    return web.Response(status=204)


@routes.get("/stats")
async def stats(request: web.Request) -> web.Response:
    d = request.app[DISPATCHER]
    snap = request.app[SNAPSHOT]()
    snap["deliveries"] = {"attempts": d.attempts, "ok": d.ok, "failed": d.failed, "pending": d.pending()}
    snap["subscriptions"] = d.stats()
    return web.json_response(snap)


@routes.post("/control/mark")
async def mark(request: web.Request) -> web.Response:
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise web.HTTPBadRequest(text='expected a JSON body {"name": "window_start"}') from None
    snap = request.app[SNAPSHOT]()
    snap["mark"] = str(data.get("name", "mark")) if isinstance(data, dict) else "mark"
    request.app[MARKS].write(snap)  # on disk (fsynced) before the answer: it must survive kill -9
    return web.json_response(snap)


@routes.post("/control/changes")
async def control_changes(request: web.Request) -> web.Response:
    data = await request.json()
    gen = request.app[GENERATOR]
    if data.get("running") is False:
        gen.stop()
    return web.json_response({"running": gen.running, "changes": request.app[LEDGER].changes})
