"""The `overload` section of a load run's summary: per step offered vs achieved, latency, errors, the knee.

Inputs are raw rows: each request the Locust users made (with its *intended* send time), the step
boundaries the ramp shape recorded, and the servers' own per-second counters. The first `settle`
seconds of every step are excluded. Latency is given twice: from the send (what Locust reports) and
from the intended time (what a user of the system waited, coordinated omission included).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bench.analysis.stats import percentile

__all__ = ["overload_section", "step_intervals", "ERROR_LIMIT", "ACHIEVED_MIN"]

ERROR_LIMIT = 0.01  # more than 1% failed requests in a step marks the knee
ACHIEVED_MIN = 0.95  # achieved < 95% of offered marks the knee
RECOVERY_FACTOR = 1.5  # recovered once every later second's p99 is within 1.5x the first step's


def step_intervals(steps: pd.DataFrame) -> list[tuple[int, int, int, int]]:
    """(step, start_ns, end_ns, users) from the shape's rows; the end row (step -1) closes the last."""
    rows = steps.sort_values("t_ns").to_dict("records")
    out = []
    for row, nxt in zip(rows, rows[1:]):
        if row["step"] >= 0:
            out.append((int(row["step"]), int(row["t_ns"]), int(nxt["t_ns"]), int(row["users"])))
    return out


def _pcts(values: np.ndarray) -> dict[str, float | None]:
    v = np.sort(values[np.isfinite(values)])
    if len(v) == 0:
        return {"p50": None, "p95": None, "p99": None, "max": None, "n": 0}
    return {"p50": percentile(v, 50), "p95": percentile(v, 95), "p99": percentile(v, 99), "max": float(v[-1]),
            "n": int(len(v))}


def _deliveries(requests: pd.DataFrame) -> pd.DataFrame:
    """One row per delivery (or poll): its intended time, attempts, final status and times."""
    if "msg_id" in requests.columns and requests["msg_id"].notna().any():
        g = requests.sort_values("attempt").groupby("msg_id")
        return pd.DataFrame({"t_intended_ns": g["t_intended_ns"].first(), "attempts": g.size(),
                             "status": g["status"].last(), "t_send_ns": g["t_send_ns"].last(),
                             "t_recv_ns": g["t_recv_ns"].last()}).reset_index(drop=True)
    out = requests[["t_intended_ns", "status", "t_send_ns", "t_recv_ns"]].copy()
    out["attempts"] = 1
    return out


def _ok(status: pd.Series) -> pd.Series:
    return status.between(200, 399)  # 2xx, and 304 for polls


def overload_section(requests: pd.DataFrame, steps: pd.DataFrame, server_stats: pd.DataFrame, *,
                     rate_per_user: float, settle_s: float, slo_p99_ms: float, ramp_steps: int,
                     server_counters: bool = True) -> dict[str, Any]:
    """`requests`: columns t_intended_ns, t_send_ns, t_recv_ns, status, error, attempt, msg_id (storm) or
    none of the last two (polls). `server_stats`: t_ns, pending (backlog) and in_flight, may be empty.
    `ramp_steps`: how many steps the ramp has; a step numbered `ramp_steps` is the recovery step.
    `server_counters` False (an external target, whose /stats is not read): the steps have no `backlog_end` and
    `in_flight_end` keys at all; everything else comes from the client's rows alone."""
    out_steps: list[dict[str, Any]] = []
    intervals = step_intervals(steps)
    all_dels = _deliveries(requests)
    for step, start, end, users in intervals:
        a = start + int(settle_s * 1e9)
        dur = (end - a) / 1e9
        if dur <= 0:
            continue
        attempts = requests[(requests["t_send_ns"] >= a) & (requests["t_send_ns"] < end)]
        dels = all_dels[(all_dels["t_intended_ns"] >= a) & (all_dels["t_intended_ns"] < end)]
        ok = dels[_ok(dels["status"])]
        # throughput: successful answers *received* in the step, whenever they were intended (a step that
        # falls behind still delivers; counting by intended time would truncate the last step)
        served = requests[(requests["t_recv_ns"] >= a) & (requests["t_recv_ns"] < end) & _ok(requests["status"])]
        st = attempts["status"]
        err = attempts["error"].fillna("") if "error" in attempts else pd.Series("", index=attempts.index)
        n_att = len(attempts)
        stats_at_end = server_stats[(server_stats["t_ns"] <= end)].tail(1)
        row: dict[str, Any] = {
            "step": step, "users": users, "start_ns": start, "end_ns": end, "measured_s": dur,
            "offered_rps": users * rate_per_user,
            "intended_rps": len(dels) / dur,
            "achieved_rps": len(served) / dur,
            "latency_ms": _pcts(((attempts["t_recv_ns"] - attempts["t_send_ns"]) / 1e6).to_numpy(dtype=float)),
            "latency_from_intended_ms": _pcts(((ok["t_recv_ns"] - ok["t_intended_ns"]) / 1e6).to_numpy(dtype=float)),
            "error_rate": float((~_ok(st)).mean()) if n_att else None,
            "rate_429": float((st == 429).mean()) if n_att else None,
            "rate_503": float((st == 503).mean()) if n_att else None,
            "timeout_rate": float(((st == 0) & err.str.contains("timeout", case=False)).mean()) if n_att else None,
            "retry_amplification": float(dels["attempts"].mean()) if len(dels) else None,
        }
        if server_counters:
            row["backlog_end"] = (None if stats_at_end.empty or pd.isna(stats_at_end["pending"].iloc[0])
                                  else int(stats_at_end["pending"].iloc[0]))
            row["in_flight_end"] = (None if stats_at_end.empty or pd.isna(stats_at_end["in_flight"].iloc[0])
                                    else int(stats_at_end["in_flight"].iloc[0]))
        out_steps.append(row)
    # steps numbered past the ramp are the recovery step (an interrupted run may not have reached it)
    ramp = [st for st in out_steps if st["step"] < ramp_steps]
    after = [iv for iv in intervals if iv[0] >= ramp_steps]
    rec, note = (_recovery(requests, [intervals[0], after[0]], settle_s) if after and intervals
                 else (None, "no recovery step was run"))
    # no row at all (the users never ran, or every row was lost): every step would show "achieved 0/s" and the
    # knee would land on step 0, a verdict on the server drawn from an absence of data
    knee = _knee(ramp, slo_p99_ms) if len(requests) else {
        "reached": False, "step": None, "offered_rps": None, "ceiling_rps": None,
        "reasons": ["no request was recorded: no knee can be placed"]}
    return {"steps": out_steps, "knee": knee, "recovery_s": rec, "recovery_note": note, "slo_p99_ms": slo_p99_ms}


