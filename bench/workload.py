"""Change processes: when each resource changes. Pure and seeded, shared by the producer, the virtual-time
simulator and tests.

- `change_times` draws every change of a finite horizon at once, vectorised (numpy): the simulator's source,
  and per-resource rates may differ (a fleet of heterogeneous subscriptions).
- `change_schedule` yields (offset_seconds, resource_id) in time order, without end; the producer sleeps
  until each offset and applies the change.

Processes: `poisson` (rate per resource), `constant` (every `interval`, random phase), `bursty` (on/off:
exponential on and off periods of mean `on` and `off`, Poisson changes while on, `rate` the *mean* rate
over both), `trace` (a recorded stream replayed cyclically, see `bench.traces`). Rates and intervals here
are *live* (already time-scaled); a Trace is in its own seconds and `trace_scale` divides them.
"""

from __future__ import annotations

import heapq
import math
from typing import Iterator

import numpy as np

from bench.traces import Trace

__all__ = ["change_schedule", "change_times", "BLOCK_EVENTS"]

BLOCK_EVENTS = 200_000  # expected changes per block when the live schedule of bursty/trace is drawn in blocks
_CHUNK = 20_000_000  # resources x periods (or x trace events) drawn per numpy pass: bounds the memory


def change_schedule(process: str, resources: int, seed: int, *, rate: float | None = None,
                    interval: float | None = None, on: float | None = None, off: float | None = None,
                    trace: Trace | None = None, trace_scale: float = 1.0) -> Iterator[tuple[float, int]]:
    """Offsets (s, from the generator's start) and resources of successive changes.

    - `poisson`: each resource changes as an independent Poisson process of `rate` per second; the merged
      stream is Poisson with rate resources*rate and a uniformly drawn resource per event.
    - `constant`: each resource changes every `interval` seconds, with its own uniform random phase.
    - `bursty`, `trace`: drawn by `change_times` in consecutive blocks of about BLOCK_EVENTS changes. A trace
      is exact across blocks; bursty on/off restarts each block from its stationary state (blocks last at
      least 50 on/off cycles, so the seam is a small effect on a stream that is bursty anyway).
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
    if process in ("bursty", "trace"):
        _check(process, resources, rate=rate, interval=interval, on=on, off=off, trace=trace)
        return _blocks(process, resources, rng, rate=rate, on=on, off=off, trace=trace, trace_scale=trace_scale)
    raise ValueError(f"unknown change process {process!r}")


def change_times(process: str, resources: int, horizon: float, rng: np.random.Generator, *,
                 rate: float | np.ndarray | None = None, interval: float | np.ndarray | None = None,
                 on: float | None = None, off: float | None = None, trace: Trace | None = None,
                 trace_scale: float = 1.0, start: float = 0.0,
                 offsets: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Every change in [start, start + horizon): (times float64 ascending, resource ids int64), vectorised.

    `rate` (poisson, bursty: mean changes/s) and `interval` (constant) may be one value or one per resource.
    `trace`: each resource replays the trace cyclically from its own random offset (`offsets`, drawn when
    None); a trace with ids maps id i to resource i mod `resources` and replays from its first event.
    """
    _check(process, resources, rate=rate, interval=interval, on=on, off=off, trace=trace)
    if horizon <= 0:
        return np.empty(0), np.empty(0, dtype=np.int64)
    if process == "poisson":
        t, rid = _poisson_times(rng, resources, horizon, _per_resource(rate, resources))
    elif process == "constant":
        t, rid = _constant_times(rng, resources, horizon, _per_resource(interval, resources))
    elif process == "bursty":
        assert on is not None and off is not None
        t, rid = _bursty_times(rng, resources, horizon, _per_resource(rate, resources), on, off)
    else:
        assert trace is not None
        if offsets is None:
            offsets = _trace_offsets(rng, resources, trace, trace_scale)
        return _trace_times(trace, trace_scale, resources, start, start + horizon, offsets)
    order = np.argsort(t, kind="stable")
    return t[order] + start, rid[order]


def _check(process: str, resources: int, **p: object) -> None:
    if resources < 1:
        raise ValueError("resources must be >= 1")
    need = {"poisson": ("rate",), "constant": ("interval",), "bursty": ("rate", "on", "off"), "trace": ("trace",)}
    if process not in need:
        raise ValueError(f"unknown change process {process!r}")
    for key in need[process]:
        value = p[key]
        if value is None:
            raise ValueError(f"{process} needs {key}")
        if key != "trace" and not np.all(np.asarray(value, dtype=float) > 0):
            raise ValueError(f"{process} needs {key} > 0")


def _per_resource(value: object, resources: int) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        return np.full(resources, float(arr))
    if arr.shape != (resources,):
        raise ValueError(f"one value per resource expected: {arr.shape} for {resources} resources")
    return arr


def _spread(counts: np.ndarray) -> np.ndarray:
    """Resource id of each of sum(counts) events, in resource order."""
    return np.repeat(np.arange(counts.size, dtype=np.int64), counts)


