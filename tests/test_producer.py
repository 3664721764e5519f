"""The producer app from its real factory on 127.0.0.1: polling API, subscriptions, dispatcher, ledger."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
from support import change, read_jsonl, wait_until

from bench.config import Scenario, scenario_from_dict
from bench.protocol import EVENT_TYPE, encode_event, etag_for, msg_id_for
from bench.signing import new_secret
from servers.producer import create_app
from servers.producer.app import drop_torn_tail
from servers.producer.generator import generation_seed
from servers.producer.keys import DISPATCHER, STORE
from servers.receiver import create_app as create_receiver
from servers.receiver import simple_setup
from servers.receiver.audit import AUDIT_FILE

RESOURCES = 5  # ids 0..4
RESOURCE_KEYS = {"id", "version", "seq", "change_id", "t_change_ns", "data"}
DELIVERY_KEYS = {"msg_id", "change_id", "subscription_id", "attempt", "t_send_ns", "t_done_ns", "status",
                 "latency_ms", "bytes_out", "bytes_in", "error", "mode", "retry_after_s", "outcome"}


def async_test(fn: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an async test body in a fresh event loop (no pytest-aiohttp needed)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return run


def make_scenario(**webhook: Any) -> Scenario:
    data = {"name": "test-producer", "seed": 7, "run": {"duration": "1s"}, "resources": {"count": RESOURCES},
            "changes": {"rate": 1.0}, "polling": {"interval": "1s"}, "webhook": webhook}
    return scenario_from_dict(data, "<test_producer>")


@contextlib.asynccontextmanager
async def producer(tmp_path: Path, scenario: Scenario | None = None, *,
                   records: Path | None = None) -> AsyncIterator[tuple[web.Application, TestClient]]:
    """The real producer, change generator off: the test alone decides what changes."""
    app = create_app(scenario or make_scenario(), db_path=tmp_path / "store.db", records_dir=records,
                     start_changes=False)
    async with TestClient(TestServer(app)) as client:  # closing runs the app's cleanup (flushes records)
        yield app, client




@dataclass
class Captured:
    path: str
    body: bytes
    headers: dict[str, str]


@dataclass
class Capture:
    """A webhook endpoint that keeps the exact bytes and headers of every request."""

    status_for: Callable[[int], int]  # attempt number of this webhook-id (1-based) -> status to answer
    requests: list[Captured] = field(default_factory=list)
    server: TestServer | None = None

    def url(self, path: str = "/hooks") -> str:
        assert self.server is not None
        return str(self.server.make_url(path))

    def by_id(self, msg_id: str) -> list[Captured]:
        return [r for r in self.requests if r.headers.get("webhook-id") == msg_id]


@contextlib.asynccontextmanager
async def capture_server(status_for: Callable[[int], int] = lambda n: 204) -> AsyncIterator[Capture]:
    cap = Capture(status_for)

    async def handler(request: web.Request) -> web.Response:
        body = await request.read()
        seen = len(cap.by_id(request.headers.get("webhook-id", "")))
        cap.requests.append(Captured(request.path, body, {k.lower(): v for k, v in request.headers.items()}))
        return web.Response(status=cap.status_for(seen + 1))

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    async with TestServer(app) as server:
        cap.server = server
        yield cap


async def subscribe(client: TestClient, url: str, secret: str) -> str:
    resp = await client.post("/subscriptions", json={"url": url, "secret": secret})
    assert resp.status == 201, await resp.text()
    data = await resp.json()
    assert data["url"] == url
    return data["id"]



# --- GET /resources/{id} ------------------------------------------------------------------------------

@async_test
async def test_resource_etag_304_and_change(tmp_path: Path) -> None:
    async with producer(tmp_path) as (app, client):
        resp = await client.get("/resources/1")
        assert resp.status == 200
        etag = resp.headers["ETag"]
        body = await resp.json()
        assert set(body) == RESOURCE_KEYS
        assert (body["id"], body["version"], body["change_id"]) == (1, 0, None)
        assert etag == etag_for(1, 0)

        resp = await client.get("/resources/1", headers={"If-None-Match": etag})
        assert resp.status == 304
        assert resp.headers["ETag"] == etag
        assert await resp.read() == b""

        ch = change(app, 1, value=42)
        resp = await client.get("/resources/1", headers={"If-None-Match": etag})
        assert resp.status == 200
        body = await resp.json()
        assert resp.headers["ETag"] == etag_for(1, 1) != etag
        assert body == {"id": 1, "version": 1, "seq": ch["seq"], "change_id": ch["change_id"],
                        "t_change_ns": ch["t_change_ns"], "data": {"value": 42}}

        # The new tag, also inside a list or as a weak validator, answers 304 again.
        for inm in (etag_for(1, 1), f'{etag}, {etag_for(1, 1)}', f"W/{etag_for(1, 1)}"):
            resp = await client.get("/resources/1", headers={"If-None-Match": inm})
            assert resp.status == 304, inm

        # Another resource is untouched by the change.
        resp = await client.get("/resources/2", headers={"If-None-Match": etag_for(2, 0)})
        assert resp.status == 304


@pytest.mark.parametrize("rid", [str(RESOURCES), "-1", "abc", "1.5", "0x1", ""])
@async_test
async def test_unknown_or_non_integer_resource_is_404(tmp_path: Path, rid: str) -> None:
    async with producer(tmp_path) as (app, client):
        resp = await client.get(f"/resources/{rid}")
        assert resp.status == 404


@async_test
async def test_huge_resource_id_is_404(tmp_path: Path) -> None:
    async with producer(tmp_path) as (app, client):
        resp = await client.get("/resources/99999999999999999999999")
        assert resp.status == 404


# --- GET /changes ---------------------------------------------------------------------------------------

@async_test
async def test_changes_feed_order_paging_and_empty(tmp_path: Path) -> None:
    async with producer(tmp_path) as (app, client):
        resp = await client.get("/changes")
        assert await resp.json() == {"changes": [], "next_after": 0, "has_more": False}

        made = [change(app, rid) for rid in (3, 1, 3, 0, 4, 2, 3)]
        resp = await client.get("/changes", params={"after": 0})
        assert resp.status == 200
        data = await resp.json()
        assert data["changes"] == made  # every field, in seq order
        assert [c["seq"] for c in data["changes"]] == list(range(1, 8))
        assert (data["next_after"], data["has_more"]) == (7, False)

        seen: list[str] = []
        pages = []
        after = 0
        while True:
            resp = await client.get("/changes", params={"after": after, "limit": 3})
            page = await resp.json()
            pages.append((len(page["changes"]), page["has_more"]))
            seen += [c["change_id"] for c in page["changes"]]
            assert page["next_after"] == (page["changes"][-1]["seq"] if page["changes"] else after)
            after = page["next_after"]
            if not page["has_more"]:
                break
        assert pages == [(3, True), (3, True), (1, False)]
        assert seen == [c["change_id"] for c in made]

        # A page that ends exactly on the last change says nothing more is waiting; one short of it says more is.
        for limit, more in ((7, False), (6, True), (8, False)):
            page = await (await client.get("/changes", params={"after": 0, "limit": limit})).json()
            assert (len(page["changes"]), page["has_more"]) == (min(limit, 7), more), limit

        resp = await client.get("/changes", params={"after": after, "limit": 3})
        assert await resp.json() == {"changes": [], "next_after": after, "has_more": False}

        # A change after the caught-up cursor is the only one returned next.
        late = change(app, 0)
        resp = await client.get("/changes", params={"after": after})
        assert (await resp.json())["changes"] == [late]


@pytest.mark.parametrize("query", ["after=-1", "after=abc", "after=", "limit=0", "limit=10001", "limit=x",
                                   "limit=-5", "after=1.5"])
@async_test
async def test_changes_bad_parameters_are_400(tmp_path: Path, query: str) -> None:
    async with producer(tmp_path) as (app, client):
        resp = await client.get(f"/changes?{query}")
        assert resp.status == 400
        assert query.split("=")[0] in await resp.text()  # the message names the parameter


# --- subscriptions ---------------------------------------------------------------------------------------

@async_test
async def test_subscription_validation(tmp_path: Path) -> None:
    async with producer(tmp_path) as (app, client):
        sid = await subscribe(client, "http://127.0.0.1:9/hooks", new_secret())
        assert sid.startswith("sub_")
        assert [s.id for s in app[STORE].active_subscriptions()] == [sid]

        bad = [
            ({"url": "http://example.com/hooks", "secret": new_secret()}, "loopback"),
            ({"url": "http://10.0.0.1/hooks", "secret": new_secret()}, "loopback"),
            ({"url": "ftp://127.0.0.1/hooks", "secret": new_secret()}, "loopback"),
            ({"url": "http://127.0.0.1:9/hooks", "secret": "whsec_"}, "whsec_"),
            ({"url": "http://127.0.0.1:9/hooks", "secret": ""}, "whsec_"),
            ({"url": "http://127.0.0.1:9/hooks"}, "secret"),
            ({"secret": new_secret()}, "url"),
            ({"url": 5, "secret": new_secret()}, "url"),
        ]
        for payload, hint in bad:
            resp = await client.post("/subscriptions", json=payload)
            assert resp.status == 400, payload
            assert hint in await resp.text(), payload
        for raw in (b"not json", b"", b"\xff\xfe", b"[1, 2]", b'"a string"'):
            resp = await client.post("/subscriptions", data=raw, headers={"Content-Type": "application/json"})
            assert resp.status == 400, raw
        assert [s.id for s in app[STORE].active_subscriptions()] == [sid]  # nothing else was stored


@pytest.mark.parametrize("url", ["http://127.0.0.1.example.com/hooks", "http://127.0.0.1@example.com/hooks",
                                 "http://localhost.example.com/hooks"])
@async_test
async def test_look_alike_loopback_url_is_400(tmp_path: Path, url: str) -> None:
    # No change is ever submitted here, so nothing is sent anywhere whatever the answer.
    async with producer(tmp_path) as (app, client):
        resp = await client.post("/subscriptions", json={"url": url, "secret": new_secret()})
        assert resp.status == 400


@async_test
async def test_delete_subscription_stops_deliveries(tmp_path: Path) -> None:
    async with capture_server() as cap, producer(tmp_path) as (app, client):
        resp = await client.delete("/subscriptions/sub_doesnotexist")
        assert resp.status == 404

        secret = new_secret()
        gone = await subscribe(client, cap.url("/gone"), secret)
        kept = await subscribe(client, cap.url("/kept"), secret)
        first = change(app, 1)
        await wait_until(lambda: len(cap.requests) == 2, "the first change at both endpoints")

        resp = await client.delete(f"/subscriptions/{gone}")
        assert resp.status == 204
        assert (await client.delete(f"/subscriptions/{gone}")).status == 404  # already inactive
        assert [s.id for s in app[STORE].active_subscriptions()] == [kept]

        second = change(app, 2)
        # The kept endpoint getting the second change shows it was dispatched; the deleted one must not get it.
        await wait_until(lambda: len(cap.by_id(msg_id_for(second["change_id"]))) == 1, "the second change")
        await wait_until(lambda: app[DISPATCHER].pending() == 0, "an idle dispatcher")
        paths = sorted((r.path, r.headers["webhook-id"]) for r in cap.requests)
        assert paths == sorted([("/gone", msg_id_for(first["change_id"])), ("/kept", msg_id_for(first["change_id"])),
                                ("/kept", msg_id_for(second["change_id"]))])


@async_test
async def test_restart_keeps_sequence_and_active_subscriptions(tmp_path: Path) -> None:
    secret = new_secret()
    async with capture_server() as cap:
        async with producer(tmp_path) as (app, client):
            await subscribe(client, cap.url("/kept"), secret)
            dropped = await subscribe(client, cap.url("/dropped"), secret)
            assert (await client.delete(f"/subscriptions/{dropped}")).status == 204
            change(app, 0)
            change(app, 1)
            await wait_until(lambda: len(cap.requests) == 2, "two deliveries before the restart")
        async with producer(tmp_path) as (app, client):  # same SQLite file
            ch = change(app, 2)
            assert (ch["seq"], ch["change_id"]) == (3, "ch3")
            await wait_until(lambda: len(cap.requests) == 3, "a delivery after the restart")
            await wait_until(lambda: app[DISPATCHER].pending() == 0, "an idle dispatcher")
            resp = await client.get("/changes")
            assert [c["change_id"] for c in (await resp.json())["changes"]] == ["ch1", "ch2", "ch3"]
    assert {r.path for r in cap.requests} == {"/kept"}
    assert Webhook(secret).verify(cap.requests[-1].body, cap.requests[-1].headers)["data"] == ch


# --- the dispatcher against real endpoints ---------------------------------------------------------------

@async_test
async def test_dispatcher_delivers_signed_exact_bytes_to_capture_and_receiver(tmp_path: Path) -> None:
    cap_secret, rcv_secret = new_secret(), new_secret()
    records = tmp_path / "producer"
    receiver_records = tmp_path / "receiver"
    receiver_app = create_receiver(simple_setup([rcv_secret]), records_dir=receiver_records)
    async with capture_server() as cap, TestServer(receiver_app) as receiver:
        async with producer(tmp_path, records=records) as (app, client):
            await subscribe(client, cap.url(), cap_secret)
            rcv_sid = await subscribe(client, str(receiver.make_url("/hooks")), rcv_secret)
            made = [change(app, rid, value=100 + rid) for rid in (0, 4, 4, 2)]
            d = app[DISPATCHER]
            await wait_until(lambda: d.attempts == 2 * len(made) and d.pending() == 0, "all deliveries")
            assert (d.ok, d.failed) == (2 * len(made), 0)
            stats = await (await client.get("/stats")).json()
            assert stats["deliveries"] == {"attempts": 8, "ok": 8, "failed": 0, "pending": 0}
            assert stats["modes"]["webhook"]["requests"] == 8
            assert stats["modes"]["webhook"]["bytes_out"] > sum(len(encode_event(c)) for c in made) * 2

    by_id = {msg_id_for(c["change_id"]): c for c in made}
    assert sorted(r.headers["webhook-id"] for r in cap.requests) == sorted(by_id)
    for req in cap.requests:
        ch = by_id[req.headers["webhook-id"]]
        assert req.path == "/hooks"
        assert req.body == encode_event(ch).encode()  # the exact bytes that were signed
        event = Webhook(cap_secret).verify(req.body, req.headers)
        assert event == {"id": f"msg_{ch['change_id']}", "type": EVENT_TYPE, "data": ch}
        assert req.headers["content-type"] == "application/json"
        with pytest.raises(WebhookVerificationError):  # signed for this subscription only
            Webhook(rcv_secret).verify(req.body, req.headers)

    arrivals = read_jsonl(receiver_records / AUDIT_FILE)
    assert sorted((a["msg_id"], a["change_id"], a["status"], a["verdict"]) for a in arrivals) == sorted(
        (mid, c["change_id"], 204, "accepted") for mid, c in by_id.items())

    rows = read_jsonl(records / "deliveries.jsonl")
    assert len(rows) == 8
    for row in rows:
        assert set(row) == DELIVERY_KEYS
        assert row["msg_id"] == msg_id_for(row["change_id"])
        assert (row["attempt"], row["status"], row["error"]) == (1, 204, None)
        assert (row["mode"], row["outcome"], row["retry_after_s"]) == ("webhook", "ok", None)
        assert row["t_done_ns"] >= row["t_send_ns"] and row["latency_ms"] >= 0
        assert row["bytes_out"] > len(encode_event(by_id[row["msg_id"]])) and row["bytes_in"] > 0
    assert sum(r["subscription_id"] == rcv_sid for r in rows) == 4


@async_test
async def test_retries_keep_the_id_and_refresh_the_timestamp(tmp_path: Path) -> None:
    secret = new_secret()
    records = tmp_path / "records"
    scenario = make_scenario(backoff_base="10ms", backoff_cap="50ms", max_attempts=5)
    async with capture_server(status_for=lambda n: 500 if n <= 2 else 204) as cap:
        async with producer(tmp_path, scenario, records=records) as (app, client):
            sid = await subscribe(client, cap.url(), secret)
            made = [change(app, 1), change(app, 3)]
            d = app[DISPATCHER]
            await wait_until(lambda: d.attempts == 6 and d.pending() == 0, "three attempts per change")
            assert (d.ok, d.failed) == (2, 4)

    for ch in made:
        mid = msg_id_for(ch["change_id"])
        reqs = cap.by_id(mid)
        assert len(reqs) == 3
        stamps = [int(r.headers["webhook-timestamp"]) for r in reqs]
        assert stamps == sorted(stamps)  # each attempt signed at its own time: fresh or equal, never older
        for r in reqs:
            assert r.body == encode_event(ch).encode()
            Webhook(secret).verify(r.body, r.headers)

    rows = read_jsonl(records / "deliveries.jsonl")
    for ch in made:
        mine = [r for r in rows if r["change_id"] == ch["change_id"]]
        assert [(r["attempt"], r["status"], r["outcome"]) for r in mine] == [
            (1, 500, "retry"), (2, 500, "retry"), (3, 204, "ok")]
        assert {(r["msg_id"], r["subscription_id"]) for r in mine} == {(msg_id_for(ch["change_id"]), sid)}
        assert all(r["error"] is None for r in mine)
        assert mine[1]["t_send_ns"] > mine[0]["t_done_ns"] and mine[2]["t_send_ns"] > mine[1]["t_done_ns"]
    assert len(rows) == 6


@async_test
async def test_retries_stop_at_max_attempts(tmp_path: Path) -> None:
    records = tmp_path / "records"
    scenario = make_scenario(backoff_base="10ms", max_attempts=2)
    async with capture_server(status_for=lambda n: 500) as cap:
        async with producer(tmp_path, scenario, records=records) as (app, client):
            await subscribe(client, cap.url(), new_secret())
            made = [change(app, 0), change(app, 4)]
            d = app[DISPATCHER]
            # Once both attempts of both changes are done and nothing is queued or scheduled, no third can come.
            await wait_until(lambda: d.attempts == 4 and d.pending() == 0, "two attempts per change")
            assert (d.ok, d.failed) == (0, 4)
            stats = await (await client.get("/stats")).json()
            assert stats["deliveries"] == {"attempts": 4, "ok": 0, "failed": 4, "pending": 0}

    assert sorted(len(cap.by_id(msg_id_for(c["change_id"]))) for c in made) == [2, 2]
    rows = read_jsonl(records / "deliveries.jsonl")
    assert sorted((r["change_id"], r["attempt"], r["status"], r["outcome"]) for r in rows) == sorted(
        (c["change_id"], n, 500, "retry" if n == 1 else "gave_up") for c in made for n in (1, 2))


@async_test
async def test_unreachable_endpoint_is_recorded_as_an_error(tmp_path: Path) -> None:
    records = tmp_path / "records"
    async with capture_server() as cap:
        dead_url = cap.url()
    # The capture server is closed: its port on 127.0.0.1 now refuses connections.
    async with producer(tmp_path, make_scenario(max_attempts=1), records=records) as (app, client):
        await subscribe(client, dead_url, new_secret())
        change(app, 2)
        d = app[DISPATCHER]
        await wait_until(lambda: d.attempts == 1 and d.pending() == 0, "the failed attempt")
    (row,) = read_jsonl(records / "deliveries.jsonl")
    assert (row["attempt"], row["status"], row["bytes_in"]) == (1, 0, 0)
    assert row["error"] and "Connect" in row["error"]


@async_test
async def test_redirects_are_not_followed(tmp_path: Path) -> None:
    records = tmp_path / "records"
    async with capture_server() as elsewhere:
        async def redirect(request: web.Request) -> web.Response:
            raise web.HTTPTemporaryRedirect(elsewhere.url("/elsewhere"))

        redirector = web.Application()
        redirector.router.add_post("/hooks", redirect)
        async with TestServer(redirector) as origin:
            async with producer(tmp_path, make_scenario(max_attempts=1), records=records) as (app, client):
                await subscribe(client, str(origin.make_url("/hooks")), new_secret())
                change(app, 1)
                d = app[DISPATCHER]
                await wait_until(lambda: d.attempts == 1 and d.pending() == 0, "the attempt")
    assert elsewhere.requests == []
    (row,) = read_jsonl(records / "deliveries.jsonl")
    assert row["status"] == 307


# --- the ledger ---------------------------------------------------------------------------------------------

@async_test
async def test_poll_cpu_is_timed_when_quiet_and_sampled_when_busy(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Quiet polls are each timed; in a busy spell one poll per POLL_CPU_SAMPLE_NS is, standing for those between."""
    import servers.producer.app as producer_app

    async with producer(tmp_path) as (app, client):
        for _ in range(3):
            await client.get("/changes?after=0")
            await asyncio.sleep(0.002)  # quiet: more than POLL_CPU_SAMPLE_NS (1 ms) apart
        cost = (await (await client.get("/stats")).json())["modes"]["polling"]
        assert cost["requests"] == cost["cpu_timed"] == 3 and cost["cpu_ns"] > 0

        monkeypatch.setattr(producer_app, "POLL_CPU_SAMPLE_NS", 60 * 10**9)  # busy: nothing more is timed...
        for _ in range(5):
            await client.get("/changes?after=0")
        cost = (await (await client.get("/stats")).json())["modes"]["polling"]
        assert (cost["requests"], cost["cpu_timed"]) == (8, 3)
        before = cost["cpu_ns"]
        monkeypatch.setattr(producer_app, "POLL_CPU_SAMPLE_NS", 0)  # ...until the next timed poll, which stands
        await client.get("/changes?after=0")  # for itself and the 5 untimed ones
        cost = (await (await client.get("/stats")).json())["modes"]["polling"]
        assert (cost["requests"], cost["cpu_timed"]) == (9, 4) and cost["cpu_ns"] > before


