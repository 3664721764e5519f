"""Calibration of a simulated fleet to the Zapier claim (30,000,000 polls, 460,000 of them useful), its
sensitivity to the interval mix and the rate spread, and the heatmap grid of wasted fraction over poll
interval x change rate.

Calibration is a *fit*, labelled as one: the number of subscriptions is chosen so the expected polls are
30M, and the median change rate is root-found on the model E[1 - e^(-lambda*T)] so the expected useful
polls are 460k. The calibrated fleet is then simulated; the simulated figure checks the simulator against
the model and is never adjusted. `hookbench reproduce zapier` calls these functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from bench.simulation.population import FleetResult, allocate, fleet_cfg, model_useful_fraction, simulate_fleet

__all__ = ["ZAPIER", "ZAPIER_MIX", "SENSITIVITY_MIXES", "SENSITIVITY_SIGMAS", "Calibration", "FleetReproduction",
           "solve_rate_median", "calibrate", "reproduce_fleet", "sensitivity_table", "heatmap_grid"]

# The published figures (REST Hooks / Zapier, 2013). The period and the mix of intervals were never published.
ZAPIER = {"polls": 30_000_000, "useful_polls": 460_000, "hooks": 547_000}
# An assumed mix of poll intervals (share of subscriptions), after Zapier's plans: 15 min on the free plan,
# 2 min and 1 min on paid ones. A parameter, not a published figure: see the sensitivity table.
ZAPIER_MIX: tuple[tuple[float, float], ...] = ((60.0, 0.25), (120.0, 0.25), (900.0, 0.5))
SENSITIVITY_MIXES: dict[str, tuple[tuple[float, float], ...]] = {
    "all 1m": ((60.0, 1.0),),
    "all 2m": ((120.0, 1.0),),
    "all 15m": ((900.0, 1.0),),
    "default: 1m 25%, 2m 25%, 15m 50%": ZAPIER_MIX,
    "mostly free: 1m 10%, 2m 20%, 15m 70%": ((60.0, 0.1), (120.0, 0.2), (900.0, 0.7)),
    "mostly paid: 1m 50%, 2m 30%, 15m 20%": ((60.0, 0.5), (120.0, 0.3), (900.0, 0.2)),
}
SENSITIVITY_SIGMAS = (0.0, 0.5, 1.0, 1.5, 2.0)
CHECK_PP = 0.05  # the simulated aggregate must be within this many percentage points of the calibrated target


def _split(mix: Sequence[tuple[float, float]]) -> tuple[list[float], list[float]]:
    if not mix or any(T <= 0 or w < 0 for T, w in mix) or sum(w for _, w in mix) <= 0:
        raise ValueError("a mix is a non-empty list of (interval_s > 0, weight >= 0), weights not all 0")
    return [float(T) for T, _ in mix], [float(w) for _, w in mix]


def solve_rate_median(mix: Sequence[tuple[float, float]], useful_fraction: float, *, sigma: float = 1.0,
                      distribution: str = "lognormal") -> float:
    """Calibration: the median change rate (per s per subscription) at which the model's useful fraction of
    the fleet's polls equals `useful_fraction` (bisection on log(rate); the fraction grows with the rate)."""
    if not 0 < useful_fraction < 1:
        raise ValueError("useful_fraction must be in (0, 1)")
    intervals, weights = _split(mix)
    lo, hi = math.log(1e-15), math.log(1e6)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if model_useful_fraction(intervals, weights, distribution, math.exp(mid), sigma) < useful_fraction:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-13:
            break
    return math.exp(0.5 * (lo + hi))


def _subscriptions_for(intervals: list[float], weights: list[float], polls: int, period: float) -> tuple[int, float]:
    """The fewest subscriptions whose expected polls over `period` reach `polls` (interval classes shared
    out as `allocate` does), and those expected polls."""
    per_sub = sum(w / sum(weights) * period / T for T, w in zip(intervals, weights))
    n = max(1, math.floor(polls / per_sub))
    while True:
        expected = float(np.dot(allocate(n, weights), period / np.asarray(intervals)))
        if expected >= polls:
            return n, expected
        n += 1


