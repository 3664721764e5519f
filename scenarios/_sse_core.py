"""The event-stream client of pollers.py's SseListener: one GET of a text/event-stream over a plain socket.

`EventStream` sends the request (HTTP/1.1), reads the response head and then yields the body as it arrives,
undoing chunked transfer coding, without waiting for more than the socket has (an event is handed on the
moment its bytes are in). `SseParser` turns those bytes into events as the WHATWG HTML standard reads a
text/event-stream (fields, comments, CR/LF/CRLF line ends; an event is dispatched only at its blank line, so
one cut off by a dropped connection is never taken). A plain socket rather than Locust's HTTP clients: they
read a body in fixed-size blocks or retry a failed request on their own, which would hide a reconnect.

Not a locustfile: no User, no option, no event listener. Under Locust the `socket` module is gevent's.
"""

from __future__ import annotations

import socket
from typing import Iterator, NamedTuple
from urllib.parse import urlsplit

__all__ = ["Event", "SseParser", "EventStream", "StreamBroken"]


class Event(NamedTuple):
    id: str | None  # the stream's last event id when it was dispatched (what Last-Event-ID resumes from)
    event: str  # its type ("message" when the stream says none)
    data: str


class SseParser:
    """Incremental text/event-stream parsing: `feed(bytes)` -> the events completed by those bytes."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._data: list[str] = []
        self._event = ""
        self.last_id: str | None = None
        self.comments = 0  # comment lines seen (the producer's heartbeats)
        self._after_cr = False  # the last byte fed ended a line with CR: an LF coming next belongs to it

    def feed(self, data: bytes) -> list[Event]:
        if self._after_cr and data.startswith(b"\n"):  # the LF of a CRLF cut between two reads
            data = data[1:]
        self._after_cr = False
        self._buf += data
        out: list[Event] = []
        start = 0
        buf = self._buf
        while True:
            lf, cr = buf.find(b"\n", start), buf.find(b"\r", start)
            if cr >= 0 and (lf < 0 or cr < lf):  # a CR ends the line at once; a CRLF counts as one line end
                end, nxt = cr, cr + 2 if buf[cr + 1:cr + 2] == b"\n" else cr + 1
                self._after_cr = nxt == len(buf) and nxt == cr + 1
            elif lf >= 0:
                end, nxt = lf, lf + 1
            else:
                break
            event = self._line(bytes(buf[start:end]).decode("utf-8", errors="replace"))
            if event is not None:
                out.append(event)
            start = nxt
        del buf[:start]
        return out

    def _line(self, line: str) -> Event | None:
        if not line:  # dispatch
            if not self._data:
                self._event = ""
                return None
            event = Event(self.last_id, self._event or "message", "\n".join(self._data))
            self._data, self._event = [], ""
            return event
        if line.startswith(":"):
            self.comments += 1
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self.last_id = value
        elif name == "event":
            self._event = value
        return None  # "retry" and unknown fields: ignored (the listener keeps its own back-off)


class StreamBroken(Exception):
    """The connection ended in the middle of the response (a producer killed, a reset)."""


class EventStream:
    """One `GET path` held open: `status` and `headers` once open, then `body()` until the stream ends."""

    def __init__(self, url: str, path: str, headers: dict[str, str], connect_timeout: float,
                 read_timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"{url!r}: expected http://HOST:PORT")
        self._sock = socket.create_connection((parts.hostname, parts.port or 80), timeout=connect_timeout)
        self._buf = bytearray()
        self.received = 0  # bytes read from the socket: head, body and transfer framing
        self.status = 0
        self.headers: dict[str, str] = {}
        try:
            self._sock.settimeout(read_timeout)  # a silent connection (no event, no heartbeat) is a dead one
            lines = [f"GET {path} HTTP/1.1", f"Host: {parts.netloc}", "Accept: text/event-stream",
                     "Cache-Control: no-cache", *(f"{k}: {v}" for k, v in headers.items())]
            self._sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            self._read_head()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._sock.close()

    def _fill(self) -> bool:
        data = self._sock.recv(65536)
        self.received += len(data)
        self._buf += data
        return bool(data)

    def _line(self) -> bytes:
        while (end := self._buf.find(b"\r\n")) < 0:
            if not self._fill():
                raise StreamBroken("connection closed before the end of the response")
        line = bytes(self._buf[:end])
        del self._buf[:end + 2]
        return line

    def _some(self, most: int) -> bytes | None:
        """Up to `most` bytes, as soon as there are any; None at end of stream."""
        if not self._buf and not self._fill():
            return None
        piece = bytes(self._buf[:most])
        del self._buf[:most]
        return piece

    def _read_head(self) -> None:
        status_line = self._line().decode("latin-1")
        try:
            self.status = int(status_line.split(" ", 2)[1])
        except (IndexError, ValueError):
            raise StreamBroken(f"not an HTTP response: {status_line[:60]!r}") from None
        while line := self._line():
            name, _, value = line.decode("latin-1").partition(":")
            self.headers[name.strip().lower()] = value.strip()

    def body(self) -> Iterator[bytes]:
        """The body as it arrives; returns at its end, raises StreamBroken when the connection drops first."""
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            while size := self._chunk_size():
                yield from self._exactly(size)
                if self._line():
                    raise StreamBroken("bad chunk: no CRLF after its data")
            while self._line():  # trailer fields, up to the blank line
                pass
        elif "content-length" in self.headers:
            yield from self._exactly(int(self.headers["content-length"]))
        else:  # delimited by the end of the connection
            while (piece := self._some(65536)) is not None:
                yield piece

    def _chunk_size(self) -> int:
        raw = self._line().split(b";")[0].strip()
        try:
            return int(raw, 16)
        except ValueError:
            raise StreamBroken(f"bad chunk size {raw[:20]!r}") from None

    def _exactly(self, size: int) -> Iterator[bytes]:
        while size > 0:
            piece = self._some(size)
            if piece is None:
                raise StreamBroken("connection closed in the middle of the stream")
            size -= len(piece)
            yield piece
