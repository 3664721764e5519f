"""Draw the report's figures as PNG files with matplotlib, from values the analysis already computed and from the
raw tables (the delivery timeline, in timeline.py).

Figures are built with `matplotlib.figure.Figure` and the Agg canvas directly, not through pyplot: no global
backend is switched (a notebook importing this keeps its own) and no figure is left open in pyplot's registry.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, PercentFormatter

from bench.modes import find_kind
from reports.fmt import fmt_num, fmt_pct, fmt_short, get, number, wasted_interval
from reports.frontier import draw_frontier
from reports.rundir import RunData
from reports.timeline import draw_delivery_timeline

__all__ = ["DPI", "FigureOutcome", "make_figures"]

DPI = 100
SIZE_IN = (7.0, 4.2)
MODEL_LABEL_POISSON = r"model $e^{-\lambda T}$"  # renders as model e^(−λT)
MODEL_LABEL = "model (analytic)"
MAX_CDF_POINTS = 20_000  # per mode: more points than pixels only slows drawing
LOG_SPAN = 100.0  # log y when values span more than two decades
MODEL_OFFSET = 0.2  # model markers sit beside the bar's centre, so the error bar stays visible


@dataclass(frozen=True)
class FigureOutcome:
    """One figure: written to `path`, or skipped (`path` None) for the reason given in `note`."""

    name: str
    title: str
    path: Path | None
    note: str


# A drawer fills the axes and returns (True, caption), or draws nothing and returns (False, why it skipped).
Drawer = Callable[[Axes, RunData, dict[str, tuple[float, ...]]], tuple[bool, str]]
# The same for a whole figure (several panels, its own size): it gets the figure and its title.
FigureDrawer = Callable[[Figure, str, RunData, dict[str, tuple[float, ...]]], tuple[bool, str]]


def make_figures(run: RunData, out_dir: Path, names: Collection[str] | None = None) -> list[FigureOutcome]:
    """Write every figure (of `names`, when given) that has data into `out_dir`; a skipped figure's stale PNG is
    removed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    colors = _mode_colors(run)
    specs: Sequence[tuple[str, str, FigureDrawer]] = (
        ("latency_cdf", "Detection latency (ECDF)", _one_axes(_draw_latency_cdf)),
        ("wasted_fraction", "Wasted fraction of polls", _one_axes(_draw_wasted_fraction)),
        ("requests_per_change", "Requests per change", _one_axes(_draw_requests_per_change)),
        ("frontier", "Cost–freshness frontier: detection latency against cost per change", draw_frontier),
        ("delivery_timeline", "Webhook deliveries through the faults",
         lambda fig, title, run, _colors: draw_delivery_timeline(fig, title, run)),
    )
    outcomes = []
    for name, title, draw in specs:
        if names is not None and name not in names:
            continue
        path = out_dir / f"{name}.png"
        fig = Figure(figsize=SIZE_IN, dpi=DPI, layout="constrained")
        FigureCanvasAgg(fig)
        drawn, note = draw(fig, title, run, colors)
        outcomes.append(save_or_skip(fig, path, name, title, drawn, note))
    return outcomes


def save_or_skip(fig: Figure, path: Path, name: str, title: str, drawn: bool, note: str) -> FigureOutcome:
    """Write the drawn figure (no timestamp metadata, so reruns are byte-identical) or remove a stale PNG."""
    if drawn:
        fig.savefig(path, dpi=DPI, format="png", metadata={"Software": None})
    else:
        path.unlink(missing_ok=True)
    fig.clear()
    return FigureOutcome(name, title, path if drawn else None, note)


def _one_axes(draw: Drawer) -> FigureDrawer:
    """A figure drawer for the common case: one titled axes."""
    def on_figure(fig: Figure, title: str, run: RunData, colors: dict[str, tuple[float, ...]]) -> tuple[bool, str]:
        ax = fig.add_subplot()
        ax.set_title(title)
        return draw(ax, run, colors)
    return on_figure


