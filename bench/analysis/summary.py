"""Run analysis (pandas): raw tables + window -> the `summary.json` content of design.md section 4.

Every quantity is computed from raw rows, observations are matched to changes by change_id, and the
warm-up and drain are excluded. Percentiles and intervals come from `bench.analysis.stats`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bench.analysis.loss import faults_section
from bench.analysis.reconcile import reconcile_interval_s, reconcile_keys, reconcile_model
from bench.analysis.saturation import locust_cpu_reasons
from bench.analysis.security import security_section
from bench.analysis.stats import latency_stats, percentile, wilson_interval
from bench.analysis.tables import Tables
from bench.config import ChangesCfg
from bench.modes import HYBRID, MODELLED_PROCESSES, THIN, ModeKind, Workload, kind_of
from bench.results import Kind, RunStatus, status_keys, version_keys

__all__ = ["Window", "summarize", "detections", "LAG_P99_LIMIT_MS", "LATE_SEND_LIMIT"]

LAG_P99_LIMIT_MS = 20.0  # a server's event loop later than this at p99 means it, not the workload, set the pace
LATE_SEND_LIMIT = 0.10  # pollers whose p99 send lateness exceeds 10% of the interval could not keep schedule


@dataclass(frozen=True)
class Window:
    start_ns: int  # first instant measured (end of warm-up)
    end_ns: int  # end of the measured window (changes after it are not counted)
    grace_end_ns: int  # end of the drain: observations after it do not count

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9


def _window_changes(t: Tables, w: Window) -> pd.DataFrame:
    c = t.changes
    return c[(c["t_change_ns"] >= w.start_ns) & (c["t_change_ns"] < w.end_ns)]


def detections(t: Tables, w: Window) -> pd.DataFrame:
    """First observation of each window change by each mode (within the grace period), with its latency."""
    changes = _window_changes(t, w)
    obs = t.observations[t.observations["t_obs_ns"] <= w.grace_end_ns]
    obs = obs[obs["change_id"].isin(changes["change_id"])]
    first = obs.groupby(["mode", "change_id"], as_index=False)["t_obs_ns"].min()
    out = first.merge(changes[["change_id", "resource_id", "t_change_ns"]], on="change_id", how="inner")
    out["latency_ms"] = (out["t_obs_ns"] - out["t_change_ns"]) / 1e6
    return out[["mode", "change_id", "resource_id", "t_change_ns", "t_obs_ns", "latency_ms"]].sort_values(
        ["mode", "t_change_ns"]).reset_index(drop=True)


def _coalesced(t: Tables, w: Window, mode: str, unobserved: pd.DataFrame) -> int:
    """Unobserved changes whose resource was later seen at a newer version by this mode: overwritten, not lost."""
    if unobserved.empty:
        return 0
    obs = t.observations[(t.observations["mode"] == mode) & (t.observations["t_obs_ns"] <= w.grace_end_ns)]
    seen = obs.merge(t.changes[["change_id", "resource_id", "version"]], on="change_id")
    newest = seen.groupby("resource_id")["version"].max()
    newer = unobserved["resource_id"].map(newest)
    return int((newer.notna() & (newer > unobserved["version"])).sum())


def _cost(marks: dict[str, dict[str, Any]], mode: str) -> tuple[float | None, float | None]:
    """(bytes, cpu seconds) the producer spent on `mode` between the window marks; None if a mark is missing."""
    start = marks.get("window_start")
    end = marks.get("window_end") or marks.get("shutdown")
    if start is None or end is None or start.get("pid") != end.get("pid"):
        return None, None  # missing, or the producer restarted in between: its counters began again
    a = start["modes"].get(mode, {})
    b = end["modes"].get(mode, {})
    nbytes = (b.get("bytes_in", 0) + b.get("bytes_out", 0)) - (a.get("bytes_in", 0) + a.get("bytes_out", 0))
    cpu = (b.get("cpu_ns", 0) - a.get("cpu_ns", 0)) / 1e9
    return float(nbytes), cpu


def _ratio(num: float | None, den: float) -> float | None:
    return None if num is None or den == 0 else num / den


def _mode_summary(t: Tables, w: Window, mode: str, scenario: dict[str, Any], marks: dict[str, dict[str, Any]],
                  det: pd.DataFrame) -> dict[str, Any]:
    changes = _window_changes(t, w)
    n = len(changes)
    obs = t.observations[(t.observations["mode"] == mode) & (t.observations["t_obs_ns"] <= w.grace_end_ns)]
    obs = obs[obs["change_id"].isin(changes["change_id"])]
    counts = obs.groupby("change_id").size()
    observed = int(len(counts))
    # a duplicate is a second observation by the same path: a hybrid's poll re-reading a delivered change is not
    duplicates = int((obs.groupby(["change_id", obs["via"].fillna("")]).size() - 1).sum())
    unobserved = changes[~changes["change_id"].isin(counts.index)]
    kind = kind_of(mode)
    coalesced = _coalesced(t, w, mode, unobserved) if kind.coalesces else 0

    out: dict[str, Any] = {"kind": kind.summary_kind}
    # Requests the consumer sent (polls, long polls, stream connections, a hybrid's reconciliation polls, a
    # thin event's fetches) are polls rows; what the producer sent are delivery attempts. A mode may have both.
    polls = t.polls[(t.polls["mode"] == mode) & ~t.polls["initial"]
                    & (t.polls["t_intended_ns"] >= w.start_ns) & (t.polls["t_intended_ns"] < w.end_ns)]
    if kind.is_stream:  # a request is a connection; the one opened in the warm-up and held into the window counts:
        # every connection open at some time in the window (a held stream's cost is in bytes and CPU per change)
        mine = t.polls[t.polls["mode"] == mode]
        polls = mine[(mine["t_send_ns"] < w.end_ns) & (mine["t_recv_ns"] >= w.start_ns)]
        first = mine["t_send_ns"].min()  # attempts after the mode's first connection, made in the window
        out.update(style=kind.style, reconnects=int(((polls["t_send_ns"] >= w.start_ns)
                                                     & (polls["t_send_ns"] > first)).sum()))
    requests = int(len(polls))
    empty = int(polls["empty"].sum())
    errors = int(polls["error"].notna().sum())
    if kind.is_pull:
        rtt = (polls["t_recv_ns"] - polls["t_send_ns"]) / 1e6
        late = (polls["t_send_ns"] - polls["t_intended_ns"]) / 1e6
        out["style"] = kind.style
        out["rtt_ms_p50"] = float(np.median(rtt)) if requests else None
        out["send_late_ms_p99"] = percentile(np.sort(late.to_numpy(dtype=float)), 99) if requests else None
    if polls["interval_s"].notna().any():  # an adaptive poller: the intervals its policy chose, the advice it got
        iv = polls["interval_s"].dropna().to_numpy(dtype=float)
        out["interval_s"] = {"mean": float(iv.mean()), "p50": float(np.median(iv)), "max": float(iv.max())}
        out["advised_requests"] = int(polls["advice_s"].notna().sum())
    if kind.is_push:
        d = t.deliveries
        # rows of jobs dropped without an attempt (subscription disabled or deleted) are not requests
        real = ~(d["outcome"].fillna("").eq("abandoned") & d["status"].eq(0))
        attempts = d[real & (d["mode"] == mode) & d["change_id"].isin(changes["change_id"])]
        pushed = int(obs.loc[obs["via"].ne("pull").fillna(True), "change_id"].nunique())  # not the mode's polls
        requests += int(len(attempts))
        errors += int((~attempts["status"].between(200, 299)).sum())
        empty += max(0, int(len(attempts)) - pushed)  # attempts that brought no new change: failures, duplicates
        out["retries"] = int((attempts["attempt"] > 1).sum())
        out["delivery_attempts"] = int(len(attempts))
        if len(polls):
            out["consumer_requests"] = int(len(polls))  # reconciliation polls, fetches
        if kind is THIN:  # its latency is delivery + fetch: the fetch's share, from the fetches that returned it
            fetched = polls[polls["error"].isna()]
            out["fetch_ms_p50"] = (float(np.median((fetched["t_recv_ns"] - fetched["t_send_ns"]) / 1e6))
                                   if len(fetched) else None)
    if kind is HYBRID:  # two paths into one consumer: a request is useful when it brought a change first
        extra, empty = reconcile_keys(obs, changes, polls, attempts, reconcile_interval_s(scenario))
        out.update(extra)
    held = t.events[(t.events["event"] == "held") & (t.events["mode"] == mode)
                    & (t.events["t_ns"] >= w.start_ns) & (t.events["t_ns"] <= w.end_ns)]["held"].dropna()
    if len(held):
        out["held_connections"] = {"max": int(held.max()), "mean": float(held.mean()), "samples": int(len(held))}
    # a held stream's "requests" are its few connections: a share of empty ones is no waste rate (left null)
    p = None if kind.is_stream else _ratio(empty, requests)
    ci = None if kind.is_stream else wilson_interval(empty, requests)
    nbytes, cpu = _cost(marks, mode)
    lat = det.loc[det["mode"] == mode, "latency_ms"]
    out.update({
        "requests": requests, "empty_requests": empty, "wasted_fraction": p,
        "wasted_fraction_se": None if p is None else math.sqrt(p * (1 - p) / requests),
        "wasted_fraction_ci95": None if ci is None else list(ci),
        "errors": errors, "observed": observed, "lost": n - observed - coalesced, "duplicates": duplicates,
        "coalesced": coalesced, "requests_per_change": _ratio(requests, n),
        "bytes_per_change": _ratio(nbytes, n), "cpu_s_per_change": _ratio(cpu, n),
        "latency_ms": latency_stats(lat), "model": _model(mode, scenario, out.get("rtt_ms_p50"), polls),
    })
    sd = out["model"].get("wasted_fraction_sd_per_poll")
    if sd is not None and requests:  # a model whose polls are not independent says how far apart they spread
        out["model"]["wasted_fraction_se"] = sd / math.sqrt(requests)
    return out


def _live_rate_and_interval(scenario: dict[str, Any]) -> tuple[float, float]:
    """(changes/s per resource, poll interval s) as the run used them, i.e. after time scaling."""
    scale = scenario["run"]["time_scale"]
    ch = ChangesCfg(**scenario["changes"])
    lam = ch.rate_per_resource(scenario["resources"]["count"]) * scale  # a trace is read (once) for its rate
    return lam, scenario["polling"]["interval"] / scale


def _live_options(kind: ModeKind, scenario: dict[str, Any]) -> dict[str, Any]:
    """The keys `kind` declares, as the run used them: durations divided by run.time_scale (a rate in polls per
    second, advise_above, is left nominal: no model reads it). A key missing from an older run's scenario gets
    its default."""
    section, scale = scenario.get(kind.section) or {}, scenario["run"]["time_scale"]
    out = {k: section.get(k, f.default) for k, f in kind.fields.items()}
    return {k: v / scale if kind.fields[k].kind == "duration" and v is not None else v for k, v in out.items()}


def _held_round_trip_ms(polls: pd.DataFrame, wait_s: float) -> float | None:
    """A long poll's round trip without its wait: the median over the requests that timed out (empty, no
    error) of their round trip less the wait; None when none timed out."""
    timed_out = polls[polls["empty"] & polls["error"].isna()]
    if timed_out.empty:
        return None
    return float(np.median((timed_out["t_recv_ns"] - timed_out["t_send_ns"]) / 1e6)) - wait_s * 1e3


def _model(mode: str, scenario: dict[str, Any], rtt_ms: float | None, polls: pd.DataFrame) -> dict[str, Any]:
    """The mode kind's analytic model on the live workload, with the measured median round trip added (a long
    poll's: measured on its timed-out requests, and its model's interval is its wait)."""
    kind = kind_of(mode)
    ch = scenario["changes"]
    lam, T = _live_rate_and_interval(scenario)
    round_trip = "measured median round trip"
    if kind.wait_key is not None:
        T = scenario["polling"][kind.wait_key] / scenario["run"]["time_scale"]
        rtt_ms = _held_round_trip_ms(polls, T)
        round_trip = ("measured median round trip of the timed-out requests less the wait" if rtt_ms is not None
                      else "its round trip, not measured (no request timed out)")
    # bursty and traced streams have no closed form here: the model shown is Poisson at the same mean rate,
    # which is what the claim's arithmetic assumes (a bursty stream wastes more polls than it)
    process = ch["process"] if ch["process"] in MODELLED_PROCESSES else "poisson"
    if kind is HYBRID:  # its poll is the reconciliation poll
        w = Workload(process, lam, reconcile_interval_s(scenario), scenario["resources"]["count"])
        return reconcile_model(w, ch["process"], rtt_ms)
    w = Workload(process, lam, T, scenario["resources"]["count"], _live_options(kind, scenario), scenario["seed"])
    m: dict[str, Any] = kind.model(w) if kind.model else {}
    if kind.formulas.wasted is None or kind.formulas.latency is None:
        return m
    for key in ("latency_mean_ms", "latency_p50_ms", "latency_p99_ms"):
        if key in m:
            m[key] = None if kind.wait_key is not None and rtt_ms is None else m[key] + (rtt_ms or 0.0)
    m["note"] = (f"{m.pop('method', 'analytic')}: wasted = {kind.formulas.wasted(process)}; "
                 f"latency = {kind.formulas.latency(process)} + {round_trip}")
    if m.get("caveat"):  # what the model leaves out, said where the model is shown
        m["note"] += f"; {m['caveat']}"
    if process != ch["process"]:
        m["note"] += f"; the {ch['process']} stream is modelled as Poisson with the same mean rate"
        m["assumes"] = "poisson_same_mean_rate"
    return m


def _saturation(t: Tables, w: Window, modes: dict[str, dict[str, Any]], T: float,
                locust_cpu_warnings: int) -> dict[str, Any]:
    reasons: list[str] = []
    out: dict[str, Any] = {}
    lag = t.loop_lag[(t.loop_lag["t_ns"] >= w.start_ns) & (t.loop_lag["t_ns"] <= w.grace_end_ns)]
    for server in ("producer", "receiver"):
        values = np.sort(lag.loc[lag["server"] == server, "lag_ms"].to_numpy(dtype=float))
        if len(values) == 0:
            out[f"{server}_loop_lag_ms"] = {"p99": None, "max": None, "n": 0}
            continue
        p99 = percentile(values, 99)
        out[f"{server}_loop_lag_ms"] = {"p99": p99, "max": float(values[-1]), "n": int(len(values))}
        if p99 > LAG_P99_LIMIT_MS:
            reasons.append(f"{server} event-loop lag p99 {p99:.1f} ms > {LAG_P99_LIMIT_MS:.0f} ms")
    h = t.harness[(t.harness["t_ns"] >= w.start_ns) & (t.harness["t_ns"] <= w.grace_end_ns)]
    locust = h.loc[h["process"].isin(["locust", "attack"])]  # the pollers' and the attack load's Locust
    out["locust_cpu_max_pct"] = float(locust["cpu_pct"].max()) if len(locust) else None
    out["locust_cpu_warnings"] = locust_cpu_warnings
    reasons += locust_cpu_reasons(locust, locust_cpu_warnings, name=lambda process: f"{process} (Locust)")
    for mode, s in modes.items():
        late = s.get("send_late_ms_p99")
        if late is not None and late > LATE_SEND_LIMIT * T * 1e3:
            reasons.append(f"{mode} pollers sent late: p99 {late:.1f} ms behind schedule "
                           f"(> {LATE_SEND_LIMIT:.0%} of the {T * 1e3:.0f} ms interval)")
    producer = h.loc[h["process"].str.startswith("producer", na=False)]
    rss, fds = producer["rss_bytes"].dropna(), producer["fds"].dropna()
    # what the producer process held (held connections cost memory and file descriptors), sampled once a second
    out["producer_rss_mb_max"] = float(rss.max()) / 2**20 if len(rss) else None
    out["producer_fds_max"] = int(fds.max()) if len(fds) else None
    out["reasons"] = reasons
    return out


def summarize(t: Tables, w: Window, scenario: dict[str, Any], marks: dict[str, dict[str, Any]], *,
              modes: list[str], status: RunStatus = RunStatus.COMPLETE,
              locust_cpu_warnings: int = 0) -> dict[str, Any]:
    """The whole summary.json content for one run that ended with `status`."""
    det = detections(t, w)
    per_mode = {m: _mode_summary(t, w, m, scenario, marks, det) for m in modes}
    lam, T = _live_rate_and_interval(scenario)
    sat = _saturation(t, w, per_mode, T, locust_cpu_warnings)
    return {
        **version_keys(Kind.RUN),
        "scenario": scenario["name"],
        "duration_s": w.duration_s,
        "seed": scenario["seed"],
        "changes": int(len(_window_changes(t, w))),
        "harness_saturated": bool(sat["reasons"]),
        **status_keys(status),
        "time_scale": scenario["run"]["time_scale"],
        "saturation": sat,
        "workload": {
            "resources": scenario["resources"]["count"], "process": scenario["changes"]["process"],
            "rate_per_resource": lam, "poll_interval_s": T,
        },
        "modes": per_mode,
        "faults": faults_section(t, w, scenario, det, per_mode),
        "security": security_section(t, bool(scenario.get("attack", {}).get("enabled"))),
    }
