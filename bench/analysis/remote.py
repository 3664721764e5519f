"""What a `hookbench run` whose pollers ran on Locust workers (`--master`) adds to its analysis: the pollers' rows
moved to the master's clock, and the summary's `records`, `clocks` and remote-worker saturation.

The producer's change times and the receiver's arrivals are on the master's machine; a poller's send, receive
and observation times are on its worker's clock. Before latency (observation minus change) is computed, each
worker's times are corrected by the offset the master measured over Locust's messaging (bench.analysis.clocks).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pandas as pd

from bench.analysis.clocks import clocks_section, correct_frame
from bench.analysis.saturation import locust_cpu_reasons
from bench.analysis.tables import Tables
from bench.analysis.workers import health_samples, health_summary, records_section

__all__ = ["POLL_NS_COLS", "corrected_tables", "remote_sections"]

POLL_NS_COLS = ("t_intended_ns", "t_send_ns", "t_recv_ns")  # a polls row's worker-clock times


def corrected_tables(t: Tables, estimates: dict[int, dict[str, dict[str, Any]]]) -> Tables:
    """`t` with every worker's polls and observations on the master's clock (unchanged without estimates)."""
    if not estimates:
        return t
    return dataclasses.replace(
        t, polls=correct_frame(t.polls, estimates, time_col="t_send_ns", ns_cols=POLL_NS_COLS),
        observations=correct_frame(t.observations, estimates, time_col="t_obs_ns", ns_cols=("t_obs_ns",)))


def _first_latency(observations: pd.DataFrame, changes: pd.DataFrame) -> pd.DataFrame:
    """Per (mode, change) the first observation, its worker and its latency in ms (observation minus change)."""
    if not len(observations):
        return pd.DataFrame({"worker": pd.Series(dtype="Int64"), "latency_ms": pd.Series(dtype=float)})
    first = observations.sort_values("t_obs_ns").drop_duplicates(["mode", "change_id"])
    out = first.merge(changes[["change_id", "t_change_ns"]], on="change_id", how="inner")
    out["latency_ms"] = (out["t_obs_ns"] - out["t_change_ns"]) / 1e6
    return out[["mode", "worker", "latency_ms"]]


def remote_sections(raw: Tables, corrected: Tables, *, estimates: dict[int, dict[str, dict[str, Any]]],
                    health: pd.DataFrame, wire: dict[str, Any] | None, locust_requests: int | None, poll_files: int,
                    bound_s: float, local_pids: set[int], host: str) -> dict[str, Any]:
    """`records` (polls rows per worker against what each declared and Locust counted), `clocks` (each worker's
    offset, and its pollers' latency p50/p99 before and after the correction), the workers' health, and the
    saturation reasons their own CPU gives."""
    rec = records_section(raw.polls, files=poll_files, locust_requests=locust_requests, wire=wire, stem="polls")
    workers = [int(w) for w in rec["per_worker"]] if "wire" in rec else []
    clocks = clocks_section(estimates, bound_s, raw=_first_latency(raw.observations, raw.changes),
                            corrected=_first_latency(corrected.observations, corrected.changes),
                            latency_col="latency_ms", workers=workers)
    samples = health_samples(health, local_pids, host)
    reasons = locust_cpu_reasons(samples, 0, consequence=": the pollers may have sent late")
    return {"records": rec, "clocks": clocks, "workers": health_summary(health), "reasons": reasons}
