"""`hookbench simulate`: a scenario in virtual time, vectorised (numpy), no servers and no Locust.

The same scenario files and change processes as `hookbench run`, the same summary.json keys, and the same
window rules as the live analysis: changes are drawn over warm-up + window (the generator stops at the
window's end), polls are counted when their time lies in the window, and a window change counts as observed
when a poll sees it before the drain ends. Times are nominal (time_scale changes nothing in virtual time; it
is recorded). What is not simulated (network, server CPU, bytes, webhook latency, faults) is null and said
so. A `[fleet]` section is simulated too (`bench.simulation.population`) into the summary's `fleet` section.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from bench.adaptive import AdaptivePolicy, replay
from bench.analysis.stats import latency_stats
from bench.config import Scenario
from bench.errors import RunDirError, ScenarioError
from bench.manifest import collect_metadata
from bench.modes import MODELLED_PROCESSES, Workload, is_pull, kind_of
from bench.results import Kind, RunStatus, manifest_keys, status_keys, version_keys, write_manifest, write_summary
from bench.simulation.population import binomial_summary, simulate_fleet
from bench.simulation.vpoll import poll_range, seen_by
from bench.workload import change_times

__all__ = ["simulate_scenario", "empty_run_dir", "summary_lines", "SIMULATORS", "MAX_CHANGES", "MAX_TABLE_ROWS"]

MAX_CHANGES = 50_000_000  # changes drawn at once: about 1.2 GB of arrays
MAX_TABLE_ROWS = 200_000  # longer per-change tables are written as a seeded uniform sample (flagged)
_REPO = Path(__file__).resolve().parents[2]
NOT_SIMULATED = ("network round trips", "server CPU (cpu_s_per_change: null)", "bytes (bytes_per_change: null)",
                 "webhook delivery latency (latency_ms: null)", "faults, retries and delivery failures",
                 "harness saturation (nothing runs)")


@dataclass(frozen=True)
class _Mode:
    summary: dict[str, Any]
    detections: pd.DataFrame  # one row per observed window change
    scheduled: int  # every poll of the timeline, warm-up and drain included
    table: pd.DataFrame | None = None  # per-resource outcomes (state polling), written as resources.parquet


@dataclass(frozen=True)
class _Stream:
    """The simulated change stream and timeline every mode observes (virtual seconds)."""

    sc: Scenario
    t: np.ndarray  # change times
    rid: np.ndarray  # their resources
    window: np.ndarray  # whether each change lies in the measured window
    W: float  # window start (end of warm-up)
    end: float  # window end
    grace: float  # end of the drain


def empty_run_dir(out_dir: str | Path) -> Path:
    """`out_dir`, created if missing; RunDirError if it holds anything (a run directory is never overwritten) or
    cannot be created."""
    run_dir = Path(out_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        if any(run_dir.iterdir()):
            raise RunDirError(f"{run_dir}: not empty; a run directory is never overwritten, pass a new --out")
    except OSError as e:
        raise RunDirError(f"{run_dir}: cannot create the run directory there ({e.strerror}); "
                          "pass a writable --out DIR") from None
    return run_dir


def simulate_scenario(scenario: Scenario, out_dir: str | Path, *, polls: int | None = None, seed: int | None = None,
                      progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Simulate `scenario` into the run directory `out_dir` (created if missing; refused if not empty).

    `polls`: lengthen the window so that at least this many polls (all polling modes together) are counted.
    `seed`: instead of the scenario's. Returns the summary (also written to summary.json); `progress`
    receives a few one-line messages.
    """
    say = progress or (lambda _m: None)
    run_dir = empty_run_dir(out_dir)
    sc = scenario
    seed = sc.seed if seed is None else seed
    if polls is not None and polls < 1:
        raise ScenarioError("--polls", "polls", polls, "must be an integer >= 1")
    wall0 = time.perf_counter()
    s_changes, s_cursor, s_etag, s_fleet, s_sample, s_other = np.random.SeedSequence(seed).spawn(6)

    T, W, G = sc.polling.interval, sc.run.warmup, sc.run.drain
    R = sc.resources.count
    pollers = sum(k.users_per_run(R) for k in map(kind_of, sc.modes) if k.users_per_run)
    D = sc.run.duration
    if polls is not None:
        D = max(D, (math.ceil(polls / pollers) + 1) * T)  # each poller has >= floor(D/T) - 1 polls in the window
    end, grace = W + D, W + D + G
    lam = sc.changes.rate_per_resource(R)
    if lam * R * end > MAX_CHANGES:
        raise ScenarioError(sc.source, "run.duration" if polls is None else "--polls", polls or D,
                            f"would draw about {lam * R * end:,.0f} changes (limit {MAX_CHANGES:,}); "
                            "simulate fewer polls or a shorter window")
    ch = sc.changes
    t, rid = change_times(ch.process, R, end, np.random.default_rng(s_changes), rate=ch.rate, interval=ch.interval,
                          on=ch.on, off=ch.off, trace=ch.load_trace() if ch.process == "trace" else None)
    say(f"simulate: {t.size:,} changes over {end:g} virtual s ({R} resources, {ch.process})")
    window = (t >= W) & (t < end)

    modes: dict[str, Any] = {}
    det: list[pd.DataFrame] = []
    scheduled = 0
    resources_table = None
    stream = _Stream(sc, t, rid, window, W, end, grace)
    seeds = {"cursor": s_cursor, "etag": s_etag}  # one random stream per simulated kind (the rest share s_other)
    for mode in sc.modes:
        kind = kind_of(mode)
        if not kind.simulated:
            continue  # said in the summary's warnings
        m = SIMULATORS[kind.name](stream, mode, np.random.default_rng(seeds.get(kind.name, s_other)))
        modes[mode] = m.summary
        det.append(m.detections)
        scheduled += m.scheduled
        if m.table is not None:
            resources_table = m.table
    wall = time.perf_counter() - wall0
    counted = sum(s["requests"] for m, s in modes.items() if is_pull(m))

    fleet = simulate_fleet(sc.fleet, int(s_fleet.generate_state(1)[0]), progress=say) if sc.fleet else None
    detections = pd.concat(det, ignore_index=True) if det else pd.DataFrame()
    tables = _write_tables(run_dir, detections, resources_table, fleet, np.random.default_rng(s_sample))
    summary: dict[str, Any] = {
        **version_keys(Kind.SIMULATED), "simulated": True,
        "scenario": sc.name, "duration_s": D, "seed": seed, "changes": int(window.sum()),
        "harness_saturated": False, **status_keys(RunStatus.COMPLETE), "time_scale": sc.run.time_scale,
        "saturation": {"reasons": [], "note": "virtual time: no process ran, nothing could saturate"},
        "workload": {"resources": R, "process": ch.process, "rate_per_resource": lam, "poll_interval_s": T},
        "window": {"warmup_s": W, "duration_s": D, "drain_s": G, "extended_for_polls": D > sc.run.duration},
        "modes": modes, "faults": None, "security": None,
        "simulation": {"polls": scheduled, "polls_in_window": counted, "changes_drawn": int(t.size), "wall_s": wall,
                       "polls_per_s": scheduled / wall if wall > 0 else None, "requested_polls": polls,
                       "times": "nominal (time_scale is recorded, not applied: it cannot change virtual time)"},
        "not_simulated": list(NOT_SIMULATED),
        "warnings": _warnings(sc),
        "tables": tables,
        "fleet": None if fleet is None else fleet.summary,
    }
    write_manifest(run_dir, {
        **manifest_keys(Kind.SIMULATED), "scenario": sc.to_dict(),
        "scenario_source": sc.source, "seed": seed, "time_scale": sc.run.time_scale,
        "parameters": {"polls": polls, "seed": seed, "seed_from": "scenario" if seed == sc.seed else "argument"},
        **collect_metadata(_REPO),
        "window": {"virtual": True, "start_s": W, "end_s": end, "grace_end_s": grace, "warmup_s": W,
                   "duration_s": D, "drain_s": G},
    })
    write_summary(run_dir, summary)
    say(f"simulate: {scheduled:,} polls in {wall:.2f} s ({summary['simulation']['polls_per_s'] or 0:,.0f} polls/s)")
    return summary


