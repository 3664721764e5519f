"""A sweep's report: sweep.json in; sweep.md, a self-contained sweep.html and figures/crossover.png out. Every mode
of the points gets its curve (in its registry colour) and every consumer-driven mode its crossover rows.

Values are shown as `bench.orchestration.sweep` wrote them, read through `bench.results.read_sweep` (only unit
changes, e.g. CPU seconds -> µs); nothing is recomputed.
The figure is drawn like the run report's (matplotlib Figure + Agg canvas, no pyplot).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from bench.analysis.crossover import COST_METRICS
from bench.modes import MODE_CURSOR, find_kind
from bench.results import RunStatus, Sweep, crossover_by_mode, read_sweep
from reports.build import write_atomic
from reports.document import Block, Bullets, Cell, CodeBlock, Failure, Heading, Image, Notice, Para, Row, Strong, Table
from reports.figures import DPI, mode_colours
from reports.fmt import (
    DASH,
    count_failed_if_positive,
    fmt_count,
    fmt_num,
    fmt_pct,
    fmt_short,
    fmt_text,
    get,
    number,
    obj,
)
from reports.render import to_html, to_markdown

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["build_sweep_report"]

FIGURE = "figures/crossover.png"
SIZE_IN = (14.0, 5.2)
LEGEND_COLUMNS = 5
MAX_ANNOTATED = 4  # crossover stars per panel that still get their text
STAR_LABEL = "measured crossover (in the consumer mode's colour)"
# metric -> (panel title, unit factor, axis label, table label)
PANELS: dict[str, tuple[str, float, str, str]] = {
    "requests_per_change": ("Requests per change", 1.0, "requests per change", "requests per change"),
    "bytes_per_change": ("Bytes per change", 1.0, "bytes per change", "bytes per change"),
    "cpu_s_per_change": ("Producer CPU per change", 1e6, "producer CPU µs per change", "producer CPU µs per change"),
}
X_LABEL = "change rate per resource λ (changes/s, live; log scale)"
TOP_LABEL = "R·λ·T (changes per feed poll)"


def build_sweep_report(sweep_dir: Path) -> dict[str, Path]:
    """Write sweep.md, sweep.html and figures/crossover.png into `sweep_dir`; return their paths under the keys
    "md", "html" and "figure" ("figure" is absent when no complete point had data to draw).

    Raises RunDirError when `sweep_dir` holds no sweep.json, FormatVersionError for an unknown format_version.
    """
    sweep_dir = Path(sweep_dir)
    sweep = read_sweep(sweep_dir)
    fig_path = sweep_dir / FIGURE
    drawn, note = draw_crossover(sweep.raw, fig_path)
    title, blocks = _document(sweep, fig_path if drawn else None, note)
    out = {"md": sweep_dir / "sweep.md", "html": sweep_dir / "sweep.html"}
    write_atomic(out["md"], to_markdown(blocks))
    write_atomic(out["html"], to_html(title, blocks))
    if drawn:
        out["figure"] = fig_path
    return out


# --- what is in sweep.json -----------------------------------------------------------------------

def _rate(point: dict[str, Any]) -> float | None:
    return number(get(point, "workload", "rate_per_resource"))


def _used_points(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The complete points the crossover used, by rising change rate."""
    used = set(get(doc, "crossover", "points_used") or [])
    points = [p for p in doc.get("points") or [] if p.get("index") in used and _rate(p) is not None]
    return sorted(points, key=lambda p: _rate(p) or 0.0)


def _modes(points: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(m for p in points for m in (p.get("modes") or {})))


def _model_formula(mode: str) -> str:
    kind = find_kind(mode)
    return (kind.formulas.requests_per_change if kind else None) or "analytic"


def _positive(value: Any, factor: float = 1.0) -> float:
    x = number(value)
    return x * factor if x is not None and math.isfinite(x) and x > 0 else math.nan


# --- the figure ----------------------------------------------------------------------------------