def _poisson_times(rng: np.random.Generator, resources: int, horizon: float,
                   rates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    counts = rng.poisson(rates * horizon)
    return rng.uniform(0.0, horizon, int(counts.sum())), _spread(counts)


def _constant_times(rng: np.random.Generator, resources: int, horizon: float,
                    intervals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    phases = rng.uniform(0.0, intervals)
    counts = np.ceil((horizon - phases) / intervals).astype(np.int64).clip(min=0)
    rid = _spread(counts)
    first = np.cumsum(counts) - counts  # index of each resource's first event
    k = np.arange(rid.size, dtype=np.int64) - np.repeat(first, counts)
    return phases[rid] + k * intervals[rid], rid


def _bursty_times(rng: np.random.Generator, resources: int, horizon: float, rates: np.ndarray,
                  on: float, off: float) -> tuple[np.ndarray, np.ndarray]:
    """Alternating exponential on/off periods per resource, stationary at t = 0; Poisson changes while on
    at rate * (on + off) / on, so the long-run mean is `rate`."""
    cycles = max(2, math.ceil(horizon / (on + off) * 1.3) + 4)
    per = max(1, _CHUNK // (2 * cycles))
    times, ids = [], []
    for lo in range(0, resources, per):
        hi = min(resources, lo + per)
        n = hi - lo
        k = cycles
        while True:
            d_on = rng.exponential(on, (n, k))
            d_off = rng.exponential(off, (n, k))
            start_off = rng.random(n) >= on / (on + off)  # stationary: off with probability off/(on+off)
            shift = np.where(start_off, rng.exponential(off, n), 0.0)
            ends = shift[:, None] + np.cumsum(d_on + d_off, axis=1)
            if np.all(ends[:, -1] >= horizon):
                break
            k *= 2
        a = ends - d_on - d_off  # start of each on period
        b = np.minimum(a + d_on, horizon)
        keep = a < horizon
        lengths = np.where(keep, b - a, 0.0)
        counts = rng.poisson(lengths * (rates[lo:hi, None] * (on + off) / on))
        flat = counts.ravel()
        starts = np.repeat(a.ravel(), flat)
        spans = np.repeat(lengths.ravel(), flat)
        times.append(starts + rng.random(starts.size) * spans)
        ids.append(np.repeat(np.arange(lo, hi, dtype=np.int64), counts.sum(axis=1)))
    return np.concatenate(times), np.concatenate(ids)


def _trace_offsets(rng: np.random.Generator, resources: int, trace: Trace, trace_scale: float) -> np.ndarray:
    if trace.ids is not None:
        return np.zeros(1)  # one stream for all resources, replayed as recorded
    return rng.uniform(0.0, trace.cycle / trace_scale, resources)


def _trace_times(trace: Trace, scale: float, resources: int, t0: float, t1: float,
                 offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Events in [t0, t1) of the cyclic replay: time of event j in cycle m for a resource with offset o is
    (times[j] + m * cycle) / scale - o."""
    base = trace.times / scale
    cycle = trace.cycle / scale
    out_t, out_r = [], []
    # one stream per resource (each from its own offset), or the one stream of a trace with ids
    streams = [(-1, float(offsets[0]))] if trace.ids is not None else list(enumerate(offsets.tolist()))
    for rid, o in streams:
        ms = np.arange(math.floor((t0 + o) / cycle) - 1, math.floor((t1 + o) / cycle) + 2, dtype=np.float64)
        t = (base[None, :] + ms[:, None] * cycle - o).ravel()
        keep = (t >= t0) & (t < t1)
        out_t.append(t[keep])
        if trace.ids is None:
            out_r.append(np.full(int(keep.sum()), rid, dtype=np.int64))
        else:
            out_r.append(np.tile(trace.ids % resources, ms.size)[keep])
    t = np.concatenate(out_t)
    r = np.concatenate(out_r)
    order = np.argsort(t, kind="stable")
    return t[order], r[order]


def _blocks(process: str, resources: int, rng: np.random.Generator, *, rate: float | None, on: float | None,
            off: float | None, trace: Trace | None, trace_scale: float) -> Iterator[tuple[float, int]]:
    if process == "trace":
        assert trace is not None
        per_s = trace.mean_rate * trace_scale * (1 if trace.ids is not None else resources)
        offsets = _trace_offsets(rng, resources, trace, trace_scale)
    else:
        assert rate is not None and on is not None and off is not None
        per_s = rate * resources
        offsets = None
    block = BLOCK_EVENTS / per_s
    if process == "bursty":
        assert on is not None and off is not None
        block = max(block, 50 * (on + off))
    start = 0.0
    while True:
        t, r = change_times(process, resources, block, rng, rate=rate, on=on, off=off, trace=trace,
                            trace_scale=trace_scale, start=start, offsets=offsets)
        yield from zip(t.tolist(), r.tolist())
        start += block


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
