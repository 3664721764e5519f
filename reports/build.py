"""Build a run's report: read the run directory, draw the figures, write report.md and report.html.

A comparison run (`hookbench run`) gets the comparison report; a simulated run (`hookbench simulate`) the same
report titled and trimmed for virtual time; a load run (`hookbench load`) the overload report; the outage model
(`hookbench outage`) its own report (reports/outage.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypedDict

from bench.errors import RunDirError
from bench.results import SUMMARY, Kind, read_summary
from reports.figures import make_figures
from reports.load_report import build_overload_document, make_overload_figures
from reports.render import to_html, to_markdown
from reports.run_report import build_document
from reports.rundir import LoadRunData, read_run
from reports.simulated import SIMULATED_FIGURES, build_simulated_document

__all__ = ["ReportFiles", "build_report", "write_atomic"]

FIGURES_DIR = "figures"


class ReportFiles(TypedDict):
    """What `build_report` wrote; `figures` lists only the figures that had data."""

    md: Path
    html: Path
    figures: list[Path]


def build_report(run_dir: Path) -> ReportFiles:
    """Write report.md, report.html and figures/*.png into `run_dir` and return their paths.

    Raises RunDirError when `run_dir` is not a complete run directory, FormatVersionError when a result file
    has a format_version this code does not read.
    """
    if _kind(Path(run_dir)) is Kind.OUTAGE:
        from reports.outage import build_outage_report  # it writes with this module's helpers

        return build_outage_report(Path(run_dir))
    run = read_run(Path(run_dir))
    if isinstance(run, LoadRunData):
        figures = make_overload_figures(run, run.run_dir / FIGURES_DIR)
        title, blocks = build_overload_document(run, figures)
    elif run.simulated:
        figures = make_figures(run, run.run_dir / FIGURES_DIR, SIMULATED_FIGURES)
        title, blocks = build_simulated_document(run, figures)
    else:
        figures = make_figures(run, run.run_dir / FIGURES_DIR)
        title, blocks = build_document(run, figures)
    md_path, html_path = run.run_dir / "report.md", run.run_dir / "report.html"
    write_atomic(md_path, to_markdown(blocks))
    write_atomic(html_path, to_html(title, blocks))
    return {"md": md_path, "html": html_path, "figures": [f.path for f in figures if f.path is not None]}


def _kind(run_dir: Path) -> Kind | None:
    """The kind its summary.json names, or None when there is none to read (read_run then says what is wrong)."""
    if not (run_dir / SUMMARY).is_file():
        return None
    try:
        return read_summary(run_dir).kind
    except RunDirError:
        return None


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` in one step, so a reader never sees half a report."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
