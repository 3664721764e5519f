"""What the report says: its sections as document blocks, filled from the run's result files.

Values are shown as the analysis wrote them (only unit changes, e.g. CPU seconds -> µs); nothing is recomputed.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from bench.modes import CURSOR, ETAG, find_kind
from reports.document import Block, Bullets, CodeBlock, Heading, Image, Notice, Para, Row, Strong, Table
from reports.figures import FigureOutcome
from reports.fmt import (
    DASH,
    fmt_count,
    fmt_num,
    fmt_pct,
    fmt_short,
    fmt_started_at,
    fmt_text,
    get,
    number,
    obj,
    wasted_interval,
)
from reports.loss import down_intervals, loss_blocks
from reports.rundir import RunData
from reports.security import security_blocks
from reports.workers import remote_pollers_blocks, workers_warnings

__all__ = ["build_document"]

DEFINITIONS: tuple[tuple[str, str], ...] = (
    ("empty poll", "a poll that returned nothing new: 304 Not Modified, or no change since the previous "
                   "poll."),
    ("wasted fraction", "empty polls / all polls in the window; in parentheses, its 95% Wilson score "
                        "interval."),
    ("detection latency", "t_obs − t_change, from the producer's change to the moment the observer "
                          "(a poller or the webhook receiver) learned of it."),
    ("lost", "a change in the window that the mode had not observed by the end of the grace period (drain)."),
    ("duplicate", "a second observation of the same change by the same observer. Under faults, duplicates "
                  "delivered counts them; duplicates processed counts those the receiver processed again "
                  "despite deduplication."),
    ("late", "a change observed more than the scenario's SLO (webhook.slo) after it was made."),
    ("coalesced", "state polling only: changes overwritten before any poll saw them, so the poller saw only a "
                  "later version; counted apart from lost."),
    ("requests per change", "requests the mode made (polls, long polls, stream connections, webhook delivery "
                            "attempts including retries, plus a push mode's own fetches or reconciliation polls) / "
                            "changes in the window."),
    ("connections held open", "requests the producer held open for the mode (long polls waiting, event streams), "
                              "sampled once a second during the window."),
    ("bytes, producer CPU per change", "bytes the mode transferred, and CPU time the producer process spent "
                                       "on it, / changes in the window."),
)

MODEL_NOTE = (
    "Rows and markers labelled “model” are analytic predictions, not measurements: for Poisson changes of "
    "rate λ per resource polled every T seconds, P(empty poll) = e^(−λT) and the mean detection latency ≈ T/2 "
    f"plus the round trip. A dash ({DASH}) means no value: nothing was observed, or no model exists for that "
    "mode."
)


def build_document(run: RunData, figures: list[FigureOutcome]) -> tuple[str, list[Block]]:
    """The report's title and blocks, in reading order."""
    name = fmt_text(run.summary.get("scenario") or get(run.manifest, "scenario", "name"))
    title = f"hookbench report: {name}"
    blocks: list[Block] = [Heading(1, title)]
    description = get(run.manifest, "scenario", "description")
    if description:
        blocks.append(Para(str(description)))
    blocks.append(Para(Strong("Run started: "), fmt_started_at(run.manifest.get("started_at"))))
    blocks += _status(run)
    blocks += [Heading(2, "What was measured"), Para(_workload_text(run))]
    if remote := remote_pollers_blocks(run.summary, run.manifest):
        blocks += [Heading(3, "Pollers on Locust workers"), *remote]
    blocks += [Heading(2, "Results"), *_results(run)]
    if loss := loss_blocks(run):
        blocks += [Heading(2, "Who lost what"), *loss]
    if security := security_blocks(run.security, bool(down_intervals(run.faults))):
        blocks += [Heading(2, "Security under attack"), *security]
    blocks += [Heading(2, "Figures"), *figure_blocks(run.run_dir, figures)]
    blocks += [Heading(2, "Reproduce"), *_reproduce(run)]
    blocks += [Heading(2, "Environment"), *_environment(run)]
    blocks += [Heading(2, "Definitions"), Bullets(DEFINITIONS), Para(MODEL_NOTE)]
    return title, blocks


# --- partial run, harness saturation -------------------------------------------------------------