@dataclass(frozen=True)
class Calibration:
    mix: tuple[tuple[float, float], ...]
    distribution: str
    sigma: float
    period_s: float
    target_polls: int
    target_useful_polls: int
    subscriptions: int
    expected_polls: float
    rate_median: float  # changes/s of the median subscription

    @property
    def target_wasted_fraction(self) -> float:
        return 1.0 - self.target_useful_polls / self.target_polls

    def to_dict(self) -> dict[str, Any]:
        mean_rate = self.rate_median * (math.exp(self.sigma ** 2 / 2) if self.distribution == "lognormal" else 1.0)
        return {
            "kind": "calibration",
            "note": "fitted, not measured: subscriptions so that expected polls = target_polls; rate_median "
                    "root-found on the model E[1 - e^(-lambda*T)] so that expected useful polls = target_useful_polls",
            "intervals_s": [T for T, _ in self.mix], "weights": [w for _, w in self.mix],
            "rate_distribution": self.distribution, "rate_sigma": self.sigma, "period_s": self.period_s,
            "target_polls": self.target_polls, "target_useful_polls": self.target_useful_polls,
            "target_wasted_fraction": self.target_wasted_fraction, "subscriptions": self.subscriptions,
            "expected_polls": self.expected_polls, "rate_median": self.rate_median,
            "median_change_interval_s": 1.0 / self.rate_median, "mean_rate": mean_rate,
            "expected_changes": self.subscriptions * mean_rate * self.period_s,
        }


def calibrate(mix: Sequence[tuple[float, float]] = ZAPIER_MIX, *, sigma: float = 1.0,
              distribution: str = "lognormal", period: float = 86_400.0, polls: int = ZAPIER["polls"],
              useful_polls: int = ZAPIER["useful_polls"]) -> Calibration:
    """Calibrate a fleet with this interval mix and rate spread to `polls` polls and `useful_polls` useful
    polls over `period` seconds (default: Zapier's 30M / 460k over one day)."""
    if not 0 < useful_polls < polls:
        raise ValueError("need 0 < useful_polls < polls")
    intervals, weights = _split(mix)
    n, expected = _subscriptions_for(intervals, weights, polls, period)
    median = solve_rate_median(mix, useful_polls / polls, sigma=sigma, distribution=distribution)
    total = sum(weights)
    return Calibration(tuple((T, w / total) for T, w in zip(intervals, weights)), distribution, sigma, period,
                       polls, useful_polls, n, expected, median)


@dataclass(frozen=True)
class FleetReproduction:
    calibration: Calibration
    result: FleetResult  # the simulated calibrated fleet (summary + per-subscription table + latencies)

    @property
    def check(self) -> dict[str, Any]:
        """Simulated vs calibrated wasted fraction: a check of the simulator against the model."""
        sim = self.result.summary["wasted_fraction"]
        target = self.calibration.target_wasted_fraction
        diff_pp = (sim - target) * 100
        return {"target_wasted_fraction": target, "simulated_wasted_fraction": sim, "diff_pp": diff_pp,
                "tolerance_pp": CHECK_PP, "polls": self.result.summary["polls"],
                "passed": abs(diff_pp) <= CHECK_PP and self.result.summary["polls"] >= self.calibration.target_polls}

    def to_dict(self) -> dict[str, Any]:
        return {"calibration": self.calibration.to_dict(), "simulated": self.result.summary, "check": self.check}


