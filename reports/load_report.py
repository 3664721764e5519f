"""The report of a load run (`hookbench load`, claim C4): the ramp's steps, the knee, recovery, and whether the load
generator rather than the server set the pace.

Values are shown as bench/analysis/overload.py and bench/orchestration/load.py wrote them into summary.json (only
units change, e.g. fractions -> %); the CPU figure draws harness.parquet and steps.parquet as recorded.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter
from matplotlib.transforms import blended_transform_factory

from bench.analysis.overload import ACHIEVED_MIN, ERROR_LIMIT
from reports.document import Block, Bullets, Cell, CodeBlock, Failure, Heading, Notice, Para, Row, Strong, Table
from reports.figures import DPI, FigureOutcome, save_or_skip
from reports.fmt import (
    DASH,
    fmt_count,
    fmt_counted,
    fmt_num,
    fmt_pct,
    fmt_short,
    fmt_started_at,
    fmt_text,
    get,
    number,
    obj,
)
from reports.run_report import environment_blocks, figure_blocks
from reports.rundir import LoadRunData
from reports.workers import workers_warnings

__all__ = ["build_overload_document", "make_overload_figures"]

Step = dict[str, Any]
D = TypeVar("D")  # what a figure is drawn from: one run, or the runs of a comparison
WHAT_LOADS = {
    "receiver": "Locust storm senders POSTed signed webhook deliveries at the receiver, retrying as real senders do",
    "producer": "A Locust polling fleet polled the producer, with a database query behind every poll",
}
KNEE, SLO, LOCUST_LIMIT = "#c62828", "black", 90.0
SERIES = {"achieved": "#1565c0", "intended": "0.55", "p50": "#1565c0", "p99": "#ef6c00", "p99_intended": "#6a1b9a",
          "error_rate": "black", "rate_429": "#ef6c00", "rate_503": KNEE, "timeout_rate": "#6a1b9a"}
MAX_LOCUST_LINES = 6  # more Locust processes than this share one colour and one legend entry
SIZE_IN = (7.0, 4.8)  # the legend sits below the axes, so the plot keeps the full width
SETTLE = "0.85"


# --- the run's steps, as summary.json lists them ----------------------------------------------------

def _steps(run: LoadRunData) -> tuple[list[Step], Step | None]:
    """(the ramp's steps, the recovery step or None): the recovery step, when the scenario has one, comes last."""
    steps = [s for s in run.overload.get("steps", []) if isinstance(s, dict)]
    if len(steps) < 2:
        return steps, None
    flag, planned = get(run.manifest, "scenario", "load", "recovery"), _ramp_steps(run)
    first, last = number(steps[0].get("users")), number(steps[-1].get("users"))
    if not isinstance(flag, bool):  # not in the manifest: a last step back at the first step's users is recovery
        flag = number(run.overload.get("recovery_s")) is not None or (
            first is not None and first == last and any((number(s.get("users")) or 0) > first for s in steps))
    last_step = number(steps[-1].get("step"))
    if flag and planned is not None and last_step is not None:
        # it is numbered after the ramp's steps; an interrupted run may have stopped before reaching it
        flag = last_step >= planned
    return (steps[:-1], steps[-1]) if flag else (steps, None)


def _ramp_steps(run: LoadRunData) -> float | None:
    """The number of ramp steps the scenario planned (recovery not included), as the manifest records it."""
    return number(get(run.manifest, "scenario", "load", "steps"))


def _knee(run: LoadRunData, ramp: list[Step]) -> tuple[dict[str, Any], Step | None]:
    """(summary.json's knee section, the ramp step it names or None)."""
    knee = obj(run.overload.get("knee"))
    if knee.get("reached") is not True:
        return knee, None
    return knee, next((s for s in ramp if s.get("step") == knee.get("step") and knee.get("step") is not None), None)


def _target(run: LoadRunData) -> str:
    target = run.summary.get("target") or get(run.manifest, "scenario", "load", "target")
    return str(target) if target else "server"


def _external(run: LoadRunData) -> dict[str, Any] | None:
    """The external target (`hookbench load --target-url`) as summary.json records it, or None (the built-in)."""
    t = obj(run.summary.get("target_server"))
    return t if t.get("external") is True else None


def _unavailable(run: LoadRunData) -> list[dict[str, Any]]:
    rows = run.summary.get("unavailable")
    return [obj(r) for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []


# --- the document -----------------------------------------------------------------------------------

def build_overload_document(run: LoadRunData, figures: list[FigureOutcome]) -> tuple[str, list[Block]]:
    """The load report's title and blocks, in reading order."""
    name = fmt_text(run.summary.get("scenario") or get(run.manifest, "scenario", "name"))
    title = f"hookbench load report: {name}"
    blocks: list[Block] = [Heading(1, title)]
    if description := get(run.manifest, "scenario", "description"):
        blocks.append(Para(str(description)))
    blocks.append(Para(Strong("Run started: "), fmt_started_at(run.manifest.get("started_at"))))
    error = run.manifest.get("error")
    recorded = (f"recorded error: {error}",) if error else ()
    if run.partial:
        blocks.append(Notice("caution", "Partial run: interrupted before its planned end",
                             "The run was stopped before the ramp ended. The steps below are the ones recorded up "
                             "to then; the knee may lie beyond them.", recorded))
    elif error:
        blocks.append(Notice("caution", "The run recorded an error", "Read the numbers below with care.", recorded))
    ramp, recovery = _steps(run)
    blocks += [Heading(2, "What was measured"), Para(_measured_text(run, ramp, recovery))]
    blocks += [Heading(2, "Harness check"), *_harness(run)]
    if _external(run) is not None:
        blocks += [Heading(2, "Not measured: the target's own figures"), *_unavailable_blocks(run)]
    blocks += [Heading(2, "Steps"), *_steps_table(run, ramp, recovery)]
    blocks += [Heading(2, "The knee"), *_knee_blocks(run, ramp)]
    blocks += [Heading(2, "Recovery"), _recovery_para(run, recovery)]
    blocks += [Heading(2, "Figures"), *figure_blocks(run.run_dir, figures)]
    blocks += [Heading(2, "Reproduce"), *_reproduce(run)]
    blocks += [Heading(2, "Environment"), *_environment(run)]
    blocks += [Heading(2, "Definitions"), Bullets(_definitions())]
    return title, blocks


def _measured_text(run: LoadRunData, ramp: list[Step], recovery: Step | None) -> str:
    load, target = obj(get(run.manifest, "scenario", "load")), _target(run)
    what = WHAT_LOADS.get(target, f"Locust users sent requests to the {target}")
    users = ", ".join(fmt_count(s.get("users")) for s in ramp) or DASH
    offered = [s.get("offered_rps") for s in ramp]
    rate = f"{fmt_short(offered[0], 4)} to {fmt_short(offered[-1], 4)}" if offered else DASH
    planned = _ramp_steps(run)
    over = fmt_counted(len(ramp) if planned is None else planned, "step")
    if planned is not None and len(ramp) < planned:
        over += f", of which {fmt_count(len(ramp))} were measured"
    external = _external(run)
    where = (f"your {target} at {fmt_text(external.get('url'))}, an external server that hookbench did not start "
             "(`--target-url`); every figure below comes from the Locust users' own records"
             if external else f"the {target}")
    text = (f"Target: {where}. {what}. The users rose by {fmt_count(load.get('step_users'))} a step from "
            f"{fmt_count(load.get('start_users'))} over {over} ({users} users), each user offering "
            f"{fmt_short(load.get('rate_per_user'))} requests/s, so {rate} requests/s were offered. Each step lasted "
            f"{fmt_short(load.get('step_duration'))} s; its first {fmt_short(load.get('settle'))} s (settle) are "
            "excluded from every statistic. ")
    if recovery is not None:
        text += (f"After the ramp, one recovery step went back to {fmt_count(recovery.get('users'))} users; it is "
                 "not part of the ramp. ")
    if senders := _senders_text(run):
        text += senders + " "
    processes = run.manifest.get("locust_processes")
    text += (f"Locust ran as {fmt_count(processes)} process{'' if number(processes) == 1 else 'es'}. "
             f"The ramp lasted {fmt_short(run.summary.get('duration_s'))} s. "
             f"Seed {fmt_text(run.summary.get('seed', run.manifest.get('seed')))}.")
    return text


def _senders_text(run: LoadRunData) -> str:
    """The storm senders' retry policy, as the manifest recorded it (a receiver target only)."""
    p = obj(run.manifest.get("senders"))
    if not p:
        return ""
    delays = p.get("retry_delays_s")
    shown = ", ".join(f"{fmt_short(d)} s" for d in delays) if isinstance(delays, list) and delays else "none"
    profile = f"the {fmt_text(p.get('profile'))} profile's" if p.get("profile") else "the scenario's"
    return (f"Each sender signed with the {fmt_text(p.get('scheme'))} scheme and retried on {profile} delivery "
            f"schedule: {fmt_count(p.get('attempts'))} attempts at most, waiting {shown} before the retries "
            f"({'no jitter' if not number(p.get('jitter')) else '±' + fmt_pct(p.get('jitter')) + ' jitter'}; "
            f"Retry-After honoured up to {fmt_short(p.get('retry_after_cap_s'))} "
            f"s), {fmt_short(p.get('timeout_s'))} s per attempt.")


def _unavailable_blocks(run: LoadRunData) -> list[Block]:
    rows = _unavailable(run)
    if not rows:
        return [Para("summary.json names no unavailable figure.")]
    why = next((str(r["why"]) for r in rows if r.get("why")), "")
    return [Para(f"The target was external: {why}. These figures of a built-in run are therefore not measured "
                 "here, and are left out rather than shown as zero or blank:"),
            Bullets(tuple((fmt_text(r.get("figure")), f"where a built-in run has it: {fmt_text(r.get('key'))}")
                          for r in rows)),
            Para("The knee, the shedding (429, 503, timeouts, attempts per delivery) and the recovery come from the "
                 "Locust users' records alone, exactly as for a built-in run.")]


def _harness(run: LoadRunData) -> list[Block]:
    saturated, sat, target = run.summary.get("harness_saturated"), obj(run.summary.get("saturation")), _target(run)
    blocks: list[Block] = []
    if saturated is True:
        reasons = sat.get("reasons")
        items = tuple(str(r) for r in reasons) if isinstance(reasons, list) and reasons else ("(none recorded)",)
        blocks.append(Notice(
            "warning", f"Warning: the load generator ran out of CPU, not the {target}",
            f"Locust, the load generator, not the {target} under test, ran out of CPU in this run: it could not "
            f"send what it was asked to, so the knee below is the harness's, not the {target}'s, and the {target} "
            "may well handle more. Re-run with more Locust processes (--processes), fewer users per step, or on a "
            "machine with more cores. Reasons:",
            items,
        ))
        verdict = "saturated (see the warning above)"
    else:
        verdict = "not saturated" if saturated is False else "saturation was not recorded"
    parts = [f"Locust CPU max {_pct_of_core(sat.get('locust_cpu_max_pct'))}"]
    for who in ("receiver", "producer"):
        if f"{who}_cpu_max_pct" in sat:
            parts.append(f"{who} CPU max {_pct_of_core(sat.get(f'{who}_cpu_max_pct'))}")
        if isinstance(lag := sat.get(f"{who}_loop_lag_ms"), dict):
            parts.append(f"{who} event-loop lag p99 {fmt_short(lag.get('p99'))} ms, max {fmt_short(lag.get('max'))} "
                         f"ms ({fmt_count(lag.get('n'))} samples)")
    if warnings := number(sat.get("locust_cpu_warnings")):
        parts.append(f"{fmt_count(warnings)} Locust CPU warnings")
    if _external(run) is not None:
        parts.append(f"the {target}'s CPU and event-loop lag: unavailable (external target, see below)")
    for w, h in sorted(obj(sat.get("workers")).items()):
        parts.append(f"Locust worker {w} (its own report) CPU max {_pct_of_core(obj(h).get('cpu_max_pct'))}, "
                     f"greenlet lag max {fmt_short(obj(h).get('lag_max_ms'))} ms")
    blocks.append(Para(Strong("Harness check: "), f"{verdict}: {'; '.join(parts)}. CPU is in % of one core."))
    return blocks + workers_warnings(run.summary)


def _pct_of_core(value: Any) -> str:
    return DASH if number(value) is None else f"{fmt_short(value)}%"


STEP_HEADER = ("step", "users", "offered (/s)", "achieved (/s)", "p50 (ms)", "p99 (ms)", "p99 from intended (ms)",
               "errors", "429", "503", "timeouts", "attempts per delivery", "backlog / in flight at end")


def _counters(steps: list[Step]) -> bool:
    """Whether the steps carry the server's counters (an external target's do not have the keys at all)."""
    return any("in_flight_end" in s or "backlog_end" in s for s in steps) or not steps


def _step_cells(step: Step, counters: bool = True) -> tuple[str, ...]:
    cells = (
        fmt_count(step.get("users")), fmt_short(step.get("offered_rps"), 4), fmt_short(step.get("achieved_rps"), 4),
        fmt_num(get(step, "latency_ms", "p50")), fmt_num(get(step, "latency_ms", "p99")),
        fmt_num(get(step, "latency_from_intended_ms", "p99")),
        fmt_pct(step.get("error_rate")), fmt_pct(step.get("rate_429")), fmt_pct(step.get("rate_503")),
        fmt_pct(step.get("timeout_rate")), fmt_num(step.get("retry_amplification")),
        f"{fmt_count(step.get('backlog_end'))} / {fmt_count(step.get('in_flight_end'))}",
    )
    return cells if counters else cells[:-1]


def _steps_table(run: LoadRunData, ramp: list[Step], recovery: Step | None) -> list[Block]:
    if not ramp and recovery is None:
        return [Para("summary.json lists no measured step: the run ended before its first step was measured.")]
    _, knee_step = _knee(run, ramp)
    counters = _counters(ramp + ([recovery] if recovery else []))
    rows: list[Row] = []
    for step in ramp:
        cells: tuple[Cell, ...] = _step_cells(step, counters)
        label = fmt_text(step.get("step"))
        if step is knee_step:  # the knee stands out: the first step the server could not carry
            cells, label = tuple(Failure(c) for c in cells), f"{label} (knee)"
        rows.append(Row(label, cells))
    if recovery is not None:
        rows.append(Row(f"{fmt_text(recovery.get('step'))} (recovery)", _step_cells(recovery, counters)))
    caption = ("One row per step; every value covers the step after its settle period. p50 and p99 are measured "
               "from the send (what Locust shows), “p99 from intended” from the time the request was due "
               "(coordinated omission included). Errors, 429, 503 and timeouts are shares of the request attempts."
               + (" The knee step is highlighted." if knee_step is not None else "")
               + (" The recovery step, back at the first step's users, is not part of the ramp." if recovery else "")
               + " A dash: not recorded."
               + ("" if counters else " No backlog / in-flight column: the target's counters are unavailable "
                                      "(external target)."))
    return [Table(STEP_HEADER if counters else STEP_HEADER[:-1], tuple(rows), caption=caption)]


def _knee_blocks(run: LoadRunData, ramp: list[Step]) -> list[Block]:
    knee, step = _knee(run, ramp)
    target = _target(run)
    reasons = tuple(str(r) for r in knee.get("reasons") or () if r)
    saturated = run.summary.get("harness_saturated") is True
    caveat = f" Locust was saturated, so this is the harness's knee, not the {target}'s (see the harness check)."
    if knee.get("reached") is True:
        users = f" ({fmt_count(step.get('users'))} users)" if step is not None else ""
        text = (f"step {fmt_text(knee.get('step'))}{users}, at {fmt_short(knee.get('offered_rps'), 4)} requests/s "
                f"offered: the first step of the ramp where the {target} fell behind or missed its SLO"
                f" (p99 from the intended time ≤ {fmt_short(run.overload.get('slo_p99_ms'))} ms).")
        return [Para(Strong("Knee: "), text + (caveat if saturated else "") + " Why:"),
                Bullets(reasons or ("(no reason recorded)",))]
    if knee.get("reached") is False:
        ceiling = number(knee.get("ceiling_rps"))
        if ceiling is not None:
            text = (f"not reached, ceiling {fmt_short(ceiling, 4)}/s: every step of the ramp, up to "
                    f"{fmt_short(ceiling, 4)} requests/s offered, stayed within the limits that mark a knee "
                    "(see Definitions).")
        else:
            text = f"not reached: {'; '.join(reasons) or 'no step was measured'}."
        return [Para(Strong("Knee: "), text + (caveat if saturated else ""))]
    return [Para(Strong("Knee: "), "not recorded in summary.json.")]


def _recovery_para(run: LoadRunData, recovery: Step | None) -> Para:
    seconds, note = run.overload.get("recovery_s"), run.overload.get("recovery_note")
    note_text = f": {note}" if note else ""
    if number(seconds) is not None:
        return Para(Strong("Recovery: "), f"{fmt_short(seconds)} s into the recovery step{note_text}.")
    if recovery is not None:
        return Para(Strong("Recovery: "), f"not recovered within the recovery step{note_text}.")
    return Para(Strong("Recovery: "), str(note) if note else "the scenario had no recovery step.")


def _reproduce(run: LoadRunData) -> list[Block]:
    m = run.manifest
    blocks: list[Block] = []
    for intro, argv in (("The command that produced this run, as recorded in manifest.json:", m.get("command_line")),
                        ("Locust was started as (secrets replaced; a storm's signing secret was in its environment, "
                         "as $LOCUST_HB_SECRET):" if _target(run) == "receiver"
                         else "Locust was started as (secrets replaced):", m.get("locust_command"))):
        if isinstance(argv, list) and argv:
            text = shlex.join(str(a) for a in argv)
            blocks += [Para(intro), CodeBlock(f"python {text}" if argv[:2] == ["-m", "locust"] else text)]
    if not blocks:
        blocks.append(Para("The command line was not recorded in manifest.json."))
    git = m.get("git_commit")
    if isinstance(git, str) and git.endswith("+dirty"):
        git = f"{git.removesuffix('+dirty')} with uncommitted changes (the command may not reproduce it exactly)"
    return blocks + [Bullets((("seed", fmt_text(run.summary.get("seed", m.get("seed")))),
                              ("git commit", fmt_text(git) if git else "not recorded (not a git checkout)")))]


def _environment(run: LoadRunData) -> list[Block]:
    return environment_blocks(run.manifest, (("Locust processes", fmt_count(run.manifest.get("locust_processes"))),))


def _definitions() -> tuple[tuple[str, str], ...]:
    return (
        ("offered", "users × the rate each user was asked to send: the load the step meant to apply."),
        ("intended", "requests the users scheduled in the step, per second; below offered when Locust could not "
                     "keep up."),
        ("achieved", "deliveries (or polls) due in the step that ended in success (2xx, or 304 for a poll), per "
                     "second."),
        ("latency from the send", "response time from the moment the request left Locust: what Locust reports."),
        ("latency from the intended time", "from the moment the request was due: it includes the time a request "
                                           "waited because the previous one was slow (coordinated omission)."),
        ("errors, 429, 503, timeouts", "shares of the request attempts sent in the step: not 2xx/3xx; answered 429 "
                                       "Too Many Requests; 503 Service Unavailable; no answer before the timeout."),
        ("attempts per delivery", "request attempts per delivery, retries included: the retry amplification."),
        ("knee", f"the first step of the ramp whose p99 from the intended time exceeds the SLO, whose errors "
                 f"exceed {ERROR_LIMIT:.0%}, or whose achieved rate is below {ACHIEVED_MIN:.0%} of offered."),
        ("recovery", "seconds into the recovery step until every later second's p99 from the intended time stays "
                     "near the first step's."),
    )


# --- the figures ------------------------------------------------------------------------------------

def make_overload_figures(run: LoadRunData, out_dir: Path) -> list[FigureOutcome]:
    """Write every figure that has data into `out_dir`; a skipped figure's stale PNG is removed."""
    return draw_figures(out_dir, (
        ("offered_vs_achieved", "Achieved vs offered rate", _draw_rates),
        ("latency_vs_offered", "Latency vs offered rate", _draw_latency),
        ("errors_vs_offered", "Errors vs offered rate", _draw_errors),
        ("harness_cpu", "CPU of the server and of Locust", _draw_cpu),
    ), run)


def draw_figures(out_dir: Path, specs: Sequence[tuple[str, str, Callable[[Axes, D], tuple[bool, str]]]],
                 data: D) -> list[FigureOutcome]:
    """One PNG per (name, title, draw(ax, data)) spec, in the load report's size; skipped ones removed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    outcomes = []
    for name, title, draw in specs:
        path = out_dir / f"{name}.png"
        fig = Figure(figsize=SIZE_IN, dpi=DPI, layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        ax.set_title(title)
        drawn, note = draw(ax, data)
        outcomes.append(save_or_skip(fig, path, name, title, drawn, note))
    return outcomes


def _value(step: Step, keys: tuple[str, ...], scale: float, log: bool) -> float:
    """A step's value at `keys`, as a plottable float; NaN (a gap in the line) when null, or ≤ 0 on a log axis."""
    x = number(get(step, *keys))
    if x is None or not math.isfinite(x) or (log and x <= 0):
        return math.nan
    return x * scale


def _series(ax: Axes, run: LoadRunData, lines: Sequence[tuple[str, tuple[str, ...], str]], *, scale: float = 1.0,
            log: bool = False) -> list[float]:
    """One line per (label, keys, colour) over the ramp's offered rates, the recovery step as an open square apart;
    return every value drawn."""
    ramp, recovery = _steps(run)
    x = np.array([_value(s, ("offered_rps",), 1.0, False) for s in ramp])
    drawn: list[float] = []
    for label, keys, color in lines:
        y = np.array([_value(s, keys, scale, log) for s in ramp])
        if np.isfinite(x * y).any():
            ax.plot(x, y, marker="o", markersize=5, color=color, label=label)
            drawn += list(y[np.isfinite(x * y)])
        if recovery is not None:
            rx, ry = _value(recovery, ("offered_rps",), 1.0, False), _value(recovery, keys, scale, log)
            if math.isfinite(rx * ry):
                ax.scatter([rx], [ry], marker="s", s=70, facecolors="none", edgecolors=color, linewidths=1.6,
                           zorder=4)
                drawn.append(ry)
    if drawn and recovery is not None:
        ax.plot([], [], marker="s", markersize=8, linestyle="none", markerfacecolor="none", color="0.2",
                label=f"recovery step ({fmt_count(recovery.get('users'))} users, after the ramp)")
    return drawn


def _mark_knee(ax: Axes, run: LoadRunData, color: str = KNEE, who: str = "", row: int = 0) -> str:
    """A vertical line at the knee, or a note that it was not reached; return the caption's sentence about it.

    With several runs on one figure, `who` names the run in the label and `row` moves its note down a line.
    """
    knee, _ = _knee(run, _steps(run)[0])
    x, step = number(knee.get("offered_rps")), fmt_text(knee.get("step"))
    if knee.get("reached") is True and x is not None and math.isfinite(x):
        ax.axvline(x, color=color, linestyle="--", linewidth=1.3, zorder=1)
        ax.annotate(f"{who}knee: step {step}, {fmt_short(x, 4)}/s", (x, 1.0), xycoords=("data", "axes fraction"),
                    xytext=(-4, -6), textcoords="offset points", rotation=90, ha="right", va="top", color=color,
                    fontsize=8)
        line = f"Dashed, {who.removesuffix(': ')}" if who else "Dashed red"
        return f"{line}: the knee, step {step} at {fmt_short(x, 4)} requests/s offered."
    if knee.get("reached") is True:
        text = f"knee at step {step} (its offered rate was not recorded)"
    elif knee.get("reached") is False:
        ceiling = number(knee.get("ceiling_rps"))
        text = "knee not reached" + (f", ceiling {fmt_short(ceiling, 4)}/s" if ceiling is not None else "")
    else:
        text = "knee not recorded"
    ax.text(0.02, 0.97 - 0.06 * row, who + text, transform=ax.transAxes, ha="left", va="top", fontsize=8,
            color="0.3" if not who else color)
    return f"{who}{text}." if who else f"K{text[1:]}."


def _finish(ax: Axes, ylabel: str) -> None:
    ax.set_xlabel("offered (requests/s)")
    ax.set_ylabel(ylabel)
    ax.set_xlim(left=0)
    ax.grid(True, which="major", alpha=0.4)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: fmt_short(v, 4)))
    _legend(ax)


