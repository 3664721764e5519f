"""The receiver from its real factory on 127.0.0.1: every defence, the dedup store, the fault model, the audit log,
the inspector, HTTPS, and the command line."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import ssl
import stat
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from support import wait_until

from bench.errors import ScenarioError
from bench.protocol import ATTACK_LABEL_HEADER, H_ID, H_SIGNATURE, H_TIMESTAMP, READY_PREFIX, change_event, encode_event
from bench.signing import make_scheme, new_secret_for
from servers.common import start_app
from servers.receiver import create_app
from servers.receiver.app import RECEIVER
from servers.receiver.config import ReceiverSetup, setup_from_dict
from servers.receiver.dedup import DedupStore
from servers.receiver.faults import FaultModel
from servers.receiver.tls import server_context

REPO = Path(__file__).resolve().parents[1]
SECRET = new_secret_for("standard")
TOKEN = "0123456789abcdef0123456789abcdef"
AUDIT_KEYS = {"t_ns", "t_obs_ns", "endpoint", "remote", "method", "path", "headers", "msg_id", "change_id", "foreign",
              "status", "verdict", "reason", "latency_ms"}
JSON = {"Content-Type": "application/json"}

Request = tuple[bytes, dict[str, str]]


# --- helpers --------------------------------------------------------------------------------------

def make_setup(receiver: dict[str, Any] | None = None, faults: dict[str, Any] | None = None,
               endpoints: list[dict[str, Any]] | None = None, **top: Any) -> ReceiverSetup:
    data = {"receiver": receiver or {}, "faults": faults or {},
            "endpoints": endpoints or [{"name": "webhook", "token": TOKEN, "scheme": "standard", "secrets": [SECRET],
                                        "basic_auth": {"user": "u", "password": "p4ss-word"}}], **top}
    return setup_from_dict(data, "test")


def event_body(change_id: str = "ch1") -> bytes:
    return encode_event(change_event(change_id, 3, 1, 1, time.time_ns())).encode()


def signed(body: bytes | None = None, msg_id: str = "msg_ch1", *, scheme: str = "standard",
           secrets: list[str] | None = None, ts: int | None = None, extra: dict[str, str] | None = None) -> Request:
    """A request as the dispatcher sends it: the signature covers exactly these bytes."""
    raw = event_body(msg_id.removeprefix("msg_")) if body is None else body
    headers = make_scheme(scheme, secrets or [SECRET]).sign(msg_id, raw, int(time.time()) if ts is None else ts)
    return raw, {**JSON, **headers, **(extra or {})}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


@asynccontextmanager
async def serving(setup: ReceiverSetup, records: Path | None, **kw: Any) -> AsyncIterator[TestClient]:
    """A receiver on 127.0.0.1 behind a TestClient; leaving closes the app and flushes its records."""
    client = TestClient(TestServer(create_app(setup, records_dir=records, **kw)))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


def exchange(tmp_path: Path, requests: list[Request], setup: ReceiverSetup | None = None, path: str = "/hooks",
             ) -> tuple[list[tuple[int, str, dict[str, str]]], list[dict[str, Any]], dict[str, Any]]:
    """POST each request to a fresh receiver; return the answers, audit.jsonl (read after cleanup), /health."""

    async def run() -> tuple[list[tuple[int, str, dict[str, str]]], dict[str, Any]]:
        async with serving(setup or make_setup(), tmp_path) as client:
            answers = []
            for body, headers in requests:
                resp = await client.post(path, data=body, headers=headers)
                answers.append((resp.status, await resp.text(), dict(resp.headers)))
            health = await (await client.get("/health")).json()
        return answers, health

    answers, health = asyncio.run(run())
    rows = read_jsonl(tmp_path / "audit.jsonl")
    for row in rows:
        assert set(row) == AUDIT_KEYS
        assert isinstance(row["t_ns"], int) and row["t_ns"] > 0
    assert len(rows) == len(requests)
    return answers, rows, health


def outcome(rows: list[dict[str, Any]]) -> list[tuple[int | None, str, str | None]]:
    return [(r["status"], r["verdict"], r["reason"]) for r in rows]


# --- the pipeline ---------------------------------------------------------------------------------

def test_valid_delivery_accepted_then_duplicate(tmp_path: Path) -> None:
    first = signed(msg_id="msg_ch1", extra={"User-Agent": "hookbench-test/1"})
    retry = signed(msg_id="msg_ch1", ts=int(time.time()) - 5)  # a retry: same id, its own timestamp
    other = signed(msg_id="msg_ch2")
    answers, rows, health = exchange(tmp_path, [first, first, retry, other])
    assert [a[0] for a in answers] == [204, 200, 200, 204]
    assert [(r["msg_id"], r["change_id"], r["status"], r["verdict"]) for r in rows] == [
        ("msg_ch1", "ch1", 204, "accepted"), ("msg_ch1", "ch1", 200, "duplicate"),
        ("msg_ch1", "ch1", 200, "duplicate"), ("msg_ch2", "ch2", 204, "accepted")]
    row = rows[0]
    assert (row["endpoint"], row["method"], row["path"], row["remote"]) == ("webhook", "POST", "/hooks", "127.0.0.1")
    assert row["t_ns"] <= row["t_obs_ns"] and row["latency_ms"] >= 0 and row["reason"] is None
    assert row["headers"]["content-type"] == "application/json"
    assert row["headers"]["user-agent"] == "hookbench-test/1"
    assert row["headers"][H_ID] == "msg_ch1" and H_TIMESTAMP in row["headers"]
    assert H_SIGNATURE not in row["headers"]  # signatures are not logged
    assert rows == sorted(rows, key=lambda r: r["t_ns"])
    assert health["ok"] is True and health["role"] == "receiver"
    assert health["counts"] == {"accepted": 2, "duplicate": 2}


def test_bad_signatures_are_401_malformed_ones_400(tmp_path: Path) -> None:
    body, headers = signed()
    wrong_key = signed(secrets=[new_secret_for("standard")])
    tampered = (body.replace(b'"resource_id":3', b'"resource_id":4'), headers)
    stale = signed(ts=int(time.time()) - 400)
    future = signed(ts=int(time.time()) + 400)
    garbage = (body, {**headers, H_SIGNATURE: "v1 g0hM9Ss"})
    missing = (body, {k: v for k, v in headers.items() if k != H_SIGNATURE})
    bad_ts = (body, {**headers, H_TIMESTAMP: "1e9"})
    not_utf8 = (b"\xff\xfe" + body, headers)  # cannot be what was signed; refused, not a crash
    answers, rows, health = exchange(tmp_path, [wrong_key, tampered, stale, future, garbage, missing, bad_ts, not_utf8])
    assert tampered[0] != body
    assert [a[0] for a in answers] == [401, 401, 401, 401, 400, 400, 400, 401]
    for (status, text, _), row in zip(answers, rows, strict=True):
        assert (row["status"], row["verdict"], row["change_id"], row["msg_id"]) == (status, "rejected", None, None)
        assert row["reason"] == text and text.startswith("signature: ")
        assert row["headers"][H_ID] == "msg_ch1"  # what was claimed is still in the log
    assert "too old" in answers[2][1] and "too new" in answers[3][1]
    assert "missing required header" in answers[5][1]
    assert health["counts"] == {"rejected": 8}


@pytest.mark.parametrize("body", [b"not json", b"", b"[" * 100_000, b'{"data":{"change_id":"x"}'])
def test_validly_signed_non_json_body_is_400(tmp_path: Path, body: bytes) -> None:
    answers, rows, _ = exchange(tmp_path, [signed(body, "msg_odd")])
    assert answers[0][0] == 400
    (row,) = rows
    assert (row["msg_id"], row["change_id"], row["foreign"], row["status"], row["verdict"], row["reason"]) == \
        ("msg_odd", None, None, 400, "rejected", "body is not JSON")


@pytest.mark.parametrize("body", [b'{"type":"resource.changed","data":{}}', b'{"data":"ch1"}', b"[1,2,3]",
                                  b'{"change_id":"ch1"}', b"null", b'{"data":{"change_id":"ch1"}}',
                                  b'{"type":"resource.changed","data":{"change_id":7}}'])
def test_validly_signed_json_that_is_not_our_event_is_accepted_as_foreign(tmp_path: Path, body: bytes) -> None:
    """Any verified JSON is accepted; only our own change events (type resource.changed, data.change_id) carry a
    change_id, so nothing else can become an observation."""
    answers, rows, health = exchange(tmp_path, [signed(body, "msg_odd"), signed(body, "msg_odd")])
    assert [a[0] for a in answers] == [204, 200]
    assert [(r["msg_id"], r["change_id"], r["foreign"], r["verdict"]) for r in rows] == \
        [("msg_odd", None, True, "accepted"), ("msg_odd", None, True, "duplicate")]
    assert health["counts"] == {"accepted": 1, "duplicate": 1}


@pytest.mark.parametrize("body", [
    b'\xef\xbb\xbf{"type":"resource.changed","data":{"change_id":"bom"}}',  # a BOM: json.loads takes it, orjson not
    b'{"type":"resource.changed","data":{"change_id":"nan"},"x":NaN}',  # NaN and huge numbers: json only
    b'{"type":"resource.changed","data":{"change_id":"big"},"x":1e400}',
    b'{"type":"resource.changed","data":{"change_id":"\\ud800"}}',  # a lone surrogate escape: json only
])
def test_bodies_only_json_parses_are_still_accepted(tmp_path: Path, body: bytes) -> None:
    """classify_body tries orjson first; what it refuses is parsed by json, so the accepted bodies did not change."""
    answers, rows, _ = exchange(tmp_path, [signed(body, "msg_odd")])
    assert answers[0][0] == 204 and rows[0]["verdict"] == "accepted" and rows[0]["change_id"]
    assert rows[0]["foreign"] is False


def test_audit_rows_reach_the_disk_without_a_later_write_or_shutdown(tmp_path: Path) -> None:
    """audit.jsonl is buffered, but a timer flushes it: a run killed in a quiet spell keeps every answered row."""

    async def run() -> list[dict[str, Any]]:
        async with serving(make_setup(), tmp_path) as client:
            for i in range(3):
                body, headers = signed(msg_id=f"msg_q{i}")
                assert (await client.post("/hooks", data=body, headers=headers)).status == 204
            # no request after the last one, and the receiver still runs: only its flush timer (AUDIT_FLUSH_S)
            # can bring the rows to the disk, so wait for them there (a bound, not a timing)
            await wait_until(lambda: len(read_jsonl(tmp_path / "audit.jsonl")) == 3, "the timer's flush of 3 rows")
            return read_jsonl(tmp_path / "audit.jsonl")

    rows = asyncio.run(run())
    assert [r["msg_id"] for r in rows] == ["msg_q0", "msg_q1", "msg_q2"]


def test_rejected_requests_do_not_poison_dedup(tmp_path: Path) -> None:
    # A forged or malformed request carrying a real id must not make the genuine delivery look like a duplicate.
    body, headers = signed(msg_id="msg_ch9")
    other_key = signed(body, "msg_ch9", secrets=[new_secret_for("standard")])[1]
    forged = (body, {**headers, H_SIGNATURE: other_key[H_SIGNATURE]})
    malformed = signed(b"not json", "msg_ch9")
    answers, rows, _ = exchange(tmp_path, [forged, malformed, (body, headers), (body, headers)])
    assert [a[0] for a in answers] == [401, 400, 204, 200]
    assert [r["verdict"] for r in rows] == ["rejected", "rejected", "accepted", "duplicate"]


def test_header_names_are_case_insensitive(tmp_path: Path) -> None:
    body, headers = signed(msg_id="msg_ch5")
    answers, rows, _ = exchange(tmp_path, [(body, {k.upper(): v for k, v in headers.items()})])
    assert answers[0][0] == 204 and rows[0]["verdict"] == "accepted"


def test_attack_label_is_recorded_but_never_decides(tmp_path: Path) -> None:
    good = signed(msg_id="msg_a1", extra={ATTACK_LABEL_HEADER: "forged_signature"})
    bad = signed(msg_id="msg_a2", secrets=[new_secret_for("standard")], extra={ATTACK_LABEL_HEADER: "none"})
    answers, rows, _ = exchange(tmp_path, [good, bad])
    assert [a[0] for a in answers] == [204, 401]
    assert [r["headers"][ATTACK_LABEL_HEADER] for r in rows] == ["forged_signature", "none"]


def test_unknown_paths_and_methods(tmp_path: Path) -> None:
    two = make_setup(endpoints=[{"name": "webhook", "secrets": [SECRET]}, {"name": "webhook_b", "secrets": [SECRET]}])

    async def run() -> list[tuple[str, str, int]]:
        out = []
        async with serving(two, tmp_path) as client:
            for method, path in [("POST", "/hooks"), ("POST", "/hooks/nope"), ("POST", "/elsewhere"),
                                 ("POST", "/hooks/webhook/600"), ("POST", "/hooks/webhook/abc"),
                                 ("POST", "/hooks/webhook/200/x"), ("GET", "/hooks/webhook"),
                                 ("POST", "/hooks/webhook_b")]:
                body, headers = signed(msg_id=f"msg_{len(out)}")
                resp = await client.request(method, path, data=body, headers=headers)
                out.append((method, path, resp.status))
                if resp.status == 405:
                    assert resp.headers["Allow"] == "POST"
        return out

    answers = asyncio.run(run())
    assert [s for _, _, s in answers] == [404, 404, 404, 404, 404, 404, 405, 204]
    rows = read_jsonl(tmp_path / "audit.jsonl")
    assert [(r["path"], r["endpoint"], r["verdict"]) for r in rows[:3]] == [
        ("/hooks", None, "rejected"), ("/hooks/nope", None, "rejected"), ("/elsewhere", None, "rejected")]
    assert rows[-1]["endpoint"] == "webhook_b" and rows[-1]["verdict"] == "accepted"


def test_an_unexpected_error_in_a_check_costs_one_request(tmp_path: Path) -> None:
    class Broken:
        name = "standard"

        def verify(self, body: bytes, headers: Any, now: float | None = None) -> str:
            raise RuntimeError("bug")

    async def run() -> list[int]:
        async with serving(make_setup(), tmp_path) as client:
            rx = client.server.app[RECEIVER]
            real = rx.schemes["webhook"]
            rx.schemes["webhook"] = Broken()  # type: ignore[assignment]
            body, headers = signed(msg_id="msg_b1")
            first = (await client.post("/hooks", data=body, headers=headers)).status
            rx.schemes["webhook"] = real
            second = (await client.post("/hooks", data=body, headers=headers)).status
        return [first, second]

    assert asyncio.run(run()) == [500, 204]
    rows = read_jsonl(tmp_path / "audit.jsonl")
    assert outcome(rows) == [(500, "error", "internal error: RuntimeError"), (204, "accepted", None)]


# --- forced status --------------------------------------------------------------------------------

def test_forced_status(tmp_path: Path) -> None:
    async def run() -> list[tuple[int, str | None]]:
        out = []
        async with serving(make_setup(), tmp_path) as client:
            for path, req in [("/hooks/webhook/503", signed(msg_id="msg_f1")),   # not processed: retry expected
                              ("/hooks/webhook", signed(msg_id="msg_f1")),       # so the retry is processed
                              ("/hooks/webhook/202", signed(msg_id="msg_f2")),   # a 2xx is accepted + deduped
                              ("/hooks/webhook", signed(msg_id="msg_f2")),
                              ("/hooks/webhook/299", signed(msg_id="msg_f2")),
                              ("/hooks/webhook/500", signed(msg_id="msg_f3", secrets=[new_secret_for("standard")]))]:
                resp = await client.post(path, data=req[0], headers=req[1])
                out.append((resp.status, resp.headers.get("Retry-After")))
        return out

    assert asyncio.run(run()) == [(503, None), (204, None), (202, None), (200, None), (299, None), (401, None)]
    rows = read_jsonl(tmp_path / "audit.jsonl")
    assert [(r["path"], r["status"], r["verdict"], r["msg_id"]) for r in rows] == [
        ("/hooks/webhook/503", 503, "forced", "msg_f1"), ("/hooks/webhook", 204, "accepted", "msg_f1"),
        ("/hooks/webhook/202", 202, "accepted", "msg_f2"), ("/hooks/webhook", 200, "duplicate", "msg_f2"),
        ("/hooks/webhook/299", 299, "duplicate", "msg_f2"), ("/hooks/webhook/500", 401, "rejected", None)]
    assert rows[0]["reason"] == "forced status 503" and rows[0]["change_id"] == "f1"


# --- dedup ----------------------------------------------------------------------------------------

class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_dedup_ttl_expiry_with_an_injected_clock(tmp_path: Path) -> None:
    clock = FakeClock()
    setup = make_setup({"dedup_ttl": "60s"})

    async def run() -> list[int]:
        out = []
        async with serving(setup, tmp_path, clock=clock) as client:
            for advance in (0, 59.9, 0.2, 30):
                clock.now += advance
                body, headers = signed(msg_id="msg_t1")
                out.append((await client.post("/hooks", data=body, headers=headers)).status)
        return out

    # first seen at 1000; 1059.9 is within the TTL; at 1060.1 it expired: processed again (and first seen anew)
    assert asyncio.run(run()) == [204, 200, 204, 200]


def test_dedup_store_unit() -> None:
    clock = FakeClock()
    store = DedupStore(10.0, max_entries=3, clock=clock)
    assert store.add("a") and not store.add("a") and "a" in store
    clock.now += 5
    assert store.add("b") and store.add("c")
    clock.now += 5  # "a" is 10 s old: expired
    assert "a" not in store and len(store) == 2 and store.expired == 1
    assert store.add("d") and store.add("e")  # 4 ids > cap 3: the oldest ("b") is forgotten early
    assert "b" not in store and store.forgotten_early == 1 and len(store) == 3
    store.discard("e")
    assert "e" not in store and store.add("e")
    with pytest.raises(ValueError):
        DedupStore(0)


def test_concurrent_copies_of_one_message_are_processed_once(tmp_path: Path) -> None:
    setup = make_setup(faults={"receiver_processing": "200ms"})

    async def run() -> list[int]:
        async with serving(setup, tmp_path) as client:
            body, headers = signed(msg_id="msg_c1")
            resps = await asyncio.gather(*(client.post("/hooks", data=body, headers=headers) for _ in range(5)))
            return sorted(r.status for r in resps)

    assert asyncio.run(run()) == [200, 200, 200, 200, 204]


# --- Basic Auth, path token -----------------------------------------------------------------------

def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_basic_auth(tmp_path: Path) -> None:
    setup = make_setup({"basic_auth": True})
    cases = [None, _basic("u", "wrong"), _basic("x", "p4ss-word"), "Basic !!notbase64", "Bearer abc",
             "Basic " + base64.b64encode(b"no-colon").decode(), _basic("u", "p4ss-word")]
    requests = []
    for i, auth in enumerate(cases):
        body, headers = signed(msg_id=f"msg_b{i}")
        requests.append((body, headers if auth is None else {**headers, "Authorization": auth}))
    answers, rows, _ = exchange(tmp_path, requests, setup)
    assert [a[0] for a in answers] == [401] * 6 + [204]
    for status, _, headers in answers[:6]:
        assert headers["WWW-Authenticate"] == 'Basic realm="hookbench"'
    assert [r["reason"] for r in rows[:3]] == ["basic auth: missing Authorization header",
                                               "basic auth: wrong credentials", "basic auth: wrong credentials"]
    assert all(r["t_obs_ns"] is None for r in rows[:6])  # the body of an unauthenticated request is never read
    text = (tmp_path / "audit.jsonl").read_text()
    assert "p4ss-word" not in text and '"authorization"' not in text
    assert all(c.split(" ")[-1] not in text for c in cases if c)  # no credentials, not even wrong ones


def test_path_token(tmp_path: Path) -> None:
    setup = make_setup({"path_token": True})

    async def run() -> tuple[list[int], dict[str, Any], str]:
        out = []
        async with serving(setup, tmp_path) as client:
            for i, path in enumerate([f"/hooks/{TOKEN}", "/hooks/webhook", "/hooks", f"/hooks/{TOKEN[:-1]}x",
                                      f"/hooks/{TOKEN}/503", f"/hooks/{TOKEN}?a={TOKEN}"]):
                body, headers = signed(msg_id=f"msg_p{i}")
                out.append((await client.post(path, data=body, headers=headers)).status)
            inspect = await (await client.get("/inspect.json")).json()
            page = await (await client.get("/inspect")).text()
        return out, inspect, page

    statuses, inspect, page = asyncio.run(run())
    assert statuses == [204, 404, 404, 404, 503, 204]
    audit = (tmp_path / "audit.jsonl").read_text()
    rows = read_jsonl(tmp_path / "audit.jsonl")
    # in token mode any segment after /hooks/ may be a near-miss of a token: none is logged
    assert [r["path"] for r in rows] == ["/hooks/<token>", "/hooks/<unknown-token>", "/hooks",
                                         "/hooks/<unknown-token>", "/hooks/<token>/503", "/hooks/<token>"]
    for text in (audit, json.dumps(inspect), page):
        assert TOKEN not in text and TOKEN[:-1] not in text


# --- size and content type ------------------------------------------------------------------------

def test_body_limit_via_content_length_and_while_reading(tmp_path: Path) -> None:
    setup = make_setup({"max_body": 1024})
    event = event_body("big")
    exact = event + b" " * (1024 - len(event))  # JSON allows trailing whitespace: exactly max_body is fine
    over = exact + b" "

    async def chunked(data: bytes) -> AsyncIterator[bytes]:
        for i in range(0, len(data), 100):
            yield data[i:i + 100]

    async def endless() -> AsyncIterator[bytes]:
        while True:  # the receiver must stop reading, not buffer this forever
            yield b" " * 4096

    async def run() -> list[int]:
        out = []
        async with serving(setup, tmp_path) as client:
            for data in (exact, over):
                body, headers = signed(data, "msg_big")
                out.append((await client.post("/hooks", data=body, headers=headers)).status)
            body, headers = signed(over, "msg_big2")
            resp = await client.post("/hooks", data=chunked(body), headers=headers)
            assert "Content-Length" not in resp.request_info.headers
            out.append(resp.status)
            try:
                resp = await client.post("/hooks", data=endless(), headers=headers)
                out.append(resp.status)
            except aiohttp.ClientError:  # the server may close before the client finished sending
                out.append(-1)
        return out

    statuses = asyncio.run(run())
    assert statuses[:3] == [204, 413, 413] and statuses[3] in (413, -1)
    rows = read_jsonl(tmp_path / "audit.jsonl")
    assert [(r["status"], r["verdict"]) for r in rows] == [(204, "accepted")] + [(413, "rejected")] * 3
    assert "Content-Length 1025" in rows[1]["reason"] and rows[1]["t_obs_ns"] is None
    assert rows[2]["reason"] == "body too large: more than max_body = 1024 bytes"


@pytest.mark.parametrize("ctype,status", [("text/plain", 415), (None, 415), ("application/jsonx", 415),
                                          ("application/json; charset=utf-8", 204), ("Application/JSON", 204)])
def test_content_type(tmp_path: Path, ctype: str | None, status: int) -> None:
    body, headers = signed()
    headers = {k: v for k, v in headers.items() if k != "Content-Type"}
    headers["Content-Type"] = ctype or ""
    if ctype is None:
        headers.pop("Content-Type")

    async def run() -> int:
        async with serving(make_setup(), tmp_path) as client:
            # skip_auto_headers: aiohttp would otherwise add application/octet-stream
            return (await client.post("/hooks", data=body, headers=headers,
                                      skip_auto_headers=["Content-Type"])).status

    assert asyncio.run(run()) == status
    (row,) = read_jsonl(tmp_path / "audit.jsonl")
    assert row["status"] == status
    if status == 415:
        assert row["reason"].startswith("content type") and row["verdict"] == "rejected"


def test_content_type_not_required(tmp_path: Path) -> None:
    body, headers = signed()
    answers, _, _ = exchange(tmp_path, [(body, {**headers, "Content-Type": "text/plain"})],
                             make_setup({"require_content_type": False}))
    assert answers[0][0] == 204


# --- schemes --------------------------------------------------------------------------------------

@pytest.mark.parametrize("scheme", ["standard", "github", "stripe"])
def test_each_scheme_accepts_and_rejects_a_one_byte_change(tmp_path: Path, scheme: str) -> None:
    secrets = [new_secret_for(scheme), new_secret_for(scheme)]  # rotation: an older secret still verifies
    setup = make_setup(endpoints=[{"name": "webhook", "scheme": scheme, "secrets": secrets}])
    good = signed(msg_id="msg_s1", scheme=scheme, secrets=secrets[1:])
    body, headers = signed(msg_id="msg_s2", scheme=scheme, secrets=secrets[:1])
    flipped = body.replace(b'"seq":1', b'"seq":2')
    assert len(flipped) == len(body) and flipped != body
    answers, rows, _ = exchange(tmp_path, [good, (flipped, headers), good], setup)
    assert [a[0] for a in answers] == [204, 401, 200]
    assert [r["msg_id"] for r in rows] == ["msg_s1", None, "msg_s1"]
    assert [r["verdict"] for r in rows] == ["accepted", "rejected", "duplicate"]


# --- HTTPS ----------------------------------------------------------------------------------------

def test_https_with_the_generated_certificate(tmp_path: Path) -> None:
    tls = tmp_path / "tls"
    setup = make_setup({"https": True}, tls_dir=str(tls))
    ctx = server_context(tls)
    assert stat.S_IMODE(os.stat(tls / "key.pem").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tls / "cert.pem").st_mode) == 0o644

    async def run() -> tuple[int, BaseException | None]:
        server = TestServer(create_app(setup, records_dir=tmp_path))
        await server.start_server(ssl=ctx)
        try:
            trust_only = ssl.create_default_context(cafile=str(tls / "cert.pem"))
            assert trust_only.verify_mode == ssl.CERT_REQUIRED and trust_only.check_hostname
            body, headers = signed()
            url = f"https://127.0.0.1:{server.port}/hooks"
            async with aiohttp.ClientSession() as session:
                async with session.post(url, data=body, headers=headers, ssl=trust_only) as resp:
                    status = resp.status
                failure = None
                try:
                    await session.post(url, data=body, headers=headers)  # default trust: the system CAs
                except aiohttp.ClientConnectorCertificateError as e:
                    failure = e
        finally:
            await server.close()
        return status, failure

    status, failure = asyncio.run(run())
    assert status == 204
    assert failure is not None and "certificate verify failed" in str(failure)


# --- fault model ----------------------------------------------------------------------------------

def _statuses(tmp_path: Path, setup: ReceiverSetup, n: int) -> list[int]:
    async def run() -> list[int]:
        async with serving(setup, None) as client:
            out = []
            for i in range(n):
                body, headers = signed(msg_id=f"msg_e{i}")
                out.append((await client.post("/hooks", data=body, headers=headers)).status)
            return out

    return asyncio.run(run())


def test_error_rate_is_deterministic_with_the_seed(tmp_path: Path) -> None:
    faults = {"receiver_error_rate": 0.3}
    a = _statuses(tmp_path, make_setup(faults=faults, seed=42), 200)
    b = _statuses(tmp_path, make_setup(faults=faults, seed=42), 200)
    c = _statuses(tmp_path, make_setup(faults=faults, seed=43), 200)
    assert a == b and a != c
    assert set(a) == {204, 500}
    assert 30 <= a.count(500) <= 90  # 0.3 of 200 = 60; a binomial is well within this band

    # a 500 is not processed: the sender's retry is
    async def retry() -> list[int]:
        async with serving(make_setup(faults={"receiver_error_rate": 0.9}, seed=1), tmp_path) as client:
            body, headers = signed(msg_id="msg_r1")
            out = []
            while 204 not in out:
                out.append((await client.post("/hooks", data=body, headers=headers)).status)
            out.append((await client.post("/hooks", data=body, headers=headers)).status)
            return out

    seq = asyncio.run(retry())
    assert seq[-2:] == [204, 200] and set(seq[:-2]) <= {500}
    rows = read_jsonl(tmp_path / "audit.jsonl")
    assert {(r["status"], r["verdict"]) for r in rows if r["status"] == 500} <= {(500, "error")}
    assert all(r["reason"] == "injected error (receiver_error_rate)" for r in rows if r["status"] == 500)


def test_fault_model_delays() -> None:
    fixed = FaultModel(make_setup(faults={"receiver_delay": "250ms"}).faults, seed=1)
    assert [fixed.delay_s() for _ in range(3)] == [0.25, 0.25, 0.25]
    cfg = make_setup(faults={"receiver_delay": "100ms", "receiver_delay_dist": "exponential"}).faults
    draws = [FaultModel(cfg, seed=5).delay_s() for _ in range(2)]
    assert draws[0] == draws[1]  # seeded
    model = FaultModel(cfg, seed=5)
    values = [model.delay_s() for _ in range(4000)]
    assert min(values) >= 0 and 0.09 < sum(values) / len(values) < 0.11
    assert FaultModel(make_setup().faults, seed=1).delay_s() == 0.0


def test_delay_before_answering(tmp_path: Path) -> None:
    answers, rows, _ = exchange(tmp_path, [signed()], make_setup(faults={"receiver_delay": "300ms"}))
    assert answers[0][0] == 204
    assert rows[0]["latency_ms"] >= 290  # a lower bound only: the sleep happened


def test_capacity_sheds_with_503_and_retry_after(tmp_path: Path) -> None:
    setup = make_setup(faults={"receiver_max_concurrent": 1, "receiver_processing": "60s"})

    async def run() -> tuple[int, str | None, int]:
        async with serving(setup, tmp_path) as client:
            async def in_processing() -> int:
                return int((await (await client.get("/health")).json())["in_processing"])

            body, headers = signed(msg_id="msg_slow")
            slow = asyncio.create_task(client.post("/hooks", data=body, headers=headers))
            try:
                for _ in range(1000):  # until the first request holds the only slot (it keeps it 60 s)
                    if await in_processing() == 1:
                        break
                    await asyncio.sleep(0.01)
                body, headers = signed(msg_id="msg_shed")
                resp = await client.post("/hooks", data=body, headers=headers)  # answered at once, not queued
                shed = (resp.status, resp.headers.get("Retry-After"))
            finally:
                slow.cancel()  # the client gives up; the test server cancels the handler, which frees the slot
                try:
                    await slow
                except asyncio.CancelledError:
                    pass
            for _ in range(1000):
                if await in_processing() == 0:
                    break
                await asyncio.sleep(0.01)
            return shed[0], shed[1], await in_processing()

    assert asyncio.run(run()) == (503, "1", 0)
    rows = read_jsonl(tmp_path / "audit.jsonl")
    shed_rows = [r for r in rows if r["msg_id"] == "msg_shed"]
    assert [(r["status"], r["verdict"]) for r in shed_rows] == [(503, "error")]
    assert "over capacity" in shed_rows[0]["reason"]
    slow_rows = [r for r in rows if r["msg_id"] == "msg_slow"]
    assert [(r["status"], r["verdict"]) for r in slow_rows] == [(None, "error")]


def test_503_window_follows_control_start(tmp_path: Path) -> None:
    setup = make_setup(faults={"receiver_down": [{"start": "0s", "end": "1h", "mode": "503"}]})

    async def run() -> list[tuple[str, int, str | None]]:
        out = []
        async with serving(setup, tmp_path) as client:
            async def post(label: str) -> None:
                body, headers = signed(msg_id=f"msg_{label}")
                resp = await client.post("/hooks", data=body, headers=headers)
                out.append((label, resp.status, resp.headers.get("Retry-After")))

            async def start(t0_ns: int) -> None:
                resp = await client.post("/control/start", json={"t0_ns": t0_ns})
                assert resp.status == 200, await resp.text()

            await post("before_start")  # windows count from the window start: none is in force yet
            await start(time.time_ns())
            await post("in_window")
            health = await client.get("/health")  # not subject to faults
            out.append(("health", health.status, None))
            await start(time.time_ns() - 7200 * 10**9)  # the window is over
            await post("after_window")
            await start(time.time_ns() + 3600 * 10**9)  # the window has not begun
            await post("window_ahead")
            bad = await client.post("/control/start", json={"t0": 1})
            out.append(("bad_start", bad.status, None))
        return out

    assert asyncio.run(run()) == [("before_start", 204, None), ("in_window", 503, "1"), ("health", 200, None),
                                  ("after_window", 204, None), ("window_ahead", 204, None), ("bad_start", 400, None)]
    rows = read_jsonl(tmp_path / "audit.jsonl")
    assert [(r["msg_id"], r["status"], r["verdict"]) for r in rows] == [
        ("msg_before_start", 204, "accepted"), (None, 503, "error"), ("msg_after_window", 204, "accepted"),
        ("msg_window_ahead", 204, "accepted")]
    assert rows[1]["reason"] == "receiver down (503 window)" and rows[1]["t_obs_ns"] is None
    faults = read_jsonl(tmp_path / "faults.jsonl")
    assert [(f["event"], f["mode"], f["window"]) for f in faults] == [("down", "503", 0), ("up", "503", 0)]
    assert all(isinstance(f["t_ns"], int) for f in faults)


async def _http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, method: str, path: str,
                body: bytes = b"", headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One HTTP/1.1 keep-alive exchange on a raw connection (so nothing retries or reconnects behind our back)."""
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    await writer.drain()
    status_line = await reader.readline()
    if not status_line:
        return 0, b""  # closed without an answer
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value)
    return int(status_line.split()[1]), await reader.readexactly(length)