def reproduce_fleet(mix: Sequence[tuple[float, float]] = ZAPIER_MIX, *, sigma: float = 1.0,
                    distribution: str = "lognormal", period: float = 86_400.0, seed: int = 1,
                    polls: int = ZAPIER["polls"], useful_polls: int = ZAPIER["useful_polls"],
                    progress: Callable[[str], None] | None = None) -> FleetReproduction:
    """Calibrate (see `calibrate`), then simulate the calibrated fleet over `period`."""
    cal = calibrate(mix, sigma=sigma, distribution=distribution, period=period, polls=polls,
                    useful_polls=useful_polls)
    cfg = fleet_cfg(subscriptions=cal.subscriptions, rate_median=cal.rate_median, intervals=[T for T, _ in cal.mix],
                    weights=[w for _, w in cal.mix], duration=period, distribution=distribution, sigma=sigma)
    return FleetReproduction(cal, simulate_fleet(cfg, seed, progress=progress))


def sensitivity_table(mixes: dict[str, Sequence[tuple[float, float]]] | None = None,
                      sigmas: Sequence[float] = SENSITIVITY_SIGMAS, *,
                      useful_fraction: float = ZAPIER["useful_polls"] / ZAPIER["polls"]) -> list[dict[str, Any]]:
    """Model (calibration): the median subscription's mean change interval needed for `useful_fraction`,
    for each interval mix and lognormal sigma (sigma 0: every subscription at the same rate)."""
    rows = []
    for name, mix in (mixes or SENSITIVITY_MIXES).items():
        for sigma in sigmas:
            m = solve_rate_median(mix, useful_fraction, sigma=sigma, distribution="lognormal")
            rows.append({"mix": name, "intervals_s": [T for T, _ in mix], "weights": [w for _, w in mix],
                         "rate_sigma": sigma, "rate_median": m, "median_change_interval_s": 1.0 / m,
                         "median_change_interval_h": 1.0 / m / 3600.0})
    return rows


def heatmap_grid(intervals: Sequence[float] | None = None, rates: Sequence[float] | None = None, *,
                 polls_per_cell: int = 200_000, max_changes_per_cell: int = 1_000_000,
                 subscriptions_per_cell: int = 1000, seed: int = 1) -> dict[str, Any]:
    """Simulated wasted fraction over poll interval T x change rate lambda (Poisson, one feed per
    subscription), with the model e^(-lambda*T) alongside. Arrays are indexed [rate][interval].

    Each cell simulates `subscriptions_per_cell` subscriptions for polls_per_cell polls in all, fewer where
    lambda*T is so large that the changes would pass `max_changes_per_cell` (there nearly no poll is empty)."""
    Ts = list(intervals) if intervals is not None else np.geomspace(10.0, 3600.0, 12).tolist()
    lams = list(rates) if rates is not None else np.geomspace(1e-6, 1e-1, 12).tolist()
    K = subscriptions_per_cell
    shape = (len(lams), len(Ts))
    sim, lo, hi, model, polls = (np.zeros(shape) for _ in range(5))
    seeds = np.random.SeedSequence(seed).spawn(sim.size)
    for i, lam in enumerate(lams):
        for j, T in enumerate(Ts):
            n = min(polls_per_cell, max(K, int(max_changes_per_cell / (lam * T))))
            per_sub = max(1, round(n / K))
            cfg = fleet_cfg(subscriptions=K, rate_median=lam, intervals=[T], duration=per_sub * T,
                            distribution="fixed", sigma=0.0)
            s = simulate_fleet(cfg, int(seeds[i * len(Ts) + j].generate_state(1)[0])).summary
            sim[i, j], (lo[i, j], hi[i, j]) = s["wasted_fraction"], s["wasted_fraction_ci95"]
            polls[i, j] = s["polls"]
            model[i, j] = math.exp(-lam * T)
    return {
        "intervals_s": Ts, "rates": lams, "wasted_fraction": sim.tolist(), "wasted_fraction_ci95_low": lo.tolist(),
        "wasted_fraction_ci95_high": hi.tolist(), "polls": polls.astype(int).tolist(),
        "model_wasted_fraction": model.tolist(), "claim_wasted_fraction": 0.985,
        "claim_lambda_T": -math.log(0.985),
        "note": "simulated (virtual time, Poisson changes, fixed interval, random phase); model = e^(-lambda*T); "
                "the claim's 98.5% contour is lambda*T = -ln(0.985) = 0.0151",
    }