def draw_crossover(doc: dict[str, Any], path: Path) -> tuple[bool, str]:
    """Draw the three cost panels into `path`; (False, why) and no file when there is nothing to draw."""
    points = _used_points(doc)
    modes = _modes(points)
    if not points or not modes:
        path.unlink(missing_ok=True)
        return False, "no complete point has per-mode results, so there is nothing to plot"
    path.parent.mkdir(parents=True, exist_ok=True)
    colors = mode_colours(modes)
    cross = obj(doc.get("crossover"))
    R, T = number(cross.get("resources")), number(cross.get("poll_interval_s"))
    rt = R * T if R and T else None
    by_mode = crossover_by_mode(cross)
    stars = max((sum(1 for series in by_mode.values() for res in obj(series.get(metric)).values()
                     if number(get(res, "rate_per_resource")) is not None) for metric in PANELS), default=0)
    ncol = min(LEGEND_COLUMNS, max(1, len(modes)))
    # the legend (a curve per mode, models, markers) grows by rows below the panels: give it room
    rows = math.ceil((2 * len(modes) + 3) / ncol)
    fig = Figure(figsize=(SIZE_IN[0], SIZE_IN[1] + 0.22 * max(0, rows - 2)), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(PANELS))
    for ax, (metric, (title, factor, ylabel, _)) in zip(axes, PANELS.items()):
        _panel(ax, metric, title, factor, ylabel, points, modes, colors, cross, rt, annotate=stars <= MAX_ANNOTATED)
    handles: dict[str, Any] = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    if stars:
        handles[STAR_LABEL] = Line2D([], [], linestyle="none", marker="*", markersize=15, markerfacecolor="white",
                                     markeredgecolor="black")
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=min(ncol, len(handles)),
               fontsize=9, frameon=False)
    consumers = [m for m in modes if m in by_mode]
    what = "Cursor polling vs webhooks" if consumers in ([], [MODE_CURSOR]) else "Consumer-driven modes vs push modes"
    fig.suptitle(f"{what} as the change rate grows: {fmt_text(doc.get('scenario'))}")
    fig.savefig(path, dpi=DPI, format="png", metadata={"Software": None})
    fig.clear()
    note = ("Measured cost per change of each mode at each complete point (lines and circles, each mode in its "
            "colour), against the live change rate per resource, both axes logarithmic. Dashed lines: the analytic "
            "model of requests per change where the mode has one (cursor feed 1/(R·λ·T), webhook 1). Stars: "
            "measured crossovers of each consumer-driven mode (the star in its colour) against each push mode "
            "(the star lies on the push mode's curve), "
            "interpolated on log–log between the two bracketing points; the grey dashed vertical line: the cursor "
            "feed's model crossover R·λ·T = 1.")
    if stars > MAX_ANNOTATED:
        note += " The stars are not labelled (too many to read): the crossover table gives their values."
    zero = sorted({m for p in points for m in modes for metric in PANELS if number(get(p, "modes", m, metric)) == 0})
    if zero:
        note += (f" A cost of 0 per change ({', '.join(zero)}: e.g. a stream opened before the window) cannot be "
                 "drawn on a log axis: the points table gives it.")
    if any(p.get("harness_saturated") is True for p in points):
        note += " Points ringed in red ran with the harness saturated: read them with care."
    return True, note