def _model(sc: Scenario, mode: str, *, virtual: bool = True) -> dict[str, Any]:
    """The mode kind's model for the nominal workload; processes without a model get Poisson with the same mean
    rate. `virtual`: the note says that there is no round trip in virtual time (a poll model's)."""
    R, ch = sc.resources.count, sc.changes
    process = ch.process if ch.process in MODELLED_PROCESSES else "poisson"
    kind = kind_of(mode)
    options = {k: getattr(getattr(sc, kind.section), k) for k in kind.fields}
    w = Workload(process, ch.rate_per_resource(R), sc.polling.interval, R, options, sc.seed)
    m: dict[str, Any] = kind.model(w) if kind.model else {}
    if not virtual:
        return m
    what = ("" if process == ch.process
            else f"Poisson with the {ch.process} process's mean rate (a reference, not a prediction); ")
    m["note"] = f"{m.pop('method', 'analytic')}: {what}no round trip in virtual time"
    return m


def _polling_summary(sc: Scenario, mode: str, polls: int, useful: int, followups: int, n: int,
                     observed: int, coalesced: int, lat_ms: np.ndarray) -> dict[str, Any]:
    requests = polls + followups
    return {
        "kind": kind_of(mode).summary_kind, "style": kind_of(mode).style,
        "requests": requests, "empty_requests": polls - useful, **binomial_summary(polls - useful, requests),
        "followups": followups, "errors": 0, "observed": observed, "lost": n - observed - coalesced, "duplicates": 0,
        "coalesced": coalesced, "requests_per_change": requests / n if n else None,
        "bytes_per_change": None, "cpu_s_per_change": None, "rtt_ms_p50": None, "send_late_ms_p99": None,
        "latency_ms": latency_stats(lat_ms), "model": _model(sc, mode),
    }