def _mode_colors(run: RunData) -> dict[str, tuple[float, ...]]:
    """One colour per mode, the same in every figure; summary order first, then modes only in detections."""
    names = list(run.modes)
    names += sorted(m for m in set(run.detections["mode"].astype(str)) if m not in names)
    return mode_colours(names)


def mode_colours(modes: list[str]) -> dict[str, tuple[float, ...]]:
    """One colour per mode: the first mode of each kind gets its kind's colour (bench.modes), any other mode the
    next palette colour no mode has yet, so that a kind looks the same in every report."""
    out: dict[str, tuple[float, ...]] = {}
    kinds_seen: set[str] = set()
    for m in modes:
        kind = find_kind(m)
        if kind is not None and kind.name not in kinds_seen:
            out[m] = to_rgb(kind.colour)
            kinds_seen.add(kind.name)
    spare = [c for c in map(tuple, colormaps["tab10"].colors) if c not in out.values()]
    rest = [m for m in modes if m not in out]
    out.update({m: spare[i % len(spare)] for i, m in enumerate(rest)})
    return {m: out[m] for m in modes}


def _draw_latency_cdf(ax: Axes, run: RunData, colors: dict[str, tuple[float, ...]]) -> tuple[bool, str]:
    det = run.detections
    latency = pd.to_numeric(det["latency_ms"], errors="coerce")
    modes = det["mode"].astype(str)
    hidden = 0
    drawn = False
    for mode in colors:
        values = latency[(modes == mode) & np.isfinite(latency)].to_numpy(dtype=float)
        if values.size == 0:
            continue
        x = np.sort(values)
        y = np.arange(1, x.size + 1) / x.size
        positive = x > 0  # a log axis cannot show 0 ms; the curve still starts at their share
        hidden += int(x.size - positive.sum())
        x, y = x[positive], y[positive]
        if x.size == 0:
            continue
        start = 1.0 - x.size / values.size
        if x.size > MAX_CDF_POINTS:
            keep = np.unique(np.linspace(0, x.size - 1, MAX_CDF_POINTS).round().astype(int))
            x, y = x[keep], y[keep]
        ax.plot(np.r_[x[0], x], np.r_[start, y], drawstyle="steps-post", color=colors[mode],
                label=f"{mode} (n={values.size:,})")
        drawn = True
    if not drawn:
        return False, "no change was detected in the measured window, so there is no latency to plot"
    ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    ax.set_yticks([0, 0.25, 0.5, 0.75, 0.9, 1.0])
    ax.grid(True, which="major", alpha=0.4)
    ax.grid(True, which="minor", axis="x", alpha=0.15)
    ax.set_xlabel("detection latency t_obs − t_change (ms, log scale)")
    ax.set_ylabel("fraction of detected changes")
    _legend_outside(ax)
    note = "Empirical CDF of the detection latency of every change detected in the window, per mode."
    if hidden:
        note += (f" {hidden:,} detections with latency ≤ 0 ms cannot be placed on the log axis;"
                 " the curves start at their share.")
    return True, note


def _draw_wasted_fraction(ax: Axes, run: RunData, colors: dict[str, tuple[float, ...]]) -> tuple[bool, str]:
    modes = [m for m, s in run.modes.items() if s.get("kind") == "polling"]
    measured = [_finite(run.modes[m].get("wasted_fraction")) for m in modes]
    half = [_error_bar(run.modes[m], v) for m, v in zip(modes, measured)]
    model = [_finite(get(run.modes[m], "model", "wasted_fraction")) for m in modes]
    if all(v is None for v in measured + model):
        return False, "no polling mode reported a measured or model wasted fraction"
    _bars(ax, modes, measured, half, colors, fmt_pct)
    poisson = run.change_process == "poisson"
    _model_markers(ax, model, MODEL_LABEL_POISSON if poisson else MODEL_LABEL)
    top = max([(v or 0) + (h[1] if h else 0) for v, h in zip(measured, half)] + [v or 0 for v in model] + [1.0])
    ax.set_ylim(0, top * 1.12)
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    ax.set_ylabel("wasted fraction (% of polls that were empty)")
    ax.set_xlabel("mode")
    ax.grid(True, axis="y", alpha=0.4)
    _legend_outside(ax)
    model_text = "e^(−λT) for Poisson changes" if poisson else "for this change process"
    return True, ("Measured share of polls that returned nothing new, with its 95% Wilson score interval; "
                  f"the diamond is the analytic prediction {model_text}.")