def _panel(ax: Axes, metric: str, title: str, factor: float, ylabel: str, points: list[dict[str, Any]],
           modes: list[str], colors: dict[str, tuple[float, ...]], cross: dict[str, Any], rt: float | None, *,
           annotate: bool = True) -> None:
    xs = [_rate(p) for p in points]
    drawn = False
    saturated_label = "harness saturated"
    for mode in modes:
        ys = [_positive(get(p, "modes", mode, metric), factor) for p in points]
        if all(math.isnan(y) for y in ys):
            continue
        drawn = True
        ax.plot(xs, ys, marker="o", color=colors[mode], label=f"{mode} (measured)")
        for x, y, p in zip(xs, ys, points):
            if p.get("harness_saturated") is True and not math.isnan(y):
                ax.scatter([x], [y], s=160, facecolors="none", edgecolors="red", linewidths=1.5, zorder=5,
                           label=saturated_label)
                saturated_label = "_nolegend_"
        if metric == "requests_per_change":
            model = [_positive(get(p, "modes", mode, "model", "requests_per_change")) for p in points]
            if not all(math.isnan(y) for y in model):
                dark = tuple(0.55 * c for c in colors[mode][:3])  # drawn over the measured line, still visible
                ax.plot(xs, model, linestyle="--", linewidth=1.2, color=dark, zorder=3,
                        label=f"{mode} model {_model_formula(mode)}")
    if not drawn:
        ax.set_title(title)
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="0.4")
        ax.set_xticks([])
        ax.set_yticks([])
        return
    for consumer, series in crossover_by_mode(cross).items():
        for webhook, res in obj(series.get(metric)).items():
            x, y = number(get(res, "rate_per_resource")), number(get(res, "cost"))
            if x is None or y is None:
                continue
            ax.scatter([x], [y * factor], marker="*", s=260, color=colors.get(consumer, "black"), edgecolors="black",
                       linewidths=1.0, zorder=6, label="_nolegend_")
            if annotate:
                who = "" if consumer == MODE_CURSOR else f"{consumer} vs {webhook}\n"
                ax.annotate(f"{who}measured\nλ = {fmt_short(x)}/s"
                            + (f"\nR·λ·T = {fmt_short(res.get('R_lambda_T'))}" if number(res.get("R_lambda_T"))
                               else ""),
                            (x, y * factor), xytext=(8, 8), textcoords="offset points", fontsize=8)
    model_x = number(get(cross, "model", "requests_per_change", "rate_per_resource"))
    if metric == "requests_per_change" and model_x is not None:
        ax.axvline(model_x, color="0.45", linestyle="--", linewidth=1.0, zorder=1, label="model crossover R·λ·T = 1")
        ax.annotate(f"model\nλ = {fmt_short(model_x)}/s", (model_x, 0.02), xycoords=("data", "axes fraction"),
                    xytext=(-6, 0), textcoords="offset points", ha="right", va="bottom", fontsize=8, color="0.3")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel(X_LABEL, fontsize=9)
    ax.set_ylabel(ylabel + " (log scale)")
    _log_ticks(ax.xaxis)
    _log_ticks(ax.yaxis)
    ax.grid(True, which="major", alpha=0.4)
    ax.grid(True, which="minor", alpha=0.12)
    if rt:
        top = ax.secondary_xaxis("top", functions=(lambda x, k=rt: x * k, lambda y, k=rt: y / k))
        top.set_xlabel(TOP_LABEL, fontsize=9)
        _log_ticks(top.xaxis)


def _log_ticks(axis: Any) -> None:
    """Labels at 1, 2, 5 × 10^k written as plain numbers (0.05, 1, 200), none at the minor ticks."""
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: fmt_short(v, 2)))
    axis.set_minor_formatter(NullFormatter())
    axis.set_tick_params(labelsize=8)


# --- the document --------------------------------------------------------------------------------

def _document(sweep: Sweep, figure: Path | None, figure_note: str) -> tuple[str, list[Block]]:
    doc = sweep.raw
    name = fmt_text(doc.get("scenario"))
    title = f"hookbench sweep: {name}"
    blocks: list[Block] = [Heading(1, title)]
    if doc.get("description"):
        blocks.append(Para(str(doc["description"])))
    blocks.append(Para(Strong("Sweep started: "), f"{fmt_text(doc.get('started_at'))}, finished "
                                                   f"{fmt_text(doc.get('finished_at'))}."))
    blocks += _status(sweep)
    blocks += [Heading(2, "What was swept"), Para(_swept_text(doc))]
    blocks += [Heading(2, "Crossover: where polling (and every consumer-driven mode) gets cheaper than webhooks"),
               *_crossover_blocks(doc)]
    blocks.append(Heading(2, "Figure"))
    if figure is None:
        blocks.append(Para(Strong("Figure skipped: "), figure_note + "."))
    else:
        blocks.append(Image(figure, FIGURE, "Cost per change vs change rate, per mode, with the crossover",
                            figure_note))
    blocks += [Heading(2, "Points"), *_points_blocks(doc)]
    blocks += [Heading(2, "Reproduce"), *_reproduce(doc)]
    blocks += [Heading(2, "Definitions"), Bullets(DEFINITIONS)]
    return title, blocks