@async_test
async def test_ledger_counts_polls_per_mode(tmp_path: Path) -> None:
    async with producer(tmp_path) as (app, client):
        for _ in range(3):
            assert (await client.get("/health")).status == 200
        stats = await (await client.get("/stats")).json()
        assert stats["modes"] == {}  # /health and /stats are not polls

        change(app, 1)
        for after in (0, 1, 1):
            assert (await client.get("/changes", params={"after": after})).status == 200
        for inm in (None, etag_for(1, 1), etag_for(1, 1), etag_for(1, 0)):
            headers = {"If-None-Match": inm} if inm else {}
            await client.get("/resources/1", headers=headers)
        stats = await (await client.get("/stats")).json()
        modes = stats["modes"]
        assert set(modes) == {"polling", "polling_etag"}
        assert modes["polling"]["requests"] == 3
        assert modes["polling_etag"]["requests"] == 4
        for cost in modes.values():
            assert cost["bytes_out"] > 0 and cost["bytes_in"] > 0 and cost["cpu_ns"] >= 0

        # Output is charged per response: a 200 costs at least its body more than a 304 of the same resource.
        async def etag_bytes_out() -> int:
            return (await (await client.get("/stats")).json())["modes"]["polling_etag"]["bytes_out"]

        before = await etag_bytes_out()
        await client.get("/resources/1", headers={"If-None-Match": etag_for(1, 1)})
        after_304 = await etag_bytes_out()
        body_len = len(await (await client.get("/resources/1")).read())
        after_200 = await etag_bytes_out()
        assert 0 < after_304 - before
        assert after_200 - after_304 >= (after_304 - before) + body_len

        assert (await client.get("/health")).status == 200
        final = (await (await client.get("/stats")).json())["modes"]
        assert (final["polling"]["requests"], final["polling_etag"]["requests"]) == (3, 6)