def test_refuse_window_closes_the_port_then_listens_again_on_it(tmp_path: Path) -> None:
    setup = make_setup(faults={"receiver_down": [{"start": "0s", "end": "4s", "mode": "refuse"}]})

    async def connect(port: int) -> bool:
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
        except ConnectionRefusedError:
            return False
        w.close()
        return True

    async def run() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        runner, port = await start_app(create_app(setup, records_dir=tmp_path))  # the production way to listen
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)  # a keep-alive connection
            seen["health_before"] = (await _http(reader, writer, "GET", "/health"))[0]
            seen["t0_ns"] = t0_ns = time.time_ns()
            seen["start"] = (await _http(reader, writer, "POST", "/control/start",
                                         json.dumps({"t0_ns": t0_ns}).encode(), JSON))[0]
            seen["refused"] = not await connect(port)
            body, headers = signed(msg_id="msg_k1")
            seen["on_open_connection"] = await _http(reader, writer, "POST", "/hooks", body, headers)
            writer.close()
            for _ in range(3000):  # the window ends 4 s after t0: wait (up to 30 s) for the port to listen again
                if await connect(port):
                    break
                await asyncio.sleep(0.01)
            body, headers = signed(msg_id="msg_k2")
            async with aiohttp.ClientSession() as session:
                async with session.post(f"http://127.0.0.1:{port}/hooks", data=body, headers=headers) as resp:
                    seen["after"] = resp.status
        finally:
            await runner.cleanup()
        return seen

    seen = asyncio.run(run())
    t0_ns = seen.pop("t0_ns")
    assert seen == {"health_before": 200, "start": 200, "refused": True, "on_open_connection": (0, b""),
                    "after": 204}
    faults = read_jsonl(tmp_path / "faults.jsonl")
    assert [(f["event"], f["mode"]) for f in faults] == [("down", "refuse"), ("up", "refuse")]
    # It stayed down to the window's end, t0 + 4 s on the wall clock: a timer fires late, never early (10 ms
    # for a clock slewed against the loop's monotonic one). Lower bounds only: a busy machine makes both later.
    assert faults[0]["t_ns"] >= t0_ns and faults[1]["t_ns"] >= t0_ns + 4 * 10**9 - 10**7
    rows = read_jsonl(tmp_path / "audit.jsonl")
    assert [(r["status"], r["verdict"]) for r in rows] == [(None, "error"), (204, "accepted")]
    assert "refuse" in rows[0]["reason"] and rows[0]["t_obs_ns"] is None


