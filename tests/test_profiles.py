"""Provider delivery profiles (bench/data/delivery_profiles.toml): every value has its page and date, a profile
fills the delivery keys and explicit keys win, the schedule the dispatcher actually runs is the profile's (within
its jitter), and the disable rules (N consecutive failures, D of continuous failure) disable a subscription."""

from __future__ import annotations

import copy
import dataclasses
import random
import sqlite3
import tomllib
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from support import WAIT_S, read_jsonl, wait_until
from test_dispatcher import async_test, capture, producer, status

from bench.config import DeliveryCfg, scenario_from_dict
from bench.errors import ScenarioError
from bench.profiles import DELIVERY_KEYS, INFO_KEYS, PROFILE_NAMES, STATUSES, load_profiles, profile_values
from bench.schema import parse_duration
from bench.signing import new_secret_for
from servers.producer.dispatcher import backoff_delay
from servers.producer.keys import DISPATCHER, STORE

REPO = Path(__file__).resolve().parents[1]
READ = {date(2026, 12, 4), date(2026, 12, 5)}  # the days the pages were read
SECRETS = [new_secret_for("standard")]
BASE = {"name": "profiles", "run": {"duration": "10s"}, "resources": {"count": 1}, "changes": {"rate": 1.0},
        "polling": {"interval": "1s"}, "receiver": {"dedup_ttl": "30d"}}


def scenario(webhook: dict[str, Any], overrides: tuple[str, ...] = ()) -> Any:
    return scenario_from_dict({**copy.deepcopy(BASE), "webhook": webhook}, "<test_profiles>", overrides)


def resolved(name: str, **webhook: Any) -> DeliveryCfg:
    return scenario({"profile": name, **webhook}).webhook.subscriptions[0]


def schedule(cfg: DeliveryCfg) -> list[float]:
    """Nominal times of attempts 1..attempts after the first is sent (timeouts and jitter left out)."""
    t, out = 0.0, [0.0]
    for n in range(1, cfg.attempts):
        t += cfg.nominal_delay(n)
        out.append(t)
    return out


# --- the data file ---------------------------------------------------------------------------------------

def test_the_data_file_names_every_profile_and_every_value_its_page_and_date() -> None:
    raw = tomllib.loads((REPO / "bench" / "data" / "delivery_profiles.toml").read_text(encoding="utf-8"))
    assert sorted(raw) == sorted(PROFILE_NAMES) and load_profiles() == raw
    for name, table in raw.items():
        assert isinstance(table.pop("name"), str)
        assert {"timeout", "scheme"} <= set(table), name  # every provider's timeout and signing are accounted for
        assert set(table) <= set(DELIVERY_KEYS + INFO_KEYS), name
        for key, entry in table.items():
            where = f"[{name}].{key}"
            assert entry["source"].startswith("https://") and entry["read"] in READ, where
            assert entry["status"] in STATUSES, where
            if entry["status"] != "documented":  # anything not read verbatim says why
                assert entry.get("note") or entry.get("quote"), where
            if entry["status"] == "not documented" and key in DELIVERY_KEYS and key not in ("scheme", "breaker"):
                assert "value" not in entry, where  # never an invented number where the page is silent
        # no provider documents a circuit breaker: every profile turns hookbench's off
        assert table["breaker"]["value"] is False and table["breaker"]["status"] == "not documented", name


def test_the_data_file_ships_as_package_data() -> None:
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert 'bench = ["data/*.toml"]' in text


# --- config ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_a_profile_fills_the_delivery_keys_and_the_scenario_dict_shows_them(name: str) -> None:
    s = scenario({"profile": name})
    cfg = s.webhook.subscriptions[0]
    values = profile_values(name)
    assert cfg.profile == name
    for key, value in values.items():
        got = getattr(cfg, key)
        if key in ("timeout", "backoff_base", "backoff_cap", "disable_after"):
            assert got == parse_duration(value), key
        elif key == "retry_delays":
            assert got == tuple(parse_duration(v) for v in value), key
        else:
            assert got == value, key
    d = s.to_dict()["webhook"]["subscriptions"][0]
    assert d["profile"] == name and d["timeout"] == cfg.timeout and d["max_attempts"] == cfg.max_attempts
    again = scenario_from_dict(s.to_dict(), "<round trip>")
    assert again.webhook.subscriptions == s.webhook.subscriptions  # reproducible from the manifest's dict


