"""Adaptive polling live: one short `hookbench run` of the default scenario with the cursor and adaptive pollers
(real producer, receiver and Locust on 127.0.0.1), checked against the policy's model and its own rule.

Workload (why it is a fair test): 50 resources at 0.01 changes/s each, so the feed changes at L = 0.5/s; the
ladder 250 ms .. 8 s by 2 spans L*I = 0.125 .. 4, so the chain visits every step and its wasted fraction (0.684)
is far from what a poller stuck at either end would waste (0.88 at 250 ms, 0.02 at 8 s), from the "divide"
rule's (0.50) and from fixed polling at polling.interval (1 s: 0.61). time_scale 10 makes the ladder
25 ms .. 800 ms live: about 140 polls in the 12 s window, the shortest interval still 15x the round trip.
The standard error is the model's own (the chain's asymptotic variance / polls): successive outcomes are
negatively correlated (an empty poll makes the next wait longer), so the binomial s.e. in the summary is
about 2x too wide and would make the test weak. The measured waste must lie within K_SE = 5 of them: a Monte Carlo
of this very workload (200,000 12 s windows of the policy over Poisson changes, bench.adaptive.replay, seeded)
gives |z| > 5 in 5e-6 of them and |z| > 4.5 in 2.5e-5 (on ~127 polls the tail is heavier than normal, on the low
side), and never fewer than 64 polls (mean 127, sd 13). At 5 s.e. (+-0.10) the check tells the model from the
"divide" rule's 0.50 and from either end of the ladder, not from fixed 1 s polling (0.61, 3.7 s.e.): that the
poller follows the policy step by step is checked exactly, poll by poll, below. The producer advises every
/changes answer (advise_above = 0) with 10 ms live, less than the shortest interval, so the advice reaches the
poller and is counted without changing what the model describes (whether advice is honoured is
tests/test_adaptive.py's) -- unless an answer arrives more than 15 ms after its intended time, as on a busy
machine: the next poll then waits longer than its step, which can only lower the waste; that share is measured
from the polls and allowed for, on the low side only.

Run alone with:
flock /tmp/hookbench-bench.lock .venv/bin/python -m pytest -m integration tests/test_adaptive_run.py
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from support import run_command

from bench.adaptive import AdaptivePolicy
from bench.modes import MODE_ADAPTIVE

pytestmark = pytest.mark.integration

SCALE = 10
ARGV = ["run", "scenarios/default.toml", "--duration", "12", "--set", "run.warmup=2s", "--set", "run.drain=2s",
        "--set", f"run.time_scale={SCALE}", "--set", 'polling.styles=["cursor","adaptive"]',
        "--set", "changes.rate=0.01", "--set", "polling.adaptive_min=250ms", "--set", "polling.adaptive_max=8s",
        "--set", "polling.adaptive_factor=2", "--set", "polling.advise_interval=100ms",
        "--set", "polling.advise_above=0"]
POLICY = AdaptivePolicy(0.25 / SCALE, 8.0 / SCALE, 2.0)  # live
K_SE = 5.0  # standard errors either way: exceeded in 5e-6 of simulated windows (see above)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    summary, run_dir, _ = run_command(ARGV, tmp_path_factory.mktemp("runs"), timeout=120)
    return summary, run_dir


def test_adaptive_polling_loses_nothing(run: tuple[dict[str, Any], Path]) -> None:
    summary, _ = run
    m = summary["modes"][MODE_ADAPTIVE]
    assert summary["changes"] > 0
    assert (m["lost"], m["duplicates"], m["errors"]) == (0, 0, 0) and m["observed"] == summary["changes"]
    assert m["bytes_per_change"] and m["cpu_s_per_change"] is not None  # charged to its own label


def _lengthened_share(summary: dict[str, Any], run_dir: Path) -> float:
    """How much the waste of the window's polls fell because some waited longer than their step (advice counted
    from a late answer): mean over them of e^(-L*step) - e^(-L*waited), L the feed's live change rate. >= 0; 0 when
    every poll went at its step."""
    window = json.loads((run_dir / "manifest.json").read_text())["window"]
    polls = pd.read_parquet(run_dir / "polls.parquet")
    mine = polls[(polls["mode"] == MODE_ADAPTIVE) & ~polls["followup"]].sort_values("t_intended_ns")
    waited = mine["t_intended_ns"].diff() / 1e9
    t = mine["t_intended_ns"]
    inside = ~mine["initial"] & (t >= window["start_ns"]) & (t < window["end_ns"])
    L = summary["workload"]["rate_per_resource"] * summary["workload"]["resources"]
    step, waited = mine.loc[inside, "interval_s"].to_numpy(float), waited[inside].to_numpy(float)
    return float(np.mean(np.exp(-L * step) - np.exp(-L * np.fmax(waited, step))))


def test_measured_waste_is_within_5_standard_errors_of_the_model(run: tuple[dict[str, Any], Path]) -> None:
    summary, run_dir = run
    m = summary["modes"][MODE_ADAPTIVE]
    model = m["model"]
    assert model["note"].startswith("markov chain")
    se = model["wasted_fraction_se"]
    assert se == pytest.approx(model["wasted_fraction_sd_per_poll"] / math.sqrt(m["requests"]))
    # enough polls for the chain's asymptotic s.e. to apply: fewer than 64 never came in 200,000 simulated windows
    assert m["requests"] >= 60, m["requests"]
    lengthened = _lengthened_share(summary, run_dir)
    z = (m["wasted_fraction"] - model["wasted_fraction"]) / se
    assert -K_SE - lengthened / se <= z <= K_SE, (
        f"measured {m['wasted_fraction']:.3f} over {m['requests']} polls, model {model['wasted_fraction']:.3f} "
        f"+- {se:.3f}: z = {z:.2f} (waste removed by polls that waited past their step: {lengthened:.4f})")


def test_every_poll_follows_the_policy_and_no_advice_came_too_soon(run: tuple[dict[str, Any], Path]) -> None:
    summary, run_dir = run
    polls = pd.read_parquet(run_dir / "polls.parquet")
    mine = polls[(polls["mode"] == MODE_ADAPTIVE) & ~polls["followup"]].sort_values("t_intended_ns")
    steps = {round(x, 9): k for k, x in enumerate(POLICY.ladder())}
    k = mine["interval_s"].round(9).map(steps)
    assert k.notna().all(), sorted(set(mine["interval_s"]))  # every interval is a step of the ladder
    useful = ~mine["empty"]
    expected = [POLICY.step(int(a), bool(u)) for a, u in zip(k.iloc[:-1], useful.iloc[:-1])]
    assert list(k.iloc[1:].astype(int)) == expected  # the step after every poll is the rule's
    gaps = mine["t_intended_ns"].diff().iloc[1:].to_numpy() / 1e9
    assert (gaps >= mine["interval_s"].iloc[1:].to_numpy() - 1e-9).all()  # advice only ever lengthens
    # every answer carried the producer's advice (loaded from the first answer), 100 ms nominal = 10 ms live
    m = summary["modes"][MODE_ADAPTIVE]
    assert m["advised_requests"] == m["requests"] > 0
    assert set(mine["advice_s"].dropna().round(6)) == {0.01}
