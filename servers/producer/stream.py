"""GET /changes/stream: the change log as Server-Sent Events, one held response per consumer.

Each change is one event, `id: <seq>` and `data: <the change's JSON as GET /changes lists it>`. A consumer
resumes after a disconnect with `Last-Event-ID: <seq>` (or starts after `?after=SEQ`; with neither, at the head
of the log: the changes from now on), and gets every change after that seq exactly once, replayed from the
store's change log in pages. Then the handler waits on the ChangeNotifier (never polling the store); an idle
stream gets a comment line (`: hb`) every polling.sse_heartbeat (the scenario's value / run.time_scale, the
producer's own setting: the consumer cannot change it). The stream ends when the producer shuts down, or at the
next write after the consumer went away (the next change or heartbeat).

Its cost goes to its mode through the request's Meter (ledger.py): held while open, every byte written (the
chunked-transfer framing included), and the CPU of its own code between waits, charged as it goes so that a
stream held across the window marks shows its cost between them.
"""

from __future__ import annotations

import re

from aiohttp import web

from bench.protocol import PATH_STREAM, ChangeEvent

from .keys import NOTIFIER, SSE_HEARTBEAT, STORE
from .ledger import METER, Meter
from .views import routes

__all__ = ["stream_changes", "PAGE", "HEARTBEAT", "LAST_EVENT_ID", "event_bytes"]

PAGE = 500  # changes read from the store at once while replaying a backlog (never the whole backlog)
HEARTBEAT = b": hb\n\n"  # an SSE comment: consumers ignore it; it keeps an idle connection visibly alive
LAST_EVENT_ID = "Last-Event-ID"
_SEQ = re.compile(r"\d{1,19}")  # digits only: int() would also take " 5", "+5" and "5_0"

try:  # the same bytes as GET /changes gives each change (views.py encodes the feed with orjson too)
    import orjson

    def _json(change: ChangeEvent) -> bytes:
        return orjson.dumps(change)
except ImportError:  # pragma: no cover - orjson is a dependency
    import json

    def _json(change: ChangeEvent) -> bytes:
        return json.dumps(change, separators=(",", ":")).encode()


def event_bytes(change: ChangeEvent) -> bytes:
    """One change as an SSE event."""
    return b"id: %d\ndata: %s\n\n" % (change["seq"], _json(change))


def _resume_point(request: web.Request, head: int) -> int:
    """The seq after which the stream starts: Last-Event-ID (a reconnect), else ?after=, else the head."""
    name, raw = LAST_EVENT_ID, request.headers.get(LAST_EVENT_ID)
    if raw is None:
        name, raw = "after", request.query.get("after")
    if raw is None:
        return head
    if not _SEQ.fullmatch(raw):
        raise web.HTTPBadRequest(text=f"{name}: {raw!r}: expected the seq of the last event received "
                                      "(an integer >= 0)")
    seq = int(raw)
    if seq > head:
        raise web.HTTPBadRequest(text=f"{name}: {seq}: this producer's change log ends at seq {head}: "
                                      "the event is from another store; reconnect without it")
    return seq


async def _send(resp: web.StreamResponse, meter: Meter, chunk: bytes) -> None:
    meter.pause()
    try:
        await resp.write(chunk)
    finally:
        meter.resume()
    # chunked transfer: "<size in hex>\r\n" <chunk> "\r\n" on the wire (HTTP/1.0: the bytes as they are)
    framing = len(f"{len(chunk):x}") + 4 if resp.headers.get("Transfer-Encoding") == "chunked" else 0
    meter.sent(len(chunk) + framing)


@routes.get(PATH_STREAM, name="stream")
async def stream_changes(request: web.Request) -> web.StreamResponse:
    store, notifier = request.app[STORE], request.app[NOTIFIER]
    meter = request[METER]  # the route is charged (bench.modes: the SSE kind's charged_route)
    after = _resume_point(request, store.head_seq)
    heartbeat = request.app[SSE_HEARTBEAT]
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    meter.pause()
    await resp.prepare(request)  # the head goes out now: the consumer knows it is connected
    meter.resume()
    meter.hold()
    try:
        while not notifier.closed:
            changes, _more = store.changes_after(after, PAGE)
            if changes:  # a page of the backlog, or what woke us: then look again (a full page has more)
                after = changes[-1]["seq"]
                await _send(resp, meter, b"".join(map(event_bytes, changes)))
                continue
            meter.pause()
            meter.charge()
            woke = await notifier.wait(heartbeat)  # no await between the empty read and here: no change missed
            meter.resume()
            if notifier.closed or request.transport is None or request.transport.is_closing():
                break
            if not woke:
                await _send(resp, meter, HEARTBEAT)
        if notifier.closed:  # the producer stops: end the stream cleanly, the consumer will resume elsewhere
            meter.pause()
            await resp.write_eof()
            meter.resume()
            meter.sent(5 if resp.headers.get("Transfer-Encoding") == "chunked" else 0)  # the last chunk, 0 CRLF CRLF
    except ConnectionResetError:  # the consumer went away while we wrote (aiohttp's own error subclasses it)
        pass
    return resp