DEFINITIONS: tuple[tuple[str, str], ...] = (
    ("point", "one run of the scenario with one combination of the grid's values; its directory holds the usual "
              "manifest.json, summary.json and tables (`hookbench report RUN_DIR` writes its own report)."),
    ("λ (live)", "changes per second per resource as the run made them, after time scaling "
                 "(summary.json workload.rate_per_resource)."),
    ("R·λ·T", "changes the cursor feed holds per poll: R resources, each changing at λ, polled every T (live). "
              "Time scaling leaves it unchanged."),
    ("requests, bytes, producer CPU per change", "as in each run's summary.json: polls or delivery attempts, bytes "
                                                 "transferred, and producer CPU spent on the mode, divided by the "
                                                 "changes in the window."),
    ("consumer-driven mode", "a mode whose consumer asks for changes (cursor and ETag polling, long polling, "
                             "adaptive polling) or holds a stream open (SSE), as opposed to a push mode, whose "
                             "changes the producer sends (webhook, webhook + reconcile, thin event + fetch)."),
    ("measured crossover", "the first rate at which a consumer-driven mode's per-change cost drops below the push "
                           "mode's, interpolated linearly in log(cost) against log(λ) between the two bracketing "
                           "points. Partial or failed points are left out. A cost of 0 (an SSE stream that made no "
                           "request in the window) counts as cheaper than any push mode."),
    ("model crossover", "requests per change: the cursor feed makes 1/(R·λ·T) polls per change, a webhook one "
                        "delivery per change; they are equal at R·λ·T = 1, i.e. λ = 1/(R·T)."),
)


def _status(sweep: Sweep) -> list[Block]:
    blocks: list[Block] = []
    points = sweep.points
    planned = sweep.value("points_planned")
    if sweep.status is RunStatus.INTERRUPTED or (isinstance(planned, int) and len(points) < planned):
        blocks.append(Notice("caution", "Partial sweep: stopped before its planned end",
                             f"{fmt_count(len(points))} of {fmt_count(planned)} points ran; the crossover and the "
                             "figure use only the complete ones.",
                             (f"recorded error: {sweep.error}",) if sweep.error else ()))
    elif sweep.error:
        blocks.append(Notice("caution", "The sweep recorded an error", sweep.error))
    failed = tuple(f"point {p.get('index')} ({_overrides(p)}): {p.get('error') or 'partial run'}"
                   for p in points if p.get("partial") or p.get("error"))
    if failed:
        blocks.append(Notice("caution", "Some points did not complete",
                             "These points are listed below but left out of the crossover and the figure:", failed))
    saturated = tuple(f"point {p.get('index')} ({_overrides(p)}): " + ("; ".join(p.get("saturation_reasons") or [])
                                                                       or "no reason recorded")
                      for p in points if p.get("harness_saturated") is True)
    if saturated:
        blocks.append(Notice("warning", "Warning: the harness itself was a bottleneck at some points",
                             "At these points the load generator or a server of the harness was saturated, so their "
                             "costs and latencies describe the harness as much as the system under test. Re-run "
                             "them with a smaller run.time_scale or fewer resources:", saturated))
    return blocks


def _overrides(point: dict[str, Any]) -> str:
    o = point.get("overrides")
    return " ".join(f"{k}={v}" for k, v in o.items()) if isinstance(o, dict) and o else DASH


def _swept_text(doc: dict[str, Any]) -> str:
    grid = doc.get("grid") or []
    axes = "; ".join(f"{g.get('key')} = {', '.join(str(v) for v in g.get('values') or [])}" for g in grid) or DASH
    extra = doc.get("extra_overrides") or []
    cross = obj(doc.get("crossover"))
    text = (f"{fmt_count(doc.get('points_planned'))} points, the cartesian product of {axes}, over the scenario "
            f"file {fmt_text(doc.get('scenario_source'))}"
            + (f" with {' '.join(str(e) for e in extra)} at every point" if extra else "") + ". "
            "Each point is a complete run in its own directory; this report shows the values of their "
            "summary.json files. ")
    if cross.get("resources") is not None and cross.get("poll_interval_s") is not None:
        text += (f"Every point polled R = {fmt_count(cross['resources'])} resources through one cursor feed every "
                 f"T = {fmt_short(cross['poll_interval_s'])} s (live). ")
    scale = number(cross.get("time_scale"))
    if scale is not None and scale != 1:
        text += (f"The runs were time-scaled by {fmt_short(scale)}: live rates are {fmt_short(scale)}× the "
                 f"scenario's and the live poll interval 1/{fmt_short(scale)} of it, which leaves R·λ·T and the "
                 "requests per change unchanged; the tables give both the live and the nominal rate.")
    return text