# --- inspector ------------------------------------------------------------------------------------

def test_inspector_json_and_html_are_redacted_and_escaped(tmp_path: Path) -> None:
    setup = make_setup({"basic_auth": True}, inspect_last=3)
    auth = {"Authorization": _basic("u", "p4ss-word")}
    hostile = b'{"id":"x","data":{"change_id":"<script>alert(1)</script>"}}'
    requests = [
        signed(msg_id="msg_i0", extra=auth),  # pushed out: only the last 3 are kept
        signed(msg_id="msg_i1", extra={**auth, "X-Note": "<b>hi</b>", "X-Api-Secret": "hunter2",
                                       "X-Echo": f"leak {SECRET} leak"}),
        signed(hostile, "msg_i2", extra=auth),
        (b"\xff" * 1000, {**JSON, **auth}),
    ]

    async def run() -> tuple[dict[str, Any], str, dict[str, str]]:
        async with serving(setup, tmp_path) as client:
            for body, headers in requests:
                await client.post("/hooks", data=body, headers=headers)
            data = await (await client.get("/inspect.json")).json()
            resp = await client.get("/inspect")
            return data, await resp.text(), dict(resp.headers)

    data, page, headers = asyncio.run(run())
    reqs = data["requests"]
    assert data["count"] == 3 and [r["msg_id"] for r in reqs] == [None, "msg_i2", "msg_i1"]  # newest first
    assert data["counts"] == {"accepted": 3, "rejected": 1}
    assert data["endpoints"] == [{"name": "webhook", "scheme": "standard", "url_path": "/hooks/webhook"}]
    newest, _, with_headers = reqs
    assert newest["status"] == 400 and newest["body_bytes"] == 1000
    assert newest["body_preview"] == "\ufffd" * 512  # the first 512 bytes, as text with replacement chars
    assert with_headers["headers"]["authorization"] == "Basic <redacted>"
    assert with_headers["headers"]["x-api-secret"] == "<redacted>"
    assert with_headers["headers"]["x-echo"] == "leak <redacted> leak"
    assert with_headers["headers"]["x-note"] == "<b>hi</b>"  # JSON carries it as is; HTML escapes it
    assert with_headers["time"].endswith("Z") and with_headers["body_preview"].startswith('{"id":"msg_i1"')
    everything = json.dumps(data) + page
    for secret in ("p4ss-word", SECRET, "hunter2", base64.b64encode(b"u:p4ss-word").decode()):
        assert secret not in everything
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>hi</b>" not in page and "&lt;b&gt;hi&lt;/b&gt;" in page
    assert "script-src" not in headers["Content-Security-Policy"] and "default-src 'none'" in \
        headers["Content-Security-Policy"]
    assert headers["Content-Type"].startswith("text/html")


