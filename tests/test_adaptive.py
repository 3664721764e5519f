"""Adaptive polling: the policy (bench.adaptive) as a pure function, its model against closed forms and its own
simulation, the config's checks, the producer's X-Poll-Interval under load, and the poller honouring advice.

The poller itself runs in a child interpreter (Locust gevent-patches the process that imports it), against a
scripted fake client: no server, no clock in the assertions (intended times are computed, not measured).
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer

from bench.adaptive import AdaptivePolicy, Schedule, chain_model, parse_poll_interval, replay, simulated_model
from bench.config import load_scenario, scenario_from_dict
from bench.errors import ScenarioError
from bench.model import poll_model
from bench.modes import MODE_ADAPTIVE, Workload, model_for
from bench.protocol import MODE_LABEL_HEADER, POLL_INTERVAL_HEADER
from bench.simulation.simulate import simulate_scenario
from servers.producer import create_app
from servers.producer.advice import PollAdvice

REPO = Path(__file__).resolve().parents[1]
S = 1_000_000_000  # ns per second


# --- the policy -------------------------------------------------------------------------------------------


def test_the_ladder_runs_from_min_by_factor_and_stops_at_max() -> None:
    p = AdaptivePolicy(0.5, 8.0, 2.0)
    assert p.top == 4 and p.ladder().tolist() == [0.5, 1.0, 2.0, 4.0, 8.0]
    odd = AdaptivePolicy(1.0, 5.0, 2.0)  # max off the lattice: the last step is clamped to it
    assert odd.top == 3 and odd.ladder().tolist() == [1.0, 2.0, 4.0, 5.0]
    assert AdaptivePolicy(3.0, 3.0, 2.0).ladder().tolist() == [3.0]  # min == max: fixed-interval polling
    assert AdaptivePolicy(1.0, 1.5, 10.0).ladder().tolist() == [1.0, 1.5]


def test_empty_polls_grow_to_the_cap_useful_polls_reset_or_divide() -> None:
    reset, divide = AdaptivePolicy(0.5, 8.0, 2.0, "reset"), AdaptivePolicy(0.5, 8.0, 2.0, "divide")
    k = 0
    for expected in (1, 2, 3, 4, 4, 4):  # clamped at the top
        k = reset.step(k, useful=False)
        assert k == expected
    assert reset.step(4, useful=True) == 0 and reset.step(0, useful=True) == 0
    assert divide.step(4, useful=True) == 3 and divide.step(1, useful=True) == 0 and divide.step(0, True) == 0
    assert divide.step(2, useful=False) == 3


@pytest.mark.parametrize("args", [(2.0, 1.0, 2.0), (0.0, 1.0, 2.0), (1.0, 2.0, 1.0), (1.0, 2.0, 2.0, "half"),
                                  (1.0, math.inf, 2.0)])
def test_the_policy_refuses_what_config_refuses(args: tuple[Any, ...]) -> None:
    with pytest.raises(ValueError):
        AdaptivePolicy(*args)


def test_the_schedule_counts_from_the_intended_time_and_never_runs_ahead_of_advice() -> None:
    s = Schedule(AdaptivePolicy(0.5, 8.0, 2.0))
    # empty poll intended at 10 s, answered 3 ms late: next at 10 s + 1 s (step 1), not from the answer
    assert s.after(10 * S, 10 * S + 3_000_000, useful=False, advice_s=None) == 11 * S and s.interval_s == 1.0
    # the producer asks for 5 s: the next poll waits 5 s after the answer, though the policy says 2 s
    assert s.after(11 * S, 11 * S + 2_000_000, useful=False, advice_s=5.0) == 16 * S + 2_000_000
    assert s.k == 2 and s.interval_s == 2.0  # advice does not move the step
    # advice shorter than the policy's interval changes nothing
    assert s.after(16 * S, 16 * S + 1_000_000, useful=False, advice_s=0.1) == 20 * S and s.k == 3
    assert s.after(20 * S, 20 * S, useful=True, advice_s=None) == 20 * S + S // 2 and s.k == 0


@pytest.mark.parametrize("value,seconds", [("2", 2.0), (" 0.25 ", 0.25), ("0", 0.0), ("1e1", 10.0), ("-1", None),
                                           ("nan", None), ("inf", None), ("soon", None), ("", None), (None, None)])
def test_x_poll_interval_is_read_as_seconds(value: str | None, seconds: float | None) -> None:
    assert parse_poll_interval(value) == seconds


# --- the model ---------------------------------------------------------------------------------------------


def test_a_ladder_of_one_step_is_the_fixed_interval_model() -> None:
    m = chain_model(AdaptivePolicy(2.0, 2.0, 2.0), 0.3)
    fixed = poll_model("poisson", 0.3, 2.0, 1)
    for key in ("wasted_fraction", "latency_mean_ms", "requests_per_change", "lambda_T"):
        assert math.isclose(m[key], fixed[key], rel_tol=1e-12), key
    p = fixed["wasted_fraction"]
    assert math.isclose(m["wasted_fraction_sd_per_poll"], math.sqrt(p * (1 - p)), rel_tol=1e-9)  # independent polls
    assert math.isclose(m["latency_p50_ms"], 1000.0, rel_tol=1e-9)  # uniform on (0, T)


def test_a_two_step_ladder_matches_its_hand_solved_chain() -> None:
    """Steps a, b: from a, empty (q_a) -> b; from b, empty (q_b) stays; useful -> a (reset or divide alike)."""
    L, a, b = 0.7, 0.5, 2.0
    qa, qb = math.exp(-L * a), math.exp(-L * b)
    pa = (1 - qb) / (1 - qb + qa)  # balance: pi_a q_a = pi_b (1 - q_b)
    pb = 1 - pa
    for shrink in ("reset", "divide"):
        m = chain_model(AdaptivePolicy(a, b, 4.0, shrink), L)
        assert math.isclose(m["wasted_fraction"], pa * qa + pb * qb, rel_tol=1e-12)
        assert math.isclose(m["mean_interval_s"], pa * a + pb * b, rel_tol=1e-12)
        assert math.isclose(m["latency_mean_ms"], (pa * a * a + pb * b * b) / (2 * (pa * a + pb * b)) * 1e3,
                            rel_tol=1e-12)
        assert math.isclose(m["requests_per_change"], 1 / (L * (pa * a + pb * b)), rel_tol=1e-12)


@pytest.mark.parametrize("shrink", ["reset", "divide"])
def test_the_chain_agrees_with_an_exact_simulation_of_the_policy(shrink: str) -> None:
    """Seeded: 200 000 simulated polls; the chain's own standard deviation sets the tolerance (4 s.e.)."""
    policy = AdaptivePolicy(0.25, 8.0, 2.0, shrink)
    m = chain_model(policy, 0.5)
    sim = simulated_model(policy, "poisson", 0.01, 50, seed=11, polls=200_000)
    se = m["wasted_fraction_sd_per_poll"] / math.sqrt(sim["simulated_polls"])
    assert abs(sim["wasted_fraction"] - m["wasted_fraction"]) < 4 * se
    for key in ("latency_mean_ms", "latency_p50_ms", "requests_per_change", "mean_interval_s"):
        assert sim[key] == pytest.approx(m[key], rel=0.03), key


