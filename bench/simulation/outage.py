"""`hookbench outage`: what a provider's documented delivery policy does with a receiver outage, in virtual time.

The receiver is down during [0, L). Changes arrive as a Poisson process; each change's attempts follow the
profile's schedule with the dispatcher's jitter (bench.delivery, the same functions the live dispatcher calls); an
attempt sent at or after L succeeds. The disable rules act across the subscription's attempts in the order they
end; once disabled, pending and later changes are lost. Exact for each drawn stream: no servers, no clock.
Per (profile, L): the fraction of outage-time changes lost, when the subscription was disabled, and the delivery
delay percentiles. Every value is a model prediction from documented policies, never a measurement
(docs/method.md, "Outage model").
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from bench.analysis.stats import percentile, wilson_interval
from bench.config import DeliveryCfg, delivery_from_dict
from bench.delivery import fires, jittered, nominal_offsets
from bench.errors import ScenarioError
from bench.manifest import collect_metadata
from bench.profiles import DELIVERY_KEYS, INFO_KEYS, PROFILE_NAMES, load_profiles
from bench.results import Kind, RunStatus, manifest_keys, status_keys, version_keys, write_manifest, write_summary
from bench.simulation.simulate import empty_run_dir

__all__ = ["DEFAULT_PROFILES", "RECEIVERS", "DEFAULT_RATE", "DEFAULT_CHANGES", "GRID_MIN_S", "GRID_MAX_S",
           "MAX_EVENTS", "Fate", "profile_cfg", "outage_lengths", "check_parameters", "profile_findings", "play",
           "predict_changes", "simulate_point", "simulate_outage", "write_outage_run", "TABLE", "NOT_MODELLED", "LABEL"]

RECEIVERS = ("refuse", "hang")  # refuse: an attempt fails at once; hang: it fails after the profile's timeout
DEFAULT_RATE = 1 / 60  # changes per second: one a minute
DEFAULT_CHANGES = 2000  # outage-time changes drawn per point (over as many independent outages as that takes)
DEFAULT_PROFILES = PROFILE_NAMES
GRID_MIN_S, GRID_MAX_S = 1.0, 3 * 86400.0
GRID_POINTS = 49  # log-spaced, 1 s ... 3 days (about 9 per decade), plus points around each schedule step
STEPS_AROUND = 12  # the first this many schedule steps (and the last) get points at (1 -+ jitter) x and 1 x
MAX_EVENTS = 30_000_000  # attempts played at once for one point: about 1 GB of arrays
TABLE = "outage.parquet"
LABEL = "model prediction from the providers' documented delivery policies (virtual time), not a measurement"
NOT_MODELLED = (
    "hookbench's own circuit breaker: no provider documents one, so it is not part of any profile",
    "Slack's 'more than 95% of deliveries fail within 60 minutes' rule: not documented on a page read, and not "
    "simulated (bench/data/delivery_profiles.toml says so): Slack's curve has no disable rule",
    "re-enabling: a disabled subscription stays disabled (no provider re-enables on its own); every later change "
    "is lost too",
    "the sender's concurrency limit: with a hanging receiver, attempts held for their timeout would delay others",
    "the receiver's processing time: a successful attempt delivers at the moment it is sent",
)


def profile_cfg(name: str, *, jitter: float | None = None) -> DeliveryCfg:
    """The delivery policy of profile `name` as the dispatcher would run it (hookbench's defaults for the keys the
    profile leaves unset, such as the jitter, unless `jitter` is given)."""
    data: dict[str, Any] = {"name": f"webhook_{name}", "profile": name}
    if jitter is not None:
        data["jitter"] = jitter
    return delivery_from_dict(data, f"profile {name}")


def outage_lengths(cfg: DeliveryCfg, points: int = GRID_POINTS, lo: float = GRID_MIN_S,
                   hi: float = GRID_MAX_S) -> np.ndarray:
    """Outage lengths for one profile: `points` log-spaced from `lo` to `hi`, plus, around each of its schedule's
    steps (the first STEPS_AROUND and the last), the step itself and its jitter bounds."""
    grid = list(np.geomspace(lo, hi, points))
    offsets = nominal_offsets(cfg)[1:]
    steps = list(offsets[:STEPS_AROUND]) + list(offsets[-1:])
    for c in steps:
        grid += [c * (1 - cfg.jitter), c, c * (1 + cfg.jitter)]
    out = np.unique(np.round([x for x in grid if lo <= x <= hi], 6))
    return out


@dataclass(frozen=True)
class Fate:
    """What happened to each change of one played outage: `delivered_at` (NaN: lost) per change, and per
    replica (independent outage) when the subscription was disabled (inf: never) and by which rule."""

    delivered_at: np.ndarray
    disabled_at: np.ndarray
    disabled_by_count: np.ndarray  # per replica: the N-consecutive-failures rule fired (else the time rule)
    attempts: int  # attempts played (those after a change's success are not made)


def play(cfg: DeliveryCfg, outage: float, t: np.ndarray, replica: np.ndarray, replicas: int, u: np.ndarray,
         receiver: str = "refuse") -> Fate:
    """Play the schedule of every change at times `t` (s after the outage starts; a change before it, t < 0, is
    delivered at once) in replica `replica`; `u` are the jitter draws, shape (len(t), cfg.attempts - 1), uniform in
    [0, 1). Exact for these draws."""
    n, a = len(t), cfg.attempts
    hang = cfg.timeout if receiver == "hang" else 0.0
    nominal = np.array([cfg.nominal_delay(k) for k in range(1, a)])
    step = jittered(nominal[None, :], cfg.jitter, u) + hang  # a hanging attempt ends its timeout later
    send = t[:, None] + np.concatenate([np.zeros((n, 1)), np.cumsum(step, axis=1)], axis=1)
    ok = (send < 0) | (send >= outage)  # the receiver is up before the outage and from L on
    has_ok = ok.any(axis=1)
    first_ok = np.where(has_ok, ok.argmax(axis=1), a - 1)
    made = np.arange(a)[None, :] <= first_ok[:, None]  # no attempt after a change's success
    done = np.where(ok, send, send + hang)
    rep_e = np.broadcast_to(replica[:, None], (n, a))[made]
    send_e, done_e, ok_e = send[made], done[made], ok[made]
    order = np.lexsort((done_e, rep_e))  # by replica, then in the order attempts end
    rep_e, send_e, done_e, ok_e = rep_e[order], send_e[order], done_e[order], ok_e[order]
    disabled_at = np.full(replicas, np.inf)
    by_count = np.zeros(replicas, dtype=bool)
    if len(rep_e):
        idx = np.arange(len(rep_e))
        start = np.r_[True, rep_e[1:] != rep_e[:-1]]
        # the last reset before each attempt: a success, or the replica's beginning (a virtual reset just before)
        reset = np.maximum.accumulate(np.where(ok_e, idx, np.where(start, idx - 1, -1)))
        streak = idx - reset
        since = send_e[np.minimum(reset + 1, len(idx) - 1)]  # the run's first attempt (FailureRun.since)
        fired = ~ok_e & fires(cfg, streak, done_e - since)
        if fired.any():
            hit = np.flatnonzero(fired)
            reps, first = np.unique(rep_e[hit], return_index=True)  # the first firing attempt of each replica
            disabled_at[reps] = done_e[hit[first]]
            n_rule = cfg.disable_after_failures
            by_count[reps] = bool(n_rule) & (streak[hit[first]] >= (n_rule or 0))
    success = np.where(has_ok, send[np.arange(n), first_ok], np.nan)
    delivered = has_ok & (success < disabled_at[replica])
    return Fate(np.where(delivered, success, np.nan), disabled_at, by_count, int(made.sum()))


def predict_changes(cfg: DeliveryCfg, outage: float, t: np.ndarray, seed: int = 1,
                    receiver: str = "refuse") -> tuple[np.ndarray, float]:
    """The model on given change times (s from the outage's start, e.g. a live run's changes table): which were
    lost (a boolean per change) and when the subscription was disabled (inf: never). One outage, seeded jitter."""
    t = np.asarray(t, dtype=float)
    u = np.random.default_rng(seed).random((len(t), cfg.attempts - 1))
    fate = play(cfg, outage, t, np.zeros(len(t), dtype=int), 1, u, receiver)
    return np.isnan(fate.delivered_at), float(fate.disabled_at[0])


def simulate_point(cfg: DeliveryCfg, outage: float, rate: float, changes: int, rng: np.random.Generator,
                   receiver: str = "refuse") -> dict[str, Any]:
    """One (profile, outage length) row: enough independent outages of length `outage` that about `changes`
    changes fall in them, each with its own Poisson stream at `rate`."""
    replicas = max(1, math.ceil(changes / (rate * outage)))
    # with a hanging receiver, attempts sent just after the outage can end before earlier hanging ones: draw the
    # changes of [L, L + timeout) too (they succeed at once, resetting a run of failures)
    span = outage + (cfg.timeout if receiver == "hang" else 0.0)
    n = int(rng.poisson(rate * span * replicas))
    t = rng.uniform(0.0, span, n)
    replica = rng.integers(0, replicas, n)
    u = rng.random((n, cfg.attempts - 1))
    fate = play(cfg, outage, t, replica, replicas, u, receiver)
    inside = t < outage
    k = int(inside.sum())
    delivered = ~np.isnan(fate.delivered_at) & inside
    lost = k - int(delivered.sum())
    delays = np.sort(fate.delivered_at[delivered] - t[delivered])
    disabled = np.isfinite(fate.disabled_at)
    ci = wilson_interval(lost, k)
    row: dict[str, Any] = {
        "outage_s": float(outage), "replicas": replicas, "outage_changes": k, "lost": lost,
        "loss_fraction": lost / k if k else math.nan,
        "loss_ci95_low": ci[0] if ci else math.nan, "loss_ci95_high": ci[1] if ci else math.nan,
        "delivered": int(delivered.sum()),
        "disabled_fraction": float(disabled.mean()),
        "disabled_at_p50_s": float(np.median(fate.disabled_at[disabled])) if disabled.any() else math.nan,
        "disabled_by": ("consecutive failures" if fate.disabled_by_count[disabled].all() else
                        "continuous failure" if not fate.disabled_by_count[disabled].any() else "both")
        if disabled.any() else None,
        "attempts": fate.attempts,
    }
    for p in (50, 90, 99):
        row[f"delay_p{p}_s"] = percentile(delays, p) if len(delays) else math.nan
    row["delay_max_s"] = float(delays[-1]) if len(delays) else math.nan
    return row


def check_parameters(profiles: tuple[str, ...], lengths: tuple[float, ...] | None, rate: float, changes: int,
           receiver: str, jitter: float | None) -> None:
    """ScenarioError naming the flag, the bad value and what was expected (the CLI's words) for bad input."""
    def bad(flag: str, value: object, expected: str) -> ScenarioError:
        return ScenarioError("hookbench outage", flag, value, expected)

    if not profiles or any(p not in PROFILE_NAMES for p in profiles):
        unknown = [p for p in profiles if p not in PROFILE_NAMES]
        raise bad("--profiles", ",".join(profiles), f"must be a comma list of {', '.join(PROFILE_NAMES)} "
                  f"(unknown: {', '.join(unknown) or 'none given'})")
    if lengths is not None and (not lengths or any(not (math.isfinite(x) and x > 0) for x in lengths)):
        raise bad("--lengths", list(lengths), "must be positive durations like 30s,5m,2h,3d")
    if not (math.isfinite(rate) and rate > 0):
        raise bad("--rate", rate, "must be a positive number of changes per second, e.g. 0.0167 (one a minute)")
    if not 1 <= changes <= 1_000_000:
        raise bad("--changes", changes, "must be a whole number from 1 to 1,000,000")
    if receiver not in RECEIVERS:
        raise bad("--receiver", receiver, f"must be one of {', '.join(RECEIVERS)}")
    if jitter is not None and not 0 <= jitter < 1:
        raise bad("--jitter", jitter, "must be a fraction in [0, 1)")
    longest = max(lengths) if lengths else GRID_MAX_S
    for p in profiles:
        cfg = profile_cfg(p, jitter=jitter)
        events = max(changes, rate * (longest + cfg.timeout)) * cfg.attempts
        if events > MAX_EVENTS:
            raise bad("--rate", rate, f"would play about {events:,.0f} attempts of profile {p} at once (limit "
                      f"{MAX_EVENTS:,}); lower --rate or --changes, or the longest outage")


def simulate_outage(profiles: tuple[str, ...] = DEFAULT_PROFILES, lengths: tuple[float, ...] | None = None, *,
                    rate: float = DEFAULT_RATE, changes: int = DEFAULT_CHANGES, seed: int = 1,
                    receiver: str = "refuse", jitter: float | None = None,
                    progress: Callable[[str], None] | None = None) -> tuple[pd.DataFrame, dict[str, DeliveryCfg]]:
    """The table (one row per profile x outage length) and the policies played. ScenarioError for bad input.
    The same seed gives the same table: each point draws from its own stream (seed, profile, length index)."""
    check_parameters(profiles, lengths, rate, changes, receiver, jitter)
    say = progress or (lambda _m: None)
    rows, cfgs = [], {}
    for pi, name in enumerate(profiles):
        cfg = cfgs[name] = profile_cfg(name, jitter=jitter)
        grid = np.array(sorted(lengths)) if lengths else outage_lengths(cfg)
        t0 = time.perf_counter()
        for li, length in enumerate(grid):
            rng = np.random.default_rng([seed, PROFILE_NAMES.index(name), li])
            row = simulate_point(cfg, float(length), rate, changes, rng, receiver)
            rows.append({"profile": name, **row, "nominal_span_s": float(nominal_offsets(cfg)[-1])})
        say(f"{pi + 1}/{len(profiles)} {name}: {len(grid)} outage lengths in {time.perf_counter() - t0:.1f} s")
    table = pd.DataFrame(rows)
    table.insert(2, "rate_per_s", rate)
    table.insert(3, "receiver", receiver)
    return table, cfgs


def profile_findings(table: pd.DataFrame, cfgs: dict[str, DeliveryCfg]) -> dict[str, dict[str, Any]]:
    """Per profile, read off the table: the shortest outage that lost changes, the shortest at which most
    replicas were disabled, and the nominal schedule's span (a change sent at the outage's start is lost past it)."""
    out: dict[str, dict[str, Any]] = {}
    for name, cfg in cfgs.items():
        rows = table[table["profile"] == name].sort_values("outage_s")
        lossy = rows[rows["loss_fraction"] > 0]
        dis = rows[rows["disabled_fraction"] > 0.5]
        whole = rows[rows["loss_fraction"] >= 1]
        out[name] = {
            "loss_from_s": float(lossy["outage_s"].iloc[0]) if len(lossy) else None,
            "all_lost_from_s": float(whole["outage_s"].iloc[0]) if len(whole) else None,
            "disabled_from_s": float(dis["outage_s"].iloc[0]) if len(dis) else None,
            "disabled_by": dis["disabled_by"].iloc[0] if len(dis) else None,
            "nominal_span_s": float(nominal_offsets(cfg)[-1]), "jitter": cfg.jitter, "attempts": cfg.attempts,
            "shortest_outage_s": float(rows["outage_s"].iloc[0]) if len(rows) else None,
            "longest_outage_s": float(rows["outage_s"].iloc[-1]) if len(rows) else None,
            "loss_fraction_at_longest": float(rows["loss_fraction"].iloc[-1]) if len(rows) else None,
        }
    return out


def _profile_values(cfgs: dict[str, DeliveryCfg]) -> dict[str, Any]:
    """Each profile as played (the resolved delivery keys) and the data file's entries behind it (source, status,
    the date it was read)."""
    data = load_profiles()
    out = {}
    for name, cfg in cfgs.items():
        entries = {k: {f: (v.isoformat() if hasattr(v, "isoformat") else v) for f, v in e.items()}
                   for k, e in data[name].items() if k in DELIVERY_KEYS + INFO_KEYS}
        out[name] = {"played": {"timeout": cfg.timeout, "max_attempts": cfg.attempts,
                                "retry_delays": list(cfg.retry_delays), "backoff_base": cfg.backoff_base,
                                "backoff_factor": cfg.backoff_factor, "backoff_cap": cfg.backoff_cap,
                                "jitter": cfg.jitter, "disable_after_failures": cfg.disable_after_failures,
                                "disable_after": cfg.disable_after, "nominal_offsets_s": list(nominal_offsets(cfg))},
                     "data_file": entries, "name": data[name].get("name"),
                     "read": sorted({e["read"] for e in entries.values() if "read" in e})}
    return out


def write_outage_run(run_dir: Path, *, repo: Path, profiles: tuple[str, ...] = DEFAULT_PROFILES,
                     lengths: tuple[float, ...] | None = None, rate: float = DEFAULT_RATE,
                     changes: int = DEFAULT_CHANGES, seed: int = 1, receiver: str = "refuse",
                     jitter: float | None = None, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Simulate and write `run_dir` (created; refused if not empty): outage.parquet, manifest.json, summary.json
    (kind "outage"). Returns the summary."""
    run_dir = empty_run_dir(run_dir)
    wall0 = time.perf_counter()
    table, cfgs = simulate_outage(profiles, lengths, rate=rate, changes=changes, seed=seed, receiver=receiver,
                                  jitter=jitter, progress=progress)
    table.to_parquet(run_dir / TABLE, index=False)
    params = {"profiles": list(profiles), "lengths_s": list(lengths) if lengths else None, "rate_per_s": rate,
              "changes_per_point": changes, "seed": seed, "receiver": receiver, "jitter": jitter,
              "grid": None if lengths else {"min_s": GRID_MIN_S, "max_s": GRID_MAX_S, "log_points": GRID_POINTS,
                                            "steps_around": STEPS_AROUND}}
    values = _profile_values(cfgs)
    write_manifest(run_dir, {**manifest_keys(Kind.OUTAGE), "seed": seed, "parameters": params, "profiles": values,
                             "data_file": "bench/data/delivery_profiles.toml", **collect_metadata(repo)})
    summary = {**version_keys(Kind.OUTAGE), **status_keys(RunStatus.COMPLETE), "model": True, "label": LABEL,
               "scenario": "outage", "seed": seed, "parameters": params, "table": TABLE, "rows": len(table),
               "profiles": profile_findings(table, cfgs), "not_modelled": list(NOT_MODELLED),
               "receiver_model": _RECEIVER_WORDS[receiver], "wall_s": time.perf_counter() - wall0}
    write_summary(run_dir, summary)
    return summary


_RECEIVER_WORDS = {
    "refuse": "the receiver refuses connections: an attempt during the outage fails at once (a hanging receiver "
              "would add each attempt's timeout: --receiver hang)",
    "hang": "the receiver accepts connections and never answers: an attempt during the outage fails after the "
            "profile's timeout, and the next one is scheduled from then",
}
