"""The Zapier reproduction's figures, from its summary.json: the wasted fraction live and simulated vs the claim,
polling/webhook ratios per dimension vs the claimed 66x, detection latency per poll interval vs the webhook's, and
the heatmap of the simulated wasted fraction over poll interval x change rate with the model's contours.

Drawn like the run report's figures (matplotlib Figure + Agg canvas, no pyplot). The model's contour lines are
the lines lambda*T = -ln(level) (the model e^(-lambda*T) is constant along them), the 98.5% one at the grid's own
`claim_lambda_T`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator, PercentFormatter

from bench.analysis.claims import CLAIMED_LOAD_RATIO, RATIO_TOLERANCE
from reports.figures import DPI, MODEL_LABEL_POISSON, FigureOutcome, save_or_skip
from reports.fmt import fmt_pct, fmt_short, get, number

__all__ = ["make_reproduction_figures", "VERDICT_COLORS"]

VERDICT_COLORS = {"holds": "#2e7d32", "holds only when": "#ef6c00", "does not hold": "#c62828", "not run": "#9e9e9e"}
MODEL_LEVELS = (0.5, 0.9, 0.99, 0.999)  # thin model contours besides the claim's 98.5%
USEFUL_FLOOR = 1e-5  # cells with no useful poll at all are drawn at this share (below the colour scale)
Data = dict[str, Any]


def make_reproduction_figures(s: Data, out_dir: Path) -> list[FigureOutcome]:
    """Write every figure the summary has data for into `out_dir`; a skipped figure's stale PNG is removed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    specs: tuple[tuple[str, str, tuple[float, float], Callable[[Figure, str, Data], tuple[bool, str]]], ...] = (
        ("wasted_vs_claim", "Wasted fraction: live and simulated vs the claim", (7.0, 4.4), _one(_draw_wasted)),
        ("load_ratios", "Polling / webhook per change, vs the claimed 66x", (7.0, 4.4), _one(_draw_load)),
        ("latency_by_interval", "Detection latency by poll interval", (7.0, 4.6), _one(_draw_latency)),
        ("heatmap", "Wasted fraction over poll interval × change rate (simulated)", (8.6, 6.4), _draw_heatmap),
    )
    outcomes = []
    for name, title, size, draw in specs:
        fig = Figure(figsize=size, dpi=DPI, layout="constrained")
        FigureCanvasAgg(fig)
        drawn, note = draw(fig, title, s)
        outcomes.append(save_or_skip(fig, out_dir / f"{name}.png", name, title, drawn, note))
    return outcomes


def _one(draw: Callable[[Axes, Data], tuple[bool, str]]) -> Callable[[Figure, str, Data], tuple[bool, str]]:
    def on_figure(fig: Figure, title: str, s: Data) -> tuple[bool, str]:
        ax = fig.add_subplot()
        ax.set_title(title)
        return draw(ax, s)
    return on_figure


def _ci(pair: Any) -> tuple[float, float] | None:
    if isinstance(pair, (list, tuple)) and len(pair) == 2 and all(number(v) is not None for v in pair):
        return float(pair[0]), float(pair[1])
    return None


