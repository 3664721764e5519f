"""A simulated fleet of polling subscriptions (the scenario's `[fleet]`): millions of subscriptions, each a
cursor feed with its own change rate and poll interval, in virtual time, exactly for the drawn schedule.

Also the fleet's model (labelled as such): the expected useful fraction E[1 - e^(-lambda*T)] over the
rate distribution, weighted by each interval class's polls; `bench.simulation.calibrate` root-finds on it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from bench.analysis.stats import latency_stats, wilson_interval
from bench.config import FleetCfg
from bench.simulation.vpoll import by_subscriber, poll_range, seen_by
from bench.workload import change_times

__all__ = ["FleetResult", "simulate_fleet", "fleet_cfg", "allocate", "mean_useful", "model_useful_fraction",
           "binomial_summary"]

# Standard normal on a fine grid: E[f(median * e^(sigma Z))] by the trapezoid rule, spectrally accurate for
# the smooth integrands used here (1 - e^(-x) of a lognormal variable).
_Z = np.linspace(-12.0, 12.0, 4801)
_ZW = np.exp(-0.5 * _Z * _Z)
_ZW /= _ZW.sum()


def mean_useful(T: float, distribution: str, median: float, sigma: float) -> float:
    """Model: E[1 - e^(-lambda*T)], the chance a poll of a random subscription (interval T) is useful."""
    if distribution == "fixed" or sigma == 0:
        return -math.expm1(-median * T)
    if distribution != "lognormal":
        raise ValueError(f"unknown rate distribution {distribution!r}")
    return float(np.dot(_ZW, -np.expm1(-median * T * np.exp(sigma * _Z))))


def model_useful_fraction(intervals: Sequence[float], weights: Sequence[float], distribution: str, median: float,
                          sigma: float) -> float:
    """Model: the fleet's useful polls / polls, subscriptions shared out by `weights` (each polls 1/T per s)."""
    polls = np.asarray(weights, dtype=float) / np.asarray(intervals, dtype=float)
    useful = [mean_useful(T, distribution, median, sigma) for T in intervals]
    return float(np.dot(polls, useful) / polls.sum())


def allocate(n: int, weights: Sequence[float]) -> np.ndarray:
    """Subscriptions per interval class: n shared out by `weights` (largest remainder; sums to n exactly)."""
    w = np.asarray(weights, dtype=float)
    exact = n * w / w.sum()
    counts = np.floor(exact).astype(np.int64)
    rest = n - int(counts.sum())
    counts[np.argsort(-(exact - counts), kind="stable")[:rest]] += 1
    return counts


def fleet_cfg(*, subscriptions: int, rate_median: float, intervals: Sequence[float] = (60.0, 120.0, 900.0),
              weights: Sequence[float] | None = None, duration: float = 86_400.0, distribution: str = "lognormal",
              sigma: float = 1.0, process: str = "poisson", on: float | None = None,
              off: float | None = None) -> FleetCfg:
    """A FleetCfg built in code (calibration, grids), with the same meaning as a scenario's [fleet]."""
    w = [1.0] * len(intervals) if weights is None else list(weights)
    if len(w) != len(intervals) or min(w) < 0 or sum(w) <= 0:
        raise ValueError("one weight >= 0 per interval, not all 0")
    return FleetCfg(subscriptions=subscriptions, duration=duration, intervals=tuple(float(x) for x in intervals),
                    interval_weights=tuple(x / sum(w) for x in w), rate_distribution=distribution,
                    rate_median=rate_median, rate_sigma=sigma, process=process, on=on, off=off, style="cursor")


@dataclass(frozen=True)
class FleetResult:
    summary: dict[str, Any]  # the `fleet` section of summary.json
    subscriptions: pd.DataFrame  # one row per subscription: interval_s, rate, polls, useful, changes
    latencies: pd.DataFrame  # one row per window change: interval_s, latency_ms


def binomial_summary(empty: int, polls: int) -> dict[str, Any]:
    """wasted_fraction with its binomial SE and 95% Wilson interval (polls taken as independent)."""
    p = empty / polls if polls else None
    ci = wilson_interval(empty, polls)
    return {"wasted_fraction": p, "wasted_fraction_se": None if p is None else math.sqrt(p * (1 - p) / polls),
            "wasted_fraction_ci95": None if ci is None else list(ci)}


def _cluster_se(useful: np.ndarray, polls: np.ndarray) -> float | None:
    """SE of sum(useful)/sum(polls) with subscriptions as clusters: it counts the spread of the drawn rates,
    which the binomial SE (independent polls) leaves out."""
    n, total = polls.size, float(polls.sum())
    if n < 2 or total == 0:
        return None
    r = useful.sum() / total
    resid = useful - r * polls
    return math.sqrt(n / (n - 1) * float(np.dot(resid, resid))) / total


def _rates(cfg: FleetCfg, rng: np.random.Generator, n: int) -> np.ndarray:
    if cfg.rate_distribution == "fixed" or cfg.rate_sigma == 0:
        return np.full(n, cfg.rate_median)
    return cfg.rate_median * np.exp(cfg.rate_sigma * rng.standard_normal(n))