# --- subscriptions: the full body, storage, restart ----------------------------------------------------

def _delivery(**kw: Any) -> dict[str, Any]:
    return {"name": "webhook_x", **kw}


@async_test
async def test_subscription_body_validation(tmp_path: Path) -> None:
    pem = tmp_path / "not-a-cert.pem"
    pem.write_text("not a certificate\n")
    ok_url, tls_url = "http://127.0.0.1:9/hooks", "https://127.0.0.1:9/hooks"
    bad = [
        ({"delivery": _delivery(max_attempts=0)}, "max_attempts"),  # ScenarioError wording
        ({"delivery": {"policy": "retry"}}, "name"),
        ({"delivery": _delivery(policy="sometimes")}, "policy"),
        ({"delivery": _delivery(name="hook")}, "webhook"),
        ({"delivery": _delivery(timeout="-1s")}, "timeout"),
        ({"delivery": "retry"}, "table"),
        ({"scheme": "hmac"}, "scheme"),
        ({"scheme": "github", "delivery": _delivery(scheme="stripe")}, "scheme"),
        ({"secrets": []}, "secrets"),
        ({"secrets": "whsec_abc"}, "secrets"),
        ({"secrets": [new_secret(), 5]}, "secrets"),
        ({"secrets": ["whsec_!!"]}, "whsec_"),
        ({"secret": new_secret(), "secrets": [new_secret()]}, "not both"),
        ({"scheme": "github", "secrets": [""]}, "empty secret"),
        ({"basic_auth": {"user": "a:b", "password": "x"}}, "basic_auth"),
        ({"basic_auth": {"user": "a"}}, "basic_auth"),
        ({"basic_auth": "a:b"}, "basic_auth"),
        ({"ca_file": str(pem)}, "https"),  # ca_file with an http url
        ({"url": tls_url}, "ca_file"),
        ({"url": tls_url, "ca_file": str(tmp_path / "missing.pem")}, "no such file"),
        ({"url": tls_url, "ca_file": str(pem)}, "PEM"),
        ({"hmac": "sha1"}, "unknown field"),
    ]
    async with producer(tmp_path) as (app, client):
        for extra, hint in bad:
            body = {"url": ok_url, "secrets": [new_secret()], **extra}
            resp = await client.post("/subscriptions", json=body)
            text = await resp.text()
            assert resp.status == 400, (extra, text)
            assert hint in text, (extra, text)
        assert app[STORE].active_subscriptions() == []


