"""Long polling: the producer's `wait` on GET /changes (real app from its factory on 127.0.0.1), the model of
the LONG mode kind, and what the run's analysis makes of a long poller's rows. No timed assertions: a held
request is checked by the producer's own held gauge and by what each answer carries."""

from __future__ import annotations

import asyncio
import contextlib
import math
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
from aiohttp import ClientSession, ClientTimeout, web
from aiohttp.test_utils import TestClient, TestServer
from support import wait_until

from bench.analysis.summary import Window, summarize
from bench.analysis.tables import Tables
from bench.config import Scenario, scenario_from_dict
from bench.errors import ScenarioError
from bench.modes import LONG, MODE_LONG, Workload, model_for
from bench.protocol import LONG_WAIT_MAX_S, MODE_LABEL_HEADER, PATH_CHANGES, PATH_CONTROL_CHANGES, PATH_STATS
from servers.common import start_app
from servers.producer import create_app
from servers.producer.keys import LEDGER, NOTIFIER, STORE
from servers.producer.store import Store

LABEL = {MODE_LABEL_HEADER: MODE_LONG}


def make_scenario() -> Scenario:
    data = {"name": "test-long", "seed": 11, "run": {"duration": "1s"}, "resources": {"count": 5},
            "changes": {"rate": 1.0}, "polling": {"interval": "1s"}, "webhook": {"enabled": False}}
    return scenario_from_dict(data, "<test_long_poll>")


@contextlib.asynccontextmanager
async def producer(tmp_path: Path) -> AsyncIterator[tuple[web.Application, TestClient]]:
    """The real producer with its change generator off: the test makes each change (POST /control/changes)."""
    app = create_app(make_scenario(), db_path=tmp_path / "store.db", start_changes=False)
    async with TestClient(TestServer(app)) as client:
        yield app, client


async def apply(client: TestClient, n: int = 1) -> None:
    """n changes through the producer's own path (store, dispatcher, notifier), as the generator makes them."""
    resp = await client.post(PATH_CONTROL_CHANGES, json={"apply": n})
    assert resp.status == 200, await resp.text()


async def long_poll(client: TestClient, after: int, wait: float, **params: Any) -> tuple[int, dict[str, Any]]:
    resp = await client.get(PATH_CHANGES, params={"after": after, "wait": f"{wait:g}", **params}, headers=LABEL)
    return resp.status, await resp.json()


def held(app: web.Application) -> int:
    return app[LEDGER].mode(MODE_LONG).held


def run(coro: Any) -> None:
    asyncio.run(coro)


def test_a_held_poll_answers_the_change_that_woke_it(tmp_path: Path) -> None:
    async def body() -> None:
        async with producer(tmp_path) as (app, client):
            await apply(client, 3)
            head = app[STORE].head_seq
            task = asyncio.create_task(long_poll(client, head, 60))
            await wait_until(lambda: held(app) == 1, "the long poll to be held")
            assert not task.done()
            await apply(client)
            status, page = await task
            assert status == 200
            assert [c["seq"] for c in page["changes"]] == [head + 1]
            assert page["next_after"] == head + 1 and page["has_more"] is False
            assert held(app) == 0 and app[LEDGER].mode(MODE_LONG).held_max == 1
            assert app[LEDGER].mode(MODE_LONG).requests == 1  # charged to its label, once

    run(body())


def test_a_poll_with_changes_past_after_is_answered_at_once_with_the_same_bytes(tmp_path: Path) -> None:
    async def body() -> None:
        async with producer(tmp_path) as (app, client):
            await apply(client, 4)
            plain = await (await client.get(PATH_CHANGES, params={"after": 1, "limit": 2})).read()
            waited = await (await client.get(PATH_CHANGES, params={"after": 1, "limit": 2, "wait": "60"},
                                             headers=LABEL)).read()
            assert waited == plain
            assert app[LEDGER].mode(MODE_LONG).held_max == 0  # never held: something was there

    run(body())


def test_a_wait_that_ends_gives_the_empty_page_an_ordinary_poll_gives(tmp_path: Path) -> None:
    async def body() -> None:
        async with producer(tmp_path) as (app, client):
            await apply(client, 2)
            head = app[STORE].head_seq
            plain = await (await client.get(PATH_CHANGES, params={"after": head})).read()
            resp = await client.get(PATH_CHANGES, params={"after": head, "wait": "0.05"}, headers=LABEL)
            assert resp.status == 200 and await resp.read() == plain
            assert app[LEDGER].mode(MODE_LONG).held_max == 1 and held(app) == 0

    run(body())