def _draw_requests_per_change(ax: Axes, run: RunData, colors: dict[str, tuple[float, ...]]) -> tuple[bool, str]:
    modes = list(run.modes)
    measured = [_finite(run.modes[m].get("requests_per_change")) for m in modes]
    model = [_finite(get(run.modes[m], "model", "requests_per_change")) for m in modes]
    if all(v is None for v in measured + model):
        return False, "no mode reported requests per change"
    positive = [v for v in measured + model if v is not None and v > 0]
    log = bool(positive) and max(positive) / min(positive) > LOG_SPAN
    if log:
        ax.set_yscale("log")
    _bars(ax, modes, measured, [None] * len(modes), colors, fmt_num)
    _model_markers(ax, model, MODEL_LABEL)
    if log:
        ax.set_ylim(min(positive) / 2, max(positive) * 4)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: fmt_short(v)))  # 0.01 … 1,000, not 10^k
    else:
        ax.set_ylim(0, max(positive, default=1.0) * 1.15)
    ax.set_ylabel("requests per change" + (" (log scale)" if log else ""))
    ax.set_xlabel("mode")
    ax.grid(True, axis="y", which="major", alpha=0.4)
    _legend_outside(ax)
    return True, ("Requests the mode made (polls, or delivery attempts including retries) divided by the changes "
                  "in the window; diamonds are analytic predictions where a model exists.")


def _finite(value: object) -> float | None:
    """A plottable number, or None (null, NaN, infinite: nothing to draw)."""
    x = number(value)
    return x if x is not None and math.isfinite(x) else None


def _error_bar(mode: dict[str, object], value: float | None) -> tuple[float, float] | None:
    """(below, above) extents of the 95% interval around `value`, or None."""
    ci = wasted_interval(mode)  # type: ignore[arg-type]
    if ci is None or value is None:
        return None
    return max(0.0, value - ci[0]), max(0.0, ci[1] - value)


def _bars(ax: Axes, modes: list[str], values: list[float | None], half: list[tuple[float, float] | None],
          colors: dict[str, tuple[float, ...]], label: Callable[[float], str]) -> None:
    """Measured values as labelled bars; a null value leaves its slot empty, marked "no data"."""
    xs = np.arange(len(modes))
    err_label = "95% interval (Wilson)"
    log = ax.get_yscale() == "log"
    for x, mode, value, err in zip(xs, modes, values, half):
        if value is None or (log and value <= 0):  # a log axis has no 0: label it at the bottom
            text = "no data" if value is None else label(value)
            ax.annotate(text, (x, 0), xytext=(0, 4), textcoords="offset points", ha="center", va="bottom",
                        color="0.4", xycoords=("data", "axes fraction"))
            continue
        ax.bar(x, value, width=0.6, color=colors[mode], alpha=0.85)
        if err is not None:
            ax.errorbar(x, value, yerr=[[err[0]], [err[1]]], color="black", capsize=6, linewidth=1.2, label=err_label)
            err_label = "_nolegend_"
        ax.annotate(label(value), (x, value + (err[1] if err else 0)), xytext=(0, 4), textcoords="offset points",
                    ha="center", va="bottom", fontsize=9)
    ax.set_xticks(xs, modes, rotation=20 if len(modes) > 4 else 0)
    ax.set_xlim(-0.6, len(modes) - 0.4)


def _model_markers(ax: Axes, values: list[float | None], label: str) -> None:
    points = [(x + MODEL_OFFSET, v) for x, v in enumerate(values) if v is not None]
    if points:
        xs, ys = zip(*points)
        ax.scatter(xs, ys, marker="D", s=60, color="white", edgecolors="black", linewidths=1.5, zorder=4,
                   clip_on=False, label=label)


def _legend_outside(ax: Axes) -> None:
    """Legend right of the axes: bars near the top (wasted fractions near 1) leave no free corner inside."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=9)
