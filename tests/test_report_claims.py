"""reports.claims and reports.reproduce: a real quick reproduction (`hookbench reproduce all --only C1,C2,C3
--quick`, run once for the module) in, the Zapier reproduction's report and the claims page out; and the report of
a real `hookbench simulate` run. The verdicts themselves are tested in test_claims.py."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO, run_command

from bench.errors import RunDirError
from reports import build_report
from reports.claims import build_claims_report, build_reproduction_report
from reports.fmt import fmt_num

DATA_URI = re.compile(r'src="data:image/png;base64,')
PNG = b"\x89PNG\r\n\x1a\n"


def _cli(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    # subprocess.run kills the CLI on a timeout; its servers die with it (PR_SET_PDEATHSIG,
    # bench/orchestration/procs.py)
    return subprocess.run([sys.executable, "-m", "bench.cli", *argv], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def claims_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One quick reproduction of C1-C3 through the CLI: (the claims directory, the command's stdout)."""
    out = tmp_path_factory.mktemp("claims")
    done = _cli(["reproduce", "all", "--only", "C1,C2,C3", "--quick", "--out", str(out)], timeout=240)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    (cdir,) = [d for d in out.iterdir() if d.is_dir()]
    return cdir, done.stdout


def _repro(cdir: Path) -> Path:
    return cdir / json.loads((cdir / "summary.json").read_text())["runs"]["zapier"]


def _table_rows(md: str, first_header: str) -> list[list[str]]:
    """The body rows of the Markdown table whose first header cell is `first_header`, split into cells."""
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split(" | ")])
    return rows


# --- the Zapier reproduction's report ------------------------------------------------------------

@pytest.mark.integration
def test_reproduction_report_opens_with_the_verdicts_of_its_summary(claims_dir: tuple[Path, str]) -> None:
    rdir = _repro(claims_dir[0])
    s = json.loads((rdir / "summary.json").read_text())
    md = (rdir / "report.md").read_text()
    rows = _table_rows(md, "claim")
    assert [r[0].split(":")[0] for r in rows] == ["C1", "C2", "C3"]
    for row in rows:
        entry = s["claims"][row[0].split(":")[0]]
        assert row[1].endswith(entry["verdict"] + "**")  # the verdict, marked, as bench.analysis.claims decided it
        assert row[2] == re.sub(r"([\\`*\[\]<>])", r"\\\1", entry["verdict_text"])  # as Markdown escapes it
    # the verdicts come before the five parts, which come in order
    positions = [md.index(h) for h in ("## Verdicts", "## 1. Mechanism", "## 2. Population", "## 3. Load",
                                       "## 4. Detection latency", "## 5. Sensitivity")]
    assert positions == sorted(positions)


@pytest.mark.integration
def test_a_quick_reproduction_says_its_sizes_are_not_the_claims(claims_dir: tuple[Path, str]) -> None:
    rdir = _repro(claims_dir[0])
    md, html = (rdir / "report.md").read_text(), (rdir / "report.html").read_text()
    assert "Quick reproduction: these sizes are not the claim's" in md
    assert '<div class="notice warning" role="alert">' in html
    assert "300,000 polls, 4,600 useful" in md and "30,000,000 and 460,000" in md


@pytest.mark.integration
def test_reproduction_figures_are_written_and_embedded(claims_dir: tuple[Path, str]) -> None:
    rdir = _repro(claims_dir[0])
    for name in ("heatmap", "wasted_vs_claim", "load_ratios", "latency_by_interval"):
        png = rdir / "figures" / f"{name}.png"
        assert png.read_bytes().startswith(PNG), name
        assert f"](figures/{name}.png)" in (rdir / "report.md").read_text()
    assert len(DATA_URI.findall((rdir / "report.html").read_text())) == 4
    # the live run got its own report, and the reproduction links it
    assert (rdir / "live" / "report.html").is_file()
    assert "(<live/report.html>)" in (rdir / "report.md").read_text()


@pytest.mark.integration
def test_load_section_shows_the_measured_ratios_and_labels_the_model(claims_dir: tuple[Path, str]) -> None:
    rdir = _repro(claims_dir[0])
    s = json.loads((rdir / "summary.json").read_text())
    md = (rdir / "report.md").read_text()
    load = {r[0]: r for r in _table_rows(md, "per change")}
    assert load["requests"][3] == f"{fmt_num(s['load']['requests_ratio'])}x"  # the report's own number format
    assert load["requests"][4].endswith(s["claims"]["C2"]["measured"]["verdict_per_dimension"]["requests"] + "**")
    live = {r[0]: r[1] for r in _table_rows(md, "live run")}
    assert live["*model: e^(−λT)*"] == f"{100 * s['live']['model_wasted_fraction']:.2f}%"  # italic: a model row
    assert live["polls (measured)"] == f"{s['live']['polls']:,}"
    assert "### Calibration (a fit to the claim, not a measurement)" in md


@pytest.mark.integration
def test_a_partial_reproduction_names_its_missing_parts(claims_dir: tuple[Path, str], tmp_path: Path) -> None:
    rdir = tmp_path / "partial"
    shutil.copytree(_repro(claims_dir[0]), rdir)
    s = json.loads((rdir / "summary.json").read_text())
    for part in ("latency", "sensitivity"):
        del s[part]
        s["parts_done"].remove(part)
    s["partial"] = True
    (rdir / "summary.json").write_text(json.dumps(s))
    paths = build_reproduction_report(rdir)
    md = paths["md"].read_text()
    assert "Partial reproduction: some parts did not finish" in md
    assert "> - latency\n> - sensitivity" in md
    assert "Not available: the sensitivity part did not finish" in md
    assert not (rdir / "figures" / "heatmap.png").exists()  # the stale figure of the copy is removed
    assert rdir / "figures" / "heatmap.png" not in paths["figures"]