def test_without_records_dir_nothing_is_written(tmp_path: Path) -> None:
    async def run() -> int:
        async with serving(make_setup(faults={"receiver_down": [{"start": 0, "end": 1, "mode": "503"}]}),
                           None) as client:
            await client.post("/control/start", json={"t0_ns": time.time_ns()})
            body, headers = signed()
            return (await client.post("/hooks", data=body, headers=headers)).status

    assert asyncio.run(run()) == 503
    assert list(tmp_path.iterdir()) == []


# --- configuration --------------------------------------------------------------------------------

@pytest.mark.parametrize("change,key", [
    ({"bogus": 1}, "bogus"),
    ({"receiver": {"tolerance": "10m"}}, "receiver.tolerance"),
    ({"receiver": {"nope": True}}, "receiver.nope"),
    ({"faults": {"producer_crash": []}}, "faults.producer_crash"),
    ({"faults": {"receiver_error_rate": 1.5}}, "faults.receiver_error_rate"),
    ({"faults": {"receiver_down": [{"start": 5, "end": 1}]}}, "faults.receiver_down"),
    ({"endpoints": []}, "endpoints"),
    ({"endpoints": [{"name": "webhook", "secrets": []}]}, "endpoints[0].secrets"),
    ({"endpoints": [{"name": "webhook", "secrets": ["not base64!"]}]}, "endpoints[0].secrets"),
    ({"endpoints": [{"name": "webhook", "scheme": "soap", "secrets": [SECRET]}]}, "endpoints[0].scheme"),
    ({"endpoints": [{"name": "a b", "secrets": [SECRET]}]}, "endpoints[0].name"),
    ({"endpoints": [{"name": "w", "secrets": [SECRET], "extra": 1}]}, "endpoints[0].extra"),
    ({"endpoints": [{"name": "w", "secrets": [SECRET]}, {"name": "w", "secrets": [SECRET]}]}, "endpoints[*].name"),
    ({"receiver": {"path_token": True}, "endpoints": [{"name": "w", "secrets": [SECRET]}]}, "endpoints[0].token"),
    ({"endpoints": [{"name": "w", "secrets": [SECRET], "token": "short"}]}, "endpoints[0].token"),
    ({"receiver": {"basic_auth": True}, "endpoints": [{"name": "w", "secrets": [SECRET]}]}, "endpoints[0].basic_auth"),
    ({"endpoints": [{"name": "w", "secrets": [SECRET], "basic_auth": {"user": "a:b", "password": "p"}}]},
     "endpoints[0].basic_auth.user"),
    ({"receiver": {"https": True}}, "tls_dir"),
    ({"inspect_last": -1}, "inspect_last"),
])
def test_bad_config_names_the_key(change: dict[str, Any], key: str) -> None:
    data: dict[str, Any] = {"receiver": {}, "faults": {}, "endpoints": [{"name": "webhook", "secrets": [SECRET]}]}
    data.update(change)
    with pytest.raises(ScenarioError) as err:
        setup_from_dict(data, "cfg.json")
    assert err.value.key == key and str(err.value).startswith(f"cfg.json: {key} = ")
    assert SECRET not in str(err.value)