def test_the_chain_standard_deviation_is_the_spread_of_short_runs() -> None:
    """The binomial sqrt(p(1-p)) would overstate it here: after an empty poll the next waits longer and is
    more often useful. 600 independent replays of 150 polls: their spread is the chain's sd / sqrt(150)."""
    policy, L, n = AdaptivePolicy(0.25, 8.0, 2.0), 0.5, 150
    m = chain_model(policy, L)
    rng = np.random.default_rng(5)
    fractions = []
    for _ in range(600):
        t = np.cumsum(rng.exponential(1 / L, size=400))
        r = replay(policy, t, 0.0, t[-1])
        outcome = r.n_new[20:20 + n]  # 20 polls from the start the steps have forgotten it
        fractions.append(float((outcome == 0).mean()))
    spread = float(np.std(fractions, ddof=1))
    predicted = m["wasted_fraction_sd_per_poll"] / math.sqrt(n)
    binomial = math.sqrt(m["wasted_fraction"] * (1 - m["wasted_fraction"]) / n)
    assert spread == pytest.approx(predicted, rel=0.15)  # 600 samples: the sd itself is known to about 3%
    assert predicted < binomial * 0.7


def test_the_registry_model_is_live_keys_in_and_labelled_out() -> None:
    options = {"adaptive_min": 0.25, "adaptive_max": 8.0, "adaptive_factor": 2.0, "adaptive_shrink": "reset",
               "advise_interval": 0.0, "advise_above": 0.0}
    m = model_for(MODE_ADAPTIVE, Workload("poisson", 0.01, 1.0, 50, options, 42))
    assert m["method"] == "markov chain" and m["wasted_fraction"] == chain_model(AdaptivePolicy(0.25, 8, 2), 0.5)[
        "wasted_fraction"]
    assert "caveat" not in m
    sim = model_for(MODE_ADAPTIVE, Workload("constant", 0.01, 1.0, 50, {**options, "advise_interval": 1.0}, 42))
    assert sim["method"] == "simulation" and sim["seed"] == 42 and "not modelled" in sim["caveat"]
    again = model_for(MODE_ADAPTIVE, Workload("constant", 0.01, 1.0, 50, options, 42))
    assert again["wasted_fraction"] == sim["wasted_fraction"]  # deterministic from the scenario's seed