def _crossover_blocks(doc: dict[str, Any]) -> list[Block]:
    cross = obj(doc.get("crossover"))
    by_mode = crossover_by_mode(cross)
    if not by_mode:
        return [Para("sweep.json holds no crossover.")]
    rows: list[Row] = []
    reasons: list[tuple[str, str]] = []
    for mode, series in by_mode.items():
        for metric in COST_METRICS:
            factor, label = PANELS[metric][1], PANELS[metric][3]
            for webhook, res in obj(series.get(metric)).items():
                res = obj(res)
                lo_hi = res.get("bracket")
                bracket = (f"{fmt_short(lo_hi[0])} to {fmt_short(lo_hi[1])}"
                           if isinstance(lo_hi, list) and len(lo_hi) == 2 else DASH)
                cost = number(res.get("cost"))
                rows.append(Row(mode, (label, webhook, fmt_num(res.get("rate_per_resource")),
                                       fmt_num(res.get("nominal_rate_per_resource")), fmt_num(res.get("R_lambda_T")),
                                       fmt_num(None if cost is None else cost * factor), bracket)))
                if res.get("reason"):
                    reasons.append((f"{label}, {mode} vs {webhook}", str(res["reason"])))
        if mode == cross.get("polling_mode", MODE_CURSOR):
            model = obj(get(cross, "model", "requests_per_change"))
            rows.append(Row(mode, ("model: requests per change", "any webhook",
                                   fmt_num(model.get("rate_per_resource")),
                                   fmt_num(model.get("nominal_rate_per_resource")), fmt_num(model.get("R_lambda_T")),
                                   "1", DASH), model=True))
            if model.get("reason"):
                reasons.append(("model", str(model["reason"])))
    table = Table(("consumer mode", "cost per change", "vs push mode", "crossover λ live (/s)", "nominal λ (/s)",
                   "R·λ·T", "cost there", "between points at λ"), tuple(rows), text_columns=frozenset({0, 1, 6}),
                  caption="A dash means no crossover in the swept range; the reasons follow. Nominal λ is the "
                          "scenario's rate before time scaling. R·λ·T is the cursor feed's coordinate of the rate, "
                          "whatever the mode. CPU in µs.")
    blocks: list[Block] = [
        Para("The claim: under large flows an API beats webhooks, because one cursor poll carries every change "
             "since the previous poll while a webhook costs one request per change. Below the crossover rate "
             "polling costs more per change than webhooks; above it, less. The same arithmetic is shown for every "
             "consumer-driven mode of the sweep against every push mode."),
        table,
    ]
    model = obj(get(cross, "model", "requests_per_change"))
    if model.get("formula"):
        blocks.append(Para(Strong("Model: "), str(model["formula"]) + "."))
    kinds = {k.name: k for k in map(find_kind, by_mode) if k is not None and k.name in CROSSOVER_READING}
    if kinds:
        blocks += [Para("How to read the crossover of modes whose cost per change does not fall with the rate as "
                        "the cursor feed's does:"),
                   Bullets(tuple((k.label, CROSSOVER_READING[name]) for name, k in kinds.items()))]
    if reasons:
        blocks += [Para("Notes on the crossovers:"), Bullets(tuple(reasons))]
    return blocks