def test_config_defaults_and_secure_profile() -> None:
    setup = make_setup({"profile": "secure"}, tls_dir="/tmp/x")
    assert (setup.receiver.basic_auth, setup.receiver.path_token, setup.receiver.https) == (True, True, True)
    assert setup.seed == 1 and setup.inspect_last == 200 and setup.faults.receiver_down == ()
    assert setup.url_key(setup.endpoints[0]) == TOKEN
    assert TOKEN not in repr(setup) and "p4ss-word" not in repr(setup) and SECRET not in repr(setup.endpoints)


# --- the command line -----------------------------------------------------------------------------

def _start(argv: list[str]) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, "-m", "servers.receiver", *argv], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until it listens (or exits: empty line)
    assert line.startswith(READY_PREFIX), (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc, int(line.split("port=")[1])


def _stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)  # a process this test started, by its PID
    try:
        _, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return proc.returncode, err


def _post(url: str, req: Request, ctx: ssl.SSLContext | None = None) -> int:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=req[0], headers=req[1]), timeout=10,
                                    context=ctx) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return e.code


@pytest.mark.integration  # starts a server process (make check skips it)
def test_cli_simple_form(tmp_path: Path) -> None:
    proc, port = _start(["--port", "0", "--secret", SECRET, "--records", str(tmp_path)])
    try:
        assert _post(f"http://127.0.0.1:{port}/hooks", signed(msg_id="msg_cli")) == 204
        assert _post(f"http://127.0.0.1:{port}/hooks/webhook", signed(msg_id="msg_cli")) == 200
    finally:
        code, err = _stop(proc)
    assert code == 0, err
    assert f"POST http://127.0.0.1:{port}/hooks/webhook" in err and f"http://127.0.0.1:{port}/inspect" in err
    assert [r["verdict"] for r in read_jsonl(tmp_path / "audit.jsonl")] == ["accepted", "duplicate"]
    assert not (tmp_path / "arrivals.jsonl").exists()


