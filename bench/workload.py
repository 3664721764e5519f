"""Change processes: when each resource changes. Pure and seeded, shared by the producer and tests.

`change_schedule` yields (offset_seconds, resource_id) in time order, without end; the producer sleeps
until each offset and applies the change. Rates and intervals here are *live* (already time-scaled).
"""

from __future__ import annotations

import heapq
from typing import Iterator

import numpy as np

__all__ = ["change_schedule"]


def change_schedule(process: str, resources: int, seed: int, *, rate: float | None = None,
                    interval: float | None = None) -> Iterator[tuple[float, int]]:
    """Offsets (s, from the generator's start) and resources of successive changes.

    - `poisson`: each resource changes as an independent Poisson process of `rate` per second; the merged
      stream is Poisson with rate resources*rate and a uniformly drawn resource per event.
    - `constant`: each resource changes every `interval` seconds, with its own uniform random phase.
    """
    rng = np.random.default_rng(seed)
    if process == "poisson":
        if rate is None or rate <= 0:
            raise ValueError("poisson needs rate > 0")
        return _poisson(rng, resources, rate)
    if process == "constant":
        if interval is None or interval <= 0:
            raise ValueError("constant needs interval > 0")
        return _constant(rng, resources, interval)
    raise ValueError(f"unknown change process {process!r}")


def _poisson(rng: np.random.Generator, resources: int, rate: float) -> Iterator[tuple[float, int]]:
    total = resources * rate
    t = 0.0
    while True:  # draw in blocks: one numpy call per 4096 events keeps the generator cheap
        gaps = rng.exponential(1.0 / total, 4096)
        ids = rng.integers(0, resources, 4096)
        for gap, rid in zip(gaps.tolist(), ids.tolist()):
            t += gap
            yield t, rid


def _constant(rng: np.random.Generator, resources: int, interval: float) -> Iterator[tuple[float, int]]:
    phases = rng.uniform(0.0, interval, resources)
    heap = [(float(p), rid) for rid, p in enumerate(phases)]
    heapq.heapify(heap)
    while True:
        t, rid = heapq.heappop(heap)
        yield t, rid
        heapq.heappush(heap, (t + interval, rid))
