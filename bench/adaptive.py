"""Adaptive polling: the interval policy, one poller's schedule, and the policy's model (pure, no I/O).

The policy climbs a ladder of intervals I_k = min(max, min * factor^k), k = 0..K (K: the first step that
reaches max). A poller starts at k = 0 (the shortest interval: it knows nothing yet, so it looks soon). After an
empty poll k rises by one (up to K); after a useful one it falls back to 0 (shrink "reset") or by one
(shrink "divide"). Advice from the producer (X-Poll-Interval: S on any answer, Retry-After: S on a 429/503)
puts the next poll no earlier than S after that answer arrived; it does not move k.

With Poisson changes of total rate L on the feed, k is a Markov chain: from k the next poll waits I_k and is
empty with probability q_k = e^(-L*I_k). Its stationary law pi gives the model in closed form
(`chain_model`): wasted = sum pi_k q_k, mean interval E[I] = sum pi_k I_k, requests per change = 1/(L*E[I]),
mean detection latency = sum pi_k I_k^2 / (2 E[I]) (a change falls in an interval of length I_k with probability
proportional to pi_k I_k, uniformly inside it). Other change processes are simulated exactly in virtual time
(`replay`, `simulated_model`), seeded, and the result says so. The live poller (scenarios/pollers.py) and the
simulator (bench/simulation/simulate.py) use this module's policy, so all three follow the same rule.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Mapping

import numpy as np

__all__ = ["SHRINK_RULES", "AdaptivePolicy", "Schedule", "parse_poll_interval", "Replay", "replay",
           "chain_model", "simulated_model", "adaptive_model", "MAX_CHAIN_STEPS"]

SHRINK_RULES = ("reset", "divide")  # what a useful poll does to the step: back to 0, or down by one
MAX_CHAIN_STEPS = 10_000  # longer ladders (a factor very close to 1) are simulated instead
_VARIANCE_STEPS = 400  # the per-poll standard deviation of the wasted fraction is solved up to this ladder length
MAX_SIM_CHANGES = 2_000_000  # a simulated model draws at most this many changes (a feed far busier than its polls)
SIM_POLLS = 20_000  # polls of a simulated model (its Monte Carlo error on the wasted fraction is ~0.2-0.4%)
SIM_BLOCKS = 40  # ... in independent blocks, each with its own draw of the change stream


@dataclass(frozen=True)
class AdaptivePolicy:
    """The interval ladder and its rule; ValueError for values the scenario's checks would refuse."""

    min_s: float
    max_s: float
    factor: float
    shrink: str = "reset"

    def __post_init__(self) -> None:
        if not (0 < self.min_s <= self.max_s and math.isfinite(self.max_s)):
            raise ValueError(f"need 0 < min ({self.min_s}) <= max ({self.max_s})")
        if not (1 < self.factor and math.isfinite(self.factor)):
            raise ValueError(f"factor {self.factor}: must be > 1")
        if self.shrink not in SHRINK_RULES:
            raise ValueError(f"shrink {self.shrink!r}: expected one of {', '.join(SHRINK_RULES)}")

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> "AdaptivePolicy":
        """From the [polling] keys adaptive_min, adaptive_max, adaptive_factor, adaptive_shrink."""
        return cls(float(options["adaptive_min"]), float(options["adaptive_max"]), float(options["adaptive_factor"]),
                   str(options.get("adaptive_shrink", "reset")))

    @cached_property
    def top(self) -> int:
        """K: the first step whose interval is max (1e-9: min * factor^k landing on max up to rounding)."""
        if self.max_s == self.min_s:
            return 0
        return max(1, math.ceil(math.log(self.max_s / self.min_s) / math.log(self.factor) - 1e-9))

    def interval(self, k: int) -> float:
        return self.max_s if k >= self.top else min(self.max_s, self.min_s * self.factor ** k)

    def ladder(self) -> np.ndarray:
        """I_0 .. I_K."""
        return np.array([self.interval(k) for k in range(self.top + 1)])

    def step(self, k: int, useful: bool) -> int:
        """The step after a poll made at step k."""
        if not useful:
            return min(k + 1, self.top)
        return 0 if self.shrink == "reset" else max(k - 1, 0)


class Schedule:
    """One poller's intended send times (ns): the policy's interval after each scheduled poll's intended time
    (so a slow answer does not push the whole schedule back), and never before the producer's advice allows."""

    def __init__(self, policy: AdaptivePolicy) -> None:
        self.policy = policy
        self.k = 0
        self.interval_s = policy.interval(0)  # the interval that scheduled the next poll

    def after(self, intended_ns: int, recv_ns: int, useful: bool, advice_s: float | None) -> int:
        """The next poll's intended time, after the poll intended at `intended_ns` whose (last) answer arrived
        at `recv_ns`, was useful or not, and asked for `advice_s` seconds (None: no advice)."""
        self.k = self.policy.step(self.k, useful)
        self.interval_s = self.policy.interval(self.k)
        nxt = intended_ns + round(self.interval_s * 1e9)
        if advice_s is not None:
            nxt = max(nxt, recv_ns + round(advice_s * 1e9))
        return nxt


