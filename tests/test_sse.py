"""Server-Sent Events: the producer's GET /changes/stream (real app factory on 127.0.0.1) and the listener's
client core (scenarios/_sse_core.py: parsing and de-chunking, also against the real producer)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from support import WAIT_S, change, wait_until
from test_analysis import CHANGES, MARKS, SCENARIO, W, ms
from test_producer import async_test, producer

import scenarios._sse_core as core
from bench.analysis.summary import summarize
from bench.analysis.tables import Tables
from bench.config import scenario_from_dict
from bench.modes import MODE_SSE, SSE_HEARTBEAT_BYTES, Workload, model_for, sse_event_bytes
from bench.protocol import MODE_LABEL_HEADER, PATH_STREAM
from scenarios._sse_core import Event, EventStream, SseParser, StreamBroken
from servers.producer import stream
from servers.producer.keys import LEDGER, NOTIFIER, SSE_HEARTBEAT

LABEL = {MODE_LABEL_HEADER.title(): MODE_SSE}


def committed(app: Any, n: int = 1) -> list[dict[str, Any]]:
    """n changes, each announced to held requests, as the generator's on_change does."""
    out = []
    for i in range(n):
        out.append(dict(change(app, resource_id=i % 5, value=i)))
        app[NOTIFIER].notify()
    return out


async def read_events(resp: ClientResponse, n: int) -> tuple[list[Event], SseParser]:
    """The next n events of an open stream (a bounded wait: the test fails rather than hang)."""
    parser, events = SseParser(), []
    while len(events) < n:
        line = await asyncio.wait_for(resp.content.readline(), WAIT_S)
        assert line, f"stream ended after {len(events)} of {n} events"
        events += parser.feed(line)
    return events, parser


async def open_stream(client: TestClient, headers: dict[str, str] | None = None, query: str = "") -> ClientResponse:
    resp = await client.get(PATH_STREAM + query, headers={**LABEL, **(headers or {})})
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"] == "text/event-stream" and resp.headers["Cache-Control"] == "no-cache"
    return resp


# --- the producer's stream --------------------------------------------------------------------------------------


@async_test
async def test_events_carry_the_seq_as_id_and_the_change_as_the_feed_lists_it(tmp_path: Path) -> None:
    async with producer(tmp_path) as (app, client):
        committed(app, 3)
        feed = await (await client.get("/changes?after=0")).json()
        resp = await open_stream(client, query="?after=0")
        events, _ = await read_events(resp, 3)
        assert [e.id for e in events] == ["1", "2", "3"]
        assert [json.loads(e.data) for e in events] == feed["changes"]
        resp.close()


@async_test
async def test_last_event_id_resumes_exactly_after_it_then_follows_live(tmp_path: Path) -> None:
    async with producer(tmp_path) as (app, client):
        committed(app, 5)
        # Last-Event-ID (a reconnect) wins over ?after= (a first connect)
        resp = await open_stream(client, {"Last-Event-ID": "2"}, query="?after=4")
        events, _ = await read_events(resp, 3)
        assert [e.id for e in events] == ["3", "4", "5"]
        committed(app, 2)
        live, _ = await read_events(resp, 2)
        assert [e.id for e in live] == ["6", "7"]
        resp.close()


@async_test
async def test_without_a_resume_point_the_stream_starts_at_the_head(tmp_path: Path) -> None:
    async with producer(tmp_path) as (app, client):
        committed(app, 2)
        resp = await open_stream(client)
        committed(app, 1)
        (event,), _ = await read_events(resp, 1)
        assert event.id == "3"
        resp.close()


@async_test
async def test_a_backlog_is_replayed_in_pages_in_order_without_repeats(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream, "PAGE", 2)
    async with producer(tmp_path) as (app, client):
        committed(app, 7)
        resp = await open_stream(client, {"Last-Event-ID": "0"})
        events, _ = await read_events(resp, 7)
        assert [e.id for e in events] == [str(i) for i in range(1, 8)]
        resp.close()


