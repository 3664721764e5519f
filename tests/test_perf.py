"""The harness's own performance work (issue 4): the producer's in-memory empty polls answer exactly what SQLite
answers, the receiver's GET /stats counts every outcome, the server loop choice, and the load benchmark
(`python -m bench.perf`) end to end in a tiny run."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from support import wait_until

import servers.receiver.app as receiver_app
from bench.config import scenario_from_dict
from bench.perf import loadbench as perf
from bench.protocol import change_event, encode_event
from bench.signing import make_scheme, new_secret_for
from servers.common import LOOP_ENV, loop_factory
from servers.producer import create_app as create_producer
from servers.producer.keys import STORE
from servers.producer.ledger import header_bytes
from servers.producer.store import Store
from servers.producer.views import _encode
from servers.receiver import create_app as create_receiver
from servers.receiver.app import RECEIVER
from servers.receiver.config import setup_from_dict
from servers.receiver.stats import HookStats

REPO = Path(__file__).resolve().parents[1]
RESOURCES = 4
SECRET = new_secret_for("standard")
SCENARIO = scenario_from_dict({"name": "perf-test", "seed": 3, "run": {"duration": "1s"},
                               "resources": {"count": RESOURCES}, "changes": {"rate": 1.0},
                               "polling": {"interval": "1s"}, "webhook": {"enabled": False}}, "<test_perf>")


# --- producer: empty polls from memory ------------------------------------------------------------

class Queries:
    """Counts the SQL statements a store runs (sqlite3's trace callback)."""

    def __init__(self, store: Store) -> None:
        self.n = 0
        store.db.set_trace_callback(self._count)

    def _count(self, _statement: str) -> None:
        self.n += 1


def _apply(apps: list[web.Application], resource_id: int, t_ns: int, value: int) -> None:
    for app in apps:  # the same change, at the same time, in every store: their answers must be identical
        app[STORE].apply_change(resource_id, t_ns, value)


def _answer(status: int, headers: Any, body: bytes) -> tuple[int, dict[str, str], bytes]:
    return status, {k: v for k, v in headers.items() if k not in ("Date",)}, body


REQUESTS: list[tuple[str, dict[str, str]]] = [
    *[(f"/changes?after={a}", {}) for a in range(0, 8)],
    ("/changes", {}), ("/changes?after=1&limit=1", {}), ("/changes?after=99999", {}),
    ("/changes?after=-1", {}), ("/changes?after=x", {}), ("/changes?limit=0", {}), (f"/changes?after={2**62 + 1}", {}),
    *[(f"/resources/{r}", {}) for r in range(RESOURCES + 1)],
    ("/resources/1", {"If-None-Match": '"r1-v2"'}), ("/resources/1", {"If-None-Match": '"r1-v1"'}),
    ("/resources/1", {"If-None-Match": 'W/"r1-v2", "x"'}), ("/resources/2", {"If-None-Match": "*"}),
    ("/resources/0", {"If-None-Match": '"r0-v0"'}), ("/resources/9", {"If-None-Match": "*"}),
]


def test_memory_empty_polls_answer_exactly_what_sqlite_answers(tmp_path: Path) -> None:
    async def run() -> None:
        async with AsyncExitStack() as stack:
            apps = {mode: create_producer(SCENARIO, db_path=tmp_path / f"{mode}.db", start_changes=False,
                                          empty_polls=mode) for mode in ("sqlite", "memory")}
            clients = {mode: await stack.enter_async_context(TestClient(TestServer(app)))
                       for mode, app in apps.items()}
            t0 = time.time_ns()
            for i, rid in enumerate((1, 2, 1, 3)):
                _apply(list(apps.values()), rid, t0 + i, 10 + i)

            async def answers(mode: str) -> list[tuple[int, dict[str, str], bytes]]:
                out = []
                for path, headers in REQUESTS:
                    resp = await clients[mode].get(path, headers=headers)
                    out.append(_answer(resp.status, resp.headers, await resp.read()))
                return out

            sqlite, memory = await answers("sqlite"), await answers("memory")
            for (path, headers), a, b in zip(REQUESTS, sqlite, memory):
                assert a == b, (path, headers)
            assert {a[0] for a in sqlite} == {200, 304, 400, 404}

            # the head moves: a poll at the old head now finds the new change in both modes
            _apply(list(apps.values()), 0, t0 + 10, 99)
            for mode in apps:
                page = await (await clients[mode].get("/changes?after=4")).json()
                assert [c["change_id"] for c in page["changes"]] == ["ch5"] and page["next_after"] == 5
                assert (await clients[mode].get("/resources/0", headers={"If-None-Match": '"r0-v0"'})).status == 200

            # both modes charge polls the same way (CPU aside)
            stats = {mode: (await (await clients[mode].get("/stats")).json())["modes"] for mode in apps}
            for poll_mode in ("polling", "polling_etag"):
                for key in ("requests", "bytes_in", "bytes_out"):
                    assert stats["sqlite"][poll_mode][key] == stats["memory"][poll_mode][key] > 0

    asyncio.run(run())


def test_memory_mode_answers_empty_polls_without_a_query(tmp_path: Path) -> None:
    async def run() -> dict[str, tuple[int, int]]:
        seen = {}
        for mode in ("sqlite", "memory"):
            app = create_producer(SCENARIO, db_path=tmp_path / f"{mode}.db", start_changes=False, empty_polls=mode)
            async with TestClient(TestServer(app)) as client:
                app[STORE].apply_change(1, time.time_ns(), 5)
                queries = Queries(app[STORE])
                assert (await client.get("/changes?after=1")).status == 200
                assert (await client.get("/resources/1", headers={"If-None-Match": '"r1-v1"'})).status == 304
                empty = queries.n
                assert (await client.get("/changes?after=0")).status == 200  # useful polls always read SQLite
                assert (await client.get("/resources/1")).status == 200
                seen[mode] = (empty, queries.n - empty)
        return seen

    seen = asyncio.run(run())
    assert seen["memory"][0] == 0 and seen["sqlite"][0] >= 2
    assert seen["memory"][1] >= 2 and seen["sqlite"][1] >= 2


def test_polls_are_charged_their_bytes_on_the_wire(tmp_path: Path) -> None:
    """bytes_out = the response head as sent (Date, Server... included) plus the body, whatever the status."""
    async def run() -> None:
        app = create_producer(SCENARIO, db_path=tmp_path / "p.db", start_changes=False)
        async with TestClient(TestServer(app)) as client:
            app[STORE].apply_change(1, time.time_ns(), 5)
            for method, path, headers, status in (
                    ("GET", "/changes?after=0", {}, 200), ("GET", "/changes?after=x", {}, 400),
                    ("HEAD", "/changes?after=1", {}, 200), ("GET", "/resources/1", {"If-None-Match": '"r1-v1"'}, 304),
                    ("GET", "/resources/1", {}, 200), ("HEAD", "/resources/1", {}, 200)):
                mode = "polling" if path.startswith("/changes") else "polling_etag"
                before = (await (await client.get("/stats")).json())["modes"].get(mode, {"bytes_out": 0})
                resp = await client.request(method, path, headers=headers)
                body = await resp.read()
                assert resp.status == status, (method, path)
                after = (await (await client.get("/stats")).json())["modes"][mode]
                size = int(resp.headers.get("Content-Length", len(body)))
                assert after["bytes_out"] - before["bytes_out"] == \
                    header_bytes(f"HTTP/1.1 {resp.status} {resp.reason}", resp.headers) + size, (method, path)

    asyncio.run(run())


def test_empty_polls_option_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"empty_polls='disk'.*'sqlite', 'memory'"):
        create_producer(SCENARIO, db_path=tmp_path / "p.db", empty_polls="disk")