def _draw_wasted(ax: Axes, s: Data) -> tuple[bool, str]:
    live, sim = s.get("live") or {}, get(s, "population", "simulated") or {}
    points = []  # (label, value, ci, model)
    if number(live.get("wasted_fraction")) is not None:
        points.append((f"live run\n({live.get('polls', 0):,} polls, measured)", live["wasted_fraction"],
                       _ci(live.get("wasted_ci95")), number(live.get("model_wasted_fraction"))))
    if number(sim.get("wasted_fraction")) is not None:
        points.append((f"population\n({sim.get('polls', 0):,} polls, simulated)", sim["wasted_fraction"],
                       _ci(sim.get("wasted_fraction_ci95")), number(get(sim, "model", "wasted_fraction"))))
    if not points:
        return False, "neither the live part nor the population part finished"
    claim = number(s.get("claimed_wasted_fraction"))
    values: list[float] = []
    for x, (_label, v, ci, model) in enumerate(points):
        err = [[v - ci[0]], [ci[1] - v]] if ci else None
        ax.errorbar(x, v, yerr=err, fmt="o", color="#1565c0", capsize=8, markersize=8, linewidth=1.5,
                    label="measured / simulated, 95% CI" if x == 0 else "_nolegend_")
        ax.annotate(fmt_pct(v), (x, ci[1] if ci else v), xytext=(0, 5), textcoords="offset points", ha="center",
                    fontsize=9)
        values += [v, *(ci or ())]
        if model is not None:
            ax.scatter([x + 0.18], [model], marker="D", s=50, color="white", edgecolors="black", zorder=4,
                       label=MODEL_LABEL_POISSON if x == 0 else "_nolegend_")
            values.append(model)
    if claim is not None:
        ax.axhline(claim, color="#c62828", linestyle="--", linewidth=1.3, label=f"claim (Zapier): {fmt_pct(claim)}")
        values.append(claim)
    lo, hi = min(values), max(values)
    pad = max((hi - lo) * 0.35, 0.002)
    ax.set_ylim(max(0.0, lo - pad), min(1.0, hi + pad))
    ax.set_xlim(-0.6, len(points) - 0.4)
    ax.set_xticks(range(len(points)), [p[0] for p in points])
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=1))
    ax.set_ylabel("wasted fraction (empty polls / all polls)")
    ax.grid(True, axis="y", alpha=0.4)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, -0.3), ncol=3, fontsize=8.5, frameon=False)
    return True, ("The live run's measured wasted fraction and the simulated population's, each with its 95% "
                  "interval (Wilson), beside the claim (dashed) and the model e^(−λT) (diamonds, not a "
                  "measurement).")


def _draw_load(ax: Axes, s: Data) -> tuple[bool, str]:
    load = s.get("load") or {}
    per = get(s, "claims", "C2", "measured", "verdict_per_dimension") or {}
    dims = [("requests", "requests"), ("cpu", "producer CPU"), ("bytes", "bytes")]
    bars = [(label, number(load.get(f"{d}_ratio")), per.get(d)) for d, label in dims]
    if all(v is None for _l, v, _p in bars):
        return False, "the load part did not finish (no ratio was measured)"
    positive = [v for _l, v, _p in bars if v is not None and v > 0] + [CLAIMED_LOAD_RATIO, 1.0]
    log = max(positive) / min(positive) > 300
    if log:
        ax.set_yscale("log")
    for x, (label, v, verdict) in enumerate(bars):
        if v is None:
            ax.annotate("not measured", (x, 0), xytext=(0, 4), textcoords="offset points", ha="center",
                        xycoords=("data", "axes fraction"), color="0.4")
            continue
        ax.bar(x, v, width=0.6, color=VERDICT_COLORS.get(str(verdict), "#1565c0"), alpha=0.9)
        ax.annotate(f"{fmt_short(v)}x\n{verdict or ''}", (x, v), xytext=(0, 3), textcoords="offset points",
                    ha="center", va="bottom", fontsize=9)
    ax.axhline(CLAIMED_LOAD_RATIO, color="black", linestyle="--", linewidth=1.3,
               label=f"claimed: {fmt_short(CLAIMED_LOAD_RATIO)}x")
    ax.axhline(CLAIMED_LOAD_RATIO / RATIO_TOLERANCE, color="black", linestyle=":", linewidth=1.1,
               label=f"“holds” from {fmt_short(CLAIMED_LOAD_RATIO / RATIO_TOLERANCE)}x (the rule)")
    ax.axhline(1.0, color="0.5", linewidth=1.0, label="1x: no difference")
    top = max(positive) * (3 if log else 1.3)
    ax.set_ylim(0.5 if log else 0, top)
    ax.set_xticks(range(len(bars)), [b[0] for b in bars])
    ax.set_xlim(-0.6, len(bars) - 0.4)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{fmt_short(v)}x"))
    ax.set_ylabel("polling / webhook, per change")
    ax.grid(True, axis="y", alpha=0.4)
    ax.legend(loc="upper right", fontsize=8.5)
    return True, ("Per change, what polling cost divided by what webhook deliveries cost, in requests, producer CPU "
                  "and bytes, all measured in the same live run; bar colour = the verdict for that dimension.")