def test_a_directory_that_is_not_a_reproduction_is_refused(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text(json.dumps({"format_version": 1, "kind": "load"}))
    with pytest.raises(RunDirError, match="expected a reproduction directory"):
        build_reproduction_report(tmp_path)
    with pytest.raises(RunDirError, match="kind = 'load': expected the claims file"):
        build_claims_report(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RunDirError, match="summary.json: missing"):
        build_claims_report(empty)


# --- the claims page -----------------------------------------------------------------------------

@pytest.mark.integration
def test_the_cli_prints_every_claim_and_writes_the_claims_page(claims_dir: tuple[Path, str]) -> None:
    cdir, stdout = claims_dir
    for cid in ("C1", "C2", "C3", "C4", "C5", "C6", "C7"):
        assert re.search(rf"^{cid} .*: [A-Z ]+ -- ", stdout, re.M), cid
    assert (cdir / "claims.md").is_file() and (cdir / "claims.html").is_file()


@pytest.mark.integration
def test_claims_page_has_one_section_per_claim_with_its_verdict(claims_dir: tuple[Path, str]) -> None:
    cdir = claims_dir[0]
    doc = json.loads((cdir / "summary.json").read_text())
    md, html = (cdir / "claims.md").read_text(), (cdir / "claims.html").read_text()
    for cid, c in doc["claims"].items():
        section = md.split(f"\n## {cid}: ")[1].split("\n## ")[0]
        assert f"**Source:** {c['source']}" in section.replace("\\", "")
        assert "**Verdict:** **" in section and c["verdict"] in section
        if c["verdict"] == "not run":  # why, and the command that runs it
            assert "Not run: not asked for (--only)" in section and f"```\n{c['command']}\n```" in section
        else:
            assert "**Measured:**" in section and "**Conditions:**" in section and "**Rule:**" in section
    # verdicts look different in HTML: one class per verdict
    assert html.count('<span class="verdict notrun">') >= 2 * 4  # table + section, C4-C7
    # C2 and C3 are "holds" or "holds only when" whatever was measured: ~65 polls per change against 1 delivery
    # (requests, by design), and C3's rule has no "does not hold"
    assert '<span class="verdict holds">' in html or '<span class="verdict when">' in html


@pytest.mark.integration
def test_claims_page_links_resolve_to_the_runs_and_reports(claims_dir: tuple[Path, str]) -> None:
    cdir = claims_dir[0]
    md = (cdir / "claims.md").read_text()
    links = re.findall(r"\]\(<([^>]+)>\)", md)
    assert any(link.endswith("/live/report.html") for link in links)
    assert any(link.endswith("-reproduce-zapier/report.html") for link in links)
    for link in links:
        assert (cdir / link).exists(), link


# --- a simulated run -----------------------------------------------------------------------------

FLEET = """
[fleet]
subscriptions = 2000
duration = "2h"
intervals = ["1m", "15m"]
interval_weights = [1, 1]
rate_median = 2e-4
"""


def test_hookbench_simulate_writes_a_virtual_time_report(tmp_path: Path) -> None:
    scenario = tmp_path / "sim.toml"
    scenario.write_text((REPO / "scenarios" / "default.toml").read_text() + FLEET)
    summary, run_dir, stdout = run_command(["simulate", str(scenario)], tmp_path / "out", timeout=120)
    assert summary["kind"] == "simulated" and "report: " in stdout
    md, html = (run_dir / "report.md").read_text(), (run_dir / "report.html").read_text()
    assert md.startswith("# hookbench simulation (virtual time): ")
    assert "Virtual-time simulation: no server, network or load generator ran" in md
    for item in summary["not_simulated"]:
        assert f"> - {item}" in md
    rows = {r[0]: r[1:] for r in _table_rows(md, "")}
    assert list(summary["modes"]) == ["polling", "polling_etag", "webhook"]
    assert rows["requests"] == [f"{m['requests']:,}" for m in summary["modes"].values()]
    assert rows["bytes per change"] == ["–", "–", "–"]  # not simulated: shown as no value
    assert "## Fleet (simulated)" in md and "| poll interval |" in md
    figures = sorted(p.name for p in (run_dir / "figures").iterdir())
    assert figures == ["latency_cdf.png", "requests_per_change.png", "wasted_fraction.png"]
    assert len(DATA_URI.findall(html)) == 3


def test_a_simulated_run_without_detections_still_gets_a_report(tmp_path: Path) -> None:
    scenario = tmp_path / "hooks.toml"
    scenario.write_text((REPO / "scenarios" / "default.toml").read_text())
    _summary, run_dir, _ = run_command(["simulate", str(scenario), "--set", "changes.rate=0.000001"],
                                       tmp_path / "out", timeout=120)
    if (run_dir / "detections.parquet").exists():
        (run_dir / "detections.parquet").unlink()
    paths = build_report(run_dir)
    assert "**Figure skipped:** no change was detected" in paths["md"].read_text()
    assert run_dir / "figures" / "latency_cdf.png" not in paths["figures"]