def _status(run: RunData) -> list[Block]:
    blocks: list[Block] = []
    error = run.manifest.get("error")
    recorded = (f"recorded error: {error}",) if error else ()
    if run.partial:
        blocks.append(Notice(
            "caution", "Partial run: interrupted before its planned end",
            "The run was interrupted. The results and figures below cover only what was recorded up to the "
            "interruption, not the whole planned window.",
            recorded,
        ))
    elif error:
        blocks.append(Notice("caution", "The run recorded an error", "Read the numbers below with care.",
                             recorded))
    saturated = run.summary.get("harness_saturated")
    sat = obj(run.summary.get("saturation"))
    if saturated is True:
        reasons = sat.get("reasons")
        items = tuple(str(r) for r in reasons) if isinstance(reasons, list) and reasons else ("(none recorded)",)
        blocks.append(Notice(
            "warning", "Warning: the harness itself was a bottleneck in this run",
            "The load generator or a server of the harness was saturated, so these numbers understate the "
            "capacity of the system under test and overstate its latency. Re-run with a smaller time scale, "
            "fewer resources, or on a machine with more cores. Reasons:",
            items,
        ))
    blocks.append(Para(Strong("Harness check: "), _harness_line(saturated, sat)))
    return blocks + workers_warnings(run.summary, "window")


def _harness_line(saturated: Any, sat: dict[str, Any]) -> str:
    if saturated is True:
        verdict = "saturated (see the warning above)"
    elif saturated is False:
        verdict = "not saturated"
    else:
        verdict = "saturation was not recorded"
    parts = []
    for who in ("producer", "receiver"):
        lag = sat.get(f"{who}_loop_lag_ms")
        if isinstance(lag, dict):
            p99, worst = fmt_short(lag.get("p99")), fmt_short(lag.get("max"))
            parts.append(f"{who} event-loop lag p99 {p99} ms, max {worst} ms")
    rss, fds = number(sat.get("producer_rss_mb_max")), number(sat.get("producer_fds_max"))
    if rss is not None or fds is not None:
        parts.append(f"producer resident memory max {fmt_short(rss)} MB, open file descriptors max {fmt_count(fds)}")
    if "locust_cpu_max_pct" in sat:
        cpu = number(sat.get("locust_cpu_max_pct"))
        parts.append(f"Locust CPU max {DASH if cpu is None else fmt_short(cpu) + '%'}")
    warnings = number(sat.get("locust_cpu_warnings"))
    if warnings:
        parts.append(f"{fmt_count(warnings)} Locust CPU warnings")
    return verdict + (f": {'; '.join(parts)}." if parts else ".")


# --- what was measured ---------------------------------------------------------------------------

def _workload_text(run: RunData) -> str:
    s, m = run.summary, run.manifest
    scenario = obj(m.get("scenario"))

    def pick(summary_keys: tuple[str, ...], scenario_keys: tuple[str, ...]) -> Any:
        value = get(s, *summary_keys)
        return get(scenario, *scenario_keys) if value is None else value

    resources = pick(("workload", "resources"), ("resources", "count"))
    process = pick(("workload", "process"), ("changes", "process"))
    rate = pick(("workload", "rate_per_resource"), ("changes", "rate"))
    interval = pick(("workload", "poll_interval_s"), ("polling", "interval"))
    # summary.json's workload holds the live values; the scenario's are nominal (before time scaling)
    nominal = not isinstance(s.get("workload"), dict)
    time_scale = s.get("time_scale", m.get("time_scale"))
    duration = s.get("duration_s", get(m, "window", "duration_s"))
    modes = ", ".join(_mode_title(name, section) for name, section in run.modes.items()) or DASH
    warmup, drain = fmt_short(get(m, "window", "warmup_s")), fmt_short(get(m, "window", "drain_s"))
    text = (
        f"{fmt_count(resources)} resources changed as a {fmt_text(process)} process at {fmt_short(rate)} "
        f"changes/s per resource; pollers polled every {fmt_short(interval)} s"
        f"{' (scenario values, before time scaling)' if nominal else ''}. Modes compared: {modes}. "
        f"Statistics cover a {fmt_short(duration)} s window after {warmup} s of warm-up, followed by {drain} s "
        f"of drain; both are excluded. {fmt_count(s.get('changes'))} changes happened in the window. "
    )
    scale = number(time_scale)
    if scale is not None and scale != 1:
        text += (f"The run was time-scaled by {fmt_short(scale)}: the scenario's intervals were divided and its "
                 "rates multiplied by it, which leaves λT, and so the wasted fraction, unchanged. ")
    else:
        text += f"Time scale {fmt_short(time_scale)} (not time-scaled). "
    return text + f"Seed {fmt_text(s.get('seed', m.get('seed')))}."