@async_test
async def test_an_idle_stream_gets_heartbeat_comments(tmp_path: Path) -> None:
    scenario = scenario_from_dict({"name": "hb", "run": {"duration": "1s", "time_scale": 2.0},
                                   "resources": {"count": 5}, "changes": {"rate": 1.0},
                                   "polling": {"interval": "1s", "sse_heartbeat": "100ms"}}, "<test>")
    async with producer(tmp_path, scenario) as (app, client):
        assert app[SSE_HEARTBEAT] == pytest.approx(0.05)  # live: the nominal value / run.time_scale
        resp = await open_stream(client)
        parser = SseParser()
        while parser.comments < 2:  # no change at all: only heartbeats keep coming
            line = await asyncio.wait_for(resp.content.readline(), WAIT_S)
            assert parser.feed(line) == [] and line in (b": hb\n", b"\n")
        resp.close()


@pytest.mark.parametrize("headers,query,words", [
    ({"Last-Event-ID": "abc"}, "", "Last-Event-ID: 'abc': expected the seq"),
    ({"Last-Event-ID": "-1"}, "", "Last-Event-ID: '-1'"),
    ({"Last-Event-ID": "+5"}, "", "Last-Event-ID: '+5'"),  # int() would take these two; the header may not
    ({"Last-Event-ID": "1_0"}, "", "Last-Event-ID: '1_0'"),
    ({"Last-Event-ID": ""}, "", "Last-Event-ID: ''"),
    ({}, "?after=x", "after: 'x'"),
    ({"Last-Event-ID": "99"}, "", "Last-Event-ID: 99: this producer's change log ends at seq 2"),
    ({}, "?after=3", "after: 3: this producer's change log ends at seq 2"),
])
def test_a_bad_resume_point_is_a_400_naming_it(tmp_path: Path, headers: dict[str, str], query: str,
                                               words: str) -> None:
    async def check() -> None:
        async with producer(tmp_path) as (app, client):
            committed(app, 2)
            resp = await client.get(PATH_STREAM + query, headers={**LABEL, **headers})
            assert resp.status == 400
            assert words in await resp.text()
            assert app[LEDGER].mode(MODE_SSE).held == 0

    asyncio.run(check())


@async_test
async def test_every_byte_on_the_wire_is_charged_to_the_mode_and_the_cpu_as_it_goes(tmp_path: Path) -> None:
    async with producer(tmp_path) as (app, client):
        cost = app[LEDGER].mode(MODE_SSE)
        port = client.server.port
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        request = (f"GET {PATH_STREAM} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n"
                   f"{MODE_LABEL_HEADER.title()}: {MODE_SSE}\r\n\r\n").encode()
        writer.write(request)
        raw = bytearray()
        while b"\r\n\r\n" not in raw:  # the head comes at once, before any event
            raw += await asyncio.wait_for(reader.read(65536), WAIT_S)
        await wait_until(lambda: cost.held == 1, "the stream to be held")
        committed(app, 3)
        while raw.count(b"data: ") < 3:
            raw += await asyncio.wait_for(reader.read(65536), WAIT_S)
        assert cost.cpu_ns > 0  # charged while the stream is still open (the window marks must see it)
        app[NOTIFIER].close()  # the producer stops: the stream ends with the last chunk
        while not raw.endswith(b"\r\n0\r\n\r\n"):
            raw += await asyncio.wait_for(reader.read(65536), WAIT_S)
        await wait_until(lambda: cost.held == 0, "the stream to be released")
        writer.close()
        assert cost.requests == 1 and cost.held_max == 1
        assert cost.bytes_out == len(raw)  # head, events, heartbeats and chunk framing: what was sent
        label_line = len(f"{MODE_LABEL_HEADER.title()}: {MODE_SSE}\r\n")
        assert cost.bytes_in == len(request) - label_line  # the measurement label is not the consumer's cost


@async_test
async def test_a_stream_whose_consumer_left_ends_at_the_next_change(tmp_path: Path) -> None:
    async with producer(tmp_path) as (app, client):
        cost = app[LEDGER].mode(MODE_SSE)
        resp = await open_stream(client)
        await wait_until(lambda: cost.held == 1, "the stream to be held")
        resp.close()
        committed(app, 1)
        await wait_until(lambda: cost.held == 0, "the abandoned stream to end")


def test_the_model_event_size_is_the_producers() -> None:
    for resources, seq in ((50, 100), (5, 12345)):
        ch = {"change_id": f"ch{seq}", "resource_id": resources - 1, "seq": seq, "version": 1,
              "t_change_ns": 1_800_000_000_000_000_000}
        body = stream.event_bytes(ch)  # type: ignore[arg-type]
        assert sse_event_bytes(resources, seq) == len(body) + len(f"{len(body):x}\r\n\r\n")
    assert SSE_HEARTBEAT_BYTES == len(stream.HEARTBEAT) + len(f"{len(stream.HEARTBEAT):x}\r\n\r\n")