@async_test
async def test_subscription_is_stored_resumed_and_never_shows_secrets(tmp_path: Path) -> None:
    current, older = "s3cr3t-current-value", "s3cr3t-older-value"
    body = {"url": "http://127.0.0.1:9/hooks", "scheme": "github", "secrets": [current, older],
            "delivery": {"name": "webhook_gh", "policy": "fire_and_forget", "retry_delays": ["1s", "2s"],
                         "concurrency": 3},
            "basic_auth": {"user": "hook", "password": "hunter2-pw"}}
    async with producer(tmp_path) as (app, client):
        resp = await client.post("/subscriptions", json=body)
        assert resp.status == 201
        text = await resp.text()
        shown = json.loads(text)
        assert (shown["scheme"], shown["name"], shown["basic_auth"], shown["ca_file"]) == (
            "github", "webhook_gh", {"user": "hook"}, None)
        assert shown["delivery"]["retry_delays"] == [1.0, 2.0] and shown["delivery"]["scheme"] == "github"
        sid = shown["id"]
        for secret in (current, older, "hunter2-pw"):
            assert secret not in text
            assert secret not in await (await client.get("/stats")).text()
            assert secret not in repr(app[STORE].active_subscriptions())
    async with producer(tmp_path) as (app, client):  # same store: resumed as it was
        (sub,) = app[STORE].active_subscriptions()
        assert (sub.id, sub.scheme, sub.secrets, sub.basic_auth) == (sid, "github", (current, older),
                                                                     ("hook", "hunter2-pw"))
        assert (sub.delivery.name, sub.delivery.policy, sub.delivery.retry_delays, sub.delivery.concurrency) == (
            "webhook_gh", "fire_and_forget", (1.0, 2.0), 3)
        stats = (await (await client.get("/stats")).json())["subscriptions"]
        assert stats[sid]["name"] == "webhook_gh" and stats[sid]["active"] is True


