"""Webhook + reconciliation poll end to end (issue 10, mode 4): under a receiver outage, and across a producer
crash, the hybrid loses nothing where a webhook of the same policy in the same run loses changes, and its
reconcile poll is what recovered them.

Real runs of the shipped scenarios on 127.0.0.1 (`hookbench run scenarios/faults/hybrid_outage.toml`,
`hybrid_crash.toml`); the checks are counts against the producer's ground truth, and the recovered changes'
mean latency against the model (T_rec/2 + round trip) within 3 standard errors.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from support import run_command

pytestmark = pytest.mark.integration


def test_hybrid_loses_nothing_where_fire_and_forget_does(tmp_path: Path) -> None:
    s, _, _ = run_command(["run", "scenarios/faults/hybrid_outage.toml"], tmp_path, timeout=180)
    assert s["partial"] is False
    f = s["faults"]
    (outage,) = f["receiver_down"]
    assert outage["mode"] == "refuse"
    ff, hybrid = f["modes"]["webhook_ff"], f["modes"]["hybrid_ff"]
    # the same changes, both fire-and-forget: the plain webhook loses what met the closed port ...
    assert ff["lost"] == ff["attempted_during_outage"] > 0
    # ... the hybrid loses nothing: every change whose one attempt failed was seen by its reconcile poll only
    assert hybrid["lost"] == 0 and f["modes"]["polling"]["lost"] == 0
    assert hybrid["reconcile_only"] == hybrid["gave_up"] > 0
    assert hybrid["duplicates_processed"] == 0

    m = s["modes"]["hybrid_ff"]
    assert m["recovered_by_reconcile"] >= m["reconcile_only"]
    assert m["requests"] == m["delivery_attempts"] + m["reconcile_requests"] and m["reconcile_requests"] > 0
    # a missed change is seen by the next reconcile poll: within T_rec (+ the poll's round trip and lateness)
    T_rec = m["reconcile_interval_s"]
    extra = m["reconcile_extra_latency_ms"]
    assert extra["n"] == m["recovered_by_reconcile"]
    assert 0 <= extra["p50"] <= T_rec * 1e3 + 500
    # model: uniform over the poll's period, mean T_rec/2 + round trip, s.e. T_rec/sqrt(12 n)
    se_ms = T_rec * 1e3 / math.sqrt(12 * extra["n"])
    assert abs(extra["mean"] - m["model"]["reconcile_latency_mean_ms"]) <= 3 * se_ms, (extra, m["model"])


def test_hybrid_loses_nothing_across_a_producer_crash(tmp_path: Path) -> None:
    s, _, _ = run_command(["run", "scenarios/faults/hybrid_crash.toml"], tmp_path, timeout=180)
    assert s["partial"] is False
    f = s["faults"]
    (crash,) = f["producer_crashes"]
    assert crash["restarted_ns"] is not None
    # both retry in memory: the plain webhook loses the queue the kill took with it, the hybrid nothing
    assert f["modes"]["webhook"]["lost"] > 0
    assert f["modes"]["hybrid"]["lost"] == 0 and f["modes"]["polling"]["lost"] == 0
    m = s["modes"]["hybrid"]
    # what no delivery brought, the reconcile poll did
    assert m["reconcile_only"] > 0 and m["recovered_by_reconcile"] >= m["reconcile_only"]
    assert f["modes"]["hybrid"]["duplicates_processed"] == 0
