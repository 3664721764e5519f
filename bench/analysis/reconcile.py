"""A hybrid mode's two paths (webhook + reconciliation poll): which path brought each change first, what the
reconcile poll recovered and how late, and which of the mode's requests brought anything new.

Pure: the mode's rows in, its extra summary keys out (bench.analysis.summary adds them to the mode's section).
An observation `via` "pull" came from the mode's own reconcile poll; any other (the receiver's arrivals) from a
delivery. A request is *useful* when it brought some change first: a delivery of a change the poll had already
seen, or a poll that only re-read delivered changes, taught the consumer nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bench.analysis.stats import latency_stats
from bench.modes import HYBRID, Workload

__all__ = ["first_paths", "reconcile_keys", "reconcile_interval_s", "reconcile_model"]


def reconcile_interval_s(scenario: dict[str, Any]) -> float:
    """webhook.reconcile_interval as the run used it (after time scaling)."""
    return scenario["webhook"]["reconcile_interval"] / scenario["run"]["time_scale"]


def first_paths(obs: pd.DataFrame) -> pd.DataFrame:
    """One row per change: its first observation by the mode (mode, user, change_id, t_obs_ns) and `path`
    ("push" or "pull") that brought it; on a tie the delivery counts first."""
    o = obs.assign(path=np.where(obs["via"].eq("pull").fillna(False).to_numpy(dtype=bool), "pull", "push"))
    return o.sort_values(["t_obs_ns", "path"], kind="stable").drop_duplicates("change_id").reset_index(drop=True)


def reconcile_keys(obs: pd.DataFrame, changes: pd.DataFrame, polls: pd.DataFrame, attempts: pd.DataFrame,
                   interval_s: float) -> tuple[dict[str, Any], int]:
    """(the hybrid's own summary keys, its empty requests).

    `obs`: the mode's observations of window changes within the grace period (via push or pull); `changes`: the
    window's changes; `polls`: its reconcile polls counted as requests; `attempts`: its delivery attempts of
    window changes."""
    first = first_paths(obs)
    pulled = first[first["path"] == "pull"].merge(changes[["change_id", "t_change_ns"]], on="change_id")
    pushed_ids = set(obs.loc[~obs["via"].eq("pull").fillna(False), "change_id"])
    # a poll is useful when some change's first observation is its answer (same user, same receive time)
    firsts = pulled[["user", "t_obs_ns"]].drop_duplicates()
    useful = polls.merge(firsts, left_on=["user", "t_recv_ns"], right_on=["user", "t_obs_ns"], how="inner")
    useful_polls = int(len(useful.drop_duplicates(["user", "t_recv_ns"])))
    push_first = int((first["path"] == "push").sum())
    empty = (len(polls) - useful_polls) + max(0, len(attempts) - push_first)
    rtt = (polls["t_recv_ns"] - polls["t_send_ns"]) / 1e6
    return {
        "recovered_by_reconcile": int(len(pulled)),  # first seen by the reconcile poll
        "reconcile_only": int((~first["change_id"].isin(pushed_ids)).sum()),  # never delivered at all
        "reconcile_extra_latency_ms": latency_stats((pulled["t_obs_ns"] - pulled["t_change_ns"]) / 1e6),
        "reconcile_requests": int(len(polls)),
        "reconcile_useful_requests": useful_polls,
        "reconcile_interval_s": interval_s,
        "rtt_ms_p50": float(np.median(rtt)) if len(polls) else None,  # of its reconcile polls
    }, int(empty)


def reconcile_model(w: Workload, stream: str, rtt_ms: float | None) -> dict[str, Any]:
    """The registry's hybrid model on workload `w` (its interval: the reconcile interval), the measured median
    round trip of the reconcile polls added to the recovered changes' latency; `stream` is the run's change
    process (the model's is Poisson when it has no closed form)."""
    assert HYBRID.model is not None
    m = HYBRID.model(w)
    m["reconcile_latency_mean_ms"] += rtt_ms or 0.0
    m["note"] = ("analytic: requests per change = 1 + 1/(R*lambda*T_rec); wasted = 1/(1 + R*lambda*T_rec) when "
                 "every first delivery succeeds (a request is useful when it brings a change first); a change the "
                 "webhook misses is seen T_rec/2 after it on average (the poll's phase is uniform) + measured "
                 "median round trip")
    if w.process != stream:
        m["note"] += f"; the {stream} stream is modelled as Poisson with the same mean rate"
        m["assumes"] = "poisson_same_mean_rate"
    return m