def simulate_fleet(cfg: FleetCfg, seed: int, *, progress: Callable[[str], None] | None = None) -> FleetResult:
    """Simulate `cfg` over [0, duration): polls and changes counted in that window, exact for the drawn
    rates, phases and changes. The schedules extend into the past (changes drawn from one longest interval
    earlier), so the first poll of each subscription is a steady-state poll like every other."""
    say = progress or (lambda _m: None)
    wall0 = time.perf_counter()
    rng_rate, rng_phase, rng_change = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    S, D = cfg.subscriptions, cfg.duration
    intervals = np.asarray(cfg.intervals, dtype=float)
    counts = allocate(S, cfg.interval_weights)
    cls = np.repeat(np.arange(intervals.size), counts)
    T = intervals[cls]
    rates = _rates(cfg, rng_rate, S)
    phase = rng_phase.uniform(0.0, T)
    warm = float(intervals.max())
    t, sub = change_times(cfg.process, S, D + warm, rng_change, rate=rates, on=cfg.on, off=cfg.off, start=-warm)
    sub, t = by_subscriber(sub, t)
    say(f"fleet: {S:,} subscriptions, {t.size:,} changes drawn")
    seen = seen_by(sub, t, phase, T)
    lo, hi = poll_range(phase, T, 0.0, D)
    polls = hi - lo
    counted = (seen.k >= lo[sub]) & (seen.k < hi[sub])  # the poll that sees it lies in the window
    useful = np.bincount(sub[seen.first & counted], minlength=S)
    window = t >= 0.0
    changes = np.bincount(sub[window], minlength=S)
    lat_ms = (seen.t_poll[window] - t[window]) * 1e3
    lat_cls = cls[sub[window]]
    wall = time.perf_counter() - wall0

    P, U, C = int(polls.sum()), int(useful.sum()), int(changes.sum())
    model = model_useful_fraction(cfg.intervals, cfg.interval_weights, cfg.rate_distribution, cfg.rate_median,
                                  cfg.rate_sigma)
    se_cluster = _cluster_se(useful, polls)
    out: dict[str, Any] = {
        "subscriptions": S, "duration_s": D, "style": cfg.style, "process": cfg.process,
        "rate_distribution": cfg.rate_distribution, "rate_median": cfg.rate_median, "rate_sigma": cfg.rate_sigma,
        "median_change_interval_s": 1.0 / cfg.rate_median,
        "polls": P, "useful_polls": U, "empty_polls": P - U, **binomial_summary(P - U, P),
        "wasted_fraction_se_cluster": se_cluster,
        "changes": C, "requests_per_change": P / C if C else None, "requests_per_useful_poll": P / U if U else None,
        "latency_ms": latency_stats(lat_ms),
        "model": _model_section(cfg, model),
        "intervals": _per_interval(cfg, counts, cls, polls, useful, changes, lat_ms, lat_cls),
        "simulation": {"wall_s": wall, "polls_per_s": P / wall if wall > 0 else None, "seed": seed},
    }
    if se_cluster is not None:
        w = out["wasted_fraction"]
        out["wasted_fraction_ci95_cluster"] = [w - 1.96 * se_cluster, w + 1.96 * se_cluster]
    table = pd.DataFrame({"interval_s": T.astype(np.float32), "rate": rates, "polls": polls.astype(np.int32),
                          "useful": useful.astype(np.int32), "changes": changes.astype(np.int32)})
    lat = pd.DataFrame({"interval_s": intervals[lat_cls].astype(np.float32), "latency_ms": lat_ms})
    say(f"fleet: {P:,} polls, {U:,} useful, wasted {out['wasted_fraction']:.4%} in {wall:.2f} s")
    return FleetResult(out, table, lat)


def _model_section(cfg: FleetCfg, useful: float) -> dict[str, Any]:
    T = np.asarray(cfg.intervals)
    w = np.asarray(cfg.interval_weights)
    what = ("Poisson" if cfg.process == "poisson"
            else "Poisson with the same mean rates (a reference: bursts waste more)")
    return {"wasted_fraction": 1.0 - useful,
            "latency_mean_ms": float(np.dot(w, T)) / 2 * 1e3,  # every subscription has the same mean rate E[lambda]
            "note": f"analytic ({what}): wasted = 1 - sum_i (w_i/T_i) E[1 - e^(-lambda*T_i)] / sum_i (w_i/T_i) over "
                    f"the {cfg.rate_distribution} rate distribution; latency = T/2 averaged over the changes"}


def _per_interval(cfg: FleetCfg, counts: np.ndarray, cls: np.ndarray, polls: np.ndarray, useful: np.ndarray,
                  changes: np.ndarray, lat_ms: np.ndarray, lat_cls: np.ndarray) -> list[dict[str, Any]]:
    n = len(cfg.intervals)
    P = np.bincount(cls, weights=polls, minlength=n)
    U = np.bincount(cls, weights=useful, minlength=n)
    C = np.bincount(cls, weights=changes, minlength=n)
    lat_n = np.bincount(lat_cls, minlength=n)
    lat_sum = np.bincount(lat_cls, weights=lat_ms, minlength=n)
    rows = []
    for i, T in enumerate(cfg.intervals):
        p, u = int(P[i]), int(U[i])
        rows.append({
            "interval_s": T, "weight": cfg.interval_weights[i], "subscriptions": int(counts[i]), "polls": p,
            "useful_polls": u, **binomial_summary(p - u, p),
            "wasted_fraction_se_cluster": _cluster_se(useful[cls == i], polls[cls == i]), "changes": int(C[i]),
            "latency_mean_ms": float(lat_sum[i] / lat_n[i]) if lat_n[i] else None,
            "model_wasted_fraction": 1.0 - mean_useful(T, cfg.rate_distribution, cfg.rate_median, cfg.rate_sigma),
            "model_latency_mean_ms": T / 2 * 1e3,
        })
    return rows
