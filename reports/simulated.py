"""The report of a simulated run (`hookbench simulate`, summary.json `kind` "simulated"): the live report's main
table and figures where they make sense, titled as virtual time, saying what was not simulated; and the fleet's
per-interval table, which the Zapier reproduction's report shares.

Values are shown as bench.simulation.simulate and bench.simulation.population wrote them; nothing is recomputed.
"""

from __future__ import annotations

from typing import Any

from reports.document import Block, Bullets, Heading, Notice, Para, Row, Strong, Table
from reports.figures import FigureOutcome
from reports.fmt import fmt_count, fmt_num, fmt_pct, fmt_short, fmt_started_at, fmt_text, get, number, obj
from reports.run_report import DEFINITIONS, MODEL_NOTE, _environment, _reproduce, _results, figure_blocks
from reports.rundir import RunData

__all__ = ["SIMULATED_FIGURES", "build_simulated_document", "fleet_blocks", "fleet_interval_table"]

# The live report's figures that a simulation can fill: no delivery timeline (no deliveries, no faults).
SIMULATED_FIGURES = ("latency_cdf", "wasted_fraction", "requests_per_change")


def build_simulated_document(run: RunData, figures: list[FigureOutcome]) -> tuple[str, list[Block]]:
    """The simulated run's title and blocks, in reading order."""
    s, m = run.summary, run.manifest
    title = f"hookbench simulation (virtual time): {fmt_text(s.get('scenario'))}"
    blocks: list[Block] = [Heading(1, title)]
    if description := get(m, "scenario", "description"):
        blocks.append(Para(str(description)))
    blocks.append(Para(Strong("Simulated at: "), fmt_started_at(m.get("started_at"))))
    not_simulated = tuple(str(x) for x in s.get("not_simulated") or ())
    blocks.append(Notice(
        "caution", "Virtual-time simulation: no server, network or load generator ran",
        "These numbers come from the scenario's change schedule and poll schedule played in virtual time "
        "(exact poll outcomes for the drawn changes). They are simulated, not measured. Not simulated, so null "
        "or absent below:", not_simulated))
    if warnings := [str(w) for w in s.get("warnings") or ()]:
        blocks.append(Notice("warning", "The scenario asks for things the simulator ignores",
                             "Read the webhook figures with this in mind:", tuple(warnings)))
    blocks += [Heading(2, "What was simulated"), Para(_workload_text(run))]
    blocks += [Heading(2, "Results (simulated)"), *_results(run)]
    if isinstance(s.get("fleet"), dict):
        blocks += [Heading(2, "Fleet (simulated)"), *fleet_blocks(s["fleet"])]
    blocks += [Heading(2, "Figures"), *figure_blocks(run.run_dir, figures)]
    blocks += [Heading(2, "Reproduce"), *_reproduce(run)]
    blocks += [Heading(2, "Environment"), *_environment(run)]
    blocks += [Heading(2, "Definitions"), Bullets(DEFINITIONS), Para(MODEL_NOTE)]
    return title, blocks


def _workload_text(run: RunData) -> str:
    s = run.summary
    w, win, sim = obj(s.get("workload")), obj(s.get("window")), obj(s.get("simulation"))
    text = (f"{fmt_count(w.get('resources'))} resources changed as a {fmt_text(w.get('process'))} process at "
            f"{fmt_short(w.get('rate_per_resource'))} changes/s per resource; pollers polled every "
            f"{fmt_short(w.get('poll_interval_s'))} s. Modes: {', '.join(run.modes) or '–'}. Statistics cover a "
            f"{fmt_short(win.get('duration_s'))} s virtual window after {fmt_short(win.get('warmup_s'))} s of warm-up, "
            f"with {fmt_short(win.get('drain_s'))} s of drain; {fmt_count(s.get('changes'))} changes happened in "
            "the window. ")
    if win.get("extended_for_polls"):
        text += f"The window was lengthened so that at least {fmt_count(sim.get('requested_polls'))} polls count. "
    text += (f"{fmt_count(sim.get('polls'))} polls were simulated ({fmt_count(sim.get('polls_in_window'))} in the "
             f"window) in {fmt_short(sim.get('wall_s'))} s of wall time. Times are nominal: the scenario's time "
             f"scale ({fmt_short(s.get('time_scale'))}) is recorded, not applied. Seed {fmt_text(s.get('seed'))}.")
    return text