@pytest.mark.integration  # starts a server process (make check skips it)
def test_cli_simple_form_secure_with_github(tmp_path: Path) -> None:
    secret = new_secret_for("github")
    proc, port = _start(["--port", "0", "--secret", secret, "--scheme", "github", "--secure",
                         "--basic-auth", "me:pw-123", "--path-token", TOKEN, "--tls-dir", str(tmp_path / "tls")])
    try:
        ctx = ssl.create_default_context(cafile=str(tmp_path / "tls" / "cert.pem"))
        body, headers = signed(msg_id="msg_gh", scheme="github", secrets=[secret],
                               extra={"Authorization": _basic("me", "pw-123")})
        assert _post(f"https://127.0.0.1:{port}/hooks/{TOKEN}", (body, headers), ctx) == 204
        assert _post(f"https://localhost:{port}/hooks/webhook", (body, headers), ctx) == 404
    finally:
        code, err = _stop(proc)
    assert code == 0, err
    assert f"POST https://127.0.0.1:{port}/hooks/{TOKEN}" in err  # the person needs the URL they asked for


@pytest.mark.integration  # starts a server process (make check skips it)
@pytest.mark.parametrize("argv,words", [
    (["--secret", "not a secret!"], ["--secret", "base64"]),
    (["--secret", SECRET, "--basic-auth", "nocolon"], ["--basic-auth", "user:password"]),
    ([], ["--secret", "is required"]),
])
def test_cli_bad_input_is_exit_2_without_traceback(argv: list[str], words: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "servers.receiver", "--port", "0", *argv], cwd=REPO,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and done.stdout == ""
    assert all(w in done.stderr for w in words), done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def _config(tmp_path: Path, **change: Any) -> Path:
    data = {"receiver": {"profile": "secure"},
            "faults": {"receiver_down": [{"start": 10.0, "end": 20.0, "mode": "refuse"}], "receiver_error_rate": 0.0},
            "endpoints": [{"name": "webhook", "token": TOKEN, "scheme": "standard", "secrets": [SECRET],
                           "basic_auth": {"user": "u", "password": "p4ss-word"}}],
            "tls_dir": str(tmp_path / "tls"), "seed": 42, "inspect_last": 200, **change}
    path = tmp_path / "receiver.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.integration  # starts a server process (make check skips it)
