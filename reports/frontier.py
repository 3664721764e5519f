"""The cost–freshness frontier: every mode's detection latency (p50, p99) against what it cost the producer per
change (requests, bytes, CPU), beside the fixed-interval polling model over a range of intervals.

Points are the run's measured values as summary.json holds them; the curves are labelled model values: the cursor
feed polled every T (requests per change 1/(RλT), latency uniform on [0, T] so p50 T/2 and p99 0.99·T, plus the
measured median round trip). Bytes and CPU on the curves are the model's requests per change times the bytes and CPU
per request this run measured for the cursor poller, a further assumption the caption states.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from bench.modes import MODE_CURSOR
from reports.fmt import fmt_short, get, number
from reports.rundir import RunData

__all__ = ["frontier_points", "model_curve", "draw_frontier", "COSTS", "FRONTIER_SIZE_IN"]

FRONTIER_SIZE_IN = (13.0, 4.6)
# (summary key, axis label, scale to display units)
COSTS: tuple[tuple[str, str, float], ...] = (
    ("requests_per_change", "requests per change", 1.0),
    ("bytes_per_change", "bytes per change", 1.0),
    ("cpu_s_per_change", "producer CPU per change (µs)", 1e6),
)
INTERVAL_SPAN = (0.01, 100.0)  # the model curve covers T from 1/100 to 100 times the run's interval
CURVE_POINTS = 60


def _positive(value: Any) -> float | None:
    x = number(value)
    return x if x is not None and math.isfinite(x) and x > 0 else None


def frontier_points(run: RunData) -> pd.DataFrame:
    """One row per mode with a measured latency: mode, kind, latency p50/p99 (ms) and each cost per change
    (display units; NaN where the run did not measure it)."""
    rows = []
    for mode, section in run.modes.items():
        p50, p99 = _positive(get(section, "latency_ms", "p50")), _positive(get(section, "latency_ms", "p99"))
        if p50 is None or p99 is None:
            continue
        row: dict[str, Any] = {"mode": mode, "kind": section.get("kind"), "latency_p50_ms": p50,
                               "latency_p99_ms": p99, "held_max": get(section, "held_connections", "max")}
        for key, _label, scale in COSTS:
            value = _positive(section.get(key))
            row[key] = value * scale if value is not None else math.nan
        rows.append(row)
    columns = ["mode", "kind", "latency_p50_ms", "latency_p99_ms", "held_max", *(k for k, _l, _s in COSTS)]
    return pd.DataFrame(rows, columns=columns)


def model_curve(run: RunData) -> pd.DataFrame | None:
    """The cursor-feed polling model over a range of intervals T (None without the workload to model): T (s),
    requests per change, latency p50/p99 (ms, plus the measured cursor round trip), and bytes/CPU per change
    scaled from this run's cursor poller's per-request cost (NaN when the run has no cursor poller)."""
    w = run.summary.get("workload")
    lam, resources, interval = (_positive(get(w, k)) for k in ("rate_per_resource", "resources", "poll_interval_s"))
    if lam is None or resources is None or interval is None:
        return None
    cursor = run.modes.get(MODE_CURSOR, {})
    rtt = _positive(cursor.get("rtt_ms_p50")) or 0.0
    per_request = {}
    requests = _positive(cursor.get("requests_per_change"))
    for key, _label, scale in COSTS[1:]:
        value = _positive(cursor.get(key))
        per_request[key] = value * scale / requests if value is not None and requests is not None else math.nan
    T = interval * np.geomspace(*INTERVAL_SPAN, CURVE_POINTS)
    req = 1.0 / (resources * lam * T)
    return pd.DataFrame({
        "interval_s": T, "requests_per_change": req,
        "latency_p50_ms": T / 2 * 1e3 + rtt, "latency_p99_ms": 0.99 * T * 1e3 + rtt,
        **{key: req * per_request[key] for key, _label, _scale in COSTS[1:]},
    })


def draw_frontier(fig: Figure, title: str, run: RunData,
                  colors: dict[str, tuple[float, ...]]) -> tuple[bool, str]:
    """Three panels (requests, bytes, CPU per change), latency p50 (filled) and p99 (open) per mode, and the
    fixed-polling model curves."""
    points = frontier_points(run)
    if points.empty:
        return False, "no mode detected a change in the window, so there is no latency to place"
    curve = model_curve(run)
    fig.set_size_inches(*FRONTIER_SIZE_IN)
    fig.suptitle(title)
    axes = fig.subplots(1, len(COSTS), sharey=True)
    for ax, (key, label, _scale) in zip(axes, COSTS):
        _panel(ax, key, label, points, curve, colors)
    axes[0].set_ylabel("detection latency (ms, log scale)")
    seen: dict[str, Any] = {}  # one legend entry per label over the panels (a mode may miss from one)
    for ax in axes:
        for handle, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, handle)
    fig.legend(list(seen.values()), list(seen.keys()), loc="outside right upper", fontsize=8)
    interval = get(run.summary, "workload", "poll_interval_s")
    note = ("Each mode at its measured detection latency p50 (filled) and p99 (open), joined by a line, against "
            "what it cost the producer per change in this run; lower and further left is better. A mode missing "
            "from a panel had no measured value for that cost. ")
    if curve is not None:
        note += (f"Lines: the cursor-feed polling model for intervals from {fmt_short(curve['interval_s'].iloc[0])}"
                 f" s to {fmt_short(curve['interval_s'].iloc[-1])} s (this run: {fmt_short(interval)} s), "
                 "requests per change 1/(RλT), latency p50 T/2 and p99 0.99·T plus the measured round trip; "
                 "on the bytes and CPU panels, the model's requests times this run's cursor bytes and CPU per "
                 "request (a model, not a measurement).")
    held = points.dropna(subset=["held_max"])
    if len(held):
        note += " Connections held open at the producer (max): " + ", ".join(
            f"{m} {int(h)}" for m, h in zip(held["mode"], held["held_max"])) + "."
    return True, note


def _panel(ax: Axes, key: str, label: str, points: pd.DataFrame, curve: pd.DataFrame | None,
           colors: dict[str, tuple[float, ...]]) -> None:
    if curve is not None and curve[key].notna().any():
        ax.plot(curve[key], curve["latency_p50_ms"], color="0.35", lw=1.2, label="model: fixed polling p50")
        ax.plot(curve[key], curve["latency_p99_ms"], color="0.35", lw=1.2, ls="--",
                label="model: fixed polling p99")
    for row in points.itertuples(index=False):
        x = getattr(row, key)
        if not math.isfinite(x):
            continue
        c = colors.get(row.mode, (0.2, 0.2, 0.2))
        ax.plot([x, x], [row.latency_p50_ms, row.latency_p99_ms], color=c, lw=1.5, alpha=0.7)
        ax.scatter([x], [row.latency_p50_ms], color=c, s=45, zorder=3, label=row.mode)
        ax.scatter([x], [row.latency_p99_ms], facecolors="white", edgecolors=[c], s=45, zorder=3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(label + " (log scale)")
    ax.grid(True, which="major", alpha=0.4)
