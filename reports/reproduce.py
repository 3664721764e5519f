"""The report of `hookbench reproduce zapier`: the reproduction directory's summary.json in, report.md, a
self-contained report.html and figures/*.png out (and the live run's own report, which it links).

Sections follow issue 5: verdicts, then (1) mechanism, live; (2) population; (3) load, C2; (4) latency, C3;
(5) sensitivity. Values are shown as bench.orchestration.reproduce wrote them (unit changes only); model and
calibrated values are labelled as such, and only measured or simulated numbers are shown as results.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from bench.analysis.claims import CLAIMED_LOAD_RATIO
from bench.errors import HookbenchError
from bench.results import SUMMARY, Kind, RunStatus, Summary, read_manifest, read_summary
from reports.build import FIGURES_DIR, ReportFiles, build_report, write_atomic
from reports.document import Block, CodeBlock, Failure, Heading, Link, Notice, Para, Row, Strong, Table, Verdict
from reports.figures import FigureOutcome
from reports.fmt import DASH, fmt_count, fmt_num, fmt_pct, fmt_short, fmt_started_at, fmt_text, get, number, obj
from reports.render import to_html, to_markdown
from reports.reproduce_figures import make_reproduction_figures
from reports.run_report import environment_blocks, figure_blocks
from reports.simulated import fleet_blocks
from reports.verdicts import verdict_table

__all__ = ["build_reproduction_report", "PARTS"]

PARTS = ("live", "population", "load", "latency", "sensitivity")
CI_TARGET_PP = 0.3  # the target: the live 95% interval within +-0.3 percentage points


def build_reproduction_report(rdir: Path) -> ReportFiles:
    """Write report.md, report.html and figures/*.png into the reproduction directory `rdir` (and the live run's
    report into its directory); return the paths. Raises RunDirError when `rdir` is not a reproduction directory,
    FormatVersionError for an unknown format_version."""
    rdir = Path(rdir)
    s = read_summary(rdir, expect=Kind.REPRODUCTION)
    manifest = read_manifest(rdir, required=False)
    live_report, live_error = None, None
    live_run = s.value("live_run")
    if live_run and (rdir / live_run / SUMMARY).is_file():
        try:
            live_report = build_report(rdir / live_run)["html"].relative_to(rdir).as_posix()
        except HookbenchError as exc:  # the reproduction's report does not depend on it
            live_error = str(exc)
    figures = make_reproduction_figures(s.raw, rdir / FIGURES_DIR)
    title = "hookbench reproduction: “98.5% of polls are wasted” and “66x the load” (Zapier, 2013)"
    blocks = _document(title, s, manifest, figures, rdir, live_report, live_error)
    md_path, html_path = rdir / "report.md", rdir / "report.html"
    write_atomic(md_path, to_markdown(blocks))
    write_atomic(html_path, to_html(title, blocks))
    return {"md": md_path, "html": html_path, "figures": [f.path for f in figures if f.path is not None]}


def _document(title: str, s: Summary, m: dict[str, Any], figures: list[FigureOutcome], rdir: Path,
              live_report: str | None, live_error: str | None) -> list[Block]:
    src = s.section("claim_source") or {}
    figs = {f.name: f for f in figures}

    def fig(name: str) -> list[Block]:
        return figure_blocks(rdir, [figs[name]]) if name in figs else []

    blocks: list[Block] = [Heading(1, title), Para(
        Strong("The claim: "), f"over a representative period Zapier polled for changes {fmt_count(src.get('polls'))} "
        f"times and acted on {fmt_count(src.get('useful_polls'))} of those polls "
        f"({fmt_pct(s.value('claimed_wasted_fraction'))} wasted); over the same period "
        f"{fmt_count(src.get('hooks'))} hooks were received, all acted upon; hence “reduce your API server load by "
        f"{fmt_short(CLAIMED_LOAD_RATIO)}x” (REST Hooks initiative, 2013). The period, the mix of poll intervals and "
        "the number of triggers were never published, so the claim is reproduced by finding the workloads that "
        "produce it, and saying which.")]
    if m.get("started_at"):
        blocks.append(Para(Strong("Reproduced at: "), fmt_started_at(m.get("started_at"))))
    blocks += _notices(s, m)
    claims = s.claims
    blocks += [Heading(2, "Verdicts"),
               verdict_table(claims) if claims else
               Para("No verdict was written (the reproduction stopped before its first part finished).")]
    blocks += [Heading(2, "1. Mechanism, live (C1)"), *_live(s, live_report, live_error), *fig("wasted_vs_claim")]
    blocks += [Heading(2, "2. Population at full scale (simulated)"), *_population(s)]
    blocks += [Heading(2, "3. Load per change (C2)"), *_load(s), *fig("load_ratios")]
    blocks += [Heading(2, "4. Detection latency (C3)"), *_latency(s), *fig("latency_by_interval")]
    blocks += [Heading(2, "5. Sensitivity"), *_sensitivity(s), *fig("heatmap")]
    blocks += [Heading(2, "Reproduce"), *_reproduce(m)]
    blocks += [Heading(2, "Environment"), *environment_blocks(m)]
    return blocks


def _notices(s: Summary, m: dict[str, Any]) -> list[Block]:
    blocks: list[Block] = []
    src = s.section("claim_source") or {}
    if s.value("quick"):
        sizes = obj(m.get("sizes"))
        items = (f"live run: {', '.join(sizes.get('live_overrides') or ()) or 'the scenario as is'}",
                 f"population: {fmt_count(sizes.get('polls'))} polls, {fmt_count(sizes.get('useful_polls'))} useful "
                 f"over {fmt_short(sizes.get('period_s'))} s (the claim: {fmt_count(src.get('polls'))}"
                 f" and {fmt_count(src.get('useful_polls'))})",
                 f"heatmap: {fmt_count(sizes.get('heat_cells'))} × {fmt_count(sizes.get('heat_cells'))} cells of "
                 f"{fmt_count(sizes.get('heat_polls'))} polls")
        blocks.append(Notice("warning", "Quick reproduction: these sizes are not the claim's",
                             "This reproduction was run with --quick, for a smoke test: the live run is short and "
                             "the simulated population is small, so the intervals are wide and the population check "
                             "cannot pass. Run hookbench reproduce zapier without --quick for the real one. Sizes:",
                             items))
    done = list(s.value("parts_done") or ())
    missing = [p for p in PARTS if p not in done]
    if s.partial or missing:
        why = " (interrupted)" if s.status is RunStatus.INTERRUPTED else ""
        blocks.append(Notice("caution", "Partial reproduction: some parts did not finish",
                             f"Finished: {', '.join(done) or 'none'}{why}. Missing (their sections say so):",
                             tuple(missing)))
    return blocks


def _missing(part: str) -> list[Block]:
    return [Para(f"Not available: the {part} part did not finish in this reproduction.")]


def _pp(x: Any) -> str:
    v = number(x)
    return DASH if v is None else f"±{100 * v:.2f} pp"


# --- 1. live ----------------------------------------------------------------------------------------

def _live(s: Summary, live_report: str | None, live_error: str | None) -> list[Block]:
    lv = s.section("live")
    if lv is None:
        return _missing("live")
    ci = lv.get("wasted_ci95") or [None, None]
    claim = number(s.value("claimed_wasted_fraction"))
    met = lv.get("ci_target_met")
    rows = (
        Row("polls (measured)", (fmt_count(lv.get("polls")),)),
        Row("empty polls", (fmt_count(lv.get("empty")),)),
        Row("wasted fraction (measured)", (fmt_pct(lv.get("wasted_fraction")),)),
        Row("95% interval (Wilson)", (f"{fmt_pct(ci[0])} to {fmt_pct(ci[1])}",)),
        Row(f"half-width vs the target ±{CI_TARGET_PP} pp", (
            f"{_pp(lv.get('ci_half_width'))}: met" if met else
            Failure(f"{_pp(lv.get('ci_half_width'))}: not met (more polls needed)"),)),
        Row("claimed (Zapier)", (fmt_pct(claim),)),
        Row("model: e^(−λT)", (fmt_pct(lv.get("model_wasted_fraction")),), model=True),
        Row("model: λT per subscription (set by the scenario)", (fmt_num(lv.get("lambda_T"), 4),), model=True),
        Row("changes in the window", (fmt_count(lv.get("changes")),)),
        Row("lost / coalesced", (f"{fmt_count(lv.get('lost'))} / {fmt_count(lv.get('coalesced'))}",)),
        Row("time scale", (fmt_short(lv.get("time_scale")),)),
        Row("harness saturated", (fmt_text(lv.get("harness_saturated")),)),
    )
    inside = (claim is not None and number(ci[0]) is not None and number(ci[1]) is not None
              and ci[0] <= claim <= ci[1])
    blocks: list[Block] = [
        Para(f"A time-scaled live run (real producer and receiver, Locust pollers of mode {fmt_text(lv.get('mode'))}) "
             "at λT ≈ 0.0155 per subscription: one change per about 65 polls."),
        Table(("live run", "value"), rows, numeric=False,
              caption="Measured in the live run; rows in italics are the model and its input, not measurements."),
        Para(f"The claimed {fmt_pct(claim)} lies {'inside' if inside else 'outside'} the measured 95% interval."),
    ]
    if lv.get("harness_saturated"):
        blocks.append(Notice("warning", "The harness was saturated in the live run",
                             "Its load and latency figures understate the system under test; see its report."))
    run = s.value("live_run")
    if run:
        parts: list[Any] = ["The live run: ", Link(f"{run}/", f"{run}/")]
        if live_report:
            parts += [" (", Link("its report", live_report), ")"]
        elif live_error:
            parts.append(f" (its report could not be written: {live_error})")
        blocks.append(Para(*parts))
    return blocks


# --- 2. population ----------------------------------------------------------------------------------

def _population(s: Summary) -> list[Block]:
    pop = s.section("population")
    if pop is None:
        return _missing("population")
    cal, check = obj(pop.get("calibration")), obj(pop.get("check"))
    mix = ", ".join(f"{fmt_short(T / 60)} min {fmt_pct(w, 0)}" for T, w in
                    zip(cal.get("intervals_s") or (), cal.get("weights") or ()))
    interval_h = (number(cal.get("median_change_interval_s")) or 0) / 3600
    cal_rows = tuple(Row(label, (value,), model=True) for label, value in (
        ("poll-interval mix (assumed, after Zapier's plans)", mix or DASH),
        ("change rates", f"{fmt_text(cal.get('rate_distribution'))}, sigma {fmt_short(cal.get('rate_sigma'))}"),
        ("period", f"{fmt_short(cal.get('period_s'))} s"),
        ("target polls / useful polls", f"{fmt_count(cal.get('target_polls'))} / "
                                        f"{fmt_count(cal.get('target_useful_polls'))}"),
        ("fitted: subscriptions", fmt_count(cal.get("subscriptions"))),
        ("fitted: median change rate", f"{fmt_num(cal.get('rate_median'))}/s"),
        ("fitted: median change interval", f"{fmt_short(interval_h)} h"),
    ))
    passed = check.get("passed")
    polls_ok = (number(check.get("polls")) or 0) >= (number(cal.get("target_polls")) or float("inf"))
    diff = number(check.get("diff_pp"))
    tol = number(check.get("tolerance_pp"))
    within = diff is not None and tol is not None and abs(diff) <= tol
    check_rows = (
        Row("target (the claim)", (fmt_pct(check.get("target_wasted_fraction"), 3),)),
        Row("simulated", (fmt_pct(check.get("simulated_wasted_fraction"), 3),)),
        Row("difference", (f"{fmt_num(diff)} pp (tolerance ±{fmt_short(tol)} pp): "
                           f"{'within' if within else 'outside'}",)),
        Row("polls simulated", (f"{fmt_count(check.get('polls'))}: "
                                f"{'at least' if polls_ok else 'fewer than'} the target",)),
        Row("check passed", (fmt_text(passed) if passed else Failure(fmt_text(passed)),)),
    )
    return [
        Para("A fleet of subscriptions with Zapier's interval mix and log-normal change rates, calibrated so that "
             "the model's aggregate is the claim's polls and useful polls, then simulated in virtual time."),
        Heading(3, "Calibration (a fit to the claim, not a measurement)"),
        Table(("calibration", "fitted or assumed"), cal_rows, numeric=False,
              caption=fmt_text(cal.get("note"))),
        Para(Strong("Required change interval: "),
             f"for the claim to hold with this mix and spread, the median subscription must change about once every "
             f"{fmt_short(interval_h)} h (calibrated through the model; the simulation below checks it)."),
        Heading(3, "Simulated population"), *fleet_blocks(obj(pop.get("simulated"))),
        Heading(3, "Check: simulated vs calibrated"),
        Table(("check", "value"), check_rows, numeric=False,
              caption="Passed when the simulated wasted fraction is within the tolerance of the claim's and at least "
                      "the claim's number of polls was simulated."),
    ]


# --- 3. load ----------------------------------------------------------------------------------------

def _load(s: Summary) -> list[Block]:
    ld = s.section("load")
    if ld is None:
        return _missing("load")
    per = obj(get(s.claims, "C2", "measured", "verdict_per_dimension"))
    claimed = f"{fmt_short(CLAIMED_LOAD_RATIO)}x"

    def ratio(key: str) -> str:
        v = number(ld.get(key))
        return DASH if v is None else f"{fmt_num(v)}x"

    def cpu_us(key: str) -> str:
        v = number(ld.get(key))
        return DASH if v is None else fmt_num(v * 1e6)

    def verdict(dim: str) -> Any:
        return Verdict(str(per[dim])) if dim in per else DASH

    rows = (
        Row("requests", (fmt_num(ld.get("polls_per_change")), fmt_num(ld.get("deliveries_per_change")),
                         ratio("requests_ratio"), verdict("requests"), claimed)),
        Row("producer CPU (µs)", (cpu_us("cpu_s_per_change_polling"), cpu_us("cpu_s_per_change_webhook"),
                                  ratio("cpu_ratio"), verdict("cpu"), claimed)),
        Row("bytes", (fmt_num(ld.get("bytes_per_change_polling")), fmt_num(ld.get("bytes_per_change_webhook")),
                      ratio("bytes_ratio"), verdict("bytes"), claimed)),
    )
    per_request = (
        Row("producer CPU (µs)", (cpu_us("cpu_s_per_poll"), cpu_us("cpu_s_per_delivery"),
                                  ratio("poll_vs_delivery_cpu"))),
        Row("bytes", (fmt_num(ld.get("bytes_per_poll")), fmt_num(ld.get("bytes_per_delivery")), DASH)),
    )
    pvd = number(ld.get("poll_vs_delivery_cpu"))
    if pvd is None:
        answer = "The CPU per poll or per delivery was not measured in this run."
    else:
        answer = (f"No: one poll cost {fmt_num(pvd)} times the producer CPU of one delivery, so polling's CPU per "
                  f"change is {ratio('cpu_ratio')} that of webhooks where its requests are {ratio('requests_ratio')}. "
                  "The 66x assumes every request costs the same.") if abs(pvd - 1) > 0.1 else (
                  f"Yes, about: one poll cost {fmt_num(pvd)} times the CPU of one delivery.")
    return [
        Para(f"Polling ({fmt_text(ld.get('polling_mode'))}) vs webhook deliveries, per change, measured in the same "
             f"live run. Polls per useful poll: {fmt_num(ld.get('polls_per_useful_poll'))} (the claim's 30M / 460k "
             "is 65)."),
        Table(("per change", "polling", "webhook", "polling / webhook", "verdict", "claimed"), rows,
              caption="Measured; the verdict per dimension is bench.analysis.claims' "
                      "(see the C2 rule in the verdicts table).",
              text_columns=frozenset({3})),
        Heading(3, "Is an empty 304 poll as expensive as a delivery?"),
        Table(("per request", "one poll", "one delivery", "poll / delivery"), per_request,
              caption="Measured: per change divided by requests per change, in each mode."),
        Para(answer),
    ]


# --- 4. latency -------------------------------------------------------------------------------------

def _minutes(seconds: Any) -> str:
    v = number(seconds)
    return DASH if v is None else f"{fmt_num(v / 60)} min"


def _latency(s: Summary) -> list[Block]:
    lat = s.section("latency")
    if lat is None:
        return _missing("latency")
    rows = [Row(f"polling every {fmt_short((number(r.get('interval_s')) or 0) / 60)} min", (
                _minutes(r.get("mean_s")), _minutes(r.get("model_mean_s")), fmt_count(r.get("changes")),
                fmt_text(r.get("source"))))
            for r in lat.get("polling_by_interval") or () if isinstance(r, dict)]
    hook = obj(lat.get("webhook_live_ms"))
    nominal = obj(lat.get("polling_nominal_s"))
    rows.append(Row(f"polling, live run (every {fmt_short(lat.get('poll_interval_nominal_s'))} s nominal)",
                    (_minutes(nominal.get("mean")), DASH, fmt_count(get(lat, "polling_live_ms", "n")),
                     f"measured at {fmt_short(lat.get('poll_interval_live_s'))} s × time scale "
                     f"{fmt_short(lat.get('time_scale'))}")))
    hook_rows = tuple(Row(f"webhook {k}", (f"{fmt_num(hook.get(k))} ms",))
                      for k in ("mean", "p50", "p90", "p99", "max"))
    return [
        Table(("mean detection latency", "measured or simulated", "model: T/2", "changes", "source"), tuple(rows),
              numeric=False, caption="The model column is the analytic T/2, not a measurement."),
        Table(("webhook (live, measured)", "latency"), hook_rows + (Row("samples", (fmt_count(hook.get("n")),)),),
              caption="Delivery latency as the receiver measured it in the live run (no faults, no retries)."),
    ]


# --- 5. sensitivity ---------------------------------------------------------------------------------

def _sensitivity(s: Summary) -> list[Block]:
    sens = s.section("sensitivity")
    if sens is None:
        return _missing("sensitivity")
    table = [r for r in sens.get("table") or () if isinstance(r, dict)]
    sigmas = sorted({r["rate_sigma"] for r in table if number(r.get("rate_sigma")) is not None})
    mixes = list(dict.fromkeys(str(r.get("mix")) for r in table))
    cell = {(str(r.get("mix")), r.get("rate_sigma")): r.get("median_change_interval_h") for r in table}
    rows = tuple(Row(mix, tuple(f"{fmt_num(cell.get((mix, sg)))} h" if cell.get((mix, sg)) is not None else DASH
                                for sg in sigmas), model=True) for mix in mixes)
    blocks: list[Block] = [Para(
        "How sensitive the required change interval is to the unpublished inputs: for each poll-interval mix and "
        "spread of change rates (log-normal sigma; 0 = every subscription alike), the median subscription's change "
        "interval that gives 98.47% wasted. This is the model solved for the claim (a calibration), not a "
        "measurement.")]
    if rows:
        blocks.append(Table(("mix / sigma", *(fmt_short(sg) for sg in sigmas)), rows,
                            caption="Model (calibration): required median change interval, in hours."))
    heat = obj(sens.get("heatmap"))
    if heat:
        blocks.append(Para(f"About the heatmap: {fmt_text(heat.get('note'))}."))
    return blocks


def _reproduce(m: dict[str, Any]) -> list[Block]:
    command = m.get("command_line")
    if isinstance(command, list) and command:
        command = shlex.join(str(p) for p in command)
    return [Para("The command, as recorded in manifest.json:"), CodeBlock(fmt_text(command or None)),
            Para(f"Seed {fmt_text(m.get('seed'))}; git commit {fmt_text(m.get('git_commit'))}; quick "
                 f"{fmt_text(m.get('quick'))}.")]
