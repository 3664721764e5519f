"""Webhook + reconciliation poll (the hybrid mode) on hand-made tables: which path brought each change first,
what the reconcile poll recovered and how late, which requests were useful. Every value was worked out by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.analysis.claims import c6_loss
from bench.analysis.summary import Window, summarize
from bench.analysis.tables import Tables
from bench.config import load_scenario, scenario_from_dict
from bench.modes import HYBRID, Workload, model_for
from bench.orchestration.wiring import poller_argv
from bench.results import Summary
from reports.fmt import fmt_policy

REPO = Path(__file__).resolve().parents[1]


def ms(x: float) -> int:
    return int(x * 1_000_000)


W = Window(ms(1000), ms(2000), ms(3000))
MODES = ["webhook_ff", "hybrid_ff"]

SCENARIO = scenario_from_dict({
    "name": "hand", "seed": 3, "run": {"duration": 1, "warmup": 1, "drain": 1},
    "resources": {"count": 3}, "changes": {"process": "poisson", "rate": 2.0},
    "polling": {"interval": "250ms", "styles": ["cursor"]},
    "webhook": {"slo": "50ms", "reconcile_interval": "500ms",
                "subscriptions": [{"name": "webhook_ff", "policy": "fire_and_forget"},
                                  {"name": "hybrid_ff", "policy": "fire_and_forget"}]},
}, "test").to_dict()

CHANGES = [  # (id, resource, version, t ms); c1 is before the window, c7 after it
    ("c1", 0, 1, 500), ("c2", 0, 2, 1100), ("c3", 1, 1, 1200), ("c4", 1, 2, 1300),
    ("c5", 2, 1, 1500), ("c6", 0, 3, 1900), ("c7", 2, 2, 2100),
]

OBS = [  # (mode, change, t_obs ms, via)
    ("webhook_ff", "c2", 1101, "push"), ("webhook_ff", "c4", 1303, "push"), ("webhook_ff", "c5", 1504, "push"),
    # hybrid_ff: c2 delivered, then re-read by a reconcile poll (not a duplicate);
    ("hybrid_ff", "c2", 1102, "push"), ("hybrid_ff", "c1", 1260, "pull"), ("hybrid_ff", "c2", 1260, "pull"),
    # c3's one attempt met the outage: only the poll saw it (recovered, 60 ms);
    ("hybrid_ff", "c3", 1260, "pull"),
    # c4 delivered twice (a duplicate), re-read by a poll;
    ("hybrid_ff", "c4", 1305, "push"), ("hybrid_ff", "c4", 1310, "push"), ("hybrid_ff", "c4", 1760, "pull"),
    # c5: a poll saw it before its delivery arrived (recovered, 10 ms; delivered too);
    ("hybrid_ff", "c5", 1510, "pull"), ("hybrid_ff", "c5", 1520, "push"),
    # c6: never delivered, polled only after the grace period (lost)
    ("hybrid_ff", "c6", 3100, "pull"),
]


def rpoll(intended: float, recv: float, n_new: int, *, initial: bool = False) -> dict:
    return {"mode": "hybrid_ff", "user": 0, "resource_id": None, "t_intended_ns": ms(intended),
            "t_send_ns": ms(intended) + 100_000, "t_recv_ns": ms(recv), "status": 200, "empty": n_new == 0,
            "n_new": n_new, "bytes": 10, "error": None, "followup": False, "initial": initial}


POLLS = [rpoll(900, 910, 1, initial=True),  # the sync from seq 0: not a reconcile request
         rpoll(1000, 1010, 0),  # nothing new
         rpoll(1250, 1260, 3),  # c1, c2 (delivered already), c3 (first): useful
         rpoll(1500, 1510, 1),  # c5 first: useful
         rpoll(1750, 1760, 1),  # c4, delivered already: new to the cursor, not to the consumer
         rpoll(2000, 2010, 0)]  # the window's end is exclusive


def attempt(mode: str, change: str, n: int, status: int) -> dict:
    return {"mode": mode, "msg_id": f"msg_{change}", "change_id": change, "subscription_id": mode, "attempt": n,
            "t_send_ns": 0, "t_done_ns": 0, "status": status, "latency_ms": 1.0, "bytes_out": 400, "bytes_in": 90,
            "error": None if 200 <= status < 300 else "x", "outcome": "ok" if 200 <= status < 300 else "gave_up"}


DELIVERIES = [attempt(m, c, 1, s) for m in MODES
              for c, s in [("c1", 204), ("c2", 204), ("c3", 0), ("c4", 204), ("c5", 204), ("c6", 0)]]
DELIVERIES[DELIVERIES.index(attempt("hybrid_ff", "c4", 1, 204))] = attempt("hybrid_ff", "c4", 1, 0)  # timed out...
DELIVERIES.append(attempt("hybrid_ff", "c4", 2, 204))  # ... though it arrived: the retry is the duplicate


def tables() -> Tables:
    return Tables.from_frames(
        changes=[{"change_id": c, "resource_id": r, "seq": i + 1, "version": v, "t_change_ns": ms(t)}
                 for i, (c, r, v, t) in enumerate(CHANGES)],
        observations=[{"mode": m, "user": 0, "change_id": c, "t_obs_ns": ms(t), "via": via} for m, c, t, via in OBS],
        polls=POLLS, deliveries=DELIVERIES)


@pytest.fixture(scope="module")
def summary() -> dict:
    return summarize(tables(), W, SCENARIO, {}, modes=MODES)


def test_hybrid_counts_both_paths_as_one_consumer(summary: dict) -> None:
    m = summary["modes"]["hybrid_ff"]
    assert (m["observed"], m["lost"], m["duplicates"]) == (4, 1, 1)  # c6 lost; c4's second delivery
    # requests: 4 reconcile polls + 6 attempts (c4 twice); useful: 2 polls (c3, c5 first) + 2 attempts (c2, c4 first)
    assert (m["requests"], m["delivery_attempts"], m["reconcile_requests"]) == (10, 6, 4)
    assert (m["empty_requests"], m["reconcile_useful_requests"]) == (6, 2)
    assert m["wasted_fraction"] == 0.6 and m["requests_per_change"] == 2.0
    # first observations: c2 2 ms (push), c3 60 ms (pull), c4 5 ms (push), c5 10 ms (pull)
    assert m["latency_ms"] == {"mean": 19.25, "p50": 5.0, "p90": 60.0, "p99": 60.0, "max": 60.0, "n": 4}


def test_recovered_by_reconcile_and_its_latency(summary: dict) -> None:
    m = summary["modes"]["hybrid_ff"]
    assert m["recovered_by_reconcile"] == 2  # c3, c5: first seen by the poll
    assert m["reconcile_only"] == 1  # c3: never delivered at all
    assert m["reconcile_extra_latency_ms"] == {"mean": 35.0, "p50": 10.0, "p90": 60.0, "p99": 60.0, "max": 60.0,
                                               "n": 2}
    assert m["reconcile_interval_s"] == 0.5
    assert m["rtt_ms_p50"] == pytest.approx(9.9)  # of the reconcile polls


def test_a_plain_webhook_is_unchanged(summary: dict) -> None:
    m = summary["modes"]["webhook_ff"]
    assert (m["requests"], m["empty_requests"], m["observed"], m["lost"], m["duplicates"]) == (5, 2, 3, 2, 0)
    assert "recovered_by_reconcile" not in m and "reconcile_requests" not in m


def test_hybrid_model_uses_the_reconcile_interval(summary: dict) -> None:
    # R = 3, lambda = 2/s, T_rec = 0.5 s: R*lambda*T_rec = 3 changes per reconcile poll
    m = summary["modes"]["hybrid_ff"]["model"]
    assert m["requests_per_change"] == pytest.approx(1 + 1 / 3)
    assert m["reconcile_polls_per_change"] == pytest.approx(1 / 3)
    assert m["wasted_fraction"] == pytest.approx(1 / 4)
    assert m["reconcile_latency_mean_ms"] == pytest.approx(250.0 + 9.9)  # T_rec/2 + measured round trip
    assert "T_rec/2" in m["note"]
    # 5 resources at 0.1/s reconciled every 10 s: 5 changes per poll, 1 + 1/5 requests per change
    assert model_for("hybrid", Workload("constant", 0.1, 10.0, 5))["requests_per_change"] == pytest.approx(1.2)


def test_faults_row_of_the_hybrid(summary: dict) -> None:
    f = summary["faults"]["modes"]
    h = f["hybrid_ff"]
    assert (h["policy"], h["lost"], h["lost_change_ids"]) == ("fire_and_forget", 1, ["c6"])
    assert (h["recovered_by_reconcile"], h["reconcile_only"]) == (2, 1)
    assert h["late"] == 1  # c3, 60 ms > the 50 ms SLO
    assert "recovered_by_reconcile" not in f["webhook_ff"]
    assert fmt_policy(h["policy"], "hybrid_ff") == "fire-and-forget + reconciliation poll"
    assert fmt_policy("fire_and_forget", "webhook_ff") == "fire-and-forget"


def test_no_reconcile_rows_give_zeros_and_nulls() -> None:
    t = Tables.from_frames(**{**tables().__dict__, "polls": [], "observations": [
        o for o in tables().observations.to_dict("records") if o["via"] != "pull"]})
    m = summarize(t, W, SCENARIO, {}, modes=MODES)["modes"]["hybrid_ff"]
    assert (m["recovered_by_reconcile"], m["reconcile_only"], m["reconcile_requests"]) == (0, 0, 0)
    assert m["reconcile_extra_latency_ms"]["n"] == 0 and m["rtt_ms_p50"] is None
    assert (m["observed"], m["lost"], m["requests"], m["empty_requests"]) == (3, 2, 6, 3)


def test_c6_counts_a_reconciled_webhook_as_keeping_a_copy() -> None:
    outage = {"faults": {"modes": {"webhook_ff": {"lost": 40}, "hybrid_ff": {"lost": 0}}}}
    assert c6_loss({"hybrid_outage": Summary.from_dict(outage)}, [])["verdict"] == "holds only when"
    leaky = {"faults": {"modes": {"webhook_ff": {"lost": 40}, "hybrid_ff": {"lost": 2}}}}
    assert c6_loss({"x": Summary.from_dict(leaky)}, [])["verdict"] == "holds"


def test_pollers_get_one_reconcile_user_per_hybrid_and_the_live_interval(tmp_path) -> None:
    sc = load_scenario(REPO / "scenarios" / "faults" / "receiver_outage.toml",
                       ["run.time_scale=4", 'webhook.subscriptions=[{name="hybrid"},{name="webhook"},'
                        '{name="hybrid_ff", policy="fire_and_forget"}]'])
    argv = poller_argv(sc, REPO / "scenarios" / "pollers.py", "http://127.0.0.1:1", tmp_path, 10)
    assert argv[argv.index("--hb-reconcile") + 1] == "hybrid,hybrid_ff"
    assert float(argv[argv.index("--hb-reconcile-interval") + 1]) == 0.5  # 2 s nominal / time scale 4
    assert argv[argv.index("-u") + 1] == "3"  # the cursor poller + one reconcile poller per hybrid
    assert HYBRID.locust_user == "ReconcilePoller"
    plain = poller_argv(load_scenario(REPO / "scenarios" / "default.toml"), REPO / "scenarios" / "pollers.py",
                        "http://127.0.0.1:1", tmp_path, 10)
    assert "--hb-reconcile" not in plain and plain[plain.index("-u") + 1] == "51"  # cursor + 50 ETag pollers