def test_cli_config_form(tmp_path: Path) -> None:
    proc, port = _start(["--config", str(_config(tmp_path)), "--records", str(tmp_path / "rec"), "--port", "0"])
    try:
        assert (tmp_path / "tls" / "cert.pem").exists()  # written before the ready line
        ctx = ssl.create_default_context(cafile=str(tmp_path / "tls" / "cert.pem"))
        body, headers = signed(msg_id="msg_cfg", extra={"Authorization": _basic("u", "p4ss-word")})
        assert _post(f"https://127.0.0.1:{port}/hooks/{TOKEN}", (body, headers), ctx) == 204
    finally:
        code, err = _stop(proc)
    assert code == 0, err
    assert TOKEN not in err and "p4ss-word" not in err  # the orchestrator knows them; its logs need not
    assert [r["verdict"] for r in read_jsonl(tmp_path / "rec" / "audit.jsonl")] == ["accepted"]


@pytest.mark.integration  # starts a server process (make check skips it)
@pytest.mark.parametrize("change,words", [({"bogus": 1}, ["bogus", "unknown key"]),
                                          ({"faults": {"receiver_delay": "soon"}}, ["faults.receiver_delay"])])
def test_cli_config_form_bad_key_is_exit_2(tmp_path: Path, change: dict[str, Any], words: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "servers.receiver", "--config", str(_config(tmp_path, **change)),
                           "--port", "0"], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and done.stdout == ""
    assert all(w in done.stderr for w in words), done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.integration  # starts a server process (make check skips it)
def test_cli_config_cannot_mix_with_simple_flags(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "servers.receiver", "--config", str(_config(tmp_path)),
                           "--secret", SECRET], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "--secret" in done.stderr and SECRET not in done.stderr