def parse_poll_interval(value: str | None) -> float | None:
    """Seconds an X-Poll-Interval header asks for (a number >= 0, fractions allowed); None if absent or not one."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


# --- virtual time ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Replay:
    """Every poll of a policy over a change stream: its time, the changes it returned, its step."""

    t: np.ndarray  # poll times
    n_new: np.ndarray  # changes each poll returned (all since the previous poll: a cursor feed)
    step: np.ndarray  # the step whose interval preceded each poll (the first: 0)

    def first_poll_after(self, t_change: np.ndarray) -> np.ndarray:
        """Index of the poll that returns each change (a poll at p returns changes at c <= p); len(t) if none."""
        return np.searchsorted(self.t, t_change, side="left")


def replay(policy: AdaptivePolicy, t_changes: np.ndarray, first: float, until: float) -> Replay:
    """The polls at `first`, then as the policy says, up to (excluding) `until`, over changes at the ascending
    times `t_changes`. The first poll returns every change up to it (the poller's catch-up). No advice: virtual
    time has no producer under load."""
    times = t_changes.tolist()
    ladder = policy.ladder().tolist()
    top, reset = policy.top, policy.shrink == "reset"
    out_t: list[float] = []
    out_n: list[int] = []
    out_k: list[int] = []
    p, k, seen = first, 0, 0
    while p < until:
        upto = bisect.bisect_right(times, p, lo=seen)
        n = upto - seen
        seen = upto
        out_t.append(p)
        out_n.append(n)
        out_k.append(k)
        if n == 0:
            k = k + 1 if k < top else top
        else:
            k = 0 if reset else (k - 1 if k > 0 else 0)
        p += ladder[k]
    return Replay(np.array(out_t, dtype=float), np.array(out_n, dtype=np.int64), np.array(out_k, dtype=np.int64))


# --- the model -------------------------------------------------------------------------------------------


def _stationary(policy: AdaptivePolicy, x: np.ndarray) -> np.ndarray:
    """The stationary law of the step chain, x_k = L * I_k (q_k = e^(-x_k)), in closed form, computed in logs
    (products of q or of q/(1-q) over long ladders under- and overflow)."""
    K = policy.top
    if K == 0:
        return np.ones(1)
    log_q = -x
    log_p = np.log(np.maximum(-np.expm1(-x), 1e-300))  # log(1 - q)
    log_a = np.zeros(K + 1)
    if policy.shrink == "reset":  # a_k = q_0...q_(k-1) below the top; the top also keeps what stays there
        log_a[1:] = np.cumsum(log_q[:-1])
        log_a[K] = log_a[K - 1] + log_q[K - 1] - log_p[K]
    else:  # birth-death: detailed balance pi_k q_k = pi_(k+1) (1 - q_(k+1))
        log_a[1:] = np.cumsum(log_q[:-1] - log_p[1:])
    a = np.exp(log_a - log_a.max())
    return a / a.sum()


def _per_poll_sd(policy: AdaptivePolicy, q: np.ndarray) -> float | None:
    """sqrt of n * Var(empty polls / n) as n grows (the chain's asymptotic variance): a poll's outcome
    depends on the step its predecessors left, so this is not the binomial sqrt(p(1 - p))."""
    K = policy.top
    if K > _VARIANCE_STEPS:
        return None
    # states (k, e): the poll made at step k was empty (e = 1) or useful (e = 0)
    n = 2 * (K + 1)
    P = np.zeros((n, n))
    for k in range(K + 1):
        for e in (0, 1):
            nxt = policy.step(k, useful=not e)
            P[2 * k + e, 2 * nxt + 1] = q[nxt]
            P[2 * k + e, 2 * nxt] = 1 - q[nxt]
    w, v = np.linalg.eig(P.T)
    pi = np.real(v[:, np.argmin(np.abs(w - 1))])
    pi = pi / pi.sum()
    f = np.tile([0.0, 1.0], K + 1)
    fc = f - pi @ f
    Z = np.linalg.inv(np.eye(n) - P + np.outer(np.ones(n), pi))  # the fundamental matrix
    var = 2 * float(pi @ (fc * (Z @ fc))) - float(pi @ (fc * fc))
    return math.sqrt(max(var, 0.0))


def _latency_quantile(intervals: np.ndarray, weights: np.ndarray, p: float) -> float:
    """Quantile p of a mixture of Uniform(0, I_k) with weights w_k (bisection on its CDF)."""
    lo, hi = 0.0, float(intervals.max())
    for _ in range(60):
        mid = (lo + hi) / 2
        if float(weights @ np.minimum(1.0, mid / intervals)) < p:
            lo = mid
        else:
            hi = mid
    return hi


def chain_model(policy: AdaptivePolicy, total_rate: float) -> dict[str, Any]:
    """The exact stationary model of the policy on a Poisson feed of `total_rate` changes per second."""
    if total_rate <= 0:
        raise ValueError("total_rate must be > 0")
    ladder = policy.ladder()
    q = np.exp(-total_rate * ladder)
    pi = _stationary(policy, total_rate * ladder)
    wasted = float(pi @ q)
    mean_i = float(pi @ ladder)
    weights = pi * ladder / mean_i  # where a change falls: in an interval of step k, w.p. pi_k I_k / E[I]
    lt = total_rate * mean_i
    return {
        "wasted_fraction": wasted,
        "wasted_fraction_sd_per_poll": _per_poll_sd(policy, q),
        "latency_mean_ms": float(pi @ ladder**2) / (2 * mean_i) * 1e3,
        "latency_p50_ms": _latency_quantile(ladder, weights, 0.50) * 1e3,
        "latency_p99_ms": _latency_quantile(ladder, weights, 0.99) * 1e3,
        "requests_per_change": 1.0 / lt,
        "changes_per_useful_poll": lt / (1 - wasted) if wasted < 1 else None,
        "lambda_T": lt,  # mean changes per poll: the fixed poller's lambda*T, with T = E[I]
        "mean_interval_s": mean_i,
        "method": "markov chain",
    }


def simulated_model(policy: AdaptivePolicy, process: str, rate: float, resources: int, seed: int,
                    polls: int = SIM_POLLS, blocks: int = SIM_BLOCKS) -> dict[str, Any]:
    """The model by exact simulation in virtual time: about `polls` polls of the policy over seeded change
    streams of `resources` resources (`process`: "poisson" or "constant"), in `blocks` independent blocks, each
    with its own stream (a constant process is periodic: one draw of its phases would be one arrangement, not
    the expectation over them) and without its first 5% (the steps forget where they started)."""
    from bench.workload import change_times  # numpy work only when a simulated model is asked for

    ladder = policy.ladder()
    L = rate * resources
    # a block long enough for its share of polls: at most one change per poll on average, at least the shortest
    mean_gap = min(float(ladder.max()), max(float(ladder.min()), 1.0 / L))
    horizon = min(mean_gap * polls / blocks / 0.95, MAX_SIM_CHANGES / blocks / L)
    kw = {"rate": rate} if process == "poisson" else {"interval": 1.0 / rate}
    n_new, lat, intervals = [], [], []
    for child in np.random.SeedSequence(seed).spawn(blocks):
        rng = np.random.default_rng(child)
        t, _ = change_times(process, resources, horizon, rng, **kw)
        r = replay(policy, t, float(rng.uniform(0.0, ladder[0])), horizon)
        keep = r.t >= 0.05 * horizon
        n_new.append(r.n_new[keep])
        intervals.append(ladder[r.step[keep]])
        seen = r.first_poll_after(t)
        counted = (t >= r.t[keep][0]) & (seen < len(r.t))
        lat.append(r.t[seen[counted]] - t[counted])
    new, waits, delays = np.concatenate(n_new), np.concatenate(intervals), np.concatenate(lat)
    n_polls, n_changes, n_useful = int(new.size), float(new.sum()), int((new > 0).sum())
    return {
        "wasted_fraction": float((new == 0).mean()),
        "wasted_fraction_sd_per_poll": None,
        "latency_mean_ms": float(delays.mean()) * 1e3,
        "latency_p50_ms": float(np.quantile(delays, 0.50)) * 1e3,
        "latency_p99_ms": float(np.quantile(delays, 0.99)) * 1e3,
        "requests_per_change": n_polls / n_changes if n_changes else None,
        "changes_per_useful_poll": n_changes / n_useful if n_useful else None,
        "lambda_T": n_changes / n_polls,
        "mean_interval_s": float(waits.mean()),
        "method": "simulation",
        "simulated_polls": n_polls,
        "seed": seed,
    }


def adaptive_model(options: Mapping[str, Any], process: str, rate: float, resources: int,
                   seed: int) -> dict[str, Any]:
    """The model of the adaptive poller of a feed of `resources` resources changing at `rate` each: the chain
    for Poisson, a seeded simulation otherwise (and for very long ladders). Advice is not modelled."""
    policy = AdaptivePolicy.from_options(options)
    if process == "poisson" and policy.top <= MAX_CHAIN_STEPS:
        m = chain_model(policy, rate * resources)
    else:
        m = simulated_model(policy, process, rate, resources, seed)
    m["intervals_s"] = [policy.min_s, policy.max_s]
    m["factor"], m["shrink"] = policy.factor, policy.shrink
    if float(options.get("advise_interval") or 0) > 0:
        m["caveat"] = ("the producer's advice (polling.advise_interval) is not modelled: where it binds, polls are "
                       "fewer, later and less often empty than the model says")
    return m