def test_the_model_counts_one_heartbeat_per_idle_gap_of_h() -> None:
    # Poisson at 0.5 changes/s in all, H = 2 s: E[floor(G/H)] = 1/(e^(0.5*2) - 1) heartbeats per change
    m = model_for(MODE_SSE, Workload("poisson", 0.1, 1.0, 5, {"sse_heartbeat": 2.0}))
    assert m is not None
    assert m["heartbeats_per_change"] == pytest.approx(1 / (2.718281828459045 - 1))
    assert m["bytes_per_change"] == pytest.approx(sse_event_bytes(5) + SSE_HEARTBEAT_BYTES * m["heartbeats_per_change"])
    busy = model_for(MODE_SSE, Workload("poisson", 10.0, 1.0, 50, {"sse_heartbeat": 5.0}))
    assert busy is not None and busy["heartbeats_per_change"] == 0.0  # e^-2500: no overflow, no heartbeat


# --- the listener's client core ---------------------------------------------------------------------------------

STREAM_TEXT = (b": hb\n\nid: 1\ndata: {\"change_id\":\"ch1\"}\n\n: hb\n\nid: 2\nevent: change\ndata: a\ndata: b\n\n"
               b"data: no id\n\nid: 3\ndata: cut off")


def test_the_parser_gives_the_same_events_however_the_bytes_are_cut() -> None:
    whole = SseParser()
    events = whole.feed(STREAM_TEXT)
    assert events == [Event("1", "message", '{"change_id":"ch1"}'), Event("2", "change", "a\nb"),
                      Event("2", "message", "no id")]  # the id persists; the unterminated event is not dispatched
    assert whole.comments == 2 and whole.last_id == "3"
    for size in (1, 2, 3, 7):
        parser = SseParser()
        pieces = [STREAM_TEXT[i:i + size] for i in range(0, len(STREAM_TEXT), size)]
        assert [e for p in pieces for e in parser.feed(p)] == events


def test_the_parser_takes_cr_lf_and_crlf_line_ends() -> None:
    for end in (b"\r\n", b"\r", b"\n"):
        text = end.join([b"id: 7", b"data:x", b"", b""])
        parser = SseParser()
        assert [e for i in range(len(text)) for e in parser.feed(text[i:i + 1])] == [Event("7", "message", "x")]


class FakeSocket:
    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces, self.sent, self.closed = list(pieces), b"", False

    def settimeout(self, _t: float) -> None:
        pass

    def sendall(self, data: bytes) -> None:
        self.sent += data

    def recv(self, _n: int) -> bytes:
        return self.pieces.pop(0) if self.pieces else b""

    def close(self) -> None:
        self.closed = True


def fake_stream(monkeypatch: pytest.MonkeyPatch, wire: bytes, size: int) -> tuple[EventStream, FakeSocket]:
    sock = FakeSocket([wire[i:i + size] for i in range(0, len(wire), size)])
    monkeypatch.setattr(core.socket, "create_connection", lambda *_a, **_k: sock)
    return EventStream("http://127.0.0.1:1", PATH_STREAM, {"Last-Event-ID": "4"}, 1.0, 1.0), sock


HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
BODY = [b"id: 5\ndata: x\n\n", b": hb\n\n", b"id: 6\ndata: y\n\n"]
CHUNKED = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in BODY)


@pytest.mark.parametrize("size", [1, 3, 1000])
def test_the_client_undoes_chunking_wherever_the_reads_cut(monkeypatch: pytest.MonkeyPatch, size: int) -> None:
    es, sock = fake_stream(monkeypatch, HEAD + CHUNKED + b"0\r\n\r\n", size)
    assert es.status == 200 and es.headers["content-type"] == "text/event-stream"
    assert b"".join(es.body()) == b"".join(BODY)
    assert es.received == len(HEAD + CHUNKED) + 5
    assert sock.sent.startswith(b"GET /changes/stream HTTP/1.1\r\n") and b"\r\nLast-Event-ID: 4\r\n" in sock.sent


