"""The receiver's defence pipeline, in order: path/token, method, Basic Auth, body size, content type, signature, JSON.
Each check passes or raises `Reject` (status to answer, reason to audit); the attack label is never read. A verified
JSON body is accepted whatever its shape: hookbench's own change events are told apart from a foreign sender's."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import orjson
from aiohttp import StreamReader, web

from bench.protocol import EVENT_TYPE, H_ID, PATH_HOOKS
from bench.signing import Scheme, SignatureError
from bench.signing.github import H_DELIVERY

from .audit import Arrival
from .config import Endpoint, ReceiverSetup

__all__ = ["Reject", "Target", "resolve", "check_request", "read_body", "classify_body", "check_basic_auth",
           "answer", "FORCED_MIN", "FORCED_MAX"]

FORCED_MIN, FORCED_MAX = 200, 599
_STATUS_RE = re.compile(r"[2-5][0-9][0-9]")
_NO_BODY = (204, 205, 304)
WWW_AUTHENTICATE = 'Basic realm="hookbench"'
_HOOKS = PATH_HOOKS.strip("/")  # the first segment of every endpoint's path


class Reject(Exception):
    """A request stops here: answer `status`, audit `verdict` with `reason`."""

    def __init__(self, status: int, reason: str, verdict: str = "rejected",
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status, reason)
        self.status, self.reason, self.verdict = status, reason, verdict
        self.headers = dict(headers or {})


def answer(status: int, text: str | None = None, headers: Mapping[str, str] | None = None) -> web.Response:
    """A plain-text response; no body where HTTP forbids one."""
    if status in _NO_BODY or text is None:
        return web.Response(status=status, headers=headers)
    return web.Response(status=status, text=text, headers=headers)


@dataclass(frozen=True)
class Target:
    """Where a /hooks request goes: the endpoint (None: unknown) and a forced status, if the path asks for one."""

    endpoint: Endpoint | None
    forced: int | None
    path: str  # the request path with any token replaced, safe to log


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "replace"), b.encode("utf-8", "replace"))


def resolve(path: str, setup: ReceiverSetup) -> Target:
    """Match /hooks[/<name-or-token>[/<status>]] to an endpoint; the logged path never contains a token."""
    parts = path.split("/")
    if len(parts) < 2 or parts[0] != "" or parts[1] != _HOOKS or len(parts) > 4:
        return Target(None, None, _cut_path(path, setup))
    by_token = setup.receiver.path_token
    if len(parts) == 2:  # plain /hooks reaches the only endpoint when it is addressed by name
        ep = setup.endpoints[0] if len(setup.endpoints) == 1 and not by_token else None
        return Target(ep, None, PATH_HOOKS)
    key = parts[2]
    ep = None
    if by_token:
        for candidate in setup.endpoints:  # every token compared, in constant time: no timing oracle
            if candidate.token is not None and _same(key, candidate.token):
                ep = candidate
        shown = "<token>" if ep is not None else "<unknown-token>"
    else:
        ep = next((e for e in setup.endpoints if e.name == key), None)
        shown = "<token>" if any(e.token and _same(key, e.token) for e in setup.endpoints) else _cut(key, 64)
    logged = f"{PATH_HOOKS}/{shown}" + ("/" + _cut(parts[3], 16) if len(parts) == 4 else "")
    forced = None
    if len(parts) == 4:
        if not _STATUS_RE.fullmatch(parts[3]):
            return Target(None, None, logged)
        forced = int(parts[3])
    return Target(ep, forced, logged)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _cut_path(path: str, setup: ReceiverSetup) -> str:
    for secret in setup.secret_values():
        if secret in path:
            path = path.replace(secret, "<redacted>")
    return _cut(path, 200)


def check_basic_auth(headers: Mapping[str, str], ep: Endpoint) -> None:
    """401 with WWW-Authenticate unless Authorization: Basic carries the endpoint's user and password."""
    assert ep.basic_auth is not None
    challenge = {"WWW-Authenticate": WWW_AUTHENTICATE}
    value = headers.get("Authorization")
    if not value:
        raise Reject(401, "basic auth: missing Authorization header", headers=challenge)
    scheme, _, encoded = value.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise Reject(401, "basic auth: Authorization is not 'Basic <base64>'", headers=challenge)
    try:
        user, sep, password = base64.b64decode(encoded.strip(), validate=True).partition(b":")
    except (binascii.Error, ValueError):
        raise Reject(401, "basic auth: credentials are not valid base64", headers=challenge) from None
    if not sep:
        raise Reject(401, "basic auth: credentials are not 'user:password'", headers=challenge)
    # both compared, always (no early exit), in constant time
    ok = hmac.compare_digest(user, ep.basic_auth.user.encode()) & \
        hmac.compare_digest(password, ep.basic_auth.password.encode())
    if not ok:
        raise Reject(401, "basic auth: wrong credentials", headers=challenge)


