"""The comparison of two or more load runs (`hookbench report RUN_DIR RUN_DIR ...`): both sides of claim C4 on the
same figures (offered vs achieved, latency vs offered, errors vs offered), one curve per run, each run's knee marked,
and a table of the knees.

Each run is read as its own report reads it (reports/rundir.py) and drawn with the load report's helpers; nothing is
recomputed. The comparison writes report.md, report.html, figures/*.png and a small summary.json (kind
"load_comparison") into its own directory, never into the runs'.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter

from bench.analysis.overload import ERROR_LIMIT
from bench.errors import RunDirError
from bench.results import Kind, version_keys, write_summary
from reports.build import FIGURES_DIR, ReportFiles, write_atomic
from reports.document import Block, Heading, Notice, Para, Row, Table
from reports.figures import FigureOutcome
from reports.fmt import DASH, fmt_count, fmt_num, fmt_short, fmt_started_at, fmt_text, get, number
from reports.load_report import (
    _diagonal,
    _error_axis,
    _finish,
    _knee,
    _mark_knee,
    _series,
    _steps,
    _target,
    _value,
    draw_figures,
)
from reports.render import to_html, to_markdown
from reports.run_report import environment_blocks, figure_blocks
from reports.rundir import LoadRunData, read_run

__all__ = ["build_comparison_report"]

# What one request at the server is, on each side: both are requests/s at the server under test.
SIDES = {"receiver": ("webhook receiver", "deliveries/s"), "producer": ("polling producer", "polls/s")}
COLORS = ("#1565c0", "#ef6c00", "#2e7d32", "#6a1b9a", "#00838f", "#5d4037", "#c2185b", "#455a64")
XLABEL = "offered (requests/s at the server: deliveries/s or polls/s)"
# Key metadata: runs that differ in these were not measured under the same conditions.
KEY_METADATA = (("machine", "cpu_model"), ("machine", "cpu_count"), ("versions", "python"), ("versions", "locust"),
                ("versions", "aiohttp"))


class Side:
    """One run of the comparison: its data, its label and unit, its colour."""

    def __init__(self, run: LoadRunData, color: str, suffix: str = "") -> None:
        self.run, self.color = run, color
        target = _target(run)
        name, self.unit = SIDES.get(target, (target, "requests/s"))
        self.label = f"{name} ({self.unit})" + (f", {suffix}" if suffix else "")
        self.short = name + (f", {suffix}" if suffix else "")  # beside its knee line, where room is short


def build_comparison_report(run_dirs: list[Path], out_dir: Path) -> ReportFiles:
    """Compare the load runs in `run_dirs` into `out_dir` (created if need be); return the files written.

    Raises RunDirError naming the directory when one is not a load run (or is incomplete).
    """
    if len(run_dirs) < 2:
        raise RunDirError("a comparison needs two or more load run directories")
    runs = []
    for d in run_dirs:
        run = read_run(Path(d))
        if not isinstance(run, LoadRunData):
            raise RunDirError(f"{d}: a comparison run (`hookbench run`), not a load run: the comparison needs run "
                              "directories written by `hookbench load`")
        runs.append(run)
    sides = [Side(r, COLORS[i % len(COLORS)], _suffix(i, runs)) for i, r in enumerate(runs)]
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirError(f"{out_dir}: cannot create the comparison directory ({exc.strerror}); pass a writable "
                          "--out DIR") from None
    figures = draw_figures(out_dir / FIGURES_DIR, (
        ("offered_vs_achieved", "Achieved vs offered rate", _draw_rates),
        ("latency_vs_offered", "p99 latency from the intended time vs offered rate", _draw_latency),
        ("errors_vs_offered", "Errors vs offered rate", _draw_errors),
    ), sides)
    title = "hookbench load comparison: " + " vs ".join(fmt_text(r.result.scenario) for r in runs)
    blocks = _document(title, sides, figures, out_dir)
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    write_atomic(md_path, to_markdown(blocks))
    write_atomic(html_path, to_html(title, blocks))
    write_summary(out_dir, _summary(sides, figures))
    return {"md": md_path, "html": html_path, "figures": [f.path for f in figures if f.path is not None]}


def _suffix(i: int, runs: list[LoadRunData]) -> str:
    """What tells run i apart from the other runs of its side: nothing, its directory's name, or its number (the
    runs table gives its directory)."""
    run = runs[i]
    same = [r for r in runs if _target(r) == _target(run)]
    if len(same) == 1:
        return ""
    return run.run_dir.name if [r.run_dir.name for r in same].count(run.run_dir.name) == 1 else f"run {i + 1}"


def _summary(sides: list[Side], figures: list[FigureOutcome]) -> dict[str, Any]:
    return {
        **version_keys(Kind.LOAD_COMPARISON),
        "runs": [{"run_dir": str(s.run.run_dir), "scenario": s.run.result.value("scenario"),
                  "target": _target(s.run), "label": s.label, "unit": s.unit, "knee": _knee(s.run, _steps(s.run)[0])[0],
                  "steps": len(_steps(s.run)[0]), "harness_saturated": s.run.result.value("harness_saturated"),
                  "partial": s.run.partial} for s in sides],
        "figures": [f.name for f in figures if f.path is not None],
    }


# --- the document -----------------------------------------------------------------------------------

def _document(title: str, sides: list[Side], figures: list[FigureOutcome], out_dir: Path) -> list[Block]:
    blocks: list[Block] = [Heading(1, title), Para(
        "Each load run put one server under a Locust step ramp until it fell over or reached its ceiling. Here the "
        "runs share every figure: one curve per run, its knee marked in its colour. Offered load is in requests/s "
        "at the server under test on both sides: deliveries/s POSTed to a webhook receiver, polls/s sent to a "
        "polling producer.")]
    blocks += _notices(sides)
    blocks += [Heading(2, "The runs"), _runs_table(sides)]
    blocks += [Heading(2, "The knees"), _knees_table(sides)]
    blocks += [Heading(2, "Figures"), *figure_blocks(out_dir, figures)]
    blocks += [Heading(2, "Environment")]
    for s in sides:
        blocks += [Heading(3, s.label), *environment_blocks(s.run.manifest)]
    return blocks


def _notices(sides: list[Side]) -> list[Block]:
    blocks: list[Block] = []
    for s in sides:
        if s.run.result.harness_saturated is True:
            blocks.append(Notice("warning", f"{s.label}: the load generator ran out of CPU",
                                 "Its knee is the harness's, not the server's; see that run's own report.",
                                 tuple(s.run.result.saturation_reasons)))
        if s.run.partial:
            blocks.append(Notice("caution", f"{s.label}: partial run",
                                 "It was stopped before its ramp ended; its knee may lie beyond its last step."))
    differ = []
    for keys in KEY_METADATA:
        values = {fmt_text(get(s.run.manifest, *keys)) for s in sides}
        if len(values) > 1:
            differ.append(f"{'.'.join(keys)}: {', '.join(sorted(values))}")
    if differ:
        blocks.append(Notice("caution", "The runs were not measured under the same conditions",
                             "Their key metadata differ, so the curves compare machines or versions as well as "
                             "the two sides:", tuple(differ)))
    return blocks


def _runs_table(sides: list[Side]) -> Table:
    rows = []
    for s in sides:
        ramp, _ = _steps(s.run)
        offered = [v for st in ramp if math.isfinite(v := _value(st, ("offered_rps",), 1.0, False))]
        rows.append(Row(s.label, (
            fmt_text(s.run.result.scenario), s.run.run_dir.name,
            fmt_started_at(s.run.manifest.get("started_at")), fmt_count(len(ramp)),
            f"{fmt_short(min(offered), 4)} to {fmt_short(max(offered), 4)}" if offered else DASH,
            fmt_count(s.run.manifest.get("locust_processes")),
        )))
    return Table(("run", "scenario", "run directory", "started", "ramp steps", "offered (/s)", "Locust processes"),
                 tuple(rows), numeric=False)


def _knees_table(sides: list[Side]) -> Table:
    rows = []
    for s in sides:
        ramp, _ = _steps(s.run)
        knee, step = _knee(s.run, ramp)
        reasons = "; ".join(str(r) for r in knee.get("reasons") or () if r) or DASH
        if knee.get("reached") is True:
            where = f"step {fmt_text(knee.get('step'))}"
            offered = fmt_short(knee.get("offered_rps"), 4)
        elif knee.get("reached") is False:
            ceiling = number(knee.get("ceiling_rps"))
            where = "not reached"
            offered = f"ceiling {fmt_short(ceiling, 4)}" if ceiling is not None else DASH
        else:
            where, offered = "not recorded", DASH
        rows.append(Row(s.label, (
            where, offered, s.unit, fmt_count(step.get("users")) if step else DASH,
            fmt_num(get(step, "latency_from_intended_ms", "p99")) if step else DASH,
            fmt_num(get(s.run.overload, "slo_p99_ms")), reasons,
            "yes" if s.run.result.harness_saturated is True else "no",
        )))
    return Table(("run", "knee", "offered at the knee (/s)", "unit", "users", "p99 from intended (ms)", "SLO p99 (ms)",
                  "why", "harness saturated"), tuple(rows), numeric=False,
                 caption="The knee of each run: the first step of its ramp whose p99 from the intended time passed "
                         f"the SLO, whose errors passed {ERROR_LIMIT:.0%}, or whose achieved rate fell below 95% of "
                         "offered; or “not reached” with the highest rate offered (the ceiling).")


# --- the figures ------------------------------------------------------------------------------------

def _plot(ax: Axes, sides: list[Side], keys: tuple[str, ...], *, scale: float = 1.0, log: bool = False
          ) -> tuple[list[float], str]:
    """One curve per run and its knee; (every value drawn, the caption's sentences about the knees)."""
    drawn: list[float] = []
    notes = []
    for row, s in enumerate(sides):
        drawn += _series(ax, s.run, ((s.label, keys, s.color),), scale=scale, log=log)
        notes.append(_mark_knee(ax, s.run, color=s.color, who=f"{s.short}: ", row=row))
    return drawn, " ".join(notes)


def _finish_comparison(ax: Axes, ylabel: str) -> None:
    _finish(ax, ylabel)
    ax.set_xlabel(XLABEL)


def _draw_rates(ax: Axes, sides: list[Side]) -> tuple[bool, str]:
    drawn, knees = _plot(ax, sides, ("achieved_rps",))
    if not drawn:
        return False, "no run's summary.json has a step with an offered and an achieved rate"
    offered = [v for s in sides for st in _steps(s.run)[0]
               if math.isfinite(v := _value(st, ("offered_rps",), 1.0, False))]
    _diagonal(ax, drawn + offered)
    _finish_comparison(ax, "achieved (requests/s)")
    return True, ("Per step of each run: requests due in the step that succeeded, per second, against the rate "
                  f"offered. Below the dotted line the server did not keep up. {knees}")


def _draw_latency(ax: Axes, sides: list[Side]) -> tuple[bool, str]:
    ax.set_yscale("log")
    drawn, knees = _plot(ax, sides, ("latency_from_intended_ms", "p99"), log=True)
    if not drawn:
        return False, "no run's summary.json has a step with a latency above 0 ms"
    for slo in sorted({v for s in sides if (v := number(s.run.overload.get("slo_p99_ms"))) and v > 0}):
        ax.axhline(slo, color="black", linestyle="-.", linewidth=1.1, label=f"SLO: p99 {fmt_short(slo)} ms")
        drawn.append(slo)
    ax.set_ylim(min(drawn) / 1.6, max(drawn) * 1.6)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: fmt_short(v)))
    _finish_comparison(ax, "p99 from the intended time (ms, log scale)")
    return True, ("Per step of each run: the 99th percentile of the response time measured from the time each "
                  "request was due (coordinated omission included; each run's own report also shows it from the "
                  f"send). {knees}")


def _draw_errors(ax: Axes, sides: list[Side]) -> tuple[bool, str]:
    drawn, knees = _plot(ax, sides, ("error_rate",), scale=100.0)
    if not drawn:
        return False, "no run's summary.json has a step with an error rate"
    _error_axis(ax, drawn)
    _finish_comparison(ax, "% of request attempts")
    return True, ("Per step of each run: the share of request attempts that failed (any status other than 2xx/3xx, "
                  f"or no answer). {knees}")