def _knee(steps: list[dict[str, Any]], slo_p99_ms: float) -> dict[str, Any]:
    for s in steps:
        reasons = []
        p99 = s["latency_from_intended_ms"]["p99"]
        if p99 is not None and p99 > slo_p99_ms:
            reasons.append(f"p99 from intended time {p99:.0f} ms > SLO {slo_p99_ms:.0f} ms")
        if s["error_rate"] is not None and s["error_rate"] > ERROR_LIMIT:
            reasons.append(f"errors {s['error_rate']:.1%} > {ERROR_LIMIT:.0%}")
        if s["achieved_rps"] < ACHIEVED_MIN * s["offered_rps"]:
            reasons.append(f"achieved {s['achieved_rps']:.0f}/s < {ACHIEVED_MIN:.0%} of offered "
                           f"{s['offered_rps']:.0f}/s")
        if reasons:
            return {"reached": True, "step": s["step"], "offered_rps": s["offered_rps"], "reasons": reasons}
    ceiling = max((s["offered_rps"] for s in steps), default=None)
    return {"reached": False, "step": None, "offered_rps": None, "ceiling_rps": ceiling,
            "reasons": [f"not reached, ceiling {ceiling:.0f}/s" if ceiling is not None else "no steps measured"]}


def _per_second_p99(requests: pd.DataFrame, start: int, end: int) -> list[tuple[float, float]]:
    d = requests[(requests["t_intended_ns"] >= start) & (requests["t_intended_ns"] < end) & _ok(requests["status"])]
    if d.empty:
        return []
    sec = ((d["t_intended_ns"] - start) // 1_000_000_000).astype(int)
    lat = (d["t_recv_ns"] - d["t_intended_ns"]) / 1e6
    return [(float(s), percentile(np.sort(v.to_numpy(dtype=float)), 99)) for s, v in lat.groupby(sec)]


def _recovery(requests: pd.DataFrame, intervals: list[tuple[int, int, int, int]],
              settle_s: float) -> tuple[float | None, str]:
    """Seconds into the recovery step until per-second p99 (from intended time) stays within
    RECOVERY_FACTOR of the first step's median per-second p99 -- or None and why."""
    if len(intervals) < 2:
        return None, "fewer than two steps were measured"
    _, s0, e0, _ = intervals[0]
    base = [p for _, p in _per_second_p99(requests, s0 + int(settle_s * 1e9), e0)]
    if not base:
        return None, "no successful request in the first step to compare with"
    limit = RECOVERY_FACTOR * float(np.median(base))
    _, sr, er, _ = intervals[-1]
    series = _per_second_p99(requests, sr, er)
    for i, (sec, _) in enumerate(series):
        if all(p <= limit for _, p in series[i:]):
            return sec, f"p99 back within {RECOVERY_FACTOR}x of the first step's ({limit:.1f} ms)"
    return None, f"p99 never came back within {RECOVERY_FACTOR}x of the first step's ({limit:.1f} ms) in the step"