def _detections(mode: str, seq: np.ndarray, rid: np.ndarray, t: np.ndarray, t_poll: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"mode": mode, "change_seq": seq, "resource_id": rid, "t_change_s": t, "t_obs_s": t_poll,
                         "latency_ms": (t_poll - t) * 1e3})


def _cursor(st: _Stream, mode: str, rng: np.random.Generator) -> _Mode:
    """One subscriber reads the feed of every resource; its first poll (at its phase) sees all history."""
    sc, t, rid, window, W, end, grace = st.sc, st.t, st.rid, st.window, st.W, st.end, st.grace
    T = np.array([sc.polling.interval])
    phase = rng.uniform(0.0, T)
    sub = np.zeros(t.size, dtype=np.int64)
    seen = seen_by(sub, t, phase, T, k_min=0)
    lo, hi = poll_range(phase, T, W, end, k_min=0)
    counted = (seen.k >= lo[0]) & (seen.k < hi[0])
    sizes = seen.group_sizes()[counted[seen.first]]
    followups = int((np.ceil(sizes / sc.polling.cursor_limit) - 1).sum())  # a full page is followed at once
    obs = window & (seen.t_poll <= grace)
    seq = np.flatnonzero(obs)
    _, grace_hi = poll_range(phase, T, 0.0, grace, k_min=0)
    return _Mode(_polling_summary(sc, mode, int(hi[0] - lo[0]), int(sizes.size), followups, int(window.sum()),
                                  int(obs.sum()), 0, (seen.t_poll[obs] - t[obs]) * 1e3),
                 _detections(mode, seq, rid[obs], t[obs], seen.t_poll[obs]), int(grace_hi[0]))