def test_hookbench_simulate_replays_the_adaptive_policy(tmp_path: Path) -> None:
    sc = load_scenario(REPO / "scenarios" / "default.toml",
                       ['polling.styles=["cursor","adaptive"]', "changes.rate=0.01", "polling.adaptive_min=250ms",
                        "run.duration=2000s"])
    s = simulate_scenario(sc, tmp_path / "sim")
    m = s["modes"]["polling_adaptive"]
    assert m["lost"] == 0 and m["observed"] == s["changes"] and m["advised_requests"] == 0
    se = m["model"]["wasted_fraction_sd_per_poll"] / math.sqrt(m["requests"])
    assert abs(m["wasted_fraction"] - m["model"]["wasted_fraction"]) < 4 * se
    assert m["model"]["note"].startswith("markov chain")
    assert m["interval_s"]["max"] <= 8.0 and m["interval_s"]["p50"] >= 0.25


# --- config ------------------------------------------------------------------------------------------------


def _scenario(**polling: Any) -> dict[str, Any]:
    return {"name": "t", "run": {"duration": "5s"}, "resources": {"count": 3}, "changes": {"rate": 1.0},
            "polling": {"interval": "1s", **polling}}


def test_adaptive_min_above_max_names_both_keys() -> None:
    with pytest.raises(ScenarioError) as e:
        scenario_from_dict(_scenario(adaptive_min="10s", adaptive_max="2s"), "s.toml")
    assert e.value.key == "polling.adaptive_max" and e.value.source == "s.toml"
    assert "polling.adaptive_min (10 s) <= polling.adaptive_max (2 s)" in str(e.value)
    with pytest.raises(ScenarioError) as e:
        scenario_from_dict(_scenario(), "s.toml", ["polling.adaptive_min=9s"])
    assert e.value.key == "polling.adaptive_min" and e.value.source.startswith("--set")
    ok = scenario_from_dict(_scenario(adaptive_min="2s", adaptive_max="2s", adaptive_shrink="divide"), "s.toml")
    assert ok.polling.adaptive_shrink == "divide" and ok.polling.advise_interval == 0.0