@pytest.mark.parametrize("wait", ["30s", "0", "-1", "301", "nan", "inf", "", "1e400", "0x10"])
def test_a_bad_wait_is_400_naming_the_value(tmp_path: Path, wait: str) -> None:
    async def body() -> None:
        async with producer(tmp_path) as (app, client):
            resp = await client.get(PATH_CHANGES, params={"after": 0, "wait": wait})
            assert resp.status == 400
            text = await resp.text()
            assert text.startswith(f"wait={wait!r}:") and "(0, 300]" in text and "wait=30" in text
            assert held(app) == 0 and app[LEDGER].mode("polling").held_max == 0

    run(body())


def test_the_longest_wait_is_the_protocols() -> None:
    assert LONG_WAIT_MAX_S == 300.0
    assert LONG.fields["long_wait"].check(LONG_WAIT_MAX_S) and not LONG.fields["long_wait"].check(301)


def test_one_change_wakes_every_waiter_and_the_store_is_not_queried_while_they_wait(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    n = 40
    queries: list[int] = []
    real = Store.changes_after

    def counted(self: Store, after: int, limit: int) -> Any:
        queries.append(after)
        return real(self, after, limit)

    monkeypatch.setattr(Store, "changes_after", counted)

    async def body() -> None:
        async with producer(tmp_path) as (app, client):
            await apply(client)
            head = app[STORE].head_seq
            queries.clear()
            tasks = [asyncio.create_task(long_poll(client, head, 60)) for _ in range(n)]
            await wait_until(lambda: held(app) == n, f"{n} long polls to be held")
            stats = await (await client.get(PATH_STATS)).json()
            assert stats["modes"][MODE_LONG]["held"] == n and stats["modes"][MODE_LONG]["held_max"] == n
            for _ in range(20):  # the loop keeps serving while they wait; none of them reads the store
                await asyncio.sleep(0.005)
            assert queries == []
            await apply(client)  # ONE change
            answers = await asyncio.gather(*tasks)
            assert [status for status, _ in answers] == [200] * n
            assert all([c["seq"] for c in page["changes"]] == [head + 1] for _, page in answers)
            assert queries == [head] * n  # one query per answer, after the change
            assert held(app) == 0 and app[LEDGER].mode(MODE_LONG).held_max == n
            assert app[LEDGER].changes == 2

    run(body())


def test_a_wake_up_with_nothing_new_for_a_waiter_keeps_it_held(tmp_path: Path) -> None:
    async def body() -> None:
        async with producer(tmp_path) as (app, client):
            await apply(client, 2)
            head = app[STORE].head_seq
            behind = asyncio.create_task(long_poll(client, head, 60))
            await wait_until(lambda: held(app) == 1, "the long poll to be held")
            app[NOTIFIER].notify()  # a wake-up without a change past its cursor
            for _ in range(10):
                await asyncio.sleep(0.005)
            assert not behind.done() and held(app) == 1
            await apply(client)
            status, page = await behind
            assert status == 200 and [c["seq"] for c in page["changes"]] == [head + 1]

    run(body())


def test_stopping_the_producer_answers_held_polls_empty(tmp_path: Path) -> None:
    async def body() -> None:
        async with producer(tmp_path) as (app, client):
            head = app[STORE].head_seq
            tasks = [asyncio.create_task(long_poll(client, head, 60)) for _ in range(3)]
            await wait_until(lambda: held(app) == 3, "3 long polls to be held")
            app[NOTIFIER].close()  # what the app's on_shutdown does
            answers = await asyncio.gather(*tasks)
            assert answers == [(200, {"changes": [], "next_after": head, "has_more": False})] * 3
            assert held(app) == 0
            status, page = await long_poll(client, head, 60)  # once closed, a long poll is not held at all
            assert status == 200 and page["changes"] == [] and app[LEDGER].mode(MODE_LONG).held_max == 3

    run(body())


def test_a_waiter_whose_client_left_is_let_go_at_the_next_wake_up(tmp_path: Path) -> None:
    async def body() -> None:
        # served as a producer process serves it (servers.common): aiohttp's test server would cancel the handler
        app = create_app(make_scenario(), db_path=tmp_path / "store.db", start_changes=False)
        runner, port = await start_app(app)
        try:
            url = f"http://127.0.0.1:{port}{PATH_CHANGES}"
            async with ClientSession(timeout=ClientTimeout(total=60)) as client:
                gone = asyncio.create_task(client.get(url, params={"after": 0, "wait": "60"}, headers=LABEL))
                await wait_until(lambda: held(app) == 1, "the long poll to be held")
                gone.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await gone
            assert runner.server is not None
            server = runner.server  # its connections stay listed until their handlers end
            await wait_until(lambda: all(h.transport is None for h in server.connections), "the connection to close")
            assert held(app) == 1  # aiohttp does not cancel the handler: it stays until it wakes up
            app[NOTIFIER].notify()  # a wake-up with nothing new: a live client's poll would stay held
            await wait_until(lambda: held(app) == 0, "the abandoned long poll to end")
        finally:
            await runner.cleanup()

    run(body())


def test_the_model_of_long_polling() -> None:
    w = Workload("poisson", 0.2, 2.0, 5)  # L = 1 change/s on the feed, W = 2 s
    m = model_for(MODE_LONG, w)
    assert m["wasted_fraction"] == pytest.approx(math.exp(-2.0))
    assert m["requests_per_change"] == pytest.approx(1 / (1 - math.exp(-2.0)))
    assert m["lambda_T"] == pytest.approx(2.0) and m["latency_mean_ms"] == 0.0
    c = model_for(MODE_LONG, Workload("constant", 0.1, 2.0, 3))  # I = 10 s, three phases
    assert c["wasted_fraction"] == pytest.approx(0.8 ** 3)
    assert LONG.formulas.wasted("poisson") == "e^(-R*lambda*W)"


def test_a_live_wait_beyond_the_producers_bound_is_refused() -> None:
    polling = {"interval": "1s", "styles": ["long"], "long_wait": "200s"}
    data = {"name": "x", "resources": {"count": 2}, "changes": {"rate": 1.0}, "polling": polling,
            "run": {"duration": "1s", "time_scale": 0.5}}
    with pytest.raises(ScenarioError) as e:
        scenario_from_dict(data, "x.toml")
    assert str(e.value).startswith("x.toml: polling.long_wait = 200.0: divided by run.time_scale (0.5) must be at "
                                   "most 300 s")
    scenario_from_dict({**data, "polling": {**polling, "styles": ["cursor"]}}, "x.toml")  # not run: no matter
    scenario_from_dict({**data, "run": {"duration": "1s", "time_scale": 1.0}}, "x.toml")


# --- what the analysis makes of a long poller's rows -------------------------------------------------------

def ms(x: float) -> int:
    return int(x * 1_000_000)


def _summary(long_polls: list[tuple[float, float, bool]]) -> dict[str, Any]:
    """One window [1 s, 2 s) with 3 resources changing at 2/s and long_wait 500 ms; long_polls are
    (send ms, round trip ms, empty)."""
    scenario = scenario_from_dict({
        "name": "hand", "seed": 3, "run": {"duration": 1, "warmup": 1, "drain": 1}, "resources": {"count": 3},
        "changes": {"process": "poisson", "rate": 2.0},
        "polling": {"interval": "250ms", "styles": ["cursor", "long"], "long_wait": "500ms"},
    }, "test").to_dict()
    polls = [{"mode": MODE_LONG, "user": 0, "resource_id": None, "t_intended_ns": ms(t), "t_send_ns": ms(t),
              "t_recv_ns": ms(t + rtt), "status": 200, "empty": empty, "n_new": 0 if empty else 1, "bytes": 50,
              "error": None, "followup": False, "initial": False} for t, rtt, empty in long_polls]
    t = Tables.from_frames(changes=[{"change_id": "c1", "resource_id": 0, "seq": 1, "version": 1,
                                     "t_change_ns": ms(1100)}],
                           observations=[{"mode": MODE_LONG, "user": 0, "change_id": "c1", "t_obs_ns": ms(1103)}],
                           polls=polls)
    return summarize(t, Window(ms(1000), ms(2000), ms(3000)), scenario, {}, modes=["polling", MODE_LONG])


def test_the_summary_models_a_long_poll_with_its_wait_and_its_timed_out_round_trip() -> None:
    s = _summary([(1000, 103, False), (1103, 502, True), (1605, 504, True), (1000, 3, False)])
    m = s["modes"][MODE_LONG]
    assert (m["requests"], m["empty_requests"], m["lost"]) == (4, 2, 0)
    assert m["latency_ms"]["p50"] == 3.0
    assert m["rtt_ms_p50"] == pytest.approx(302.5)  # the measured round trips, waits included
    model = m["model"]
    assert model["lambda_T"] == pytest.approx(3 * 2.0 * 0.5)  # its T is the wait, not polling.interval
    assert model["wasted_fraction"] == pytest.approx(math.exp(-3.0))
    assert model["latency_mean_ms"] == pytest.approx(3.0)  # median of 2 and 4 ms: timed-out round trips less W
    assert "timed-out requests less the wait" in model["note"]
    cursor = s["modes"]["polling"]["model"]
    assert cursor["lambda_T"] == pytest.approx(3 * 2.0 * 0.25)  # the other modes keep polling.interval


def test_without_a_timed_out_request_the_model_gives_no_latency() -> None:
    model = _summary([(1000, 103, False)])["modes"][MODE_LONG]["model"]
    assert model["latency_mean_ms"] is None and "not measured" in model["note"]
    assert model["wasted_fraction"] == pytest.approx(math.exp(-3.0))