def _etag(st: _Stream, mode: str, rng: np.random.Generator) -> _Mode:
    """One state poller per resource. Its first poll is a sync (not counted, as live); a poll observes only
    the latest change, so the earlier ones of its interval are coalesced (overwritten, not lost)."""
    sc, t, rid, window, W, end, grace = st.sc, st.t, st.rid, st.window, st.W, st.end, st.grace
    R = sc.resources.count
    T = np.full(R, sc.polling.interval)
    phase = rng.uniform(0.0, T)
    order = np.argsort(rid, kind="stable")
    sub, ts = rid[order], t[order]
    win = window[order]
    seen = seen_by(sub, ts, phase, T, k_min=0)
    lo, hi = poll_range(phase, T, W, end, k_min=1)
    counted = (seen.k >= lo[sub]) & (seen.k < hi[sub])
    useful = np.bincount(sub[seen.first & counted], minlength=R)
    in_grace = seen.t_poll <= grace
    obs = win & seen.last & in_grace
    coal = win & ~seen.last & in_grace
    _, grace_hi = poll_range(phase, T, 0.0, grace, k_min=0)
    table = pd.DataFrame({"resource_id": np.arange(R), "phase_s": phase, "polls": hi - lo, "useful": useful,
                          "changes": np.bincount(sub[win], minlength=R), "observed": np.bincount(sub[obs], minlength=R),
                          "coalesced": np.bincount(sub[coal], minlength=R)})
    summary = _polling_summary(sc, mode, int((hi - lo).sum()), int(useful.sum()), 0, int(win.sum()),
                               int(obs.sum()), int(coal.sum()), (seen.t_poll[obs] - ts[obs]) * 1e3)
    return _Mode(summary, _detections(mode, order[obs], sub[obs], ts[obs], seen.t_poll[obs]),
                 int(grace_hi.sum()), table)


def _webhook(st: _Stream, mode: str, rng: np.random.Generator) -> _Mode:
    """Every change delivered once, first time: counts only (latency and faults are not simulated)."""
    n, faults = int(st.window.sum()), bool(_faults_configured(st.sc))
    note = ("not simulated: a delivery's latency is network and receiver time, which virtual time does not "
            "model; measure it with hookbench run")
    return _Mode({
        "kind": kind_of(mode).summary_kind, "requests": n, "empty_requests": 0, **binomial_summary(0, n),
        "errors": 0, "retries": 0, "observed": n, "lost": 0, "duplicates": 0, "coalesced": 0,
        "requests_per_change": 1.0 if n else None, "bytes_per_change": None, "cpu_s_per_change": None,
        "latency_ms": {"mean": None, "p50": None, "p90": None, "p99": None, "max": None, "n": 0, "note": note},
        "model": _model(st.sc, mode, virtual=False),
        "note": "one delivery per change, every first attempt succeeding"
                + ("; the scenario's faults are NOT simulated" if faults else ""),
    }, pd.DataFrame(), 0)


def _adaptive(st: _Stream, mode: str, rng: np.random.Generator) -> _Mode:
    """One subscriber reads the feed at the adaptive policy's intervals (bench.adaptive, the live poller's rule),
    replayed over the drawn stream; its first poll (at a phase in the shortest interval) sees all history."""
    sc, t, rid, window, W, end, grace = st.sc, st.t, st.rid, st.window, st.W, st.end, st.grace
    policy = AdaptivePolicy.from_options(sc.polling.options)
    r = replay(policy, t, float(rng.uniform(0.0, policy.min_s)), grace + policy.max_s)
    counted = (r.t >= W) & (r.t < end)
    n_new = r.n_new[counted]
    followups = int((np.ceil(n_new / sc.polling.cursor_limit) - 1).clip(min=0).sum())
    first = r.first_poll_after(t)
    t_poll = np.append(r.t, np.inf)[first]
    obs = window & (t_poll <= grace)
    seq = np.flatnonzero(obs)
    summary = _polling_summary(sc, mode, int(counted.sum()), int((n_new > 0).sum()), followups, int(window.sum()),
                               int(obs.sum()), 0, (t_poll[obs] - t[obs]) * 1e3)
    iv = policy.ladder()[r.step[counted]]
    if iv.size:
        summary["interval_s"] = {"mean": float(iv.mean()), "p50": float(np.median(iv)), "max": float(iv.max())}
    summary["advised_requests"] = 0  # virtual time has no producer under load
    return _Mode(summary, _detections(mode, seq, rid[obs], t[obs], t_poll[obs]), int((r.t <= grace).sum()))


# mode kind (bench.modes) -> its simulator; a kind declared `simulated` must have one (tests check it)
SIMULATORS: dict[str, Callable[[_Stream, str, np.random.Generator], _Mode]] = {
    "cursor": _cursor, "etag": _etag, "webhook": _webhook, "adaptive": _adaptive}


def _faults_configured(sc: Scenario) -> list[str]:
    f = sc.faults
    keys = [("receiver_down", bool(f.receiver_down)), ("receiver_error_rate", f.receiver_error_rate > 0),
            ("receiver_delay", f.receiver_delay > 0), ("receiver_max_concurrent", f.receiver_max_concurrent > 0),
            ("receiver_processing", f.receiver_processing > 0), ("producer_crash", bool(f.producer_crash))]
    return [k for k, on in keys if on]