@pytest.mark.parametrize("key,value,words", [("adaptive_shrink", "half", "reset, divide"),
                                             ("advise_interval", "-1s", "duration >= 0"),
                                             ("advise_above", -1, "number in [0, 1e6]"),
                                             ("adaptive_factor", 1, "(1, 100]")])
def test_bad_adaptive_keys_are_refused(key: str, value: Any, words: str) -> None:
    with pytest.raises(ScenarioError, match=f"polling.{key} = .*{words.replace('(', '.').replace('[', '.')}"):
        scenario_from_dict(_scenario(**{key: value}), "s.toml")


# --- the producer's advice ----------------------------------------------------------------------------------


def test_advice_counts_the_last_second_of_answers() -> None:
    now = [100.0]
    a = PollAdvice(2.0, 2, clock=lambda: now[0])
    assert [a.answer() for _ in range(3)] == [None, None, "2"]  # the third in one second: loaded
    now[0] += 0.5
    assert a.answer() == "2"
    now[0] += 1.0  # the first three are more than a second old
    assert a.answer() is None and a.answers == 5 and a.advised == 2


async def _get(client: TestClient, path: str) -> tuple[int, str | None]:
    resp = await client.get(path, headers={MODE_LABEL_HEADER: MODE_ADAPTIVE})
    await resp.read()
    return resp.status, resp.headers.get(POLL_INTERVAL_HEADER)


def _producer_answers(tmp_path: Path, **polling: Any) -> tuple[list[tuple[int, str | None]], dict[str, Any]]:
    sc = scenario_from_dict({**_scenario(**polling), "run": {"duration": "5s", "time_scale": 2}}, "t")

    async def go() -> tuple[list[tuple[int, str | None]], dict[str, Any]]:
        tmp_path.mkdir()
        app = create_app(sc, db_path=tmp_path / "store.db", start_changes=False)
        for advice in (getattr(cb, "__self__", None) for cb in app.on_response_prepare):
            if isinstance(advice, PollAdvice):  # every answer in the same instant: "the last second" holds them all,
                advice.clock = lambda: 100.0    # however slowly this machine serves the three requests
        async with TestClient(TestServer(app)) as client:
            answers = [await _get(client, p) for p in ("/changes?after=0", "/resources/0", "/changes?after=0")]
            stats = await (await client.get("/stats")).json()
        return answers, stats

    return asyncio.run(go())


def test_the_producer_advises_on_the_feed_while_loaded_and_not_by_default(tmp_path: Path) -> None:
    answers, stats = _producer_answers(tmp_path / "on", advise_interval="4s", advise_above=0)
    # time_scale 2: the nominal 4 s is 2 s live; only GET /changes carries it
    assert answers == [(200, "2"), (200, None), (200, "2")]
    assert stats["advice"] == {"interval_s": 2.0, "above_per_s": 0.0, "answers": 2, "advised": 2}
    bytes_on = stats["modes"][MODE_ADAPTIVE]["bytes_out"]
    answers, stats = _producer_answers(tmp_path / "off")
    assert answers == [(200, None), (200, None), (200, None)] and "advice" not in stats
    # the header's bytes are counted (twice: two advised answers), and nothing else changed
    assert bytes_on - stats["modes"][MODE_ADAPTIVE]["bytes_out"] == 2 * len(f"{POLL_INTERVAL_HEADER}: 2\r\n")
    loaded, stats = _producer_answers(tmp_path / "threshold", advise_interval="4s", advise_above=0.5)
    # 0.5 nominal = 1 live answer per second: the first answer is not above it, the second is (both in one second:
    # the clock is frozen above)
    assert [a[1] for a in loaded] == [None, None, "2"] and stats["advice"]["advised"] == 1


# --- the poller ----------------------------------------------------------------------------------------------

