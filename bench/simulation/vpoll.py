"""Exact outcomes of fixed-interval poll schedules in virtual time (numpy): the core of the simulator.

Subscriber s polls at phase[s] + k * interval[s] for integer k (no jitter, like the live pollers). A poll
at time p sees every change at c <= p, so the first poll that sees a change at c has index
k = ceil((c - phase) / interval). Polls are never enumerated: a subscriber's polls in a window are counted
in closed form, and its useful polls are the distinct (subscriber, k) among its changes. The cost is
O(changes + subscribers), whatever the number of polls. (A change exactly at a poll instant is seen by
that poll, up to float rounding; with random phases this has probability zero.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Seen", "seen_by", "poll_range", "by_subscriber"]


@dataclass(frozen=True)
class Seen:
    """Per change (sorted by subscriber, then time): the first poll that sees it.

    k: poll index; t_poll: its time; first / last: the change is the first / last one that poll sees
    (a cursor poll returns every change of its group; a state poll returns only the last one)."""

    k: np.ndarray
    t_poll: np.ndarray
    first: np.ndarray
    last: np.ndarray

    def group_sizes(self) -> np.ndarray:
        """Changes returned by each useful poll, in the order of the `first` changes."""
        starts = np.flatnonzero(self.first)
        return np.diff(np.append(starts, self.first.size))


def by_subscriber(sub: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sub, t) reordered by subscriber, then time; `t` must already be ascending (change_times' order)."""
    order = np.argsort(sub, kind="stable")
    return sub[order], t[order]


def seen_by(sub: np.ndarray, t: np.ndarray, phase: np.ndarray, interval: np.ndarray,
            k_min: int | None = None) -> Seen:
    """The first poll of subscriber sub[i] at or after t[i], for changes sorted by (sub, t).

    `k_min`: polls before index k_min do not exist (pollers that start at time 0 have k_min = 0: their
    first poll, at `phase`, sees every earlier change). None: the schedule extends into the past.
    """
    T = interval[sub]
    ph = phase[sub]
    k = np.ceil((t - ph) / T)
    if k_min is not None:
        np.maximum(k, k_min, out=k)
    k = k.astype(np.int64)
    n = k.size
    first = np.ones(n, dtype=bool)
    if n > 1:
        first[1:] = (sub[1:] != sub[:-1]) | (k[1:] != k[:-1])
    last = np.ones(n, dtype=bool)
    last[:-1] = first[1:]
    return Seen(k=k, t_poll=ph + k * T, first=first, last=last)


def poll_range(phase: np.ndarray, interval: np.ndarray, t0: float, t1: float,
               k_min: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per subscriber, the poll indices [lo, hi) whose times lie in [t0, t1): hi - lo polls."""
    lo = np.ceil((t0 - phase) / interval)
    if k_min is not None:
        np.maximum(lo, k_min, out=lo)
    hi = np.maximum(lo, np.ceil((t1 - phase) / interval))
    return lo.astype(np.int64), hi.astype(np.int64)