def test_explicit_keys_win_over_the_profile() -> None:
    svix = resolved("svix")
    mine = resolved("svix", timeout="1s", max_attempts=3)
    assert (mine.timeout, mine.max_attempts) == (1.0, 3) != (svix.timeout, svix.max_attempts)
    assert mine.retry_delays == svix.retry_delays and mine.disable_after == svix.disable_after == 5 * 86400
    over = scenario({"profile": "svix"}, ("webhook.timeout=2s",)).webhook.subscriptions[0]
    assert over.timeout == 2.0 and over.retry_delays == svix.retry_delays
    to_svix = scenario({"profile": "github"}, ("webhook.profile=svix",)).webhook.subscriptions[0]
    assert to_svix.timeout == svix.timeout and to_svix.profile == "svix"


def test_a_profile_turns_hookbenchs_breaker_off_unless_the_scenario_turns_it_on() -> None:
    assert scenario({}).webhook.subscriptions[0].breaker is True  # no profile: hookbench's default
    assert all(resolved(name).breaker is False for name in PROFILE_NAMES)
    assert resolved("github", breaker=True).breaker is True


def test_a_subscription_profile_replaces_what_it_inherits_and_its_own_keys_win() -> None:
    s = scenario({"profile": "square", "subscriptions": [
        {"name": "webhook_square"}, {"name": "webhook_gh", "profile": "github"},
        {"name": "webhook_gh2", "profile": "github", "max_attempts": 2}]})
    sq, gh, gh2 = s.webhook.subscriptions
    assert (sq.profile, sq.max_attempts, sq.timeout) == ("square", 79, 10.0)
    assert (gh.profile, gh.max_attempts, gh.scheme) == ("github", 1, "github")
    assert (gh2.max_attempts, gh2.timeout) == (2, 10.0)


@pytest.mark.parametrize("where", ["webhook", "subscription", "set"])
def test_an_unknown_profile_names_the_known_ones(where: str) -> None:
    webhook: dict[str, Any] = {}
    overrides: tuple[str, ...] = ()
    if where == "webhook":
        webhook["profile"] = "paypal"
    elif where == "subscription":
        webhook["subscriptions"] = [{"name": "webhook_x", "profile": "paypal"}]
    else:
        overrides = ("webhook.profile=paypal",)
    with pytest.raises(ScenarioError) as e:
        scenario(webhook, overrides)
    text = str(e.value)
    assert "paypal" in text and "profile" in text and all(n in text for n in PROFILE_NAMES)


# --- the schedule --------------------------------------------------------------------------------------------

def test_each_schedule_matches_what_its_page_states() -> None:
    h, m = 3600.0, 60.0
    svix = schedule(resolved("svix"))
    assert svix[3] == 35 * m + 5  # "fails three times before eventually succeeding ... roughly 35 minutes and 5 s"
    assert len(svix) == 8
    std = schedule(resolved("standard"))
    assert std[-1] == 75 * h + 35 * m + 5 and len(std) == 10  # the example table's last row, 75:35:05
    sq = schedule(resolved("square"))
    assert sq[6] == 63 * m and len(sq) == 79  # retry 6 at 63 min (the page's table), 78 retries
    # the table's last retry comes at 73 h 3 min, past the 72 h the same page states: the data file says so
    assert sq[-1] == 63 * m + 72 * h and "73 h" in load_profiles()["square"]["retry_window"]["note"]
    assert all(b - a == h for a, b in zip(sq[6:], sq[7:]))  # retries 7-78 hourly
    shop = schedule(resolved("shopify"))
    assert len(shop) == 9 and shop[-1] == pytest.approx(4 * h, rel=1e-3)  # 8 retries over 4 h
    stripe = schedule(resolved("stripe"))
    assert stripe[-1] <= 3 * 24 * h  # inside the three days
    assert schedule(resolved("github")) == [0.0]  # no automatic retry
    assert schedule(resolved("slack")) == [0.0, 0.0, m, 6 * m]


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_every_drawn_delay_is_inside_the_jitter_bounds_of_the_schedule(name: str) -> None:
    cfg = resolved(name)
    rng = random.Random(5)
    for n in range(1, cfg.attempts):
        nominal = cfg.nominal_delay(n)
        for _ in range(50):
            assert nominal * (1 - cfg.jitter) <= backoff_delay(cfg, n, rng) <= nominal * (1 + cfg.jitter)


# --- the dispatcher runs it --------------------------------------------------------------------------------

def _sends(records: Path) -> list[dict[str, Any]]:
    return sorted((r for r in read_jsonl(records / "deliveries.jsonl") if r["status"]), key=lambda r: r["attempt"])