POLLER = '''
import json, sys, time
sys.argv = ["locust"]
sys.path.insert(0, ".")
from locust.env import Environment
from scenarios import pollers
from scenarios._poll_core import AdvisedFeed

class Resp:
    def __init__(self, status, body=None, headers=None):
        self.status_code, self.headers, self.error = status, headers or {}, None
        self.content = b"" if body is None else json.dumps(body).encode()
    def success(self): pass
    def failure(self, error): pass
    def __enter__(self): return self
    def __exit__(self, *exc): return False

class Client:
    def __init__(self, answers): self.answers, self.sent = list(answers), []
    def get(self, path, name, headers, catch_response):
        self.sent.append([path, headers])
        return self.answers.pop(0)

def page(seqs, headers=None, status=200):
    changes = [{"change_id": f"c{s}", "resource_id": 0, "seq": s, "version": 1, "t_change_ns": 1} for s in seqs]
    after = seqs[-1] if seqs else 0
    return Resp(status, {"changes": changes, "next_after": after, "has_more": False}, headers)
'''


def run_poller(script: str) -> Any:
    done = subprocess.run([sys.executable, "-c", POLLER + textwrap.dedent(script)], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_adaptive_poller_follows_its_policy_and_honours_the_producers_advice() -> None:
    out = run_poller('''
        pollers.CFG.hb_adaptive_min, pollers.CFG.hb_adaptive_max = 0.5, 8.0
        rows = []
        pollers._polls.write = rows.append
        pollers._observations.write = lambda row: None
        pollers.AdaptivePoller.host = "http://127.0.0.1:9"  # never contacted: the client is replaced
        user = pollers.AdaptivePoller(Environment(user_classes=[pollers.AdaptivePoller]))
        user.client = Client([page([1, 2]),                                  # useful: stay at 0.5 s
                              page([]),                                      # empty: 1 s
                              page([], {"X-Poll-Interval": "5"}),            # empty: 2 s, but advised 5 s
                              page([], {"Retry-After": "30"}, status=503),   # error: 4 s, Retry-After 30 s
                              page([], {"Retry-After": "7"}, status=200),    # Retry-After on a 200: ignored
                              page([3])])                                    # useful: back to 0.5 s
        user.next_ns = 1_000_000_000
        intended = []
        for _ in range(6):
            intended.append(user.next_ns)
            user.poll()
        print(json.dumps({"intended": intended, "next": user.next_ns, "rows": rows,
                          "recv": [r["t_recv_ns"] for r in rows], "labels": [s[1] for s in user.client.sent],
                          "tasks": [t.__qualname__ for t in pollers.AdaptivePoller.tasks]}))
    ''')
    rows, intended, recv = out["rows"], out["intended"], out["recv"]
    assert out["tasks"] == ["AdaptivePoller.poll"]  # not also _Poller's fixed-interval task
    assert all(label == {MODE_LABEL_HEADER: MODE_ADAPTIVE} for label in out["labels"])
    assert [r["interval_s"] for r in rows] == [0.5, 0.5, 1.0, 2.0, 4.0, 8.0]
    assert [r["advice_s"] for r in rows] == [None, None, 5.0, 30.0, None, None]
    assert [r["empty"] for r in rows] == [False, True, True, True, True, False]
    assert [r["mode"] for r in rows] == [MODE_ADAPTIVE] * 6 and rows[3]["error"] == "HTTP 503"
    assert [r["t_intended_ns"] for r in rows] == intended
    # the policy's interval from the intended time, or the advice from the answer's arrival if later
    assert intended[1] == intended[0] + S // 2 and intended[2] == intended[1] + S
    assert intended[3] == max(intended[2] + 2 * S, recv[2] + 5 * S) == recv[2] + 5 * S
    # (the fake answers at once, so the advice is counted from a time before the intended one)
    assert intended[4] == max(intended[3] + 4 * S, recv[3] + 30 * S) == recv[3] + 30 * S
    assert intended[5] == intended[4] + 8 * S
    assert out["next"] == intended[5] + S // 2
