"""reports.load_comparison: two load run directories (the receiver and the producer side of claim C4) in, one comparison
report out: every figure with one curve per run and each run's knee, a table of the knees, summary.json."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from test_report_overload import DATA_URI, MANIFEST, STEPS, _md_row, _section, _summary, make_load_run
from test_reports import make_run

from bench.cli import main
from bench.errors import RunDirError
from reports import build_comparison_report
from reports.load_comparison import COLORS, Side, _draw_errors, _draw_latency, _draw_rates
from reports.rundir import read_run

FIGURES = ("offered_vs_achieved", "latency_vs_offered", "errors_vs_offered")
RECEIVER = "webhook receiver (deliveries/s)"
PRODUCER = "polling producer (polls/s)"


def _producer_run(root: Path, knee_reached: bool = False) -> Path:
    """The polling side, as `hookbench load scenarios/overload_producer.toml` writes it: 40 + 160 users a step at
    10 polls/s each, no recovery step; the producer keeps up to the ceiling (or falls over at step 3)."""
    steps = []
    for i in range(6):
        users = 40 + 160 * i
        step = copy.deepcopy(STEPS[min(i, 2)])  # the receiver's healthy steps: same keys, new rates
        step.update(step=i, users=users, offered_rps=users * 10.0, intended_rps=users * 10.0,
                    achieved_rps=users * 10.0 * (0.8 if knee_reached and i >= 3 else 1.0),
                    error_rate=0.0, rate_503=0.0, retry_amplification=None, backlog_end=0)
        steps.append(step)
    knee = ({"reached": True, "step": 3, "offered_rps": 5200.0, "reasons": ["achieved 80% < 95% of offered"]}
            if knee_reached else {"reached": False, "step": None, "offered_rps": None, "ceiling_rps": 8400.0,
                                  "reasons": ["not reached, ceiling 8400/s"]})
    summary = _summary(knee=knee, recovery=False, steps=steps)
    summary.update(scenario="overload_producer", target="producer", seed=22)
    manifest = copy.deepcopy(MANIFEST)
    manifest["scenario"].update(name="overload_producer", seed=22)
    manifest["scenario"]["load"].update(target="producer", start_users=40, step_users=160, recovery=False)
    root.mkdir()
    return make_load_run(root, summary, manifest)


@pytest.fixture()
def two_runs(tmp_path: Path) -> list[Path]:
    (tmp_path / "r").mkdir()
    return [make_load_run(tmp_path / "r"), _producer_run(tmp_path / "p")]


def test_comparison_writes_three_figures_a_report_and_a_summary(two_runs: list[Path], tmp_path: Path) -> None:
    out = build_comparison_report(two_runs, tmp_path / "cmp")
    assert sorted(p.name for p in out["figures"]) == sorted(f"{n}.png" for n in FIGURES)
    for path in out["figures"]:
        assert path.parent == tmp_path / "cmp" / "figures" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = out["html"].read_text(encoding="utf-8")
    assert len(DATA_URI.findall(page)) == 3 and 'src="figures/' not in page  # self-contained
    summary = json.loads((tmp_path / "cmp" / "summary.json").read_text(encoding="utf-8"))
    assert summary["kind"] == "load_comparison" and summary["figures"] == list(FIGURES)
    assert [(r["label"], r["unit"], r["steps"]) for r in summary["runs"]] == [
        (RECEIVER, "deliveries/s", 6), (PRODUCER, "polls/s", 6)]
    assert summary["runs"][0]["knee"]["offered_rps"] == 1400.0 and summary["runs"][1]["knee"]["reached"] is False
    for run_dir in two_runs:  # the runs' own directories are left alone
        assert not (run_dir / "report.md").exists()


def test_knee_table_has_one_row_per_run(two_runs: list[Path], tmp_path: Path) -> None:
    md = build_comparison_report(two_runs, tmp_path / "cmp")["md"].read_text(encoding="utf-8")
    knees = _section(md, "The knees")
    receiver, producer = _md_row(knees, RECEIVER), _md_row(knees, PRODUCER)
    assert receiver[:6] == ["step 3", "1,400", "deliveries/s", "140", "250", "100"]
    assert "p99 from intended time 250 ms" in receiver[6] and "errors 12.5%" in receiver[6] and receiver[7] == "no"
    assert producer[:3] == ["not reached", "ceiling 8,400", "polls/s"]
    runs = _section(md, "The runs")
    assert _md_row(runs, RECEIVER)[4] == "200 to 2,200" and _md_row(runs, PRODUCER)[4] == "400 to 8,400"


@pytest.mark.parametrize(("draw", "first_values"), [
    (_draw_rates, {RECEIVER: 199.5, PRODUCER: 400.0}),  # achieved at the first step
    (_draw_latency, {RECEIVER: 11.2, PRODUCER: 11.2}),  # p99 from the intended time
    (_draw_errors, {RECEIVER: 0.0, PRODUCER: 0.0}),  # % of attempts
])
def test_each_figure_has_one_curve_per_run_and_each_knee_in_its_colour(
        tmp_path: Path, draw: Any, first_values: dict[str, float]) -> None:
    (tmp_path / "r").mkdir()
    runs = [read_run(make_load_run(tmp_path / "r")), read_run(_producer_run(tmp_path / "p", knee_reached=True))]
    sides = [Side(run, COLORS[i]) for i, run in enumerate(runs)]
    fig = Figure()
    FigureCanvasAgg(fig)
    ax: Axes = fig.add_subplot()
    drawn, caption = draw(ax, sides)
    assert drawn
    curves = {line.get_label(): line for line in ax.lines if line.get_label() in first_values}
    assert set(curves) == {RECEIVER, PRODUCER}
    for label, line in curves.items():
        assert line.get_ydata()[0] == pytest.approx(first_values[label])
    assert list(curves[PRODUCER].get_xdata()) == [400.0 + 1600.0 * i for i in range(6)]
    knees = {(line.get_xdata()[0], line.get_color()) for line in ax.lines if line.get_linestyle() == "--"}
    assert knees == {(1400.0, COLORS[0]), (5200.0, COLORS[1])}
    assert "webhook receiver: the knee, step 3 at 1,400" in caption
    assert "polling producer: the knee, step 3 at 5,200" in caption


def test_runs_of_one_side_are_told_apart_by_directory(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    runs = [make_load_run(tmp_path / "a"), make_load_run(tmp_path / "b")]  # both named load-run: the paths differ
    tmp_path.joinpath("c").mkdir()
    producer = _producer_run(tmp_path / "c" / "p")
    build_comparison_report([*runs, producer], tmp_path / "cmp")
    labels = [r["label"] for r in json.loads((tmp_path / "cmp" / "summary.json").read_text())["runs"]]
    assert labels == [f"{RECEIVER}, run 1", f"{RECEIVER}, run 2", PRODUCER]


def test_runs_from_different_machines_are_flagged(two_runs: list[Path], tmp_path: Path) -> None:
    manifest = json.loads((two_runs[1] / "manifest.json").read_text())
    manifest["machine"]["cpu_count"] = 2
    (two_runs[1] / "manifest.json").write_text(json.dumps(manifest))
    md = build_comparison_report(two_runs, tmp_path / "cmp")["md"].read_text(encoding="utf-8")
    assert "not measured under the same conditions" in md and "machine.cpu_count: 2, 8" in md


# --- the command line ------------------------------------------------------------------------------------

def test_cli_compares_two_runs_and_prints_the_knees(two_runs: list[Path], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", *map(str, two_runs), "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert f"{RECEIVER}: knee step 3 at 1400 deliveries/s offered" in out
    assert f"{PRODUCER}: knee not reached, ceiling 8400/s" in out
    assert (tmp_path / "cmp" / "report.html").is_file()


def test_cli_with_one_run_rebuilds_its_own_report(two_runs: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(two_runs[0])]) == 0
    assert (two_runs[0] / "report.html").is_file() and (two_runs[0] / "figures" / "harness_cpu.png").is_file()


@pytest.mark.parametrize("case", ["comparison run", "no summary", "not a directory", "out with one run"])
def test_cli_refuses_what_it_cannot_compare(two_runs: list[Path], tmp_path: Path, case: str,
                                            capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # where the default runs/<time>-compare would go
    if case == "comparison run":
        bad = make_run(tmp_path)
        argv, expected = [str(two_runs[0]), str(bad)], f"{bad}: a comparison run (`hookbench run`), not a load run"
    elif case == "no summary":
        (two_runs[1] / "summary.json").unlink()
        argv, expected = [str(two_runs[0]), str(two_runs[1])], f"{two_runs[1] / 'summary.json'}: missing"
    elif case == "not a directory":
        argv, expected = [str(two_runs[0]), str(tmp_path / "nope")], f"{tmp_path / 'nope'}: not a directory"
    else:
        argv, expected = [str(two_runs[0]), "--out", str(tmp_path / "cmp")], "--out"
    assert main(["report", *argv]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err, err
    assert not (tmp_path / "cmp").exists()
    assert not any((tmp_path / "runs").glob("*")), "a refused comparison left its run directory behind"


def test_fewer_than_two_runs_is_not_a_comparison(two_runs: list[Path], tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match="two or more"):
        build_comparison_report(two_runs[:1], tmp_path / "cmp")