async def read_body(content: StreamReader, max_body: int) -> bytes:
    """The whole body, reading at most max_body + 1 bytes: 413 as soon as it is longer than max_body."""
    chunks: list[bytes] = []
    total = 0
    while True:
        try:
            chunk = await content.read(max_body + 1 - total)
        except (ConnectionError, OSError):
            raise Reject(400, "body could not be read: the client went away") from None
        except Exception as e:  # a malformed chunked encoding, a short Content-Length body...
            raise Reject(400, f"body could not be read: {e.__class__.__name__}") from None
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        chunks.append(chunk)
        if total > max_body:
            raise Reject(413, f"body too large: more than max_body = {max_body} bytes")
        if content.at_eof():  # the whole body is in (the usual case: one chunk): no read just to learn that
            return chunk if len(chunks) == 1 else b"".join(chunks)


# Where each scheme carries the id a delivery is deduplicated on, when it is a header (Stripe's is the body's "id",
# whose absence its verify() already names). A signed request without it is refused: it could not be deduplicated.
_ID_HEADERS = {"standard": H_ID, "github": H_DELIVERY}


def check_signature(scheme: Scheme, body: bytes, headers: Mapping[str, str], now: float) -> str:
    """The id to deduplicate on, from the endpoint's scheme; 400 (missing/malformed) or 401 (mismatch/stale)."""
    try:
        msg_id = scheme.verify(body, headers, now=now)
    except SignatureError as e:
        reason = f"signature: {e.reason}"
        id_header = _ID_HEADERS.get(scheme.name)
        if e.status == 400 and id_header is not None and not headers.get(id_header):
            reason += f" ({id_header} is the id deliveries are deduplicated on: a sender cannot be deduplicated " \
                      "without one)"
        raise Reject(e.status if e.status in (400, 401) else 401, reason) from None
    if not isinstance(msg_id, str) or not msg_id:
        raise Reject(400, "signature: verified, but there is no message id to deduplicate on")
    return msg_id


def classify_body(body: bytes) -> str | None:
    """The change_id if the body is one of hookbench's own change events, None for any other JSON (a foreign
    sender's event); 400 unless the body is JSON.

    Own events are what bench.protocol encodes: an object with "type" EVENT_TYPE and a non-empty string
    data.change_id (thin events included). orjson parses the usual body (several times faster); whatever it
    refuses (a BOM, NaN, a lone surrogate escape, UTF-16...) goes to json, so what is accepted is exactly what
    json.loads accepts.
    """
    try:
        event: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        try:
            event = json.loads(body)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            raise Reject(400, "body is not JSON") from None
    if not isinstance(event, dict) or event.get("type") != EVENT_TYPE:
        return None
    data = event.get("data")
    change_id = data.get("change_id") if isinstance(data, dict) else None
    return change_id if isinstance(change_id, str) and change_id else None


async def check_request(request: web.Request, ep: Endpoint, setup: ReceiverSetup, scheme: Scheme,
                        arrival: Arrival, wall_clock: Callable[[], float] = time.time) -> None:
    """Run every check after routing, in order, filling `arrival` (body, msg_id, change_id, foreign); Reject on
    failure."""
    cfg = setup.receiver
    if request.method != "POST":
        raise Reject(405, f"method {request.method} not allowed: POST a webhook", headers={"Allow": "POST"})
    if cfg.basic_auth:
        check_basic_auth(request.headers, ep)
    length = request.content_length
    if length is not None and length > cfg.max_body:
        raise Reject(413, f"body too large: Content-Length {length} > max_body = {cfg.max_body} bytes")
    body = await read_body(request.content, cfg.max_body)
    arrival.t_obs_ns = time.time_ns()  # the change reached the consumer once its body is in
    arrival.body = body
    if cfg.require_content_type:
        ctype = request.headers.get("Content-Type")
        if ctype is None:
            raise Reject(415, "content type missing: must be application/json")
        if request.content_type.lower() != "application/json":
            raise Reject(415, f"content type {_cut(request.content_type, 64)!r} is not application/json")
    arrival.msg_id = check_signature(scheme, body, request.headers, wall_clock())
    arrival.change_id = classify_body(body)
    arrival.foreign = arrival.change_id is None