def _mode_title(name: str, section: dict[str, Any]) -> str:
    detail = section.get("style") or section.get("kind")
    return f"{name} ({detail})" if detail and detail != name else name


# --- results table -------------------------------------------------------------------------------

Cell = Callable[[dict[str, Any]], str]


def _field(*keys: str, fmt: Callable[[Any], str] = fmt_num) -> Cell:
    return lambda mode: fmt(get(mode, *keys))


def _kind(mode: dict[str, Any]) -> str:
    kind, style = fmt_text(mode.get("kind")), mode.get("style")
    return f"{kind} ({style})" if style else kind


def _wasted(mode: dict[str, Any]) -> str:
    value = number(mode.get("wasted_fraction"))
    if value is None:
        return fmt_text(mode.get("wasted_fraction"))
    ci = wasted_interval(mode)
    return fmt_pct(value) + ("" if ci is None else f" ({fmt_pct(ci[0])} to {fmt_pct(ci[1])})")


def _cpu_us(mode: dict[str, Any]) -> str:
    value = number(mode.get("cpu_s_per_change"))
    return fmt_text(mode.get("cpu_s_per_change")) if value is None else fmt_num(value * 1e6)


class RowSpec(NamedTuple):
    label: str
    cell: Cell
    model: bool = False  # an analytic prediction
    only_if: tuple[str, ...] | None = None  # shown only when some mode has a value at this key path


MODEL_WASTED = "model: wasted fraction"
ROWS: tuple[RowSpec, ...] = (
    RowSpec("kind", _kind),
    RowSpec("requests", _field("requests", fmt=fmt_count)),
    RowSpec("empty requests", _field("empty_requests", fmt=fmt_count)),
    RowSpec("wasted fraction (95% CI)", _wasted),
    RowSpec(MODEL_WASTED, _field("model", "wasted_fraction", fmt=fmt_pct), model=True),
    RowSpec("model: λT", _field("model", "lambda_T"), True, ("model", "lambda_T")),
    RowSpec("model: changes per useful poll", _field("model", "changes_per_useful_poll"), True,
            ("model", "changes_per_useful_poll")),
    RowSpec("observed", _field("observed", fmt=fmt_count)),
    RowSpec("lost", _field("lost", fmt=fmt_count)),
    RowSpec("duplicates", _field("duplicates", fmt=fmt_count)),
    RowSpec("coalesced", _field("coalesced", fmt=fmt_count)),
    RowSpec("requests per change", _field("requests_per_change")),
    RowSpec("model: requests per change", _field("model", "requests_per_change"), model=True),
    RowSpec("retries", _field("retries", fmt=fmt_count), only_if=("retries",)),
    RowSpec("of which delivery attempts", _field("delivery_attempts", fmt=fmt_count), only_if=("consumer_requests",)),
    RowSpec("of which consumer requests (fetches, reconciliation polls)", _field("consumer_requests", fmt=fmt_count),
            only_if=("consumer_requests",)),
    RowSpec("recovered by the reconciliation poll", _field("recovered_by_reconcile", fmt=fmt_count),
            only_if=("recovered_by_reconcile",)),
    RowSpec("of which no delivery brought", _field("reconcile_only", fmt=fmt_count), only_if=("reconcile_only",)),
    RowSpec("recovered changes' latency p50 (ms)", _field("reconcile_extra_latency_ms", "p50"),
            only_if=("reconcile_extra_latency_ms", "p50")),
    RowSpec("fetch round trip p50 (ms)", _field("fetch_ms_p50"), only_if=("fetch_ms_p50",)),
    RowSpec("connections held open (max)", _field("held_connections", "max", fmt=fmt_count),
            only_if=("held_connections", "max")),
    RowSpec("connections held open (mean)", _field("held_connections", "mean"),
            only_if=("held_connections", "mean")),
    RowSpec("bytes per change", _field("bytes_per_change")),
    RowSpec("producer CPU µs per change", _cpu_us),
    RowSpec("latency mean (ms)", _field("latency_ms", "mean")),
    RowSpec("model: mean latency (ms)", _field("model", "latency_mean_ms"), model=True),
    RowSpec("latency p50 (ms)", _field("latency_ms", "p50")),
    RowSpec("latency p90 (ms)", _field("latency_ms", "p90")),
    RowSpec("latency p99 (ms)", _field("latency_ms", "p99")),
    RowSpec("latency max (ms)", _field("latency_ms", "max")),
    RowSpec("latency samples", _field("latency_ms", "n", fmt=fmt_count), only_if=("latency_ms", "n")),
    RowSpec("poll round trip p50 (ms)", _field("rtt_ms_p50"), only_if=("rtt_ms_p50",)),
    RowSpec("poll send lateness p99 (ms)", _field("send_late_ms_p99"), only_if=("send_late_ms_p99",)),
    RowSpec("errors", _field("errors", fmt=fmt_count)),
)


