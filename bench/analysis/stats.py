"""Statistics over raw samples: nearest-rank percentiles, latency summaries, Wilson intervals.

Percentiles are nearest-rank: the smallest sample with at least p% of the samples at or below it (what
HdrHistogram reports), so they are always values that occurred.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = ["percentile", "latency_stats", "wilson_interval"]


def percentile(sorted_values: np.ndarray, p: float) -> float:
    """Nearest-rank percentile of ascending `sorted_values` (p in (0, 100])."""
    n = len(sorted_values)
    if n == 0:
        raise ValueError("no samples")
    rank = max(1, math.ceil(p / 100.0 * n))
    return float(sorted_values[rank - 1])


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """95% Wilson score interval of a proportion k/n: honest near 0 and 1, where p +- z*SE is not."""
    if n == 0:
        return None
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def latency_stats(latencies_ms: pd.Series | np.ndarray) -> dict[str, float | int | None]:
    values = np.sort(np.asarray(latencies_ms, dtype=float))
    if len(values) == 0:
        return {"mean": None, "p50": None, "p90": None, "p99": None, "max": None, "n": 0}
    return {"mean": float(values.mean()), "p50": percentile(values, 50), "p90": percentile(values, 90),
            "p99": percentile(values, 99), "max": float(values[-1]), "n": int(len(values))}