def test_a_stream_cut_off_mid_way_is_broken_not_ended(monkeypatch: pytest.MonkeyPatch) -> None:
    es, _ = fake_stream(monkeypatch, HEAD + CHUNKED[:-7], 5)  # a producer killed in the middle of an event
    got = bytearray()
    with pytest.raises(StreamBroken):
        for piece in es.body():
            got += piece
    assert [e.id for e in SseParser().feed(bytes(got))] == ["5"]  # the cut event is never dispatched


def test_a_refusal_has_its_status_and_body(monkeypatch: pytest.MonkeyPatch) -> None:
    es, _ = fake_stream(monkeypatch, b"HTTP/1.1 400 Bad Request\r\nContent-Length: 5\r\n\r\nnope!", 4)
    assert es.status == 400 and b"".join(es.body()) == b"nope!"


@async_test
async def test_the_client_reads_and_resumes_the_real_producers_stream(tmp_path: Path) -> None:
    async with producer(tmp_path) as (app, client):
        committed(app, 4)
        port = client.server.port

        def listen(last_id: str, n: int) -> list[Event]:  # blocking, as the listener runs it (here in a thread)
            es = EventStream(f"http://127.0.0.1:{port}", PATH_STREAM, {**LABEL, "Last-Event-ID": last_id}, 5, 5)
            parser, events = SseParser(), []
            try:
                for piece in es.body():
                    events += parser.feed(piece)
                    if len(events) >= n:
                        return events
            finally:
                es.close()
            raise AssertionError("stream ended early")

        assert [e.id for e in await asyncio.to_thread(listen, "1", 3)] == ["2", "3", "4"]
        assert [e.id for e in await asyncio.to_thread(listen, "3", 1)] == ["4"]
        with pytest.raises(ConnectionRefusedError):
            EventStream("http://127.0.0.1:1", PATH_STREAM, {}, 5, 5)


# --- the summary of a stream mode ---------------------------------------------------------------------------------


def test_a_streams_requests_are_the_connections_open_in_the_window() -> None:
    def conn(t_send: float, t_recv: float, status: int, n: int, error: str | None) -> dict[str, Any]:
        return {"mode": MODE_SSE, "user": 1, "resource_id": None, "t_intended_ns": ms(t_send), "t_send_ns": ms(t_send),
                "t_recv_ns": ms(t_recv), "status": status, "empty": n == 0, "n_new": n, "bytes": 100 * n,
                "error": error, "followup": False, "initial": False}

    connections = [conn(100, 400, 200, 1, "StreamBroken: cut"),  # before the window: not one of its requests
                   conn(500, 1400, 200, 3, "StreamBroken: cut"),  # opened in the warm-up, held into the window
                   conn(1401, 1401, 0, 0, "ConnectionRefusedError"), conn(1600, 1600, 0, 0, "ConnectionRefusedError"),
                   conn(1800, 2600, 200, 2, None),  # the resumed stream
                   conn(2600, 2600, 0, 0, "ConnectionRefusedError")]  # after the window
    t = Tables.from_frames(
        changes=[{"change_id": c, "resource_id": r, "seq": i + 1, "version": v, "t_change_ns": ms(t)}
                 for i, (c, r, v, t) in enumerate(CHANGES)],
        observations=[{"mode": MODE_SSE, "user": 1, "change_id": c, "t_obs_ns": ms(t + 1)}
                      for c, _r, _v, t in CHANGES[1:6]],
        polls=connections)
    s = summarize(t, W, SCENARIO, MARKS, modes=[MODE_SSE])
    m = s["modes"][MODE_SSE]
    assert (m["kind"], m["style"]) == ("stream", "sse")
    assert (m["requests"], m["empty_requests"], m["errors"], m["reconnects"]) == (4, 2, 3, 3)
    assert m["requests_per_change"] == 4 / 5
    assert (m["observed"], m["lost"], m["duplicates"]) == (5, 0, 0)
    assert m["latency_ms"]["p50"] == 1.0
    assert "rtt_ms_p50" not in m  # a connection's duration is no round trip
    assert m["model"]["event_bytes"] == sse_event_bytes(3) and m["model"]["heartbeats_per_change"] < 1e-12
    assert s["faults"]["modes"][MODE_SSE]["reconnects"] == 3 and s["faults"]["modes"][MODE_SSE]["lost"] == 0