@async_test
async def test_legacy_body_takes_the_scenarios_first_subscription(tmp_path: Path) -> None:
    scenario = make_scenario(subscriptions=[{"name": "webhook_outbox", "policy": "outbox", "max_attempts": 7},
                                            {"name": "webhook_ff", "policy": "fire_and_forget"}])
    async with producer(tmp_path, scenario) as (app, client):
        resp = await client.post("/subscriptions", json={"url": "http://127.0.0.1:9/h", "secret": new_secret()})
        assert resp.status == 201
        shown = await resp.json()
        assert (shown["scheme"], shown["name"], shown["delivery"]["policy"], shown["delivery"]["max_attempts"]) == (
            "standard", "webhook_outbox", "outbox", 7)


@async_test
async def test_store_of_the_first_layout_is_converted(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "store.db")
    db.executescript("CREATE TABLE subscriptions (id TEXT PRIMARY KEY, url TEXT NOT NULL, secret TEXT NOT NULL, "
                     "created_ns INTEGER NOT NULL, active INTEGER NOT NULL DEFAULT 1);")
    secret = new_secret()
    db.execute("INSERT INTO subscriptions VALUES ('sub_old', 'http://127.0.0.1:9/h', ?, 1, 1)", (secret,))
    db.commit()
    db.close()
    async with producer(tmp_path) as (app, client):
        (sub,) = app[STORE].active_subscriptions()
        assert (sub.id, sub.scheme, sub.secrets, sub.delivery.name) == ("sub_old", "standard", (secret,), "webhook")


