"""The claims page of `hookbench reproduce all`: summary.json in, claims.md and a self-contained claims.html out, one
section per claim (C1-C8) with its source, measured figures, verdict, conditions, rule and links to the runs and
reports it rests on. The reports of those runs are written first, so the links lead somewhere.

summary.json (written by bench.orchestration.reproduce) is the machine-readable form of the same content;
nothing here adds to it. The Zapier reproduction's own report is reports/reproduce.py (re-exported here for
the CLI).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.errors import HookbenchError
from bench.results import SWEEP, Kind, RunStatus, Summary, read_manifest, read_summary
from reports.build import ReportFiles, build_report, write_atomic
from reports.document import Block, Heading, Link, Notice, Para, Row, Table
from reports.fmt import fmt_started_at, fmt_text
from reports.render import to_html, to_markdown
from reports.reproduce import build_reproduction_report
from reports.run_report import environment_blocks
from reports.sweep import build_sweep_report
from reports.verdicts import claim_blocks, verdict_table

__all__ = ["build_claims_report", "build_reproduction_report"]


def build_claims_report(cdir: Path) -> ReportFiles:
    """Write the reports of the runs listed in `cdir`/summary.json, then claims.md and claims.html; return the
    paths. Raises RunDirError when `cdir` holds no summary.json (FormatVersionError for an unknown version)."""
    cdir = Path(cdir)
    doc = read_summary(cdir, expect=Kind.CLAIMS)
    manifest = read_manifest(cdir, required=False)
    reports, failures = _sub_reports(cdir, doc.section("runs") or {})
    title = "hookbench claims: what holds, and when"
    blocks = _document(title, doc, manifest, reports, failures, cdir)
    md_path, html_path = cdir / "claims.md", cdir / "claims.html"
    write_atomic(md_path, to_markdown(blocks))
    write_atomic(html_path, to_html(title, blocks))
    return {"md": md_path, "html": html_path, "figures": []}


def _sub_reports(cdir: Path, runs: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """Each listed run's report, written into its directory: {run dir (relative) -> report (relative)}, and one
    line per report that could not be written (the page still links the directory)."""
    written: dict[str, str] = {}
    failures: list[str] = []
    for name, rel in runs.items():
        d = cdir / rel
        try:
            if (d / SWEEP).is_file():
                path = build_sweep_report(d)["html"]
            elif read_summary(d).kind is Kind.REPRODUCTION:
                path = build_reproduction_report(d)["html"]
                live = d / "live"
                if (live / "report.html").is_file():
                    written[f"{rel}/live"] = f"{rel}/live/report.html"
            else:
                path = build_report(d)["html"]
            written[rel] = path.relative_to(cdir).as_posix()
        except HookbenchError as exc:
            failures.append(f"{name} ({rel}): {exc}")
    return written, failures


def _document(title: str, doc: Summary, manifest: dict[str, Any], reports: dict[str, str],
              failures: list[str], cdir: Path) -> list[Block]:
    claims = {k: v for k, v in (doc.claims or {}).items() if isinstance(v, dict)}
    blocks: list[Block] = [Heading(1, title), Para(
        "Each claim below is a common statement about polling and webhooks, checked by running it: the source as "
        "stated, what this harness measured (or simulated, where it says so), the verdict, the conditions under "
        "which it holds and the rule that decided it. summary.json holds the same entries for programs.")]
    if manifest.get("started_at"):
        blocks.append(Para("Reproduced at " + fmt_started_at(manifest.get("started_at")) + "."))
    if doc.partial:
        missing = [f"{cid}: {fmt_text(c.get('verdict_text'))}" for cid, c in claims.items()
                   if c.get("verdict") == "not run"]
        stopped = "was interrupted" if doc.status is RunStatus.INTERRUPTED else "did not finish"
        blocks.append(Notice("caution", f"Partial: the reproduction {stopped}",
                             "The claims below rest only on the runs that finished. Not run:", tuple(missing)))
    if manifest.get("quick"):
        blocks.append(Notice("warning", "Quick reproduction: its sizes are not the claims'",
                             "It was run with --quick (small windows and fleets, for a smoke test). The verdicts "
                             "show that the machinery works, not that the claims hold at their stated sizes."))
    if failures:
        blocks.append(Notice("caution", "Some run reports could not be written",
                             "Their directories are still linked; open them with `hookbench report`:",
                             tuple(failures)))
    blocks += [Heading(2, "Verdicts"), verdict_table(claims)]
    for cid, c in claims.items():
        blocks += [Heading(2, f"{cid}: {fmt_text(c.get('claim'))}"), *claim_blocks(c, _run_links(c, reports, cdir))]
    runs = doc.section("runs") or {}
    if runs:
        rows = tuple(Row(str(name), (str(rel), reports.get(str(rel), "–"))) for name, rel in runs.items())
        blocks += [Heading(2, "Runs"), Table(("scenario or reproduction", "directory", "report"), rows,
                                               numeric=False)]
    blocks += [Heading(2, "Environment"), *environment_blocks(manifest)]
    return blocks


def _run_links(c: dict[str, Any], reports: dict[str, str], cdir: Path) -> list[Block]:
    """One line per run the claim rests on: its directory and its report, and the report of the reproduction it
    belongs to, as links relative to the claims page."""
    blocks: list[Block] = []
    for rel in (str(r) for r in c.get("runs") or ()):
        parts: list[Any] = ["Run: ", Link(f"{rel}/", f"{rel}/")]
        if not (cdir / rel).is_dir():
            parts.append(" (directory missing)")
        if report := reports.get(rel):
            parts += [" · ", Link("its report", report)]
        for parent, parent_report in reports.items():
            if rel.startswith(parent + "/") and parent_report != report:
                parts += [" · ", Link(f"the report of {parent}", parent_report)]
        blocks.append(Para(*parts))
    return blocks