def _legend(ax: Axes) -> None:
    """The legend below the axes, across the figure's width."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.figure.legend(handles, labels, loc="outside lower center", ncols=3, fontsize=8, frameon=False)


def _diagonal(ax: Axes, values: list[float]) -> None:
    """Square axes from 0 past the largest of `values`, with the dotted line achieved = offered."""
    top = max(values + [1.0]) * 1.08
    ax.plot([0, top], [0, top], color="0.4", linestyle=":", linewidth=1.2, label="achieved = offered", zorder=0)
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: fmt_short(v, 4)))


def _error_axis(ax: Axes, drawn: list[float]) -> None:
    """A % axis from 0 past the largest error rate drawn, with the 1% line that marks a knee."""
    ax.axhline(100 * ERROR_LIMIT, color="0.4", linestyle=":", linewidth=1.1,
               label=f"{ERROR_LIMIT:.0%}: errors above it mark a knee")
    ax.set_ylim(0, max(drawn + [100 * ERROR_LIMIT]) * 1.15)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{fmt_short(v)}%"))


def _draw_rates(ax: Axes, run: LoadRunData) -> tuple[bool, str]:
    drawn = _series(ax, run, (("achieved", ("achieved_rps",), SERIES["achieved"]),
                              ("intended by the users", ("intended_rps",), SERIES["intended"])))
    if not drawn:
        return False, "summary.json has no step with an offered and an achieved rate"
    offered = [v for s in _steps(run)[0] if math.isfinite(v := _value(s, ("offered_rps",), 1.0, False))]
    _diagonal(ax, drawn + offered)
    knee = _mark_knee(ax, run)
    _finish(ax, "requests/s")
    return True, ("Per step: requests due in the step that succeeded (achieved) and that the Locust users scheduled "
                  "(intended), per second of the measured part of the step, against the rate offered. Below the "
                  f"dotted line the server, or Locust when intended falls short too, did not keep up. {knee}")


def _draw_latency(ax: Axes, run: LoadRunData) -> tuple[bool, str]:
    ax.set_yscale("log")
    drawn = _series(ax, run, (("p50 from the send", ("latency_ms", "p50"), SERIES["p50"]),
                              ("p99 from the send", ("latency_ms", "p99"), SERIES["p99"]),
                              ("p99 from the intended time", ("latency_from_intended_ms", "p99"),
                               SERIES["p99_intended"])), log=True)
    if not drawn:
        return False, "summary.json has no step with a latency above 0 ms"
    slo = number(run.overload.get("slo_p99_ms"))
    if slo is not None and slo > 0:
        ax.axhline(slo, color=SLO, linestyle="-.", linewidth=1.1, label=f"SLO: p99 {fmt_short(slo)} ms")
        drawn.append(slo)
    ax.set_ylim(min(drawn) / 1.6, max(drawn) * 1.6)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: fmt_short(v)))
    knee = _mark_knee(ax, run)
    _finish(ax, "latency (ms, log scale)")
    return True, ("Per step: median and 99th percentile of the response time measured from the send (what Locust "
                  "shows) and the 99th percentile from the time each request was due, which adds the waiting that "
                  f"coordinated omission hides. {knee}")


def _draw_errors(ax: Axes, run: LoadRunData) -> tuple[bool, str]:
    drawn = _series(ax, run, (("errors (not 2xx/3xx)", ("error_rate",), SERIES["error_rate"]),
                              ("429 Too Many Requests", ("rate_429",), SERIES["rate_429"]),
                              ("503 Service Unavailable", ("rate_503",), SERIES["rate_503"]),
                              ("timeouts", ("timeout_rate",), SERIES["timeout_rate"])), scale=100.0)
    if not drawn:
        return False, "summary.json has no step with an error rate"
    _error_axis(ax, drawn)
    knee = _mark_knee(ax, run)
    _finish(ax, "% of request attempts")
    return True, ("Per step: the share of request attempts that failed (any status other than 2xx/3xx, or no "
                  f"answer), and among them those answered 429 or 503 and those that timed out. {knee}")


def _draw_cpu(ax: Axes, run: LoadRunData) -> tuple[bool, str]:
    h = run.harness
    if h is None:
        return False, "the run directory has no harness.parquet (CPU samples)"
    if missing := [c for c in ("t_ns", "process", "cpu_pct") if c not in h.columns]:
        return False, f"harness.parquet lacks the columns {', '.join(missing)}"
    h = h.assign(cpu_pct=pd.to_numeric(h["cpu_pct"], errors="coerce"))
    h = h[h["t_ns"].notna() & np.isfinite(h["cpu_pct"])]
    if h.empty:
        return False, "harness.parquet has no CPU sample"
    bounds, source = _step_bounds(run)
    t0 = bounds[0][1] if bounds else int(h["t_ns"].min())
    saturated = run.summary.get("harness_saturated") is True
    processes = h["process"].astype(str)
    locust = sorted((p for p in processes.unique() if p.startswith("locust")), key=lambda p: (p != "locust", p))
    palette = colormaps["Reds" if saturated else "Greens"]
    for i, name in enumerate(["server", *locust]):
        rows = h[processes == name].sort_values("t_ns")
        if rows.empty:
            continue
        t = (rows["t_ns"].to_numpy(dtype="int64") - t0) / 1e9
        cpu = rows["cpu_pct"].to_numpy(dtype=float)
        if name == "server":
            style = {"color": "0.15" if saturated else "#1565c0", "linewidth": 1.8, "label": f"{_target(run)}"}
        else:
            many = len(locust) > MAX_LOCUST_LINES
            shade = 0.75 if many else 0.45 + 0.45 * i / max(1, len(locust))
            label = (f"Locust ({len(locust)} processes)" if i == 1 else "_nolegend_") if many else name
            style = {"color": palette(shade), "linewidth": 1.0 if many else 1.3, "label": label}
        ax.plot(t, cpu, **style)
    ax.axhline(LOCUST_LIMIT, color=KNEE, linestyle="--", linewidth=1.1, label="90%: Locust's warning level")
    _mark_steps(ax, run, bounds, t0)
    # the step numbers sit just above the axes: the title moves up to make room
    ax.set_title(ax.get_title() + (": Locust saturated" if saturated else ""), color=KNEE if saturated else "black",
                 pad=16)
    if saturated:
        ax.set_facecolor("#fdecea")
    ax.set_ylim(0, max(110.0, float(h["cpu_pct"].max()) * 1.08))
    ax.set_xlabel("seconds since the first step started" if bounds else "seconds since the first CPU sample")
    ax.set_ylabel("CPU (% of one core)")
    ax.grid(True, axis="y", alpha=0.4)
    _legend(ax)
    note = ("CPU use of the server under test and of each Locust process, sampled once a second (100% = one core). "
            "Dashed red: 90%, above which Locust warns that it may no longer send at the rate asked. ")
    if _external(run) is not None:
        note += f"The {_target(run)} was external: its CPU is unavailable, only Locust's is drawn. "
    if bounds:
        note += (f"Vertical lines: step boundaries ({source}), step numbers at the top, the knee's in red; shaded: "
                 "each step's settle period, excluded from the statistics.")
    else:
        note += "Step boundaries were not recorded (no steps.parquet, no step times in summary.json)."
    if saturated:
        note += " Drawn in red: Locust was saturated in this run (see the harness check)."
    return True, note


def _step_bounds(run: LoadRunData) -> tuple[list[tuple[int, int, int]], str]:
    """([(step, start_ns, end_ns)], where they came from): steps.parquet's rows, else summary.json's steps."""
    s = run.steps
    if s is not None and {"t_ns", "step"} <= set(s.columns):
        rows = s[s["t_ns"].notna() & s["step"].notna()].sort_values("t_ns")
        t, step = rows["t_ns"].to_numpy(dtype="int64"), rows["step"].to_numpy(dtype="int64")
        bounds = [(int(step[i]), int(t[i]), int(t[i + 1])) for i in range(len(t) - 1) if step[i] >= 0]
        if bounds:
            return bounds, "from steps.parquet"
    ramp, recovery = _steps(run)
    bounds = [(int(st["step"]), int(st["start_ns"]), int(st["end_ns"])) for st in ramp + [recovery] * bool(recovery)
              if all(type(st.get(k)) is int for k in ("step", "start_ns", "end_ns"))]
    return bounds, "from summary.json"


def _mark_steps(ax: Axes, run: LoadRunData, bounds: list[tuple[int, int, int]], t0: int) -> None:
    settle = number(get(run.manifest, "scenario", "load", "settle"))
    knee, _ = _knee(run, _steps(run)[0])
    top = blended_transform_factory(ax.transData, ax.transAxes)
    if bounds:
        ax.text(0.0, 1.01, "step ", transform=ax.transAxes, ha="right", va="bottom", fontsize=8, color="0.3")
    label = "settle (excluded from statistics)"
    for step, start, end in bounds:
        a, b = (start - t0) / 1e9, (end - t0) / 1e9
        ax.axvline(a, color="0.5", linewidth=0.8, zorder=0)
        if settle:
            ax.axvspan(a, min(b, a + settle), color=SETTLE, alpha=0.6, linewidth=0, zorder=0, label=label)
            label = "_nolegend_"
        is_knee = knee.get("reached") is True and knee.get("step") == step
        ax.text((a + b) / 2, 1.01, str(step), transform=top, ha="center", va="bottom", fontsize=8,
                color=KNEE if is_knee else "0.3", fontweight="bold" if is_knee else "normal")
    if bounds:
        ax.axvline((bounds[-1][2] - t0) / 1e9, color="0.5", linewidth=0.8, zorder=0)