def _minutes(seconds: Any) -> str:
    x = number(seconds)
    return fmt_text(seconds) if x is None else (f"{fmt_short(x / 60)} min" if x >= 60 else f"{fmt_short(x)} s")


def _ci(section: dict[str, Any], key: str = "wasted_fraction_ci95") -> str:
    ci = section.get(key)
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and None not in ci:
        return f"{fmt_pct(ci[0], 3)} to {fmt_pct(ci[1], 3)}"
    return "–"


def fleet_blocks(fleet: dict[str, Any]) -> list[Block]:
    """A simulated fleet (summary `fleet`, or a reproduction's `population.simulated`): aggregate and per interval."""
    model = obj(fleet.get("model"))
    rows = (
        Row("subscriptions", (fmt_count(fleet.get("subscriptions")),)),
        Row("period (virtual)", (f"{fmt_short(fleet.get('duration_s'))} s",)),
        Row("change rates", (f"{fmt_text(fleet.get('rate_distribution'))}, median "
                             f"{fmt_num(fleet.get('rate_median'))}/s (one change per "
                             f"{fmt_short((number(fleet.get('median_change_interval_s')) or 0) / 3600)} h), "
                             f"sigma {fmt_short(fleet.get('rate_sigma'))}",)),
        Row("polls", (fmt_count(fleet.get("polls")),)),
        Row("useful polls", (fmt_count(fleet.get("useful_polls")),)),
        Row("wasted fraction", (fmt_pct(fleet.get("wasted_fraction"), 3),)),
        Row("95% CI (binomial)", (_ci(fleet),)),
        Row("95% CI (subscriptions as clusters)", (_ci(fleet, "wasted_fraction_ci95_cluster"),)),
        Row("model: wasted fraction", (fmt_pct(model.get("wasted_fraction"), 3),), model=True),
        Row("polls per useful poll", (fmt_num(fleet.get("requests_per_useful_poll")),)),
        Row("mean detection latency", (_minutes((number(get(fleet, "latency_ms", "mean")) or 0) / 1e3)
                                       if number(get(fleet, "latency_ms", "mean")) is not None else "–",)),
        Row("model: mean detection latency", (_minutes((number(model.get("latency_mean_ms")) or 0) / 1e3)
                                             if number(model.get("latency_mean_ms")) is not None else "–",),
            model=True),
    )
    blocks: list[Block] = [Table(("fleet", "simulated"), rows, numeric=False,
                                 caption="Simulated in virtual time; rows in italics are the analytic model. "
                                         + fmt_text(model.get("note")))]
    if intervals := [c for c in fleet.get("intervals") or () if isinstance(c, dict)]:
        blocks.append(fleet_interval_table(intervals))
    return blocks


def fleet_interval_table(intervals: list[dict[str, Any]]) -> Table:
    """One row per poll-interval class of a simulated fleet, its model values beside (marked in the header)."""
    rows = []
    for c in intervals:
        lat, model_lat = number(c.get("latency_mean_ms")), number(c.get("model_latency_mean_ms"))
        rows.append(Row(_minutes(c.get("interval_s")), (
            fmt_pct(c.get("weight"), 0), fmt_count(c.get("subscriptions")), fmt_count(c.get("polls")),
            fmt_count(c.get("useful_polls")), fmt_pct(c.get("wasted_fraction"), 3), _ci(c),
            fmt_pct(c.get("model_wasted_fraction"), 3),
            "–" if lat is None else _minutes(lat / 1e3), "–" if model_lat is None else _minutes(model_lat / 1e3),
        )))
    return Table(("poll interval", "share of subscriptions", "subscriptions", "polls", "useful polls",
                  "wasted (simulated)", "95% CI", "model: e^(−λT) averaged", "mean latency (simulated)",
                  "model: T/2"), tuple(rows),
                 caption="Per poll-interval class of the simulated fleet. Columns headed “model” are analytic "
                         "predictions over the same rate distribution, not simulation results.")