def _warnings(sc: Scenario) -> list[str]:
    out = []
    if keys := _faults_configured(sc):
        out.append(f"faults.{', faults.'.join(keys)} not simulated: webhook counts assume every delivery succeeds")
    if sc.attack.enabled:
        out.append("attack.enabled is ignored: the attack load is not simulated")
    skipped = [m for m in sc.modes if not kind_of(m).simulated]
    if skipped:
        out.append(f"modes {', '.join(skipped)} not simulated (virtual time has no model of them): run them live")
    return out


def _sample(df: pd.DataFrame, rng: np.random.Generator) -> tuple[pd.DataFrame, dict[str, Any]]:
    n = len(df)
    if n <= MAX_TABLE_ROWS:
        return df, {"rows": n, "of": n, "sampled": False}
    keep = np.sort(rng.choice(n, MAX_TABLE_ROWS, replace=False))
    return df.iloc[keep], {"rows": MAX_TABLE_ROWS, "of": n, "sampled": True}


def _write_tables(run_dir: Path, detections: pd.DataFrame, resources: pd.DataFrame | None, fleet: Any,
                  rng: np.random.Generator) -> dict[str, Any]:
    """Parquet tables of raw samples, kept small: per-change tables past MAX_TABLE_ROWS are sampled."""
    out: dict[str, Any] = {}
    if len(detections):
        parts = [_sample(g, rng) for _, g in detections.groupby("mode", sort=False)]
        table = pd.concat([p for p, _ in parts], ignore_index=True)
        table.to_parquet(run_dir / "detections.parquet", index=False)
        out["detections"] = {mode: info for mode, (_, info) in zip(detections["mode"].unique(), parts)}
    if resources is not None:
        resources.to_parquet(run_dir / "resources.parquet", index=False)
        out["resources"] = {"rows": len(resources), "of": len(resources), "sampled": False}
    if fleet is not None:
        fleet.subscriptions.to_parquet(run_dir / "fleet_subscriptions.parquet", index=False)
        out["fleet_subscriptions"] = {"rows": len(fleet.subscriptions), "of": len(fleet.subscriptions),
                                      "sampled": False}
        lat, info = _sample(fleet.latencies, rng)
        lat.to_parquet(run_dir / "fleet_latency.parquet", index=False)
        out["fleet_latency"] = info
        pd.DataFrame(fleet.summary["intervals"]).drop(columns=["wasted_fraction_ci95"]).to_parquet(
            run_dir / "fleet_intervals.parquet", index=False)
    return out


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """A few lines for the terminal: per mode requests, wasted fraction (CI, model) and mean latency."""
    sim = summary["simulation"]
    lines = [f"simulated {summary['scenario']}: {summary['duration_s']:g} virtual s, {summary['changes']:,} changes, "
             f"{sim['polls']:,} polls in {sim['wall_s']:.2f} s ({sim['polls_per_s'] or 0:,.0f} polls/s)"]
    for mode, m in summary["modes"].items():
        w, ci, lat = m["wasted_fraction"], m["wasted_fraction_ci95"], m["latency_ms"]["mean"]
        text = f"  {mode:14s} requests {m['requests']:>12,}"
        if w is not None and m["kind"] == "polling":
            text += (f"  wasted {w:.4%} [{ci[0]:.4%}, {ci[1]:.4%}] (model {m['model']['wasted_fraction']:.4%})")
        text += f"  latency mean {lat:,.1f} ms" if lat is not None else "  latency not simulated"
        lines.append(text)
    if f := summary.get("fleet"):
        lines.append(f"  fleet: {f['subscriptions']:,} subscriptions, {f['polls']:,} polls, "
                     f"{f['useful_polls']:,} useful, "
                     f"wasted {f['wasted_fraction']:.4%} (model {f['model']['wasted_fraction']:.4%}), "
                     f"{f['requests_per_useful_poll'] or 0:.1f} polls per useful poll")
    lines.extend(f"  warning: {w}" for w in summary["warnings"])
    return lines
