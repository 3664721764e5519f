"""`bench.orchestration.sweep` and `reports.sweep`: the grid, the crossover on fixed points with exact answers,
fail-fast validation, Ctrl-C, and real sweeps (processes on 127.0.0.1) of scenarios/crossover.toml."""

from __future__ import annotations

import base64
import itertools
import json
import math
import os
import re
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
import pytest

import bench.orchestration.sweep as sweep_mod
from bench.analysis.crossover import COST_METRICS, crossover
from bench.config import Scenario, load_scenario
from bench.errors import FormatVersionError, RunDirError, ScenarioError
from bench.orchestration.session import RunResult
from bench.orchestration.sweep import parse_grid, plan_sweep, run_sweep
from bench.results import RunStatus, Summary
from bench.workload import change_schedule
from reports.fmt import fmt_num, fmt_short
from reports.sweep import build_sweep_report

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = REPO / "scenarios"
CROSSOVER = REPO / "scenarios" / "crossover.toml"
SHORT = ["run.duration=3", "run.warmup=1s", "run.drain=1s"]
SCALE = load_scenario(CROSSOVER).run.time_scale  # live rate = nominal x SCALE, live T = 1 s / SCALE


# --- parse_grid ------------------------------------------------------------------------------------

def test_parse_grid_splits_keys_and_values() -> None:
    assert parse_grid(["changes.rate=0.01,0.1,1"]) == [("changes.rate", ["0.01", "0.1", "1"])]
    assert parse_grid(["changes.rate = 0.01, 0.1", "polling.interval=1s,250ms"]) == [
        ("changes.rate", ["0.01", "0.1"]), ("polling.interval", ["1s", "250ms"])]


def test_parse_grid_keeps_toml_lists_and_strings_whole() -> None:
    assert parse_grid(['polling.styles=["cursor"],["cursor", "etag"]', 'description="a,b",c']) == [
        ("polling.styles", ['["cursor"]', '["cursor", "etag"]']), ("description", ['"a,b"', "c"])]


@pytest.mark.parametrize("items, words", [
    ([], "at least one --grid"),
    (["changes.rate"], "must look like key=v1,v2"),
    (["=0.1,1"], "must look like key=v1,v2"),
    (["changes.rate="], "empty value"),
    (["changes.rate=0.1,,1"], "empty value"),
    (["changes.rate=0.1,1,"], "empty value"),
    (["changes.rate=0.1,1,0.1"], "lists 0.1 more than once"),
    (['polling.styles=["cursor",["etag"]'], "unclosed bracket or quote"),
    (["changes.rate=0.1", "changes.rate=1"], "is given twice"),
])
def test_parse_grid_rejects_bad_syntax(items: list[str], words: str) -> None:
    with pytest.raises(ScenarioError, match=re.escape(words)) as e:
        parse_grid(items)
    assert str(e.value).startswith("--grid")


# --- validation before anything runs -------------------------------------------------------------

