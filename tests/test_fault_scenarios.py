"""The fault and security scenarios end to end: who loses data, and whether the defences hold (claims C6, C7).

Each test runs one shipped scenario as a user would (`hookbench run scenarios/...`), with a shorter window where
the scenario's faults all fall inside it (WINDOW_S), and checks the verdicts its header comment promises, against
the producer's ground truth.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from support import read_jsonl, run_command

pytestmark = pytest.mark.integration



# Shortened windows (CI time): the outage (5-15 s), the crash (10 s, down 2 s) and the receiver's faults all fall
# inside them, and each scenario's drain, which lets the last retries land, is kept.
# attack_mix: its attack load runs the whole window at attack.rate, so 15 s still send thousands of each kind.
WINDOW_S = {"receiver_outage": 20, "producer_crash": 20, "slow_receiver": 14, "attack_mix": 15}


def run(scenario: str, out: Path, with_dir: bool = False) -> Any:
    window = WINDOW_S.get(Path(scenario).stem)
    summary, run_dir, _ = run_command(["run", scenario, *(["--duration", str(window)] if window else [])], out,
                                      timeout=180)
    assert summary["partial"] is False
    return (summary, run_dir) if with_dir else summary


def straddling(starts: pd.Series, ends: pd.Series, run_dir: Path) -> int:
    """How many intervals [start, end] overlap a transition of the receiver's port, [t_begin_ns, t_ns] of a down or
    up row of faults.jsonl: while the port is being closed or opened, a request sent may meet either state."""
    spans = [(r["t_begin_ns"], r["t_ns"]) for r in read_jsonl(run_dir / "records" / "faults.jsonl")]
    return int(sum(((starts <= b) & (ends >= a)).sum() for a, b in spans))


def test_receiver_outage(tmp_path: Path) -> None:
    s, run_dir = run("scenarios/faults/receiver_outage.toml", tmp_path, with_dir=True)
    f = s["faults"]
    (outage,) = f["receiver_down"]
    assert outage["mode"] == "refuse" and outage["duration_s"] >= 0.3 * s["duration_s"]
    ff = f["modes"]["webhook_ff"]
    # fire-and-forget loses exactly the changes whose one attempt failed (met the closed port) ...
    assert ff["lost"] == ff["gave_up"] > 0
    # ... which are those whose attempt was sent in the outage, bar the attempts in flight while the port was
    # being closed or opened: one sent just before the recorded "up" may connect after the port listens again
    # (issue 18's third run: 49 lost, 50 attempted in the outage). The outage's times are the receiver's
    # recorded transitions, so the mismatch is bounded by the attempts that overlap one, counted from the tables.
    attempts = pd.read_parquet(run_dir / "deliveries.parquet")
    changes = pd.read_parquet(run_dir / "changes.parquet").set_index("change_id")
    first = attempts[(attempts["mode"] == "webhook_ff") & (attempts["attempt"] == 1)
                     & attempts["change_id"].isin(changes.index)]
    edge = straddling(first["t_send_ns"], first["t_done_ns"], run_dir)
    assert abs(ff["lost"] - ff["attempted_during_outage"]) <= edge, (ff, edge)
    # ... and those made during the outage, bar the changes whose own delivery overlapped a transition
    made = changes.loc[first["change_id"], "t_change_ns"].to_numpy()
    edge_made = straddling(pd.Series(made), first["t_done_ns"].reset_index(drop=True), run_dir)
    assert abs(ff["lost"] - f["changes_in_outage"]) <= edge_made, (ff["lost"], f["changes_in_outage"], edge_made)
    for mode in ("webhook", "webhook_outbox", "polling"):
        assert f["modes"][mode]["lost"] == 0, mode
    for mode in ("webhook", "webhook_ff", "webhook_outbox", "hybrid_ff"):
        assert f["modes"][mode]["duplicates_processed"] == 0, mode
    # webhook + reconciliation (issue 10): the same fire-and-forget policy loses nothing, because every change
    # whose one attempt failed was seen by its reconcile poll only
    hybrid = f["modes"]["hybrid_ff"]
    assert hybrid["lost"] == 0 and hybrid["reconcile_only"] == hybrid["gave_up"] > 0
    m = s["modes"]["hybrid_ff"]
    assert m["recovered_by_reconcile"] >= m["reconcile_only"]
    assert m["requests"] == m["delivery_attempts"] + m["reconcile_requests"] and m["reconcile_requests"] > 0
    # a missed change is seen by the next reconcile poll: within T_rec (+ the poll's round trip and lateness)
    T_rec = m["reconcile_interval_s"]
    extra = m["reconcile_extra_latency_ms"]
    assert extra["n"] == m["recovered_by_reconcile"]
    assert 0 <= extra["p50"] <= T_rec * 1e3 + 500
    # model: uniform over the poll's period, mean T_rec/2 + round trip, s.e. T_rec/sqrt(12 n); 4.5 s.e. two-sided
    # fail a correct run with probability 7e-6 (3 s.e. would be 0.27%: one run in 370)
    se_ms = T_rec * 1e3 / math.sqrt(12 * extra["n"])
    assert abs(extra["mean"] - m["model"]["reconcile_latency_mean_ms"]) <= 4.5 * se_ms, (extra, m["model"])


def test_producer_crash(tmp_path: Path) -> None:
    s = run("scenarios/faults/producer_crash.toml", tmp_path)
    f = s["faults"]
    (crash,) = f["producer_crashes"]
    assert crash["restarted_ns"] is not None and crash["down_s"] >= 2.0
    assert f["modes"]["webhook_outbox"]["lost"] == 0  # pending rows survived the kill
    assert f["modes"]["polling"]["lost"] == 0  # the feed is the store: the cursor catches up
    assert f["modes"]["webhook"]["lost"] > 0  # in-memory retries lost their queue with the process
    assert f["modes"]["webhook_outbox"]["duplicates_processed"] == 0
    # webhook + reconciliation (issue 10): the same in-memory retries lose nothing; what no delivery brought,
    # the reconcile poll did
    assert f["modes"]["hybrid"]["lost"] == 0 and f["modes"]["hybrid"]["duplicates_processed"] == 0
    m = s["modes"]["hybrid"]
    assert m["reconcile_only"] > 0 and m["recovered_by_reconcile"] >= m["reconcile_only"]


def test_attack_mix(tmp_path: Path) -> None:
    s = run("scenarios/security/attack_mix.toml", tmp_path)
    sec = s["security"]
    kinds = sec["kinds"]
    assert len(kinds) == 11
    # How many the attack load sends depends on the machine (4 Locust users aiming at 400/s over HTTPS); what the
    # verdict needs is power: with n >= 300 copies of a kind, a defence that let even 1% through would show at
    # least once with probability 1 - 0.99^300 = 95%. 300 per kind is ~28% of the nominal 400/s over 15 s.
    assert all(k["sent"] >= 300 for k in kinds.values()), kinds
    # Each user sends the kinds in turn, so every kind gets the same number of turns (± one per user). A replay
    # turn is skipped only while no acknowledged delivery is readable yet, which the 3 s warm-up (deliveries from
    # its start, records flushed every 0.5 s) rules out before the attack starts; 5% is the bound.
    others = min(k["sent"] for name, k in kinds.items() if name != "replayed_id")
    assert kinds["replayed_id"]["sent"] >= 0.95 * others, kinds
    assert sec["hostile_as_expected"] == sec["hostile_sent"], kinds  # replays copy acknowledged deliveries only
    assert sec["hostile_accepted"] == 0 and sec["receiver_5xx"] == 0
    assert sec["legit"]["accepted_fraction"] == 1.0
    assert sec["audit"]["complete"] is True
    assert sec["foreign"]["accepted"] == 0 and sec["audit"]["foreign_rows"] == 0  # no request counted as a sender's
    assert s["modes"]["webhook"]["lost"] == 0


def test_slow_receiver(tmp_path: Path) -> None:
    s = run("scenarios/faults/slow_receiver.toml", tmp_path)
    f = s["faults"]["modes"]
    assert f["webhook"]["lost"] == 0  # retries (honouring Retry-After) get through errors and shedding
    assert f["webhook_ff"]["lost"] > 0  # one attempt: every 500 or 503 is a lost change
    assert s["modes"]["webhook"]["retries"] > 0
    assert f["webhook"]["duplicates_processed"] == 0
