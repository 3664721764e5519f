"""The overload section on fixed, hand-made requests: steps, knee, recovery."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.analysis.overload import overload_section, step_intervals

S = 1_000_000_000  # ns per second


def steps_table(users: list[int], seconds: int = 10) -> pd.DataFrame:
    rows = [{"t_ns": i * seconds * S, "step": i, "users": u} for i, u in enumerate(users)]
    rows.append({"t_ns": len(users) * seconds * S, "step": -1, "users": 0})
    return pd.DataFrame(rows)


def storm(step_start: int, n: int, *, latency_ms: float, status: int = 204, late_ms: float = 0.0,
          retry_first: bool = False, tag: str = "") -> list[dict]:
    """n deliveries evenly spread over a 10 s step starting at `step_start` s."""
    rows = []
    for i in range(n):
        t = step_start * S + int(i * 10 * S / n)
        send = t + int(late_ms * 1e6)
        if retry_first:
            rows.append({"msg_id": f"{tag}{i}", "attempt": 1, "t_intended_ns": t, "t_send_ns": send,
                         "t_recv_ns": send + 1_000_000, "status": 503, "error": None})
            send += 100_000_000
        rows.append({"msg_id": f"{tag}{i}", "attempt": 2 if retry_first else 1, "t_intended_ns": t, "t_send_ns": send,
                     "t_recv_ns": send + int(latency_ms * 1e6), "status": status, "error": None})
    return rows


def test_step_intervals_are_closed_by_the_next_row() -> None:
    assert step_intervals(steps_table([10, 20])) == [(0, 0, 10 * S, 10), (1, 10 * S, 20 * S, 20)]


def test_steps_knee_and_rates() -> None:
    # step 0: 100 deliveries in 10 s (10 users x 1/s... offered 100/s at rate_per_user=10), all fine
    # step 1: 200 offered, 1 in 10 first attempts shed with 503 then retried; latency 50 ms
    # step 2: 300 offered but p99 from intended is 400 ms (sent 350 ms late)
    rows = (storm(0, 1000, latency_ms=2, tag="a")
            + storm(10, 2000, latency_ms=50, tag="b")
            + storm(20, 3000, latency_ms=50, late_ms=350, tag="c"))
    rows[1000]["status"] = 503  # one failed attempt in step 1 (no retry recorded)
    o = overload_section(pd.DataFrame(rows), steps_table([10, 20, 30]),
                         pd.DataFrame(columns=["t_ns", "in_flight", "pending"]),
                         rate_per_user=10.0, settle_s=2.0, slo_p99_ms=100.0, ramp_steps=99)
    s0, s1, s2 = o["steps"]
    assert (s0["users"], s0["offered_rps"], s0["measured_s"]) == (10, 100.0, 8.0)
    assert s0["intended_rps"] == pytest.approx(800 / 8)  # the first 2 s are settling
    assert s0["achieved_rps"] == pytest.approx(100.0) and s0["error_rate"] == 0.0
    assert s0["latency_ms"]["p99"] == pytest.approx(2.0) and s0["retry_amplification"] == 1.0
    assert s1["latency_from_intended_ms"]["p99"] == pytest.approx(50.0)
    assert s2["latency_ms"]["p99"] == pytest.approx(50.0)  # what Locust would show ...
    assert s2["latency_from_intended_ms"]["p99"] == pytest.approx(400.0)  # ... and what users waited
    assert o["knee"]["reached"] and o["knee"]["step"] == 2 and o["knee"]["offered_rps"] == 300.0
    assert "p99 from intended time 400 ms > SLO 100 ms" in o["knee"]["reasons"]


def test_errors_and_amplification_mark_the_knee() -> None:
    rows = storm(0, 1000, latency_ms=2, tag="a") + storm(10, 2000, latency_ms=2, retry_first=True, tag="b")
    o = overload_section(pd.DataFrame(rows), steps_table([10, 20]),
                         pd.DataFrame(columns=["t_ns", "in_flight", "pending"]),
                         rate_per_user=10.0, settle_s=0.0, slo_p99_ms=100.0, ramp_steps=99)
    s1 = o["steps"][1]
    assert s1["retry_amplification"] == 2.0
    # attempts are counted by send time: the 20 retries sent after the step's end (intended >= 19.9 s) are not
    assert s1["rate_503"] == pytest.approx(2000 / 3980) and s1["error_rate"] == pytest.approx(2000 / 3980)
    assert o["knee"]["step"] == 1 and any("errors 50.3% > 1%" in r for r in o["knee"]["reasons"])


def test_no_knee_reports_the_ceiling() -> None:
    rows = storm(0, 1000, latency_ms=2, tag="a") + storm(10, 2000, latency_ms=2, tag="b")
    o = overload_section(pd.DataFrame(rows), steps_table([10, 20]),
                         pd.DataFrame(columns=["t_ns", "in_flight", "pending"]),
                         rate_per_user=10.0, settle_s=0.0, slo_p99_ms=100.0, ramp_steps=99)
    assert o["knee"] == {"reached": False, "step": None, "offered_rps": None, "ceiling_rps": 200.0,
                         "reasons": ["not reached, ceiling 200/s"]}


def test_no_rows_place_no_knee() -> None:
    """Steps ran but no request row exists (the users never sent, or their rows were lost): "achieved 0/s" at
    step 0 would be a verdict drawn from missing data, so there is no knee, and the reason says why."""
    empty = pd.DataFrame(columns=["t_intended_ns", "t_send_ns", "t_recv_ns", "status", "error", "attempt", "msg_id"])
    o = overload_section(empty, steps_table([10, 20]), pd.DataFrame(columns=["t_ns", "in_flight", "pending"]),
                         rate_per_user=10.0, settle_s=0.0, slo_p99_ms=100.0, ramp_steps=99)
    assert [s["achieved_rps"] for s in o["steps"]] == [0.0, 0.0]
    assert o["knee"] == {"reached": False, "step": None, "offered_rps": None, "ceiling_rps": None,
                         "reasons": ["no request was recorded: no knee can be placed"]}


def test_recovery_time_after_the_burst() -> None:
    # step 0 baseline 2 ms; step 1 the burst; step 2 back at step 0's users, slow for its first 3 s
    rows = storm(0, 1000, latency_ms=2, tag="a") + storm(10, 3000, latency_ms=300, tag="b")
    rec = storm(20, 1000, latency_ms=2, tag="c")
    for r in rec:
        if r["t_intended_ns"] < 23 * S:
            r["t_recv_ns"] += 200_000_000
    o = overload_section(pd.DataFrame(rows + rec), steps_table([10, 30, 10]),
                         pd.DataFrame(columns=["t_ns", "in_flight", "pending"]),
                         rate_per_user=10.0, settle_s=0.0, slo_p99_ms=100.0, ramp_steps=2)
    assert o["recovery_s"] == 3.0
    assert o["knee"]["step"] == 1  # the recovery step is not part of the ramp