def _fixed_poll(mode: str) -> bool:
    """A fixed-interval poll (cursor or ETag), whose wasted fraction is e^(−λT) for Poisson changes."""
    kind = find_kind(mode)
    return kind is not None and kind in (CURSOR, ETAG)


def _results(run: RunData) -> list[Block]:
    modes = run.modes
    if not modes:
        return [Para("summary.json lists no modes: there are no results to show.")]
    rows = []
    for spec in ROWS:
        if spec.only_if is not None and all(get(section, *spec.only_if) is None for section in modes.values()):
            continue
        label = spec.label
        if label == MODEL_WASTED and run.change_process == "poisson" and all(
                get(section, "model", "wasted_fraction") is None or _fixed_poll(name)
                for name, section in modes.items()):  # other modes' models have other formulas (see the notes)
            label += " e^(−λT)"
        rows.append(Row(label, tuple(spec.cell(section) for section in modes.values()), spec.model))
    caption = ("One column per mode. Rows marked “model” are analytic predictions, not measurements "
               "(see Definitions).")
    blocks: list[Block] = [Table(("", *modes), tuple(rows), caption=caption)]
    notes = tuple((name, str(note)) for name, section in modes.items()
                  if (note := get(section, "model", "note")))
    if notes:
        blocks += [Para("How each model value was obtained:"), Bullets(notes)]
    return blocks


# --- figures, reproduce, environment -------------------------------------------------------------

def figure_blocks(run_dir: Path, figures: list[FigureOutcome]) -> list[Block]:
    """A heading and the image (or why it was skipped) for each figure; paths relative to the run dir."""
    blocks: list[Block] = []
    for fig in figures:
        blocks.append(Heading(3, fig.title))
        if fig.path is None:
            blocks.append(Para(Strong("Figure skipped: "), fig.note + "."))
        else:
            rel = fig.path.relative_to(run_dir).as_posix()
            blocks.append(Image(fig.path, rel, fig.title, fig.note))
    return blocks


def _reproduce(run: RunData) -> list[Block]:
    m = run.manifest
    command = m.get("command_line")
    if isinstance(command, list) and command:
        command = shlex.join(str(part) for part in command)
    blocks: list[Block] = (
        [Para("The command that produced this run, as recorded in manifest.json:"), CodeBlock(command)]
        if isinstance(command, str) and command else
        [Para("The command line was not recorded in manifest.json.")]
    )
    git = m.get("git_commit")
    if isinstance(git, str) and git.endswith("+dirty"):
        git = f"{git.removesuffix('+dirty')} with uncommitted changes (the command may not reproduce it exactly)"
    return [
        *blocks,
        Bullets((
            ("seed", fmt_text(run.summary.get("seed", m.get("seed")))),
            ("time scale", fmt_short(run.summary.get("time_scale", m.get("time_scale")))),
            ("git commit", fmt_text(git) if git else "not recorded (not a git checkout)"),
        )),
    ]


def _environment(run: RunData) -> list[Block]:
    return environment_blocks(run.manifest)


def environment_blocks(manifest: dict[str, Any], extra: tuple[tuple[str, str], ...] = ()) -> list[Block]:
    """Machine (plus `extra` lines) and package versions, as manifest.json recorded them."""
    machine = obj(manifest.get("machine"))
    blocks: list[Block] = [Bullets((
        ("CPU", fmt_text(machine.get("cpu_model"))),
        ("cores", fmt_count(machine.get("cpu_count"))),
        ("platform", fmt_text(machine.get("platform"))),
        *extra,
    ))]
    versions = manifest.get("versions")
    if isinstance(versions, dict) and versions:
        rows = tuple(Row(str(name), (fmt_text(version),)) for name, version in versions.items())
        blocks.append(Table(("package", "version"), rows, numeric=False))
    else:
        blocks.append(Para("Package versions were not recorded in manifest.json."))
    return blocks

