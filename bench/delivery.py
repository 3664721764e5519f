"""The arithmetic of a webhook delivery schedule, one source for the live dispatcher and the outage model.

Pure functions over `bench.config.DeliveryCfg`: the delay after a failed attempt with the dispatcher's jitter
rule (`retry_delay`, and `jittered` on arrays for the virtual-time model), the nominal attempt offsets, the
run of consecutive failures a subscription keeps (`FailureRun`) and the disable rules (`disable_reason`;
`fires` is the same test on arrays). `servers/producer/dispatcher.py` calls these for every attempt and
`bench.simulation.outage` for every simulated one, so the two cannot disagree on the schedule.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from bench.config import DeliveryCfg

__all__ = ["GONE", "jittered", "retry_delay", "nominal_offsets", "FailureRun", "disable_reason", "fires"]

GONE = 410  # a 410 Gone answer disables the subscription under every profile (Standard Webhooks' rule)


def jittered(nominal: Any, jitter: float, u: Any) -> Any:
    """The jitter rule: `nominal` * (1 + a uniform draw in [-jitter, +jitter)), the draw given as `u` in [0, 1).
    Works on floats and on numpy arrays alike (`u` = random.random() is random.uniform(-j, j)'s own draw)."""
    return nominal * (1.0 + jitter * (2.0 * u - 1.0))


def retry_delay(cfg: DeliveryCfg, attempt: int, rng: random.Random) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based): the schedule's delay, +-jitter."""
    return float(jittered(cfg.nominal_delay(attempt), cfg.jitter, rng.random()))


def nominal_offsets(cfg: DeliveryCfg) -> np.ndarray:
    """Nominal send times of attempts 1..cfg.attempts after the first (0), before jitter and timeouts."""
    delays = [cfg.nominal_delay(n) for n in range(1, cfg.attempts)]
    return np.concatenate([[0.0], np.cumsum(delays)]) if delays else np.zeros(1)


@dataclass
class FailureRun:
    """The subscription's current run of failed attempts (any change): how many, and when the first was sent
    (seconds on the caller's clock; None when the last attempt succeeded). Updated in the order attempts end."""

    streak: int = 0
    since: float | None = None

    def record(self, ok: bool, t_send: float) -> None:
        if ok:
            self.streak, self.since = 0, None
        else:
            self.streak += 1
            if self.since is None:
                self.since = t_send


def fires(cfg: DeliveryCfg, streak: Any, failing_for: Any) -> Any:
    """Whether a failed attempt that leaves the run at `streak` failures, `failing_for` seconds after the run's
    first attempt was sent, disables the subscription: `disable_after_failures` consecutive failed attempts, or
    `disable_after` (divided by `delay_scale`) of continuous failure. Floats or numpy arrays alike."""
    n, limit = cfg.disable_after_failures, cfg.live_disable_after
    by_count = (np.asarray(streak) >= n) if n else np.zeros(np.shape(streak), dtype=bool)
    by_time = (np.asarray(failing_for) >= limit) if limit else np.zeros(np.shape(failing_for), dtype=bool)
    return by_count | by_time


def disable_reason(cfg: DeliveryCfg, status: int, run: FailureRun, t_done: float) -> str | None:
    """Why the failed attempt that ended at `t_done` (already recorded in `run`) disables the subscription, or
    None: 410 Gone, or a rule of `fires`."""
    if status == GONE:
        return "410 Gone"
    failing_for = t_done - run.since if run.since is not None else 0.0
    if not bool(fires(cfg, run.streak, failing_for)):
        return None
    if cfg.disable_after_failures and run.streak >= cfg.disable_after_failures:
        return f"{run.streak} consecutive failed attempts"
    return f"failing continuously for {failing_for:.3g} s (limit {cfg.live_disable_after:g} s)"