# --- marks and restarts ----------------------------------------------------------------------------------

@async_test
async def test_marks_are_on_disk_at_once_with_pid_and_generation(tmp_path: Path) -> None:
    records = tmp_path / "records"
    app = create_app(make_scenario(), db_path=tmp_path / "store.db", records_dir=records, start_changes=False,
                     generation=3)
    async with TestClient(TestServer(app)) as client:
        snap = await (await client.post("/control/mark", json={"name": "window_start"})).json()
        (on_disk,) = read_jsonl(records / "marks.jsonl")  # before any shutdown
        assert on_disk == snap
        assert (snap["mark"], snap["pid"], snap["generation"]) == ("window_start", os.getpid(), 3)
        stats = await (await client.get("/stats")).json()
        assert (stats["pid"], stats["generation"]) == (os.getpid(), 3)
    marks = read_jsonl(records / "marks.jsonl")
    assert [(m["mark"], m["generation"]) for m in marks] == [("window_start", 3), ("shutdown", 3)]


def test_generation_reseeds_the_change_schedule() -> None:
    assert generation_seed(7, 0) == 7  # the first start is what it always was
    seeds = {generation_seed(7, g) for g in range(5)}
    assert len(seeds) == 5 and all(0 <= s < 2**63 for s in seeds)
    assert generation_seed(7, 2) == generation_seed(7, 2) != generation_seed(8, 2)


def test_drop_torn_tail(tmp_path: Path) -> None:
    f = tmp_path / "deliveries.jsonl"
    f.write_bytes(b'{"a":1}\n{"b":2}\n{"c":')
    drop_torn_tail(f)
    assert f.read_bytes() == b'{"a":1}\n{"b":2}\n'
    drop_torn_tail(f)
    assert f.read_bytes() == b'{"a":1}\n{"b":2}\n'
    f.write_bytes(b'{"torn')
    drop_torn_tail(f)
    assert f.read_bytes() == b""
    drop_torn_tail(tmp_path / "absent.jsonl")
