"""Thin events + fetch, in process on 127.0.0.1: the thin body, the producer's GET /events/{change_id} and its
charging, the receiver's fetch (once per accepted delivery, retried, given up), and what the analysis makes of
the fetch rows (observation at the fetch's completion, fetches counted as the mode's requests)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from support import change, changes_db, read_jsonl, wait_until, write_jsonl
from test_producer import async_test, make_scenario

import servers.receiver.fetch as fetch_module
from bench.analysis.summary import Window, summarize
from bench.analysis.tables import load_records
from bench.config import load_scenario
from bench.errors import ScenarioError
from bench.modes import THIN
from bench.orchestration.wiring import make_endpoints, receiver_config
from bench.protocol import (
    MODE_LABEL_HEADER,
    PATH_EVENT,
    change_event,
    encode_event,
    encode_thin_event,
    event_path,
    msg_id_for,
)
from bench.signing import make_scheme, new_secret_for
from servers.common import start_app
from servers.producer import create_app as create_producer
from servers.producer.keys import LEDGER, STORE
from servers.receiver import create_app as create_receiver
from servers.receiver.app import RECEIVER
from servers.receiver.config import ReceiverSetup, setup_from_dict
from servers.receiver.fetch import OBSERVATIONS_FILE, POLLS_FILE, fetch_path

REPO = Path(__file__).resolve().parents[1]
SECRET = new_secret_for("standard")
CHANGE_STATE = {"seq", "version", "t_change_ns"}  # what a full event carries beyond the ids


# --- the thin body ----------------------------------------------------------------------------------------

def test_thin_body_carries_ids_and_a_pointer_only() -> None:
    ch = change_event("ch42", 7, 42, 3, 1_700_000_000_000_000_000)
    thin = json.loads(encode_thin_event(ch))
    assert thin == {"id": msg_id_for("ch42"), "type": "resource.changed",
                    "data": {"change_id": "ch42", "resource_id": 7, "url": "/events/ch42"}}
    assert event_path("ch42") == PATH_EVENT.replace("{change_id}", "ch42")
    # the full event of the same change carries its state; none of it is in the thin one, at any depth
    full = json.loads(encode_event(ch))
    assert CHANGE_STATE <= set(full["data"])
    text = encode_thin_event(ch)
    assert not any(f'"{key}"' in text for key in CHANGE_STATE) and "1700000000" not in text


def test_the_receiver_follows_only_pointers_into_the_events_route() -> None:
    thin = encode_thin_event(change_event("ch9", 1, 9, 1, 1)).encode()
    assert fetch_path(thin, "ch9") == "/events/ch9"
    assert fetch_path(encode_event(change_event("ch9", 1, 9, 1, 1)).encode(), "ch9") == "/events/ch9"  # no url
    for url in ("/resources/1", "//evil.example/events/ch9", "http://10.0.0.1/events/ch9", "/events/../stats",
                "/events/ch9?x=1", 5):
        body = json.dumps({"id": "msg_ch9", "data": {"change_id": "ch9", "url": url}}).encode()
        assert fetch_path(body, "ch9") is None, url


# --- the producer's side --------------------------------------------------------------------------------

@async_test
async def test_dispatcher_sends_thin_bodies_to_thin_subscriptions_only(tmp_path: Path) -> None:
    got: dict[str, list[bytes]] = {"thin": [], "webhook": []}

    async def hook(request: web.Request) -> web.Response:
        got[request.match_info["name"]].append(await request.read())
        return web.Response(status=204)

    sink = web.Application()
    sink.router.add_post("/hooks/{name}", hook)
    app = create_producer(make_scenario(), db_path=tmp_path / "p.db", start_changes=False)
    async with TestServer(sink) as server, _serving(app) as base:
        async with aiohttp.ClientSession() as http:
            for name in ("thin", "webhook"):
                resp = await http.post(base + "/subscriptions", json={
                    "url": str(server.make_url(f"/hooks/{name}")), "secrets": [new_secret_for("standard")],
                    "delivery": {"name": name}})
                assert resp.status == 201, await resp.text()
        ch = change(app, 2, value=5)
        await wait_until(lambda: len(got["thin"]) == len(got["webhook"]) == 1, "one delivery each")
    assert got["thin"] == [encode_thin_event(ch).encode()]
    assert got["webhook"] == [encode_event(ch).encode()]


@async_test
async def test_event_route_found_404_and_charged_to_the_label(tmp_path: Path) -> None:
    app = create_producer(make_scenario(), db_path=tmp_path / "p.db", start_changes=False)
    async with _serving(app) as base, aiohttp.ClientSession() as http:
        ch = app[STORE].apply_change(3, time.time_ns(), 1)
        feed = await (await http.get(base + "/changes?after=0")).json()
        label = {MODE_LABEL_HEADER.title(): "thin_b"}
        resp = await http.get(base + event_path(ch["change_id"]), headers=label)
        assert resp.status == 200 and resp.content_type == "application/json"
        assert await resp.json() == ch == feed["changes"][0]  # the change as the feed sends it
        for path in ("/events/ch999", "/events/nope"):  # ids the log lacks
            assert (await http.get(base + path, headers=label)).status == 404
        await http.get(base + event_path(ch["change_id"]))  # unlabelled: the route's kind's first mode
        await http.get(base + event_path(ch["change_id"]), headers={MODE_LABEL_HEADER.title(): "nobody"})
        assert (await http.get(base + "/events/a%20b")).status == 404  # not an id: no route, not charged
        modes = app[LEDGER].modes
    assert modes["thin_b"].requests == 3 and modes["thin"].requests == 2
    assert modes["polling"].requests == 1  # the feed read above
    b = modes["thin_b"]
    assert b.bytes_in > 0 and b.bytes_out > 0 and b.cpu_timed >= 1 and b.cpu_ns > 0


@async_test
async def test_the_label_is_not_counted_in_the_fetch_bytes(tmp_path: Path) -> None:
    """The label is hookbench's measurement, not the consumer's cost: labelled or not, a fetch costs the same."""
    app = create_producer(make_scenario(), db_path=tmp_path / "p.db", start_changes=False)
    async with _serving(app) as base, aiohttp.ClientSession() as http:
        ch = app[STORE].apply_change(1, time.time_ns(), 1)
        costs = []
        # however the label's name is spelt (header names are case-insensitive)
        for headers in ({MODE_LABEL_HEADER.title(): "thin"}, {MODE_LABEL_HEADER.lower(): "thin"},
                        {MODE_LABEL_HEADER.upper(): "thin"}, {}):
            before = app[LEDGER].mode("thin").bytes_in
            await http.get(base + event_path(ch["change_id"]), headers=headers)
            costs.append(app[LEDGER].mode("thin").bytes_in - before)
    assert costs[0] == costs[1] == costs[2] == costs[3] > 0


# --- the receiver's fetch -------------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def _serving(app: web.Application) -> AsyncIterator[str]:
    """`app` listening on 127.0.0.1 (a free port); yields its base URL; cleans up (records flushed) on leaving."""
    runner, port = await start_app(app, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def _setup(producer: str, name: str = "thin") -> ReceiverSetup:
    return setup_from_dict({"receiver": {}, "faults": {}, "producer": producer,
                            "endpoints": [{"name": name, "secrets": [SECRET]}]}, "test")


def _signed(change: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    body = encode_thin_event(change).encode()
    headers = make_scheme("standard", [SECRET]).sign(msg_id_for(change["change_id"]), body, int(time.time()))
    return body, {"Content-Type": "application/json", **headers}


@async_test
async def test_receiver_fetches_once_per_accepted_delivery_and_records_it(tmp_path: Path) -> None:
    rx_records = tmp_path / "rx"
    rx_records.mkdir()
    producer = create_producer(make_scenario(), db_path=tmp_path / "p.db", start_changes=False)
    async with _serving(producer) as pbase:
        ch = producer[STORE].apply_change(4, time.time_ns(), 9)
        receiver = create_receiver(_setup(pbase), records_dir=rx_records)
        async with _serving(receiver) as rbase, aiohttp.ClientSession() as http:
            body, headers = _signed(ch)
            statuses = []
            for _ in range(3):  # the delivery and two copies of it
                resp = await http.post(rbase + "/hooks/thin", data=body, headers=headers)
                statuses.append((resp.status, await resp.text()))
            fetcher = receiver[RECEIVER].fetcher
            assert fetcher is not None
            await wait_until(lambda: fetcher.fetched == 1 and not fetcher.tasks, "the fetch")
            health = await (await http.get(rbase + "/health")).json()
        charged = producer[LEDGER].modes["thin"]
        assert charged.requests == 1 and charged.bytes_out > 0  # one fetch, charged to the endpoint's mode
    assert [s for s, _ in statuses] == [204, 200, 200] and "duplicate" in statuses[1][1]
    assert health["fetches"] == {"requests": 1, "fetched": 1, "failed": 0, "in_flight": 0}
    (poll,) = read_jsonl(rx_records / POLLS_FILE)
    assert poll["mode"] == "thin" and poll["resource_id"] == 4 and poll["status"] == 200
    assert (poll["empty"], poll["n_new"], poll["error"], poll["initial"]) == (False, 1, None, False)
    assert poll["t_intended_ns"] == poll["t_send_ns"] <= poll["t_recv_ns"] and poll["bytes"] > 0
    (obs,) = read_jsonl(rx_records / OBSERVATIONS_FILE)
    assert obs == {"mode": "thin", "user": 0, "change_id": ch["change_id"], "t_obs_ns": poll["t_recv_ns"],
                   "via": "push"}
    audit = read_jsonl(rx_records / "audit.jsonl")
    assert [a["verdict"] for a in audit] == ["accepted", "duplicate", "duplicate"]
    assert audit[0]["t_obs_ns"] <= obs["t_obs_ns"]  # the id arrived before the state did


@contextlib.asynccontextmanager
async def _stub_producer(statuses: list[int], answer: dict[str, Any]) -> AsyncIterator[tuple[str, list[str]]]:
    """A producer stand-in: GET /events/{id} answers `statuses` in turn (200 with `answer`), recording the labels."""
    labels: list[str] = []

    async def event(request: web.Request) -> web.Response:
        labels.append(request.headers.get(MODE_LABEL_HEADER, ""))
        status = statuses[min(len(labels), len(statuses)) - 1]
        return web.json_response(answer, status=status) if status == 200 else web.Response(status=status)

    app = web.Application()
    app.router.add_get(PATH_EVENT, event)
    async with _serving(app) as base:
        yield base, labels


async def _deliver_to(receiver: web.Application, change: dict[str, Any], times: int = 1) -> list[int]:
    out = []
    async with _serving(receiver) as rbase, aiohttp.ClientSession() as http:
        fetcher = receiver[RECEIVER].fetcher
        assert fetcher is not None
        for _ in range(times):
            body, headers = _signed(change)
            resp = await http.post(rbase + "/hooks/thin_x", data=body, headers=headers)
            out.append(resp.status)
            await wait_until(lambda: not fetcher.tasks, "the fetches")
    return out


@async_test
async def test_fetch_is_retried_on_5xx_and_observed_when_it_succeeds(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch_module, "FETCH_BACKOFF_S", 0.001)
    ch = change_event("ch5", 2, 5, 1, time.time_ns())
    async with _stub_producer([503, 502, 200], dict(ch)) as (base, labels):
        receiver = create_receiver(_setup(base, "thin_x"), records_dir=tmp_path)
        assert await _deliver_to(receiver, ch) == [204]
    assert labels == ["thin_x"] * 3
    rows = read_jsonl(tmp_path / POLLS_FILE)
    assert [(r["status"], r["empty"], r["n_new"], r["error"]) for r in rows] == [
        (503, True, 0, "HTTP 503"), (502, True, 0, "HTTP 502"), (200, False, 1, None)]
    (obs,) = read_jsonl(tmp_path / OBSERVATIONS_FILE)
    assert obs["t_obs_ns"] == rows[-1]["t_recv_ns"]  # when the state was in hand, after the retries


@async_test
async def test_fetch_that_gives_up_leaves_the_change_unobserved_and_a_copy_processed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch_module, "FETCH_BACKOFF_S", 0.001)
    ch = change_event("ch6", 2, 6, 1, time.time_ns())
    # 404 is not retried; the redelivered copy (dedup forgot it) is fetched again, and gets the right answer
    async with _stub_producer([404, 200], dict(ch)) as (base, labels):
        receiver = create_receiver(_setup(base, "thin_x"), records_dir=tmp_path)
        assert await _deliver_to(receiver, ch, times=2) == [204, 204]
    rows = read_jsonl(tmp_path / POLLS_FILE)
    assert [(r["status"], r["error"]) for r in rows] == [(404, "HTTP 404"), (200, None)]
    assert len(read_jsonl(tmp_path / OBSERVATIONS_FILE)) == 1
    assert [a["verdict"] for a in read_jsonl(tmp_path / "audit.jsonl")] == ["accepted", "accepted"]


@async_test
async def test_fetch_from_a_producer_that_is_down_retries_every_try_then_gives_up(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch_module, "FETCH_BACKOFF_S", 0.001)
    async with _stub_producer([200], {}) as (base, _):
        pass  # the port is free again: connections are refused
    receiver = create_receiver(_setup(base, "thin_x"), records_dir=tmp_path)
    assert await _deliver_to(receiver, change_event("ch7", 1, 7, 1, time.time_ns())) == [204]
    rows = read_jsonl(tmp_path / POLLS_FILE)
    assert len(rows) == fetch_module.FETCH_TRIES
    assert all(r["status"] == 0 and r["empty"] and r["error"] for r in rows)
    assert not (tmp_path / OBSERVATIONS_FILE).exists() or read_jsonl(tmp_path / OBSERVATIONS_FILE) == []


@async_test
async def test_an_answer_that_is_not_the_change_named_is_not_an_observation(tmp_path: Path) -> None:
    async with _stub_producer([200], dict(change_event("ch1", 2, 1, 1, 1))) as (base, labels):
        receiver = create_receiver(_setup(base, "thin_x"), records_dir=tmp_path)
        await _deliver_to(receiver, change_event("ch8", 2, 8, 1, time.time_ns()))
    (row,) = read_jsonl(tmp_path / POLLS_FILE)
    assert row["error"].startswith("bad body") and len(labels) == 1
    assert read_jsonl(tmp_path / OBSERVATIONS_FILE) == []


# --- configuration --------------------------------------------------------------------------------------

@pytest.mark.parametrize("producer", [None, "http://10.1.2.3:8080", "http://127.0.0.1", "http://127.0.0.1:80/api",
                                      "ftp://127.0.0.1:21", "http://user:pw@127.0.0.1:80"])
def test_a_thin_endpoint_needs_a_loopback_producer_base(producer: str | None) -> None:
    data = {"endpoints": [{"name": "thin", "secrets": [SECRET]}], "producer": producer}
    with pytest.raises(ScenarioError) as e:
        setup_from_dict(data, "rx.json")
    assert e.value.key == "producer"
    assert setup_from_dict({**data, "producer": "http://[::1]:8080/"}, "rx.json").producer == "http://[::1]:8080"
    plain = setup_from_dict({"endpoints": [{"name": "webhook", "secrets": [SECRET]}]}, "rx.json")
    assert plain.producer is None and create_receiver(plain)[RECEIVER].fetcher is None


def test_the_orchestrator_tells_the_receiver_where_the_producer_is() -> None:
    sc = load_scenario(REPO / "scenarios" / "default.toml", ['webhook.subscriptions=[{name="webhook"},{name="thin"}]'])
    assert sc.modes[-2:] == ("webhook", "thin")
    config = receiver_config(sc, make_endpoints(sc), Path("tls"), producer="http://127.0.0.1:5000")
    setup = setup_from_dict(config, "receiver.json")
    assert setup.producer == "http://127.0.0.1:5000"
    assert [setup.fetches(ep) for ep in setup.endpoints] == [False, True]


# --- analysis -------------------------------------------------------------------------------------------

def test_thin_observation_is_the_fetch_and_its_requests_include_the_fetches(tmp_path: Path) -> None:
    """A thin arrival is not an observation (its fetch is); requests = attempts + fetches; the model says 2."""
    db = changes_db(tmp_path / "p.db", [(1, "ch1", 1_000), (2, "ch2", 2_000)])
    rec = tmp_path / "records"
    rec.mkdir()

    def jsonl(name: str, rows: list[dict[str, Any]]) -> None:
        write_jsonl(rec / name, rows)

    arrival = {"endpoint": "thin", "verdict": "accepted", "status": 204, "method": "POST", "path": "/hooks/thin"}
    jsonl("audit.jsonl", [{**arrival, "t_ns": 1_100, "t_obs_ns": 1_100, "change_id": "ch1", "msg_id": "msg_ch1"},
                          {**arrival, "t_ns": 2_100, "t_obs_ns": 2_100, "change_id": "ch2", "msg_id": "msg_ch2"},
                          {**arrival, "endpoint": "webhook", "t_ns": 1_050, "t_obs_ns": 1_050, "change_id": "ch1",
                           "msg_id": "msg_ch1"}])
    fetch = {"mode": "thin", "user": 0, "resource_id": 0, "bytes": 90, "followup": False, "initial": False}
    jsonl(POLLS_FILE, [{**fetch, "t_intended_ns": 1_200, "t_send_ns": 1_200, "t_recv_ns": 1_400, "status": 200,
                        "empty": False, "n_new": 1, "error": None},
                       {**fetch, "t_intended_ns": 2_200, "t_send_ns": 2_200, "t_recv_ns": 2_300, "status": 0,
                        "empty": True, "n_new": 0, "error": "timeout"}])
    jsonl(OBSERVATIONS_FILE, [{"mode": "thin", "user": 0, "change_id": "ch1", "t_obs_ns": 1_400, "via": "push"}])
    delivery = {"subscription_id": "s", "attempt": 1, "status": 204, "outcome": "ok", "latency_ms": 0.1,
                "bytes_out": 100, "bytes_in": 50, "t_done_ns": 0}
    jsonl("deliveries.jsonl", [{**delivery, "mode": "thin", "change_id": c, "msg_id": f"msg_{c}", "t_send_ns": t}
                               for c, t in (("ch1", 1_050), ("ch2", 2_050))]
          + [{**delivery, "mode": "webhook", "change_id": "ch1", "msg_id": "msg_ch1", "t_send_ns": 1_020}])
    tables = load_records(rec, db)
    obs = tables.observations
    assert sorted(zip(obs["mode"], obs["change_id"], obs["t_obs_ns"])) == [("thin", "ch1", 1_400),
                                                                           ("webhook", "ch1", 1_050)]
    sc = load_scenario(REPO / "scenarios" / "default.toml", ['webhook.subscriptions=[{name="webhook"},{name="thin"}]'])
    s = summarize(tables, Window(0, 10_000, 20_000), sc.to_dict(), {}, modes=["webhook", "thin"])
    thin = s["modes"]["thin"]
    assert (thin["observed"], thin["lost"], thin["duplicates"]) == (1, 1, 0)  # ch2 arrived but was never fetched
    assert (thin["requests"], thin["delivery_attempts"], thin["consumer_requests"]) == (4, 2, 2)
    assert thin["requests_per_change"] == 2.0 and thin["errors"] == 1
    assert thin["latency_ms"]["p50"] == pytest.approx((1_400 - 1_000) / 1e6)
    assert thin["fetch_ms_p50"] == pytest.approx(200 / 1e6)
    assert thin["model"]["requests_per_change"] == 2.0
    assert s["modes"]["webhook"]["observed"] == 1 and "fetch_ms_p50" not in s["modes"]["webhook"]
    assert THIN.charged_route == "event"


def test_fetch_module_waits_are_bounded() -> None:
    """The retries span a producer restart (the crash scenarios keep it down ~2 s) and stay far below a drain."""
    total = sum(fetch_module.FETCH_BACKOFF_S * 2 ** n for n in range(fetch_module.FETCH_TRIES - 1))
    assert 3.0 < total < 10.0


@async_test
async def test_cancelled_fetches_are_recorded_when_the_receiver_stops(tmp_path: Path) -> None:
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(status=503)

    app = web.Application()
    app.router.add_get(PATH_EVENT, slow)
    async with _serving(app) as base:
        receiver = create_receiver(_setup(base, "thin_x"), records_dir=tmp_path)
        async with _serving(receiver) as rbase, aiohttp.ClientSession() as http:
            body, headers = _signed(change_event("ch3", 1, 3, 1, time.time_ns()))
            assert (await http.post(rbase + "/hooks/thin_x", data=body, headers=headers)).status == 204
            fetcher = receiver[RECEIVER].fetcher
            assert fetcher is not None
            await wait_until(lambda: fetcher.requests == 1, "the fetch to start")
        release.set()
    (row,) = read_jsonl(tmp_path / POLLS_FILE)
    assert row["error"].startswith("cancelled") and row["empty"]