# kind -> how its crossover reads (kinds whose cost per change does not fall as 1/rate)
CROSSOVER_READING: dict[str, str] = {
    "etag": "one conditional GET per resource every T: 1/(λ·T) requests per change, equal to a webhook's at "
            "λ·T = 1, a rate R times the cursor feed's.",
    "long": "about one request per change once changes come faster than the wait ends (the empty answers of waits "
            "that end with nothing matter only at low rates), so against a webhook's one delivery per change it "
            "tends to a tie: a crossing found there lies within the noise between two nearly equal costs, and "
            "several order changes say so.",
    "adaptive": "its interval shrinks as changes come faster, so its cost per change falls with the rate like fixed "
                "polling's, between the bounds adaptive_min and adaptive_max.",
    "sse": "one connection per run carries every change: about 0 requests per change at any rate, so it is "
           "already cheaper in requests at the lowest swept rate. Its cost is the connection held open (the points' "
           "held column), which a per-change figure does not show.",
}


def _points_blocks(doc: dict[str, Any]) -> list[Block]:
    points = sorted(doc.get("points") or [], key=lambda p: (_rate(p) is None, _rate(p) or 0.0, p.get("index", 0)))
    if not points:
        return [Para("No point ran.")]
    rows: list[Row] = []
    for p in points:
        modes = obj(p.get("modes"))
        lt = get(modes, MODE_CURSOR, "model", "lambda_T")
        first = (fmt_text(p.get("index")), _overrides(p), fmt_num(get(p, "workload", "rate_per_resource")),
                 fmt_num(lt), fmt_count(p.get("changes")))
        status = _point_status(p)
        if not modes:
            rows.append(Row(first[0], (*first[1:], DASH, *([DASH] * 8), status)))
            continue
        for i, (mode, m) in enumerate(modes.items()):
            lead = first if i == 0 else ("", "", "", "", "")
            cpu = number(m.get("cpu_s_per_change"))
            rows.append(Row(lead[0], (
                *lead[1:], mode, fmt_num(m.get("requests_per_change")),
                fmt_num(get(m, "model", "requests_per_change")), fmt_num(m.get("bytes_per_change")),
                fmt_num(None if cpu is None else cpu * 1e6), fmt_pct(m.get("wasted_fraction")),
                fmt_num(get(m, "latency_ms", "p50")), count_failed_if_positive(m.get("lost")),
                fmt_count(get(m, "held_connections", "max")) if get(m, "held_connections", "max") is not None
                else DASH, status if i == 0 else "")))
    header = ("point", "grid values", "λ live (/s)", "R·λ·T", "changes", "mode", "requests / change",
              "model req / change", "bytes / change", "CPU µs / change", "wasted", "latency p50 (ms)", "lost",
              "held (max)", "status")
    run_dirs = tuple(f"point {p.get('index')}: {fmt_text(p.get('run_dir'))}" for p in points)
    return [
        Table(header, tuple(rows), text_columns=frozenset({0, 4, 13}),
              caption="One row per point and mode, by rising change rate; values from each point's summary.json. "
                      "R·λ·T is the cursor feed's model value. Held: the most requests or streams of the mode the "
                      "producer held open at once (sampled each second; long polling, SSE)."),
        Para("Run directories (relative to the sweep directory):"), Bullets(run_dirs),
    ]


def _point_status(p: dict[str, Any]) -> Cell:
    if p.get("error"):
        return Failure(str(p["error"])[:80])
    if p.get("partial"):
        return Failure("partial")
    if p.get("harness_saturated") is True:
        return Failure("harness saturated")
    return "ok"


def _reproduce(doc: dict[str, Any]) -> list[Block]:
    git = doc.get("git_commit")
    if isinstance(git, str) and git.endswith("+dirty"):
        git = f"{git.removesuffix('+dirty')} with uncommitted changes (the command may not reproduce it exactly)"
    machine = obj(doc.get("machine"))
    versions = obj(doc.get("versions"))
    blocks: list[Block] = []
    if doc.get("command"):
        blocks += [Para("The equivalent command, as recorded in sweep.json:"), CodeBlock(str(doc["command"]))]
    blocks.append(Bullets((
        ("git commit", fmt_text(git) if git else "not recorded (not a git checkout)"),
        ("machine", f"{fmt_text(machine.get('cpu_model'))}, {fmt_count(machine.get('cpu_count'))} cores, "
                    f"{fmt_text(machine.get('platform'))}"),
        ("versions", ", ".join(f"{k} {v}" for k, v in versions.items() if v) or DASH),
    )))
    return blocks