@pytest.mark.parametrize("name", PROFILE_NAMES)
@async_test
async def test_the_dispatcher_runs_the_profile_schedule_against_an_endpoint_that_always_fails(
        tmp_path: Path, name: str) -> None:
    cfg = resolved(name)
    span = schedule(cfg)[-1]
    scale = max(1.0, span / 1.0)  # the whole schedule in about a second of wall clock
    records = tmp_path / "rec"
    async with capture(lambda hit: status(500)) as cap:
        async with producer(tmp_path, records=records) as (app, client):
            resp = await client.post("/subscriptions", json={
                "url": cap.url(), "secrets": [new_secret_for(cfg.scheme)],
                "delivery": {"name": "webhook_p", "profile": name, "delay_scale": scale, "concurrency": 1}})
            assert resp.status == 201, await resp.text()
            change(app)
            d = app[DISPATCHER]
            # a bound, not a timing: the schedule is ~1 s of delays plus a round trip per attempt (79 for square);
            # this allows 100 ms per attempt on top of WAIT_S
            await wait_until(lambda: d.pending() == 0 and d.attempts >= 1, "the schedule to run out",
                             timeout=WAIT_S + 0.1 * cfg.attempts)
    sends = _sends(records)
    live = dataclasses.replace(cfg, delay_scale=scale)
    disabled_at = cfg.disable_after_failures or None
    expected = min(cfg.attempts, disabled_at or cfg.attempts)
    assert [r["attempt"] for r in sends] == list(range(1, expected + 1))
    assert len(cap.hits) == expected
    last = "disabled" if disabled_at and disabled_at <= cfg.attempts else "gave_up"
    assert [r["outcome"] for r in sends] == ["retry"] * (expected - 1) + [last]
    for prev, nxt in zip(sends, sends[1:]):  # each wait at least the schedule's delay less its jitter
        assert (nxt["t_send_ns"] - prev["t_done_ns"]) / 1e9 >= live.nominal_delay(prev["attempt"]) * (1 - cfg.jitter) \
            - 0.002  # timer granularity


def change(app: Any) -> Any:
    ch = app[STORE].apply_change(0, 1, 1)
    app[DISPATCHER].submit(ch)
    return ch


# --- disable rules ---------------------------------------------------------------------------------------------

@async_test
async def test_n_consecutive_failures_disable_and_a_success_resets_the_count(tmp_path: Path) -> None:
    records = tmp_path / "rec"
    answers = [500, 500, 204, 500, 500, 500]  # the 2xx breaks the run: only the last three are consecutive
    async with capture(lambda hit: status(answers[hit.n - 1] if hit.n <= len(answers) else 500)) as cap:
        async with producer(tmp_path, records=records) as (app, client):
            resp = await client.post("/subscriptions", json={"url": cap.url(), "secrets": SECRETS, "delivery": {
                "name": "webhook_n", "disable_after_failures": 3, "max_attempts": 1, "concurrency": 1}})
            sid = (await resp.json())["id"]
            d = app[DISPATCHER]
            for i in range(8):
                if sid in d.endpoints:
                    change(app)
                    await wait_until(lambda: d.pending() == 0, "the attempt")
    assert len(cap.hits) == 6
    assert [r["outcome"] for r in _sends(records)][-1] == "disabled"
    with sqlite3.connect(tmp_path / "store.db") as db:
        assert db.execute("SELECT active, disabled_reason FROM subscriptions").fetchall() == [
            (0, "3 consecutive failed attempts")]


@async_test
async def test_continuous_failure_for_disable_after_disables(tmp_path: Path) -> None:
    records = tmp_path / "rec"
    limit_s = 1.0  # 5 days, live
    # 4 h between attempts is 1/30 s live: 99 delays alone (3.3 s) outlast the limit, so max_attempts is never
    # what ends the schedule, however fast the machine; a slow one only makes fewer attempts (> 1 unless the
    # first round trip takes the whole second)
    async with capture(lambda hit: status(503)) as cap:
        async with producer(tmp_path, records=records) as (app, client):
            resp = await client.post("/subscriptions", json={"url": cap.url(), "secrets": SECRETS, "delivery": {
                "name": "webhook_d", "disable_after": "5d", "delay_scale": 5 * 86400 / limit_s,
                "retry_delays": ["4h"], "jitter": 0.0, "max_attempts": 100, "concurrency": 1,
                "breaker_window": 1000}})
            sid = (await resp.json())["id"]
            change(app)
            d = app[DISPATCHER]
            await wait_until(lambda: sid not in d.endpoints and d.pending() == 0, "the subscription disabled")
    sends = _sends(records)
    assert sends[-1]["outcome"] == "disabled" and 1 < len(sends) < 100
    assert (sends[-1]["t_done_ns"] - sends[0]["t_send_ns"]) / 1e9 >= limit_s  # disabled only after the limit
    assert (sends[-2]["t_done_ns"] - sends[0]["t_send_ns"]) / 1e9 < limit_s  # ... and at the first attempt past it
    with sqlite3.connect(tmp_path / "store.db") as db:
        (reason,), = db.execute("SELECT disabled_reason FROM subscriptions").fetchall()
    assert reason.startswith("failing continuously")
    assert len(cap.hits) == len(sends)