def test_store_memory_copies_survive_a_reopen(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db", RESOURCES)
    assert store.head_seq == 0 and store.cached_version(2) == 0 and store.cached_version(RESOURCES) is None
    for i, rid in enumerate((2, 2, 3)):
        store.apply_change(rid, i, i)
    store.close()
    store = Store(tmp_path / "s.db", RESOURCES)
    try:
        assert store.head_seq == 3 == store.change_count()
        for rid in range(RESOURCES):
            assert store.cached_version(rid) == store.resource_version(rid)
        assert store.changes_after(store.head_seq, 10) == ([], False)
    finally:
        store.close()


@pytest.mark.parametrize("obj", [
    {"changes": [], "next_after": 2**62, "has_more": False},
    {"changes": [change_event(f"ch{i}", i, i, 1, time.time_ns()) for i in range(1, 4)], "next_after": 3,
     "has_more": True},
    {"id": 1, "version": 0, "seq": 0, "change_id": None, "t_change_ns": None, "data": {"value": 0}},
])
def test_fast_json_is_byte_identical_to_compact_stdlib_json(obj: dict[str, Any]) -> None:
    assert _encode(obj) == json.dumps(obj, separators=(",", ":")).encode()


# --- receiver: GET /stats -------------------------------------------------------------------------

def _setup(**faults: Any) -> Any:
    return setup_from_dict({"receiver": {}, "faults": faults,
                            "endpoints": [{"name": "webhook", "scheme": "standard", "secrets": [SECRET]}]}, "test")


def _signed(change_id: str, *, secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    body = encode_event(change_event(change_id, 1, 1, 1, time.time_ns())).encode()
    headers = make_scheme("standard", [secret]).sign(f"msg_{change_id}", body, int(time.time()))
    return body, {"Content-Type": "application/json", **headers}


def _invariant(s: dict[str, Any]) -> int:
    return (s["in_flight"] + s["accepted"] + s["duplicate"] + sum(s["rejected"].values()) + s["shed_503"]
            + s["errors"] + s["forced"])


def test_receiver_stats_count_every_outcome(tmp_path: Path) -> None:
    async def run() -> tuple[dict[str, Any], dict[str, Any]]:
        async with TestClient(TestServer(create_receiver(_setup(), records_dir=tmp_path))) as client:
            zero = await (await client.get("/stats")).json()
            for cid in ("a", "b", "a"):  # 2 accepted, 1 duplicate
                body, headers = _signed(cid)
                assert (await client.post("/hooks/webhook", data=body, headers=headers)).status in (200, 204)
            body, headers = _signed("c", secret=new_secret_for("standard"))
            assert (await client.post("/hooks/webhook", data=body, headers=headers)).status == 401
            unsigned = {"Content-Type": "application/json"}
            assert (await client.post("/hooks/webhook", data=b"{}", headers=unsigned)).status == 400
            assert (await client.get("/nowhere")).status == 404
            body, headers = _signed("d")
            assert (await client.post("/hooks/webhook/500", data=body, headers=headers)).status == 500  # forced
            return zero, await (await client.get("/stats")).json()

    zero, s = asyncio.run(run())
    assert zero == {"requests": 0, "in_flight": 0, "max_in_flight": 0, "accepted": 0, "duplicate": 0,
                    "rejected": {}, "shed_503": 0, "errors": 0, "forced": 0, "foreign_accepted": 0,
                    "foreign_duplicate": 0}
    assert s == {"requests": 7, "in_flight": 0, "max_in_flight": 1, "accepted": 2, "duplicate": 1,
                 "rejected": {"400": 1, "401": 1, "404": 1}, "shed_503": 0, "errors": 0, "forced": 1,
                 "foreign_accepted": 0, "foreign_duplicate": 0}
    assert _invariant(s) == s["requests"]


class _HeldProcessing:
    """servers.receiver.app's `asyncio`, whose processing sleep lasts until `release` is set rather than for
    receiver_processing: the slow request holds the one slot for certain while the next one arrives (a 0.3 s hold
    was a race a busy machine could lose, the slow request done before the second got in)."""

    def __init__(self, processing: float) -> None:
        self.processing, self.release = processing, asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    async def sleep(self, delay: float, result: Any = None) -> Any:
        if delay == self.processing:
            await self.release.wait()
            return result
        return await asyncio.sleep(delay, result)


def test_receiver_stats_in_flight_shed_and_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    held = _HeldProcessing(0.3)
    monkeypatch.setattr(receiver_app, "asyncio", held)

    async def run() -> tuple[dict[str, Any], dict[str, Any]]:
        setup = _setup(receiver_max_concurrent=1, receiver_processing=held.processing)
        app = create_receiver(setup, records_dir=None)
        async with TestClient(TestServer(app)) as client:
            body, headers = _signed("slow")
            slow = asyncio.create_task(client.post("/hooks/webhook", data=body, headers=headers))
            await wait_until(lambda: app[RECEIVER].stats.as_dict()["in_flight"] == 1, "the slow request to get in")
            body, headers = _signed("shed")
            assert (await client.post("/hooks/webhook", data=body, headers=headers)).status == 503
            during = await (await client.get("/stats")).json()
            held.release.set()
            assert (await slow).status == 204
            return during, await (await client.get("/stats")).json()

    during, after = asyncio.run(run())
    assert during["in_flight"] == 1 and during["max_in_flight"] == 2 and during["shed_503"] == 1
    assert after["in_flight"] == 0 and after["accepted"] == 1 and after["errors"] == 0
    assert _invariant(during) == during["requests"] and _invariant(after) == after["requests"] == 2


def test_hook_stats_errors_are_what_is_left() -> None:
    s = HookStats()
    for verdict, status, shed in (("error", 503, False), ("error", 503, True), ("error", None, False),
                                  ("rejected", 413, False), ("forced", 302, False)):
        s.begin()
        s.end(verdict, status, shed)
    d = s.as_dict()
    assert (d["errors"], d["shed_503"], d["rejected"], d["forced"], d["requests"]) == (2, 1, {"413": 1}, 1, 5)


# --- servers' event loop --------------------------------------------------------------------------

def test_loop_factory_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LOOP_ENV, "asyncio")
    assert loop_factory() is None
    monkeypatch.setenv(LOOP_ENV, "bogus")
    with pytest.raises(SystemExit, match="HOOKBENCH_LOOP='bogus'"):
        loop_factory()
    monkeypatch.delenv(LOOP_ENV)
    try:
        import uvloop
    except ImportError:
        assert loop_factory() is None
        monkeypatch.setenv(LOOP_ENV, "uvloop")
        with pytest.raises(SystemExit, match="not installed"):
            loop_factory()
    else:
        assert loop_factory() is uvloop.new_event_loop


# --- the load benchmark ---------------------------------------------------------------------------

def _sample(rps: float, cpu: float = 0.99) -> perf.Sample:
    return perf.Sample(rps=rps, requests=int(rps), errors=0, seconds=1.0, server_cpu=cpu, client_cpu=0.3)


def test_summary_medians_paired_ratios_and_verdicts() -> None:
    samples = {"bare_get": [_sample(100), _sample(120), _sample(80)],
               "producer_sqlite": [_sample(70), _sample(60), _sample(40)],
               "bare_post": [_sample(100)], "receiver": [_sample(50, cpu=0.5)]}
    measurements, ratios = perf.summarize(samples)
    assert measurements["bare_get"]["rps"] == {"median": 100, "min": 80, "max": 120}
    sqlite = ratios["producer_sqlite/bare"]
    assert sqlite["values"] == [0.7, 0.5, 0.5] and sqlite["median"] == 0.5 and sqlite["verdict"] == "MISS"
    assert ratios["receiver/bare"]["median"] == 0.5 and ratios["receiver/bare"]["target"] == 0.7
    assert "producer_memory/bare" not in ratios
    warnings = perf._warnings(measurements, ratios, "wrk")
    assert any("bare GET" in w and "spread 40%" in w for w in warnings)
    assert any("receiver" in w and "server CPU 50%" in w for w in warnings)


def test_settings_errors_name_the_option() -> None:
    with pytest.raises(perf.RunError, match=r"--duration 0.*--only 'x'"):
        perf.Settings(duration=0, groups=("x",)).check()


def test_cpu_share_interpolates_between_samples() -> None:
    assert perf._interp([(0.0, 0.0), (1.0, 1.0), (2.0, 1.5)], 1.5) == 1.25
    assert perf._interp([(1.0, 2.0), (2.0, 3.0)], 0.0) == 2.0 and perf._interp([(1.0, 2.0)], 9.0) == 2.0


@pytest.mark.integration
def test_tiny_load_benchmark_end_to_end(tmp_path: Path) -> None:
    """Every measurement for one second, once: the servers, the bare server, the clients, the table, the JSON."""
    out = tmp_path / "load.json"
    cmd = [sys.executable, "-m", "bench.perf", "--duration", "1", "--warmup", "0", "--repeat", "1",
           "--connections", "4", "--locust-processes", "1", "--out", str(out)]
    # the timeout bounds the run (~13 s on a 2-core machine); how tiny the run was is checked below on what it
    # records (one 1 s window each), not on the wall clock, which a busy machine stretches
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["format_version"] == perf.PERF_FORMAT_VERSION
    settings = result["settings"]
    assert (settings["duration"], settings["warmup"], settings["repeat"]) == (1, 0, 1)
    has_wrk = shutil.which("wrk") is not None
    assert result["server_client"] == ("wrk" if has_wrk else "locust")
    m = result["measurements"]
    for key in ("bare_get", "producer_sqlite", "producer_memory", "bare_post", "receiver", "locust_fast",
                "locust_http"):
        assert m[key]["rps"]["median"] > 0 and m[key]["errors"] == 0, key
        assert len(m[key]["values"]) == 1, key  # --repeat 1: one window each
    rx = m["receiver"]["values"][0]["extra"]["receiver"]
    assert rx["accepted"] > 0 and rx["rejected"] == 0 and rx["errors"] == 0
    expected = {"producer_sqlite/bare", "producer_memory/bare", "receiver/bare", "fasthttp/httpuser"}
    assert set(result["ratios"]) == expected | ({"locust/wrk"} if has_wrk else set())
    assert ("wrk" in result["skipped"]) is not has_wrk
    for name, r in result["ratios"].items():
        assert r["verdict"] in (("PASS", "MISS") if r["target"] is not None else (None,)), name
    assert "producer_sqlite/bare" in proc.stdout and ("PASS" in proc.stdout or "MISS" in proc.stdout)
