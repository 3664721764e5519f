"""HTTP handlers of the producer: polling API, subscriptions, stats and the orchestrator's controls.

Handlers are thin: parse, call the store or dispatcher, translate problems into web.HTTP* errors.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Mapping

from aiohttp import web

from bench.protocol import (
    PATH_CHANGES,
    PATH_CONTROL_CHANGES,
    PATH_CONTROL_MARK,
    PATH_HEALTH,
    PATH_RESOURCE,
    PATH_STATS,
    PATH_SUBSCRIPTION,
    PATH_SUBSCRIPTIONS,
    ChangeEvent,
    etag_for,
)

from .keys import DEFAULT_DELIVERY, DISPATCHER, GENERATOR, LEDGER, MARKS, SNAPSHOT, STORE
from .longpoll import hold_while_empty, wait_param
from .subscribe import EXAMPLE, SubscriptionError, parse_subscription

__all__ = ["routes", "EMPTY_POLLS", "EMPTY_POLL_MODES"]

routes = web.RouteTableDef()
_RESOURCE_ROUTE = PATH_RESOURCE.replace("{id}", r"{id:\d{1,18}}")  # the protocol's path, the id 1-18 digits

# How empty polls are answered. "sqlite" (the default, the realistic cost): every poll queries the store.
# "memory": a poll that cannot find anything new -- `after` at or past the head of the log, or an ETag that
# matches the resource's current version -- is answered from the store's in-memory head and version table,
# with the same bytes, without a query. Polls that find something always read SQLite. Sound because this
# process is the only writer of its store; producers sharing one database file would need "sqlite".
EMPTY_POLL_MODES = ("sqlite", "memory")
EMPTY_POLLS: web.AppKey[str] = web.AppKey("empty_polls", str)

try:  # the same bytes as the stdlib's compact JSON for every body the polling API sends, 10-25x faster
    import orjson

    _encode: Callable[[Any], bytes] = orjson.dumps
    JSON_ENCODER = "orjson"
except ImportError:  # pragma: no cover - exercised where orjson is not installed
    _compact = json.JSONEncoder(separators=(",", ":"))

    def _encode(obj: Any) -> bytes:
        return _compact.encode(obj).encode()

    JSON_ENCODER = "json"


def _json(obj: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    """What `web.json_response(obj, dumps=compact json.dumps)` answers (same body, same Content-Type)."""
    return web.Response(body=_encode(obj), headers=headers, content_type="application/json", charset="utf-8")


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


@routes.get(PATH_HEALTH)
async def health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "role": "producer"})


def _none_match(header: str | None, etag: str) -> bool:
    """RFC 9110 If-None-Match: '*' or a comma-separated list of entity tags (weak ones compare weakly)."""
    if header is None:
        return False
    tags = [t.strip() for t in header.split(",")]
    return "*" in tags or any(t.removeprefix("W/") == etag for t in tags)


@routes.get(_RESOURCE_ROUTE, name="resource")
async def get_resource(request: web.Request) -> web.StreamResponse:
    rid = int(request.match_info["id"])  # the route admits only 1-18 digits: always a valid SQLite integer
    store = request.app[STORE]
    version = store.cached_version(rid) if request.app[EMPTY_POLLS] == "memory" else store.resource_version(rid)
    if version is None:
        raise web.HTTPNotFound(text=f"no resource {rid}")
    etag = etag_for(rid, version)
    if _none_match(request.headers.get("If-None-Match"), etag):
        return web.Response(status=304, headers={"ETag": etag})
    return _json(store.get_resource(rid), {"ETag": etag})


@routes.get(PATH_CHANGES, name="changes")
async def get_changes(request: web.Request) -> web.Response:
    after = _int_param(request, "after", 0, 0, 2**62)
    limit = _int_param(request, "limit", 100, 1, 10_000)
    wait = wait_param(request)
    store = request.app[STORE]
    if wait is not None:  # long polling: held while nothing is past `after`, then answered as below
        await hold_while_empty(request, after, wait)
    if after >= store.head_seq and request.app[EMPTY_POLLS] == "memory":
        changes: list[ChangeEvent] = []
        has_more = False
    else:
        changes, has_more = store.changes_after(after, limit)
    next_after = changes[-1]["seq"] if changes else after
    return _json({"changes": changes, "next_after": next_after, "has_more": has_more})


@routes.post(PATH_SUBSCRIPTIONS)
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


@routes.delete(PATH_SUBSCRIPTION)
async def delete_subscription(request: web.Request) -> web.Response:
    sid = request.match_info["id"]
    if not request.app[STORE].remove_subscription(sid):
        raise web.HTTPNotFound(text=f"no active subscription {sid}")
    await request.app[DISPATCHER].remove(sid)
    return web.Response(status=204)


@routes.get(PATH_STATS)
async def stats(request: web.Request) -> web.Response:
    d = request.app[DISPATCHER]
    snap = request.app[SNAPSHOT]()
    snap["deliveries"] = {"attempts": d.attempts, "ok": d.ok, "failed": d.failed, "pending": d.pending()}
    snap["subscriptions"] = d.stats()
    return web.json_response(snap)


@routes.post(PATH_CONTROL_MARK)
async def mark(request: web.Request) -> web.Response:
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise web.HTTPBadRequest(text='expected a JSON body {"name": "window_start"}') from None
    snap = request.app[SNAPSHOT]()
    snap["mark"] = str(data.get("name", "mark")) if isinstance(data, dict) else "mark"
    request.app[MARKS].write(snap)  # on disk (fsynced) before the answer: it must survive kill -9
    return web.json_response(snap)


@routes.post(PATH_CONTROL_CHANGES)
async def control_changes(request: web.Request) -> web.Response:
    data = await request.json()
    gen = request.app[GENERATOR]
    apply = data.get("apply", 0)
    if type(apply) is not int or not 0 <= apply <= 1000:
        raise web.HTTPBadRequest(text=f"apply={apply!r}: expected the number of changes to make now, 0..1000")
    running = data.get("running")
    if running is False:
        gen.stop()
    elif running is True:
        gen.start()  # a producer started with --hold-changes: the schedule's time 0 is now (once only)
    for _ in range(apply):
        gen.apply_now()
    return web.json_response({"running": gen.running, "changes": request.app[LEDGER].changes})
