"""The report of `hookbench outage` (summary.json `kind` "outage"): the outage model's figure (loss fraction and
delivery delay against outage length, one curve per provider profile), what each profile's curve says, the
profiles' values with their sources, and what the model leaves out.

Values are shown as bench.simulation.outage wrote them (outage.parquet, summary.json); nothing is recomputed.
Every figure is a model prediction from documented policies and is labelled so.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bench.errors import RunDirError
from bench.results import Kind, read_manifest, read_summary
from bench.schema import duration_text
from reports.build import ReportFiles, write_atomic
from reports.document import Block, Bullets, CodeBlock, Heading, Image, Notice, Para, Row, Strong, Table
from reports.figures import DPI
from reports.fmt import DASH, fmt_count, fmt_pct, fmt_started_at, fmt_text, get, number, obj
from reports.render import to_html, to_markdown
from reports.run_report import environment_blocks

__all__ = ["build_outage_report", "fmt_duration", "TABLE_COLUMNS"]

FIGURE = "figures/outage.png"
TABLE_COLUMNS = ("profile", "outage_s", "outage_changes", "lost", "loss_fraction", "disabled_fraction",
                 "disabled_at_p50_s", "delay_p50_s", "delay_p90_s", "delay_p99_s", "delay_max_s")
TICKS = ((1, "1 s"), (10, "10 s"), (60, "1 min"), (600, "10 min"), (3600, "1 h"), (6 * 3600, "6 h"),
         (86400, "1 d"), (3 * 86400, "3 d"))
SHOWN_LENGTHS = (1, 60, 600, 3600, 6 * 3600, 86400, 2 * 86400, 3 * 86400)  # the table's rows: nearest grid points


def fmt_duration(seconds: Any) -> str:
    """Seconds as the largest unit that keeps the number readable: 45 s, 12.5 min, 27.6 h, 3 d."""
    x = number(seconds)
    return DASH if x is None else duration_text(x)


def build_outage_report(run_dir: Path) -> ReportFiles:
    """Write report.md, report.html and figures/outage.png into `run_dir`; RunDirError when it is not an outage
    model directory."""
    run_dir = Path(run_dir)
    summary = read_summary(run_dir, expect=Kind.OUTAGE)
    manifest = read_manifest(run_dir)
    path = run_dir / str(summary.value("table") or "outage.parquet")
    try:
        table = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a missing or bad file
        raise RunDirError(f"{path}: cannot be read as Parquet ({exc}); re-run `hookbench outage`") from exc
    missing = [c for c in TABLE_COLUMNS if c not in table.columns]
    if missing:
        raise RunDirError(f"{path}: columns {missing} missing: expected {list(TABLE_COLUMNS)}")
    fig_path = run_dir / FIGURE
    fig_path.parent.mkdir(exist_ok=True)
    drawn = draw_outage(table, fig_path)
    title = "hookbench outage model: what each provider's delivery policy loses when the receiver is down"
    blocks = _document(title, summary.raw, manifest, table, fig_path if drawn else None)
    md, html = run_dir / "report.md", run_dir / "report.html"
    write_atomic(md, to_markdown(blocks))
    write_atomic(html, to_html(title, blocks))
    return {"md": md, "html": html, "figures": [fig_path] if drawn else []}


def draw_outage(table: pd.DataFrame, path: Path) -> bool:
    """Two panels sharing a log x axis: the fraction of outage-time changes lost, and the delivery delay (p50
    solid, p99 dashed) of those delivered. One colour per profile. False (no file) when the table is empty."""
    if table.empty:
        path.unlink(missing_ok=True)
        return False
    fig = Figure(figsize=(8.0, 7.0), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    loss_ax, delay_ax = fig.subplots(2, 1, sharex=True)
    palette = colormaps["tab10"].colors
    for i, (name, rows) in enumerate(table.groupby("profile", sort=False)):
        rows = rows.sort_values("outage_s")
        colour = palette[i % len(palette)]
        loss_ax.plot(rows["outage_s"], rows["loss_fraction"], color=colour, marker=".", markersize=3, label=name)
        delay_ax.plot(rows["outage_s"], rows["delay_p50_s"], color=colour, label=f"{name} p50")
        delay_ax.plot(rows["outage_s"], rows["delay_p99_s"], color=colour, linestyle="--", linewidth=1.0,
                      label="_nolegend_")
    loss_ax.set_ylabel("fraction of outage-time changes lost")
    loss_ax.yaxis.set_major_formatter(lambda v, _pos: f"{100 * v:.0f}%")
    loss_ax.set_ylim(-0.03, 1.03)
    loss_ax.set_title("Model prediction (documented policies, virtual time): loss vs receiver outage length",
                      fontsize=10)
    loss_ax.legend(fontsize=8, loc="center left")
    delay_ax.set_yscale("log")
    delay_ax.set_ylabel("delivery delay of delivered changes\n(p50 solid, p99 dashed; s, log)")
    delay_ax.set_xscale("log")
    delay_ax.set_xticks([t for t, _ in TICKS], [label for _, label in TICKS])
    delay_ax.set_xlabel("receiver outage length L (log scale)")
    for ax in (loss_ax, delay_ax):
        ax.grid(True, which="major", alpha=0.4)
    fig.savefig(path, dpi=DPI, format="png", metadata={"Software": None})
    fig.clear()
    return True


def _document(title: str, s: dict[str, Any], m: dict[str, Any], table: pd.DataFrame,
              figure: Path | None) -> list[Block]:
    params = obj(s.get("parameters"))
    blocks: list[Block] = [Heading(1, title)]
    blocks.append(Notice("caution", "Model prediction, not a measurement",
                         fmt_text(s.get("label")) + ". No server ran: each provider's schedule was played in "
                         "virtual time from bench/data/delivery_profiles.toml (see the values and their sources "
                         "below)."))
    blocks.append(Para(Strong("Computed at: "), fmt_started_at(m.get("started_at")), "."))
    blocks += [Heading(2, "The model"), Para(
        f"The receiver is down during [0, L). {_sentence(fmt_text(s.get('receiver_model')))}. Changes arrive as a "
        f"Poisson process at {fmt_text(_rate(params.get('rate_per_s')))}; about "
        f"{fmt_count(params.get('changes_per_point'))} changes made during the outage are drawn for each point "
        "(over as many independent outages as that takes). "
        "Each change's attempts follow the profile's schedule with the dispatcher's jitter (seed "
        f"{fmt_text(s.get('seed'))}); an attempt sent at or after L succeeds. The disable rules act across the "
        "subscription's attempts in the order they end; once disabled, pending and later changes are lost."),
        Para(Strong("Not modelled: ")), Bullets(tuple(fmt_text(x) for x in s.get("not_modelled") or ()))]
    blocks += [Heading(2, "Where each profile starts to lose changes"), _findings(obj(s.get("profiles")))]
    blocks.append(Heading(2, "Figure"))
    if figure is None:
        blocks.append(Para("Figure skipped: the table has no rows."))
    else:
        blocks.append(Image(figure, FIGURE, "Loss fraction and delivery delay against outage length, per profile "
                            "(model)", "Model prediction. Top: fraction of the changes made during the outage that "
                            "were never delivered. Bottom: delay from each delivered change to its delivery."))
    blocks += [Heading(2, "Loss and delay at a few outage lengths (model)"), _lengths_table(table)]
    blocks += [Heading(2, "The profiles as played"), *_profiles(obj(m.get("profiles")))]
    blocks += [Heading(2, "Reproduce"), Para("The command, as recorded in manifest.json:"),
               CodeBlock(" ".join(str(a) for a in m.get("command_line") or ()) or DASH),
               Para(f"One row per profile and outage length is in {fmt_text(s.get('table'))} "
                    f"({fmt_count(s.get('rows'))} rows); docs/results-format.md lists its columns.")]
    blocks += [Heading(2, "Environment"), *environment_blocks(m, (("git commit", fmt_text(m.get("git_commit"))),))]
    return blocks


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _rate(rate: Any) -> str:
    x = number(rate)
    if x is None or x <= 0:
        return DASH
    return f"{x:.4g} changes/s (one every {fmt_duration(1 / x)})"


def _findings(profiles: dict[str, Any]) -> Table:
    rows = []
    for name, f in profiles.items():
        f = obj(f)
        lossy = fmt_duration(f.get("loss_from_s")) if f.get("loss_from_s") is not None else \
            f"none up to {fmt_duration(f.get('longest_outage_s'))}"
        dis = (f"{fmt_duration(f.get('disabled_from_s'))} ({fmt_text(f.get('disabled_by'))})"
               if f.get("disabled_from_s") is not None else "never")
        rows.append(Row(name, (lossy, fmt_duration(f.get("all_lost_from_s")) if f.get("all_lost_from_s") else DASH,
                               dis, fmt_duration(f.get("nominal_span_s")), fmt_pct(f.get("jitter"), 0),
                               fmt_pct(f.get("loss_fraction_at_longest")))))
    return Table(("profile", "loss begins at L ≥", "all lost from L ≥", "disabled (most outages) from L ≥",
                  "schedule span (nominal)", "jitter", "loss at the longest L"), tuple(rows), numeric=False,
                 caption="Model prediction, read off the grid: the shortest outage length tried that lost any "
                         "change, that lost every one, and at which most simulated outages disabled the "
                         "subscription. Without a disable rule, a change made at the outage's start is lost once L "
                         "passes the schedule's span (its last attempt), give or take the jitter.")


def _lengths_table(table: pd.DataFrame) -> Table:
    rows = []
    for name, part in table.groupby("profile", sort=False):
        for target in SHOWN_LENGTHS:
            r = part.iloc[(part["outage_s"] - target).abs().argsort().iloc[0]]
            if not math.isclose(float(r["outage_s"]), target, rel_tol=0.25):
                continue
            rows.append(Row(f"{name}, L = {fmt_duration(r['outage_s'])}", (
                f"{fmt_count(int(r['lost']))} / {fmt_count(int(r['outage_changes']))}", fmt_pct(r["loss_fraction"]),
                fmt_pct(r["disabled_fraction"], 0), fmt_duration(r["delay_p50_s"]), fmt_duration(r["delay_p99_s"]),
                fmt_duration(r["delay_max_s"])), model=True))
    return Table(("profile, outage length", "lost / outage changes", "loss fraction", "outages disabled",
                  "delay p50", "delay p99", "delay max"), tuple(rows),
                 caption="Model rows (italic): the grid point nearest each length shown. Delays are those of the "
                         "delivered changes only; a dash where none was delivered.")


def _profiles(profiles: dict[str, Any]) -> list[Block]:
    blocks: list[Block] = []
    for name, p in profiles.items():
        played = obj(get(p, "played"))
        offsets = played.get("nominal_offsets_s") or []
        sched = ", ".join(fmt_duration(x) for x in offsets[:12]) + (", ..." if len(offsets) > 12 else "")
        items: list[str | tuple[str, str]] = [
            ("played", f"timeout {fmt_duration(played.get('timeout'))}, {fmt_count(played.get('max_attempts'))} "
                       f"attempts at {sched or DASH} (nominal, ±{fmt_pct(played.get('jitter'), 0)} jitter each "
                       f"delay), disable after {fmt_count(played.get('disable_after_failures')) or '0'} consecutive "
                       f"failures (0: never), after {fmt_duration(played.get('disable_after'))} of continuous "
                       "failure (0: never)")]
        for key, e in obj(get(p, "data_file")).items():
            e = obj(e)
            value = e.get("value")
            items.append((key, f"{fmt_text(value) if value is not None else 'no value'} ({fmt_text(e.get('status'))}"
                               f", read {fmt_text(e.get('read'))}; {fmt_text(e.get('source'))})"))
        blocks += [Para(Strong(f"{name}: "), fmt_text(p.get("name"))), Bullets(tuple(items))]
    return blocks or [Para("The manifest lists no profiles.")]
