"""The `faults` section of summary.json: who lost what, against the producer's ground truth, change by change.

For each mode: changes, observed, lost, duplicates delivered and duplicates processed after dedup,
changes detected later than the SLO, and the worst delay; plus the receiver's down intervals and
the producer's crashes as they actually happened (from the processes' own records).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from bench.analysis.tables import Tables, is_foreign
from bench.modes import HYBRID, kind_of

if TYPE_CHECKING:
    from bench.analysis.summary import Window

__all__ = ["faults_section", "down_intervals"]


def down_intervals(events: pd.DataFrame, end_ns: int) -> list[tuple[int, int, str]]:
    """(start_ns, end_ns, mode) of each receiver outage; one still open at the end closes at `end_ns`."""
    rows = events[(events["source"] == "receiver") & events["event"].isin(["down", "up"])].sort_values("t_ns")
    out: list[tuple[int, int, str]] = []
    start: tuple[int, str] | None = None
    for t, event, mode in zip(rows["t_ns"], rows["event"], rows["mode"]):
        if event == "down" and start is None:
            start = (int(t), str(mode))
        elif event == "up" and start is not None:
            out.append((start[0], int(t), start[1]))
            start = None
    if start is not None:
        out.append((start[0], end_ns, start[1]))
    return out


def _crashes(events: pd.DataFrame) -> list[dict[str, Any]]:
    ev = events[events["source"] == "orchestrator"].sort_values("t_ns")
    kills = ev.loc[ev["event"] == "producer_killed", "t_ns"].tolist()
    restarts = ev.loc[ev["event"] == "producer_restarted", "t_ns"].tolist()
    return [{"killed_ns": int(k), "restarted_ns": int(r) if i < len(restarts) else None,
             "down_s": (restarts[i] - k) / 1e9 if i < len(restarts) else None}
            for i, (k, r) in enumerate(zip(kills, restarts + [None] * len(kills)))]


def _inside(times: pd.Series, intervals: list[tuple[int, int, str]]) -> pd.Series:
    mask = pd.Series(False, index=times.index)
    for a, b, _ in intervals:
        mask |= (times >= a) & (times < b)
    return mask


def faults_section(t: Tables, window: Window, scenario: dict[str, Any], det: pd.DataFrame,
                   mode_summaries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    changes = t.changes[(t.changes["t_change_ns"] >= window.start_ns) & (t.changes["t_change_ns"] < window.end_ns)]
    outages = down_intervals(t.events, window.grace_end_ns)
    slo_ms = scenario["webhook"]["slo"] * 1e3
    policies = {d["name"]: d["policy"] for d in scenario["webhook"]["subscriptions"]}
    legit = t.arrivals[t.arrivals["attack"].isna() & ~is_foreign(t.arrivals)
                       & t.arrivals["change_id"].isin(changes["change_id"])]
    modes: dict[str, Any] = {}
    for mode, s in mode_summaries.items():
        lat = det.loc[det["mode"] == mode, "latency_ms"].to_numpy(dtype=float)
        row: dict[str, Any] = {
            "policy": policies.get(mode, "polling"), "changes": int(len(changes)), "observed": s["observed"],
            "lost": s["lost"], "coalesced": s["coalesced"], "duplicates_delivered": s["duplicates"],
            "duplicates_processed": None, "late": int((lat > slo_ms).sum()),
            "max_delay_ms": float(lat.max()) if len(lat) else None,
        }
        if kind_of(mode).is_push:  # sent to the receiver: what it accepted, and when each first attempt went
            mine = legit[legit["endpoint"] == mode]
            accepted = mine[mine["verdict"] == "accepted"].groupby("change_id").size()
            row["duplicates_processed"] = int((accepted - 1).clip(lower=0).sum())
            attempts = t.deliveries[(t.deliveries["mode"] == mode)
                                    & t.deliveries["change_id"].isin(changes["change_id"])]
            first = attempts.sort_values("attempt").groupby("change_id")["t_send_ns"].min()
            row["attempted_during_outage"] = int(_inside(first, outages).sum())
            row["gave_up"] = int((attempts["outcome"] == "gave_up").sum())
        if kind_of(mode) is HYBRID:  # what its safety net saw first, and what only it saw
            row["recovered_by_reconcile"] = s["recovered_by_reconcile"]
            row["reconcile_only"] = s["reconcile_only"]
        if kind_of(mode).is_stream:  # each reconnect resumes after the last event seen (Last-Event-ID)
            row["reconnects"] = s.get("reconnects")
        if not s["coalesced"]:  # with coalescing, unseen is not the same as lost
            seen = set(det.loc[det["mode"] == mode, "change_id"])
            row["lost_change_ids"] = [c for c in changes["change_id"] if c not in seen][:20]
        modes[mode] = row
    return {
        "receiver_down": [{"start_ns": a, "end_ns": b, "mode": m, "duration_s": (b - a) / 1e9} for a, b, m in outages],
        "producer_crashes": _crashes(t.events),
        "changes_in_outage": int(_inside(changes["t_change_ns"], outages).sum()),
        "slo_s": scenario["webhook"]["slo"],
        "modes": modes,
    }