@pytest.fixture()
def no_runs(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    calls: list[Any] = []
    monkeypatch.setattr(sweep_mod, "run_scenario", lambda *a, **k: calls.append(a) or pytest.fail("a run started"))
    return calls


@pytest.mark.parametrize("grid, extra, words", [
    (["changes.rate=0.1,-1"], [], "--grid (over "),  # the second point is bad: nothing may run
    (["changes.rate=0.1,-1"], [], "changes.rate = -1: must be a number > 0"),
    (["changes.rate=0.1,-1"], [], "(grid point 2/2: changes.rate=-1)"),
    (["changes.rte=0.1"], [], "unknown key"),
    (["polling.interval=1s,0"], [], "polling.interval = 0"),
    (["changes.rate=0.1"], ["changes.rate=1"], "also swept by --grid"),
    (["changes.rate=0.1"], ["run.duration=-3"], "run.duration = -3"),
])
def test_a_bad_point_fails_before_any_run(tmp_path: Path, no_runs: list[Any], grid: list[str], extra: list[str],
                                          words: str) -> None:
    out = tmp_path / "out"
    with pytest.raises(ScenarioError) as e:
        run_sweep(CROSSOVER, parse_grid(grid), out=out, extra_overrides=extra, scenarios_dir=SCENARIOS, repo=REPO,
                  log=lambda _s: None)
    assert words in str(e.value)
    assert no_runs == [] and not out.exists()


def test_plan_sweep_is_the_cartesian_product_in_grid_order() -> None:
    points = plan_sweep(CROSSOVER, parse_grid(["changes.rate=0.01,0.1", "seed=1,2,3"]), ["run.duration=5"])
    assert [p.label for p in points] == [f"changes.rate={r} seed={s}" for r in ("0.01", "0.1") for s in (1, 2, 3)]
    assert [p.index for p in points] == [1, 2, 3, 4, 5, 6]
    assert points[4].scenario.changes.rate == 0.1 and points[4].scenario.seed == 2
    assert all(p.scenario.run.duration == 5 for p in points)


# --- crossover on hand-made points ---------------------------------------------------------------

def pt(index: int, rate: float, polling: dict[str, Any] | None, webhook: dict[str, Any] | None, *,
       R: int = 20, T: float = 1.0, scale: float = 1.0, partial: bool = False, extra: dict[str, Any] | None = None
       ) -> dict[str, Any]:
    """A sweep.json point record; mode dicts give only what the test needs."""
    modes = {}
    if polling is not None:
        modes["polling"] = {"kind": "polling", **polling}
    if webhook is not None:
        modes["webhook"] = {"kind": "webhook", **webhook}
    for name, m in (extra or {}).items():
        modes[name] = {"kind": "webhook", **m}
    return {"index": index, "overrides": {"changes.rate": str(rate)}, "partial": partial, "error": None,
            "time_scale": scale, "workload": {"rate_per_resource": rate, "poll_interval_s": T, "resources": R},
            "modes": modes}


def costs(req: float | None, nbytes: float | None = None, cpu: float | None = None) -> dict[str, Any]:
    return {"requests_per_change": req, "bytes_per_change": nbytes, "cpu_s_per_change": cpu}


HAND_MADE = [  # R = 20, T = 1 s: polling makes 1/(20*lambda) polls per change, exactly the model
    pt(1, 0.01, costs(5.0, 1000.0, 3e-4), costs(1.0, 500.0, 5e-5)),
    pt(2, 0.1, costs(0.5, 100.0, 2e-4), costs(1.0, 500.0, 5e-5)),
    pt(3, 1.0, costs(0.05, 10.0, 1e-4), costs(1.0, 500.0, 5e-5)),
]


def test_crossover_interpolates_on_log_log_between_the_bracketing_points() -> None:
    c = crossover(HAND_MADE)
    req = c["measured"]["requests_per_change"]["webhook"]
    # log(5) - log(1) falls to log(0.5) over one decade: zero at 10^(log10 5) * 0.01 = 0.05
    assert req["rate_per_resource"] == pytest.approx(0.05, rel=1e-12)
    assert req["R_lambda_T"] == pytest.approx(1.0, rel=1e-12)
    assert req["cost"] == pytest.approx(1.0, rel=1e-12)
    assert req["bracket"] == [0.01, 0.1] and req["reason"] is None and req["order_changes"] == 1
    nbytes = c["measured"]["bytes_per_change"]["webhook"]
    # 1000 -> 100 B over a decade meets 500 B at 0.01 * 10^(log10 2) = 0.02
    assert nbytes["rate_per_resource"] == pytest.approx(0.02, rel=1e-12)
    assert nbytes["cost"] == pytest.approx(500.0, rel=1e-12)
    assert nbytes["R_lambda_T"] == pytest.approx(0.4, rel=1e-12)
    cpu = c["measured"]["cpu_s_per_change"]["webhook"]
    assert cpu["rate_per_resource"] is None and cpu["cost"] is None
    assert cpu["reason"] == "polling never cheaper in the swept range (0.01/s to 1/s)"
    model = c["model"]["requests_per_change"]
    assert model["rate_per_resource"] == pytest.approx(0.05, rel=1e-12)  # R*lambda*T = 1
    assert model["R_lambda_T"] == 1.0 and model["in_range"] is True and model["reason"] is None
    assert c["points_used"] == [1, 2, 3] and c["points_excluded"] == [] and c["webhook_modes"] == ["webhook"]
    assert set(c["measured"]) == set(COST_METRICS)


def test_crossover_at_an_exact_tie_is_the_tied_point() -> None:
    c = crossover([pt(1, 0.01, costs(2.0), costs(1.0)), pt(2, 0.05, costs(1.0), costs(1.0)),
                   pt(3, 0.25, costs(0.2), costs(1.0))])
    assert c["measured"]["requests_per_change"]["webhook"]["rate_per_resource"] == pytest.approx(0.05, rel=1e-12)


def test_crossover_reports_time_scaled_rates_as_nominal_too() -> None:
    scaled = [pt(i, r * 20, costs(q), costs(1.0), T=0.05, scale=20.0) for i, (r, q) in
              enumerate([(0.01, 5.0), (0.1, 0.5)], 1)]
    c = crossover(scaled)
    req = c["measured"]["requests_per_change"]["webhook"]
    assert req["rate_per_resource"] == pytest.approx(1.0, rel=1e-12)
    assert req["nominal_rate_per_resource"] == pytest.approx(0.05, rel=1e-12)
    assert req["R_lambda_T"] == pytest.approx(1.0, rel=1e-12)
    assert c["model"]["requests_per_change"]["nominal_rate_per_resource"] == pytest.approx(0.05, rel=1e-12)


def test_crossover_below_the_range_and_not_monotonic() -> None:
    below = crossover([pt(1, 1.0, costs(0.05), costs(1.0)), pt(2, 2.0, costs(0.025), costs(1.0))])
    req = below["measured"]["requests_per_change"]["webhook"]
    assert req["rate_per_resource"] is None
    assert req["reason"].startswith("polling already cheaper at the lowest swept rate (1/s)")
    assert below["model"]["requests_per_change"]["in_range"] is False
    noisy = crossover([pt(1, 0.01, costs(2.0), costs(1.0)), pt(2, 0.1, costs(0.5), costs(1.0)),
                       pt(3, 1.0, costs(2.0), costs(1.0)), pt(4, 10.0, costs(0.5), costs(1.0))])
    req = noisy["measured"]["requests_per_change"]["webhook"]
    assert req["order_changes"] == 3 and req["bracket"] == [0.01, 0.1]  # the first crossing
    assert req["rate_per_resource"] == pytest.approx(0.01 * 10 ** 0.5, rel=1e-12)
    assert "changes 3 times" in req["reason"]


def test_crossover_leaves_out_partial_points_and_missing_values() -> None:
    points = [*HAND_MADE, pt(4, 0.001, costs(None), costs(None)),  # no change in the window: nothing per change
              pt(5, 10.0, costs(0.005), costs(1.0), partial=True)]
    c = crossover(points)
    req = c["measured"]["requests_per_change"]["webhook"]
    assert c["points_used"] == [4, 1, 2, 3] and c["points_excluded"] == [5]  # used: by rising rate
    assert req["points_without_value"] == 1
    assert req["rate_per_resource"] == pytest.approx(0.05, rel=1e-12)


def test_crossover_against_every_webhook_mode() -> None:
    points = [pt(1, 0.01, costs(5.0), costs(1.0), extra={"webhook_ff": costs(2.0)}),
              pt(2, 0.1, costs(0.5), costs(1.0), extra={"webhook_ff": costs(2.0)})]
    measured = crossover(points)["measured"]["requests_per_change"]
    assert list(measured) == ["webhook", "webhook_ff"]
    assert measured["webhook"]["rate_per_resource"] == pytest.approx(0.05, rel=1e-12)
    assert measured["webhook_ff"]["rate_per_resource"] == pytest.approx(0.025, rel=1e-12)  # 1/(20*l) = 2


@pytest.mark.parametrize("points, words", [
    ([pt(1, 0.1, costs(0.5), costs(1.0)), pt(2, 0.1, costs(0.5), costs(1.0))], "the same at every point"),
    ([pt(1, 0.1, costs(0.5), costs(1.0)), pt(2, 0.1, costs(0.5), costs(1.0)), pt(3, 1.0, costs(0.5), costs(1.0))],
     "share a change rate"),
    ([pt(1, 0.1, costs(0.5), costs(1.0))], "1 complete point with a change rate: a crossover needs 2"),
    ([pt(1, 0.1, None, costs(1.0)), pt(2, 1.0, None, costs(1.0))], "add \"cursor\" to polling.styles"),
    ([pt(1, 0.1, costs(0.5), None), pt(2, 1.0, costs(0.05), None)], "webhook.enabled = true"),
    ([pt(1, 0.1, costs(0.5), costs(1.0)), pt(2, 1.0, costs(0.5), costs(1.0), R=40)], "differ between points"),
])
def test_crossover_says_why_there_is_none(points: list[dict[str, Any]], words: str) -> None:
    c = crossover(points)
    for metric in COST_METRICS:
        for res in c["measured"][metric].values():
            assert res["rate_per_resource"] is None and words in res["reason"]


# --- run_sweep with stand-in runs: aggregation, parquet, report, Ctrl-C ----------------------------

def fake_summary(sc: Scenario) -> dict[str, Any]:
    """A summary.json as the analysis would write it for an ideal run of `sc` (cursor poller + webhook)."""
    R, lam, T = sc.resources.count, sc.live_change_rate, sc.live_poll_interval
    lt = R * lam * T
    return {
        "changes": 100, "duration_s": sc.run.duration, "partial": False, "harness_saturated": lam > 100,
        "saturation": {"reasons": ["producer event-loop lag p99 30.0 ms > 20 ms"] if lam > 100 else []},
        "time_scale": sc.run.time_scale,
        "workload": {"resources": R, "process": "poisson", "rate_per_resource": lam, "poll_interval_s": T},
        "modes": {
            "polling": {"kind": "polling", "style": "cursor", "requests_per_change": 1 / lt,
                        "bytes_per_change": 100 + 200 / lt, "cpu_s_per_change": 2e-5 + 5e-5 / lt,
                        "wasted_fraction": math.exp(-lt), "observed": 100, "lost": 0,
                        "latency_ms": {"p50": T * 500}, "model": {"requests_per_change": 1 / lt, "lambda_T": lt}},
            "webhook": {"kind": "webhook", "requests_per_change": 1.0, "bytes_per_change": 500.0,
                        "cpu_s_per_change": 7e-5, "wasted_fraction": 0.0, "observed": 100, "lost": 0,
                        "latency_ms": {"p50": 1.0}, "model": {"requests_per_change": 1.0}},
        },
    }


def fake_runs(monkeypatch: pytest.MonkeyPatch, interrupt_at: int | None = None,
              raise_at: int | None = None, sigterm_at: int | None = None) -> list[Path]:
    dirs: list[Path] = []

    def run(sc: Scenario, run_dir: Path, scenarios_dir: Path, *, repo: Path, log: Any) -> RunResult:
        dirs.append(run_dir)
        assert run_dir.is_dir() and not any(run_dir.iterdir())
        if len(dirs) == raise_at:
            raise KeyboardInterrupt  # Ctrl-C between what run_scenario catches
        if len(dirs) == sigterm_at:  # e.g. while run_scenario analyses, its own handler already removed
            os.kill(os.getpid(), signal.SIGTERM)
        summary = fake_summary(sc)
        if len(dirs) == interrupt_at:  # run_scenario caught Ctrl-C itself and analysed what it had
            return RunResult(run_dir, Summary.from_dict({**summary, "partial": True}), RunStatus.INTERRUPTED,
                             "interrupted")
        return RunResult(run_dir, Summary.from_dict(summary), RunStatus.COMPLETE, None)

    monkeypatch.setattr(sweep_mod, "run_scenario", run)
    return dirs


def test_run_sweep_aggregates_every_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dirs = fake_runs(monkeypatch)
    lines: list[str] = []
    d = run_sweep(CROSSOVER, parse_grid(["changes.rate=0.01,0.1,1"]), out=tmp_path, extra_overrides=SHORT,
                  scenarios_dir=SCENARIOS, repo=REPO, log=lines.append)
    assert d.parent == tmp_path and re.fullmatch(r"\d{8}-\d{6}-sweep-crossover", d.name)
    assert "point 2/3: changes.rate=0.1" in lines
    doc = json.loads((d / "sweep.json").read_text())
    assert doc["format_version"] == 1 and doc["partial"] is False and doc["error"] is None
    assert doc["kind"] == "sweep" and doc["status"] == "complete"
    assert doc["grid"] == [{"key": "changes.rate", "values": ["0.01", "0.1", "1"]}]
    assert doc["command"] == ("hookbench sweep " + str(CROSSOVER) + " --grid changes.rate=0.01,0.1,1 "
                              "--set run.duration=3 --set run.warmup=1s --set run.drain=1s")
    assert [p["run_dir"] for p in doc["points"]] == [p.name for p in dirs]
    assert all(p.parent == d for p in dirs)
    first = doc["points"][0]
    assert first["overrides"] == {"changes.rate": "0.01"}
    assert first["workload"]["rate_per_resource"] == pytest.approx(0.01 * SCALE)
    assert first["modes"]["polling"]["requests_per_change"] == pytest.approx(5.0)
    assert first["modes"]["polling"]["model"]["requests_per_change"] == pytest.approx(5.0)
    assert first["modes"]["webhook"]["latency_ms"] == {"p50": 1.0}
    req = doc["crossover"]["measured"]["requests_per_change"]["webhook"]
    assert req["nominal_rate_per_resource"] == pytest.approx(0.05, rel=1e-9)
    assert req["R_lambda_T"] == pytest.approx(1.0, rel=1e-9)
    # bytes: 100 + 200/x = 500 at R*lambda*T = x = 0.5, between the points at 0.2 and 2 (log-log: approximate)
    assert 0.2 < doc["crossover"]["measured"]["bytes_per_change"]["webhook"]["R_lambda_T"] < 2
    assert 0.01 < doc["crossover"]["measured"]["bytes_per_change"]["webhook"]["nominal_rate_per_resource"] < 0.1

    df = pd.read_parquet(d / "sweep.parquet")
    assert len(df) == 6 and list(df["mode"]) == ["polling", "webhook"] * 3
    assert list(df["changes.rate"]) == ["0.01", "0.01", "0.1", "0.1", "1", "1"]
    assert df.loc[df["mode"] == "polling", "requests_per_change"].tolist() == pytest.approx([5.0, 0.5, 0.05])
    assert df["model_lambda_T"].isna().tolist() == [False, True] * 3

    paths = build_sweep_report(d)
    assert paths["figure"] == d / "figures" / "crossover.png" and paths["figure"].stat().st_size > 10_000
    html = paths["html"].read_text()
    png = base64.b64encode(paths["figure"].read_bytes()).decode()
    assert f"data:image/png;base64,{png}" in html and "<script" not in html and 'src="http' not in html
    md = paths["md"].read_text()
    assert "![Cost per change vs change rate" in md and "(figures/crossover.png)" in md
    assert (f"| requests per change | webhook | {fmt_num(0.05 * SCALE)} | 0.0500 | 1.00 | 1.00 | "
            f"{fmt_short(0.01 * SCALE)} to {fmt_short(0.1 * SCALE)} |") in md
    assert "Warning: the harness itself was a bottleneck" not in md


def test_ctrl_c_stops_the_sweep_and_keeps_what_finished(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_runs(monkeypatch, interrupt_at=3)
    d = run_sweep(CROSSOVER, parse_grid(["changes.rate=0.01,0.1,1000,10000"]), out=tmp_path, extra_overrides=[],
                  scenarios_dir=SCENARIOS, repo=REPO, log=lambda _s: None)
    doc = json.loads((d / "sweep.json").read_text())
    assert doc["partial"] is True and doc["error"] == "interrupted" and doc["status"] == "interrupted"
    assert [p["index"] for p in doc["points"]] == [1, 2, 3] and doc["points"][2]["partial"] is True
    assert doc["crossover"]["points_used"] == [1, 2] and doc["crossover"]["points_excluded"] == [3]
    assert doc["crossover"]["measured"]["requests_per_change"]["webhook"]["nominal_rate_per_resource"] == \
        pytest.approx(0.05, rel=1e-9)
    assert len(pd.read_parquet(d / "sweep.parquet")) == 6
    md = build_sweep_report(d)["md"].read_text()
    assert "Partial sweep: stopped before its planned end" in md and "3 of 4 points ran" in md
    assert "Warning: the harness itself was a bottleneck" in md  # point 3 (> 100 changes/s live) ran saturated


def test_ctrl_c_between_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_runs(monkeypatch, raise_at=2)
    d = run_sweep(CROSSOVER, parse_grid(["changes.rate=0.01,0.1,1"]), out=tmp_path, extra_overrides=[],
                  scenarios_dir=SCENARIOS, repo=REPO, log=lambda _s: None)
    doc = json.loads((d / "sweep.json").read_text())
    assert doc["partial"] is True and doc["error"] == "interrupted" and doc["status"] == "interrupted"
    assert [(p["index"], p["partial"], p["modes"] == {}) for p in doc["points"]] == [(1, False, False),
                                                                                    (2, True, True)]
    assert "1 complete point" in doc["crossover"]["measured"]["requests_per_change"]["webhook"]["reason"]
    paths = build_sweep_report(d)
    assert "figure" in paths  # the one complete point is still drawn


def test_sigterm_outside_a_run_lets_the_point_finish_then_stops(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    before = signal.getsignal(signal.SIGTERM)
    fake_runs(monkeypatch, sigterm_at=2)
    d = run_sweep(CROSSOVER, parse_grid(["changes.rate=0.01,0.1,1"]), out=tmp_path, extra_overrides=[],
                  scenarios_dir=SCENARIOS, repo=REPO, log=lambda _s: None)
    doc = json.loads((d / "sweep.json").read_text())
    assert doc["partial"] is True and doc["error"] == "interrupted" and doc["status"] == "interrupted"
    assert [(p["index"], p["partial"]) for p in doc["points"]] == [(1, False), (2, False)]
    assert doc["crossover"]["measured"]["requests_per_change"]["webhook"]["nominal_rate_per_resource"] == \
        pytest.approx(0.05, rel=1e-9)
    assert signal.getsignal(signal.SIGTERM) == before


def test_report_refuses_what_is_not_a_sweep(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match="no sweep.json"):
        build_sweep_report(tmp_path)
    (tmp_path / "sweep.json").write_text(json.dumps({"format_version": 99}))
    with pytest.raises(FormatVersionError, match="format_version = 99"):
        build_sweep_report(tmp_path)


# --- real sweeps: producer, receiver and Locust processes ----------------------------------------

def assert_no_children_left(sweep_dir: Path) -> None:
    for manifest in sweep_dir.glob("*/manifest.json"):
        for name, proc in json.loads(manifest.read_text())["processes"].items():
            assert proc["exit_code"] is not None, name
            try:
                cmd = " ".join(psutil.Process(proc["pid"]).cmdline())
            except psutil.Error:
                continue
            assert "servers." not in cmd and "locust" not in cmd, f"{name} still running: {cmd}"


# How late the window may start after the warm-up, and how much longer than run.duration it may last, on a slow
# machine: the orchestrator's own HTTP calls and once-a-second ticks (milliseconds each) delay both; the slack is
# a hundred times that, so the counts below hold on any machine that runs the sweep at all.
START_SLACK_S, LENGTH_SLACK_S = 10.0, 2.0


def window_changes(sc: Scenario) -> tuple[int, int]:
    """(fewest, most) changes the producer's seeded schedule (seed, live rate) puts into one window of `sc`, over
    every window start from the end of the warm-up to START_SLACK_S later and every length from run.duration to
    LENGTH_SLACK_S more. Exact arithmetic on the schedule the generator replays: the live count lies in between
    (a change made a few ms late moves like a window a few ms early, which the scan over starts covers)."""
    horizon = sc.run.warmup + START_SLACK_S + sc.run.duration + LENGTH_SLACK_S
    offsets = np.array([t for t, _ in itertools.takewhile(
        lambda e: e[0] < horizon, change_schedule("poisson", sc.resources.count, sc.seed, rate=sc.live_change_rate))])
    starts = np.arange(sc.run.warmup - 0.1, sc.run.warmup + START_SLACK_S, 0.002)
    fewest = np.searchsorted(offsets, starts + sc.run.duration) - np.searchsorted(offsets, starts)
    most = np.searchsorted(offsets, starts + sc.run.duration + LENGTH_SLACK_S) - np.searchsorted(offsets, starts)
    return int(fewest.min()), int(most.max())


def window_polls(sc: Scenario) -> tuple[int, int]:
    """(fewest, most) scheduled polls of the one cursor poller in such a window: its intended times are a grid
    every live T (the analysis counts them by intended time, however late they went out)."""
    T = sc.live_poll_interval
    return math.floor(sc.run.duration / T + 1e-9), math.ceil((sc.run.duration + LENGTH_SLACK_S) / T - 1e-9)


def assert_crossing_is_certain(points: list[Any]) -> None:
    """The premise of the live sweeps' assertions, checked on the seeded schedules before anything runs: below the
    model crossover (R*lambda*T < 1) a window holds fewer changes than polls (polling > 1 request per change, a
    webhook 1), above it more, whatever the machine's speed. A change of seed or sizes that breaks this fails
    here, not as a rare flake."""
    for p in points:
        sc = p.scenario
        fewest, most = window_changes(sc)
        polls_min, polls_max = window_polls(sc)
        R_lambda_T = sc.resources.count * sc.live_change_rate * sc.live_poll_interval
        if R_lambda_T < 1:
            assert most < polls_min, (p.label, most, polls_min)
        elif R_lambda_T > 1:
            assert fewest > polls_max, (p.label, fewest, polls_max)


@pytest.mark.integration
@pytest.mark.timeout(90)
def test_small_real_sweep_end_to_end(tmp_path: Path) -> None:
    grid = parse_grid(["changes.rate=0.01,0.25"])
    planned = plan_sweep(CROSSOVER, grid, SHORT)
    assert_crossing_is_certain(planned)
    d = run_sweep(CROSSOVER, grid, out=tmp_path, extra_overrides=SHORT,
                  scenarios_dir=SCENARIOS, repo=REPO, log=lambda _s: None)
    assert_no_children_left(d)
    doc = json.loads((d / "sweep.json").read_text())
    assert doc["partial"] is False and len(doc["points"]) == 2
    for p, planned_point in zip(doc["points"], planned):
        assert (d / p["run_dir"] / "summary.json").is_file() and p["error"] is None
        assert p["workload"]["resources"] == 20 and p["workload"]["poll_interval_s"] == pytest.approx(1 / SCALE)
        assert set(p["modes"]) == {"polling", "webhook"}
        fewest, most = window_changes(planned_point.scenario)  # 3 to 15 and 147 to 291 (seed 5): never 0
        assert fewest <= p["changes"] <= most, (p["changes"], fewest, most)
    low, high = doc["points"]
    assert low["workload"]["rate_per_resource"] == pytest.approx(0.01 * SCALE)
    # R*lambda*T = 0.2 and 5: polling makes ~5 and ~0.2 polls per change, webhooks 1; certain, not likely:
    # at most 15 changes against at least 30 polls, at least 147 against at most 50 (assert_crossing_is_certain)
    assert low["modes"]["polling"]["requests_per_change"] > 1 > high["modes"]["polling"]["requests_per_change"]
    req = doc["crossover"]["measured"]["requests_per_change"]["webhook"]
    assert req["bracket"] == [pytest.approx(0.01 * SCALE), pytest.approx(0.25 * SCALE)]
    assert 0.01 < req["nominal_rate_per_resource"] < 0.25
    assert len(pd.read_parquet(d / "sweep.parquet")) == 4
    paths = build_sweep_report(d)
    png = base64.b64encode(paths["figure"].read_bytes()).decode()
    assert f"data:image/png;base64,{png}" in paths["html"].read_text()


def header_grid(path: Path) -> list[str]:
    """The --grid items of the `hookbench sweep` command in a scenario file's header comment."""
    m = re.search(r"^#\s+hookbench sweep (\S+)((?: --grid \S+)+)\s*$", path.read_text(), re.M)
    assert m, f"{path}: no `hookbench sweep ... --grid ...` command in the header"
    assert m.group(1) == path.relative_to(REPO).as_posix()
    return m.group(2).split(" --grid ")[1:]


def test_header_grid_of_crossover_brackets_the_model_crossover() -> None:
    points = plan_sweep(CROSSOVER, parse_grid(header_grid(CROSSOVER)))
    rates = [p.scenario.changes.rate for p in points]
    sc = load_scenario(CROSSOVER)
    assert sc.resources.count == 20 and sc.polling.interval == 1.0 and sc.polling.styles == ("cursor",)
    assert sc.modes == ("polling", "webhook") and sc.changes.process == "poisson"
    model = 1 / (sc.resources.count * sc.polling.interval)  # R*lambda*T = 1 (nominal; time scaling keeps it)
    assert min(rates) < model < max(rates) and max(rates) / min(rates) >= 100
    assert sc.run.duration == 10 and sc.run.warmup == 2 and sc.run.drain == 2


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_the_header_sweep_of_scenarios_crossover_toml_runs(tmp_path: Path) -> None:
    """Runs "scenarios/crossover.toml" with the grid of its header comment, windows shrunk to 3 s."""
    path = REPO / "scenarios/crossover.toml"
    shrunk = ["run.duration=3", "run.warmup=500ms", "run.drain=1s"]
    assert_crossing_is_certain(plan_sweep(path, parse_grid(header_grid(path)), shrunk))
    d = run_sweep(path, parse_grid(header_grid(path)), out=tmp_path, extra_overrides=shrunk,
                  scenarios_dir=SCENARIOS, repo=REPO, log=lambda _s: None)
    assert_no_children_left(d)
    doc = json.loads((d / "sweep.json").read_text())
    assert doc["partial"] is False and len(doc["points"]) == len(plan_sweep(path, parse_grid(header_grid(path))))
    cross = doc["crossover"]
    assert cross["model"]["requests_per_change"]["in_range"] is True
    assert cross["model"]["requests_per_change"]["nominal_rate_per_resource"] == pytest.approx(0.05)
    req = cross["measured"]["requests_per_change"]["webhook"]
    # R*lambda*T = 0.2 at 0.01 and 5 at 0.25: polling costs more than a webhook at 0.002 and 0.01 and less at 0.25
    # and 1 in every 3 s window the seeded schedules allow (assert_crossing_is_certain; a point without changes has
    # no value and is skipped), so the first crossing lies between 0.01 and 0.25 whatever 0.05, the tie, does
    assert 0.01 < req["nominal_rate_per_resource"] < 0.25, req
    assert "figure" in build_sweep_report(d)