def _draw_latency(ax: Axes, s: Data) -> tuple[bool, str]:
    lat = s.get("latency") or {}
    rows = [r for r in lat.get("polling_by_interval") or () if number(r.get("interval_s"))]
    hook = lat.get("webhook_live_ms") or {}
    if not rows and number(hook.get("p50")) is None:
        return False, "the latency part did not finish"
    ax.set_xscale("log")
    ax.set_yscale("log")
    values: list[float] = []
    if rows:
        x = np.array([r["interval_s"] for r in rows], dtype=float)
        mean = np.array([number(r.get("mean_s")) or np.nan for r in rows])
        model = np.array([number(r.get("model_mean_s")) or np.nan for r in rows])
        ax.plot(x, model, "D--", color="black", markerfacecolor="white", markersize=5, label="model T/2")
        ax.plot(x, mean, "o", color="#1565c0", markersize=10, alpha=0.8, zorder=3, label="polling mean (simulated)")
        for xi, yi in zip(x, mean):
            if math.isfinite(yi):
                ax.annotate(f"{fmt_short(yi / 60)} min", (xi, yi), xytext=(6, -12), textcoords="offset points",
                            fontsize=8.5)
        values += [v for v in (*mean, *model) if math.isfinite(v)]
        xs = list(x)
    else:
        xs = []
    nominal_T = number(lat.get("poll_interval_nominal_s"))
    nominal_mean = number(get(lat, "polling_nominal_s", "mean"))
    if nominal_T and nominal_mean:
        ax.plot([nominal_T], [nominal_mean], "s", color="#6a1b9a", markerfacecolor="none", markersize=14,
                markeredgewidth=1.6, zorder=4,
                label=f"polling mean, live run × time scale {fmt_short(lat.get('time_scale'))}")
        values.append(nominal_mean)
        xs.append(nominal_T)
    for key, style in (("p50", "-"), ("p99", "--")):
        v = number(hook.get(key))
        if v is not None and v > 0:
            ax.axhline(v / 1e3, color="#2e7d32", linestyle=style, linewidth=1.4,
                       label=f"webhook {key} (live): {fmt_short(v)} ms")
            values.append(v / 1e3)
    ax.set_ylim(min(values) / 3, max(values) * 3)
    if xs:
        ax.set_xlim(min(xs) / 1.6, max(xs) * 1.6)
        ax.xaxis.set_major_locator(FixedLocator(sorted(set(xs))))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: _duration(v)))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_locator(FixedLocator([1e-3, 1e-2, 0.1, 1.0, 10.0, 60.0, 600.0, 3600.0]))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: _duration(v)))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("poll interval T (log scale)")
    ax.set_ylabel("detection latency (log scale)")
    ax.grid(True, which="major", alpha=0.4)
    ax.legend(loc="center right", fontsize=8)
    return True, ("Mean detection latency of polling at each Zapier poll interval, simulated in virtual time, with "
                  "the model T/2 (not a measurement); the webhook's p50 and p99 as measured in the live run.")


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{fmt_short(seconds / 3600)} h"
    if seconds >= 60:
        return f"{fmt_short(seconds / 60)} min"
    if seconds >= 1:
        return f"{fmt_short(seconds)} s"
    return f"{fmt_short(seconds * 1e3)} ms"


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges of a geometric grid: geometric midpoints, the ends mirrored."""
    mid = np.sqrt(centres[:-1] * centres[1:])
    return np.r_[centres[0] ** 2 / mid[0], mid, centres[-1] ** 2 / mid[-1]]


def _draw_heatmap(fig: Figure, title: str, s: Data) -> tuple[bool, str]:
    grid = get(s, "sensitivity", "heatmap") or {}
    try:
        T = np.asarray(grid["intervals_s"], dtype=float)
        lam = np.asarray(grid["rates"], dtype=float)
        W = np.asarray(grid["wasted_fraction"], dtype=float)
    except (KeyError, TypeError, ValueError):
        return False, "the sensitivity part did not finish (no heatmap grid)"
    if T.size < 2 or lam.size < 2 or W.shape != (lam.size, T.size):
        return False, "the heatmap grid has fewer than 2 intervals or rates, or arrays of the wrong shape"
    ax = fig.add_subplot()
    ax.set_title(title)
    useful = np.clip(1.0 - W, USEFUL_FLOOR, 1.0)
    norm = LogNorm(vmin=USEFUL_FLOOR, vmax=1.0)
    mesh = ax.pcolormesh(_edges(T), _edges(lam), useful, norm=norm, cmap="viridis", shading="flat")
    ax.set_xscale("log")
    ax.set_yscale("log")
    if W.size <= 196:  # the values themselves, while they fit
        size = 8 if W.size <= 64 else 6
        for i in range(lam.size):
            for j in range(T.size):
                w = W[i, j]
                text = f"{100 * w:.2f}" if w >= 0.999 else f"{100 * w:.1f}"
                dark = norm(useful[i, j]) < 0.55
                ax.text(T[j], lam[i], text, ha="center", va="center", fontsize=size,
                        color="white" if dark else "black")
    t_line = np.geomspace(_edges(T)[0], _edges(T)[-1], 200)
    lam_lo, lam_hi = _edges(lam)[0], _edges(lam)[-1]
    for level in MODEL_LEVELS:
        c = -math.log(level)
        ax.plot(t_line, c / t_line, color="white", linestyle=(0, (4, 3)), linewidth=0.9, alpha=0.9)
        inside = t_line[(c / t_line >= lam_lo * 1.5) & (c / t_line <= lam_hi)]
        if inside.size:  # the label at the line's last point inside the axes
            ax.annotate(f"model {fmt_short(100 * level)}%", (inside[-1], c / inside[-1]), xytext=(-2, 3),
                        textcoords="offset points", ha="right", va="bottom", fontsize=7.5, color="white",
                        fontweight="bold")
    claim_lt = number(grid.get("claim_lambda_T")) or -math.log(0.985)
    ax.plot(t_line, claim_lt / t_line, color="#ff1744", linewidth=2.6,
            label=f"model e^(−λT) = 98.5%  (λT = {claim_lt:.4f})")
    for zt in (60.0, 120.0, 900.0):
        if T.min() <= zt <= T.max():
            ax.axvline(zt, color="white", linewidth=0.6, alpha=0.5)
    ax.set_xlim(_edges(T)[0], _edges(T)[-1])
    ax.set_ylim(_edges(lam)[0], _edges(lam)[-1])
    ticks = [t for t in (10, 60, 120, 900, 3600) if _edges(T)[0] <= t <= _edges(T)[-1]]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: _duration(v)))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("poll interval T (log scale; lines at Zapier's 1, 2 and 15 min)")
    ax.set_ylabel("change rate λ per subscription (changes/s, log scale)")
    cbar = fig.colorbar(mesh, ax=ax, pad=0.02)
    cbar.set_ticks([1e-5, 1e-4, 1e-3, 0.015, 0.1, 1.0])
    cbar.set_ticklabels(["≥99.999%", "99.99%", "99.9%", "98.5%", "90%", "0%"])
    cbar.set_label("simulated wasted fraction (colour: log of the useful share)")
    ax.legend(loc="lower left", fontsize=9, framealpha=0.9)
    polls = grid.get("polls")
    n = f" about {fmt_short(np.median(np.asarray(polls, dtype=float)))} polls per cell" if polls else ""
    return True, ("Each cell: the wasted fraction simulated in virtual time (Poisson changes, fixed interval;"
                  f"{n}), in %. Lines: the model e^(−λT), constant along λT = const; the red line is the claim's "
                  "98.5%. Above and to the right of it polls are more often useful than Zapier's; below and left, "
                  "more wasted.")
