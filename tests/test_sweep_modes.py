"""Sweeps over every mode kind's keys and the crossover of every consumer-driven mode (issue 10): the grid of a
mode key validated before anything runs, `crossover.by_mode` on hand-made points with exact answers (long
polling, SSE, adaptive, ETag against webhook and hybrid), old sweep.json files, the report's rows and the
figure's colours. No process is started: runs are stand-ins."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from matplotlib.image import imread

import bench.orchestration.sweep as sweep_mod
from bench.analysis.crossover import COST_METRICS, consumer_modes, crossover
from bench.cli import main
from bench.config import Scenario
from bench.errors import ScenarioError
from bench.modes import MODE_KINDS, kind_of
from bench.orchestration.session import RunResult
from bench.orchestration.sweep import parse_grid, plan_sweep, run_sweep
from bench.results import (
    Kind,
    RunStatus,
    Summary,
    crossover_by_mode,
    read_sweep,
    status_keys,
    version_keys,
    write_sweep,
)
from reports.sweep import build_sweep_report, draw_crossover

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = REPO / "scenarios"
CROSSOVER = SCENARIOS / "crossover.toml"
WITH = {  # --set items that make crossover.toml run each kind
    "long": 'polling.styles=["cursor","long"]', "adaptive": 'polling.styles=["cursor","adaptive"]',
    "sse": 'polling.styles=["cursor","sse"]',
}


# --- a grid over a mode kind's keys --------------------------------------------------------------

@pytest.fixture()
def no_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sweep_mod, "run_scenario", lambda *a, **k: pytest.fail("a run started"))


@pytest.mark.parametrize("grid, extra, attr, values", [
    ("polling.long_wait=2s,10s", [WITH["long"]], ("polling", "long_wait"), [2.0, 10.0]),
    ("polling.adaptive_max=2s,8s", [WITH["adaptive"]], ("polling", "adaptive_max"), [2.0, 8.0]),
    ("polling.adaptive_factor=1.5,4", [WITH["adaptive"]], ("polling", "adaptive_factor"), [1.5, 4.0]),
    ("polling.sse_heartbeat=1s,15s", [WITH["sse"]], ("polling", "sse_heartbeat"), [1.0, 15.0]),
    ("polling.cursor_limit=10,1000", [], ("polling", "cursor_limit"), [10, 1000]),
])
def test_a_grid_over_a_mode_key_reaches_every_point(no_runs: None, grid: str, extra: list[str],
                                                    attr: tuple[str, str], values: list[Any]) -> None:
    points = plan_sweep(CROSSOVER, parse_grid([grid]), extra)
    assert [getattr(getattr(p.scenario, attr[0]), attr[1]) for p in points] == values
    assert all(len(p.scenario.modes) == len(points[0].scenario.modes) for p in points)


def test_a_grid_over_the_reconcile_interval_of_hybrid_subscriptions(tmp_path: Path, no_runs: None) -> None:
    scenario = tmp_path / "hybrid.toml"
    scenario.write_text(CROSSOVER.read_text() + '\n[[webhook.subscriptions]]\nname = "hybrid"\n')
    points = plan_sweep(scenario, parse_grid(["webhook.reconcile_interval=2s,10s"]))
    assert [p.scenario.webhook.reconcile_interval for p in points] == [2.0, 10.0]
    assert all("hybrid" in p.scenario.modes for p in points)


@pytest.mark.parametrize("grid, extra, words", [
    # a bad value of a mode key: named with what is expected, and the grid point it is in
    ("polling.long_wait=2s,0", [WITH["long"]], "polling.long_wait = 0: must be a duration in (0, 300s]"),
    ("polling.long_wait=2s,400s", [WITH["long"]], "(grid point 2/2: polling.long_wait=400s)"),
    ("polling.adaptive_factor=1,2", [WITH["adaptive"]], "polling.adaptive_factor = 1: must be a number in (1, 100]"),
    ("polling.adaptive_max=2s,never", [WITH["adaptive"]], "polling.adaptive_max = 'never': must be a positive "
                                                          "duration"),
    ("polling.sse_heartbeat=-1s", [WITH["sse"]], "polling.sse_heartbeat = '-1s': must be a duration in (0, 300s]"),
    ("webhook.reconcile_interval=0s", [], "webhook.reconcile_interval = '0s': must be a positive duration"),
    ("polling.cursor_limit=10,0", [], "polling.cursor_limit = 0: must be an integer from 1 to 10000"),
    # a key no kind declares
    ("polling.long_wiat=2s", [WITH["long"]], "polling.long_wiat = '2s': unknown key; known keys: "),
    # a good value of a key whose mode no point runs: every point would be the same run
    ("polling.long_wait=2s,10s", [], "polling.long_wait = '2s,10s': configures only long polling (polling_long), "
                                     "which no point of this sweep runs, so every point would be the same run: "
                                     'add "long" to polling.styles'),
    ("polling.adaptive_max=2s,8s", [], 'configures only adaptive polling (polling_adaptive), which no point of '
                                       'this sweep runs, so every point would be the same run: add "adaptive"'),
    ("webhook.reconcile_interval=2s,10s", [], "configures only webhook + reconcile (hybrid), which no point of this "
                                              "sweep runs, so every point would be the same run: add a "
                                              "[[webhook.subscriptions]] whose name starts with 'hybrid'"),
    ("polling.cursor_limit=10,100", ['polling.styles=["etag"]'], "configures only cursor polling (polling)"),
])
def test_a_bad_mode_key_fails_before_any_run(tmp_path: Path, no_runs: None, grid: str, extra: list[str],
                                             words: str) -> None:
    out = tmp_path / "out"
    with pytest.raises(ScenarioError) as e:
        run_sweep(CROSSOVER, parse_grid([grid]), out=out, extra_overrides=extra, scenarios_dir=SCENARIOS,
                  repo=REPO, log=lambda _s: None)
    assert str(e.value).startswith("--grid") and words in str(e.value)
    assert not out.exists()


def test_a_mode_key_swept_with_the_styles_that_run_it_is_allowed(no_runs: None) -> None:
    points = plan_sweep(CROSSOVER, parse_grid(["polling.long_wait=2s,10s",
                                               'polling.styles=["cursor"],["cursor","long"]']))
    assert [("polling_long" in p.scenario.modes, p.scenario.polling.long_wait) for p in points] == [
        (False, 2.0), (True, 2.0), (False, 10.0), (True, 10.0)]


def test_the_cli_exits_2_naming_the_mode_key(tmp_path: Path, no_runs: None, capsys: pytest.CaptureFixture[str]
                                             ) -> None:
    code = main(["sweep", str(CROSSOVER), "--grid", "polling.long_wait=5s,0", "--set", WITH["long"],
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and not (tmp_path / "out").exists()
    assert err.startswith("hookbench: --grid (over ") and "polling.long_wait = 0: must be a duration" in err
    assert "Traceback" not in err
    code = main(["sweep", str(CROSSOVER), "--grid", "polling.sse_heartbeat=1s,5s", "--out", str(tmp_path / "out")])
    assert code == 2 and "add \"sse\" to polling.styles" in capsys.readouterr().err


# --- the crossover of every consumer-driven mode, on hand-made points ------------------------------

def pt(index: int, rate: float, modes: dict[str, dict[str, Any]], *, R: int = 20, T: float = 1.0,
       scale: float = 1.0, partial: bool = False) -> dict[str, Any]:
    """A sweep.json point record as sweep.py writes it; each mode's dict gives what the test needs."""
    full = {m: {"kind": kind_of(m).summary_kind, "latency_ms": {"p50": None},
                "model": {"requests_per_change": None, "lambda_T": None}, **v} for m, v in modes.items()}
    return {"index": index, "overrides": {"changes.rate": str(rate)}, "run_dir": f"p{index:02d}", "partial": partial,
            "error": None, "harness_saturated": False, "saturation_reasons": [], "changes": 100, "duration_s": 10,
            "time_scale": scale, "workload": {"rate_per_resource": rate, "poll_interval_s": T, "resources": R,
                                              "process": "poisson"}, "modes": full}


def costs(req: float | None, nbytes: float | None = None, cpu: float | None = None, **more: Any) -> dict[str, Any]:
    return {"requests_per_change": req, "bytes_per_change": nbytes, "cpu_s_per_change": cpu, **more}


WEBHOOK = costs(1.0, 500.0, 5e-5)
RATES = (0.01, 0.1, 1.0)  # R = 20, T = 1 s: R*lambda*T = 0.2, 2, 20
CURSOR = [costs(5.0, 1000.0, 3e-4), costs(0.5, 100.0, 2e-4), costs(0.05, 10.0, 1e-4)]  # the model's 1/(R*lambda*T)
LONG = [costs(2.0, 800.0, 1e-4), costs(1.25, 600.0, 8e-5), costs(0.8, 400.0, 5e-5)]
LONG_TIE = [costs(4.0), costs(1.6), costs(1.0)]  # ~1 request per change at high rates: a tie, never below
SSE = [costs(0.0, 300.0, 1e-4, held_connections={"max": 1, "mean": 1.0, "samples": 10}) for _ in RATES]


def every_mode_points(long: list[dict[str, Any]] = LONG, extra: dict[str, list[dict[str, Any]]] | None = None
                      ) -> list[dict[str, Any]]:
    """SSE listed first: the crossover must still order the modes as the registry does."""
    return [pt(i, rate, {"polling_sse": SSE[i - 1], "polling": CURSOR[i - 1], "polling_long": long[i - 1],
                         "webhook": WEBHOOK, **{m: v[i - 1] for m, v in (extra or {}).items()}})
            for i, rate in enumerate(RATES, 1)]


def test_consumer_modes_are_every_kind_that_is_not_push_in_registry_order() -> None:
    assert consumer_modes(["webhook", "polling_sse", "hybrid", "polling_long", "thin_x", "polling", "polling_etag",
                           "polling_adaptive", "polling", "no_such_mode"]) == [
        "polling", "polling_etag", "polling_long", "polling_adaptive", "polling_sse"]
    assert [k.name for k in MODE_KINDS if not k.is_push] == ["cursor", "etag", "long", "adaptive", "sse"]


def test_long_polling_crossover_interpolates_on_log_log() -> None:
    c = crossover(every_mode_points())
    assert c["consumer_modes"] == ["polling", "polling_long", "polling_sse"]
    assert list(c["by_mode"]) == c["consumer_modes"]
    req = c["by_mode"]["polling_long"]["requests_per_change"]["webhook"]
    # log(1.25) above 1 at 0.1/s, log(0.8) = -log(1.25) below it at 1/s: halfway in log(rate), at 10^-0.5
    assert req["rate_per_resource"] == pytest.approx(10 ** -0.5, rel=1e-12)
    assert req["R_lambda_T"] == pytest.approx(20 * 10 ** -0.5, rel=1e-12)
    assert req["cost"] == pytest.approx(1.0, rel=1e-12)
    assert req["bracket"] == [0.1, 1.0] and req["order_changes"] == 1 and req["reason"] is None
    nbytes = c["by_mode"]["polling_long"]["bytes_per_change"]["webhook"]
    # 800 -> 600 -> 400 B against 500 B: between 0.1 and 1, where log(600/500) = t*log(600/400)
    t = math.log(1.2) / math.log(1.5)
    assert nbytes["rate_per_resource"] == pytest.approx(10 ** (-1 + t), rel=1e-12)
    assert nbytes["cost"] == pytest.approx(500.0, rel=1e-12)
    cpu = c["by_mode"]["polling_long"]["cpu_s_per_change"]["webhook"]
    # equal at the top point (5e-5 s) but never below: "cheaper" is strict, a tie is not a crossing
    assert cpu["rate_per_resource"] is None
    assert cpu["reason"] == "polling_long never cheaper in the swept range (0.01/s to 1/s)"


def test_long_polling_tending_to_one_request_per_change_is_never_cheaper() -> None:
    req = crossover(every_mode_points(LONG_TIE))["by_mode"]["polling_long"]["requests_per_change"]["webhook"]
    assert req["rate_per_resource"] is None and req["bracket"] is None and req["points_without_value"] == 0
    assert req["reason"] == "polling_long never cheaper in the swept range (0.01/s to 1/s)"


def test_sse_is_already_cheaper_in_requests_at_every_rate() -> None:
    sse = crossover(every_mode_points())["by_mode"]["polling_sse"]
    req = sse["requests_per_change"]["webhook"]
    # 0 requests per change (the stream was opened before the window) counts: cheaper than any push mode
    assert req["rate_per_resource"] is None and req["points_without_value"] == 0
    assert req["reason"] == ("polling_sse already cheaper at the lowest swept rate (0.01/s): the crossover lies "
                             "below the range")
    assert sse["bytes_per_change"]["webhook"]["reason"].startswith("polling_sse already cheaper")  # 300 < 500 B
    assert sse["cpu_s_per_change"]["webhook"]["reason"] == ("polling_sse never cheaper in the swept range "
                                                             "(0.01/s to 1/s)")  # 1e-4 > 5e-5 s


def test_a_crossing_into_a_cost_of_zero_gives_its_bracket_only() -> None:
    points = [pt(1, 0.01, {"polling_sse": costs(2.0), "webhook": WEBHOOK}),
              pt(2, 0.1, {"polling_sse": costs(0.0), "webhook": WEBHOOK})]
    req = crossover(points)["by_mode"]["polling_sse"]["requests_per_change"]["webhook"]
    assert req["rate_per_resource"] is None and req["cost"] is None and req["bracket"] == [0.01, 0.1]
    assert req["reason"] == ("polling_sse's requests_per_change is 0 at 0.1/s: the crossing lies between 0.01/s and "
                             "0.1/s, where a log scale cannot place it")


def test_measured_is_the_cursor_pollers_and_unchanged_by_other_modes() -> None:
    with_all = crossover(every_mode_points())
    cursor_only = crossover([pt(i, r, {"polling": CURSOR[i - 1], "webhook": WEBHOOK}) for i, r in enumerate(RATES, 1)])
    assert with_all["measured"] == cursor_only["measured"] == with_all["by_mode"]["polling"]
    assert with_all["measured"]["requests_per_change"]["webhook"]["rate_per_resource"] == pytest.approx(0.05)
    assert with_all["model"] == cursor_only["model"] and with_all["polling_mode"] == "polling"
    assert cursor_only["consumer_modes"] == ["polling"] and set(cursor_only["by_mode"]) == {"polling"}


def test_every_consumer_against_every_push_mode() -> None:
    hybrid = [costs(1.5), costs(1.05), costs(1.005)]  # deliveries + a reconcile poll every 10 s: 1 + 1/(R*lambda*10)
    etag = [costs(40.0), costs(4.0), costs(0.4)]  # 1/(lambda*T), T = 2.5 s: equal to 1 delivery at lambda = 0.4
    adaptive = [costs(3.0), costs(0.3), costs(0.03)]
    c = crossover(every_mode_points(extra={"hybrid": hybrid, "polling_etag": etag, "polling_adaptive": adaptive}))
    assert c["webhook_modes"] == ["webhook", "hybrid"]
    assert c["consumer_modes"] == ["polling", "polling_etag", "polling_long", "polling_adaptive", "polling_sse"]
    for mode in c["consumer_modes"]:
        assert set(c["by_mode"][mode]) == set(COST_METRICS)
        assert all(list(c["by_mode"][mode][m]) == ["webhook", "hybrid"] for m in COST_METRICS)
    req = {m: c["by_mode"][m]["requests_per_change"] for m in c["consumer_modes"]}
    assert req["polling_etag"]["webhook"]["rate_per_resource"] == pytest.approx(0.4, rel=1e-12)
    assert req["polling_adaptive"]["webhook"]["rate_per_resource"] == pytest.approx(0.03, rel=1e-12)  # 3 -> 0.3
    # against the hybrid's 1.5 and 1.05 per change: cursor 5 -> 0.5 meets 1.5 -> 1.05 at log(5/1.5) = t*log(...)
    t = math.log(5 / 1.5) / (math.log(5 / 1.5) - math.log(0.5 / 1.05))
    assert req["polling"]["hybrid"]["rate_per_resource"] == pytest.approx(10 ** (-2 + t), rel=1e-12)
    assert req["polling_sse"]["hybrid"]["reason"].startswith("polling_sse already cheaper")


def test_by_mode_says_why_there_is_none() -> None:
    no_push = crossover([pt(1, 0.1, {"polling_long": costs(1.0)}), pt(2, 1.0, {"polling_long": costs(1.0)})])
    for metric in COST_METRICS:
        assert no_push["by_mode"]["polling_long"][metric] == {
            "webhook": {"rate_per_resource": None, "reason": "no webhook mode in the complete points: set "
                                                             "webhook.enabled = true"}}
    assert "add \"cursor\" to polling.styles" in no_push["measured"]["requests_per_change"]["webhook"]["reason"]
    partial = crossover([pt(1, 0.1, {"polling_sse": costs(0.0), "webhook": WEBHOOK}, partial=True),
                         pt(2, 1.0, {"polling": costs(0.05), "webhook": WEBHOOK})])
    assert partial["consumer_modes"] == ["polling"]  # only complete points say which modes ran


def test_older_sweep_files_read_as_the_cursor_pollers_crossover(tmp_path: Path) -> None:
    c = crossover([pt(i, r, {"polling": CURSOR[i - 1], "webhook": WEBHOOK}) for i, r in enumerate(RATES, 1)])
    old = {k: v for k, v in c.items() if k not in ("by_mode", "consumer_modes")}
    assert crossover_by_mode(old) == {"polling": c["measured"]} == crossover_by_mode(c)
    assert crossover_by_mode(None) == {} and crossover_by_mode({"measured": {}}) == {}
    write_sweep(tmp_path, {**version_keys(Kind.SWEEP), **status_keys(RunStatus.COMPLETE), "points": [],
                           "crossover": old})
    assert read_sweep(tmp_path).crossover_by_mode == {"polling": c["measured"]}


# --- the report ----------------------------------------------------------------------------------

def sweep_doc(points: list[dict[str, Any]]) -> dict[str, Any]:
    return {**version_keys(Kind.SWEEP), **status_keys(RunStatus.COMPLETE), "scenario": "hand-made",
            "description": None, "scenario_source": "scenarios/crossover.toml",
            "grid": [{"key": "changes.rate", "values": [p["overrides"]["changes.rate"] for p in points]}],
            "extra_overrides": [], "command": "hookbench sweep ...", "finished_at": None, "error": None,
            "points_planned": len(points), "points": points, "crossover": crossover(points)}


def md_rows(md: str, first: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in md.splitlines()
            if line.startswith(f"| {first} |")]


def test_the_report_has_crossover_rows_for_every_consumer_mode(tmp_path: Path) -> None:
    write_sweep(tmp_path, sweep_doc(every_mode_points()))
    md = build_sweep_report(tmp_path)["md"].read_text()
    # consumer mode, cost, push mode, crossover live, nominal (time scale 1), R*lambda*T, cost there, bracket
    assert md_rows(md, "polling_long")[0] == ["polling_long", "requests per change", "webhook", "0.316", "0.316",
                                              "6.32", "1.00", "0.1 to 1"]
    assert md_rows(md, "polling_sse")[0] == ["polling_sse", "requests per change", "webhook", *["–"] * 5]
    assert md_rows(md, "polling")[0] == ["polling", "requests per change", "webhook", "0.0500", "0.0500", "1.00",
                                         "1.00", "0.01 to 0.1"]
    assert md_rows(md, "*polling*") == [["*polling*", "model: requests per change", "any webhook", "0.0500",
                                         "0.0500", "1.00", "1", "–"]]
    assert [len(md_rows(md, m)) for m in ("polling", "polling_long", "polling_sse")] == [3, 3, 3]
    assert ("- **requests per change, polling_sse vs webhook**: polling_sse already cheaper at the lowest swept "
            "rate (0.01/s)") in md
    assert "- **long polling**: about one request per change" in md
    assert "- **server-sent events**: one connection per run" in md
    # the points table: SSE's held stream, a dash where a mode held nothing
    header = next(r for r in md.splitlines() if r.startswith("| point |"))
    held = [c.strip() for c in header.strip("|").split("|")].index("held (max)")
    cells = [[c.strip() for c in r.strip("|").split("|")] for r in md.splitlines() if r.startswith("| 1 |")
             or r.startswith("|  |  |")]
    assert {c[5]: c[held] for c in cells[:4]} == {"polling_sse": "1", "polling": "–", "polling_long": "–",
                                                  "webhook": "–"}


def colours_in(png: Path) -> set[tuple[int, int, int]]:
    img = imread(png)[..., :3]
    return {tuple(int(round(v * 255)) for v in px) for px in np.unique(img.reshape(-1, 3), axis=0)}


def rgb255(colour: str) -> tuple[int, int, int]:
    r, g, b = to_rgb(colour)
    return round(r * 255), round(g * 255), round(b * 255)


def test_the_figure_draws_each_of_eight_modes_in_its_registry_colour(tmp_path: Path) -> None:
    extra = {"polling_etag": [costs(100.0, 9e3, 1e-3), costs(10.0, 900.0, 1e-4), costs(1.0, 90.0, 1e-5)],
             "polling_adaptive": [costs(3.0, 600.0, 2e-4), costs(0.3, 60.0, 2e-5), costs(0.03, 6.0, 2e-6)],
             "hybrid": [costs(1.5, 700.0, 7e-5), costs(1.05, 520.0, 5.2e-5), costs(1.005, 502.0, 5e-5)],
             "thin": [costs(2.0, 900.0, 9e-5) for _ in RATES]}
    doc = sweep_doc(every_mode_points(extra=extra))
    assert len({m for p in doc["points"] for m in p["modes"]}) == len(MODE_KINDS) == 8
    path = tmp_path / "figures" / "crossover.png"
    drawn, note = draw_crossover(doc, path)
    assert drawn and "each consumer-driven mode" in note and "not labelled" in note  # 5 x 2 stars per panel
    found = colours_in(path)
    for kind in MODE_KINDS:
        assert rgb255(kind.colour) in found, kind.name


def test_the_cli_prints_every_consumer_modes_crossover(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    def run(sc: Scenario, run_dir: Path, scenarios_dir: Path, *, repo: Path, log: Any) -> RunResult:
        i = RATES.index(round(sc.changes.rate, 6))
        summary = {"changes": 100, "partial": False, "time_scale": sc.run.time_scale,
                   "workload": {"resources": 20, "process": "poisson", "rate_per_resource": RATES[i],
                                "poll_interval_s": 1.0},
                   "modes": every_mode_points()[i]["modes"]}
        return RunResult(run_dir, Summary.from_dict(summary), RunStatus.COMPLETE, None)

    monkeypatch.setattr(sweep_mod, "run_scenario", run)
    code = main(["sweep", str(CROSSOVER), "--grid", "changes.rate=0.01,0.1,1", "--set",
                 'polling.styles=["cursor","long","sse"]', "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    assert re.search(r"^crossover, requests_per_change, polling vs webhook: at 0.05 changes/s per resource "
                     r"\(R\*lambda\*T = 1.00\)$", out, re.M)
    assert re.search(r"^crossover, requests_per_change, polling_long vs webhook: at 0.316 changes/s per resource "
                     r"\(R\*lambda\*T = 6.32\)$", out, re.M)
    assert "crossover, requests_per_change, polling_sse vs webhook: none: polling_sse already cheaper" in out
    doc = json.loads(next(tmp_path.glob("*/sweep.json")).read_text())
    assert doc["format_version"] == 1 and doc["crossover"]["consumer_modes"] == ["polling", "polling_long",
                                                                                  "polling_sse"]
    assert doc["points"][0]["modes"]["polling_sse"]["held_connections"]["max"] == 1


def test_the_figure_takes_the_registry_colours_not_the_default_cycle(tmp_path: Path) -> None:
    """Three modes whose registry colours are not the first three of matplotlib's cycle (blue, orange, green)."""
    points = [pt(i, r, {"polling_long": LONG[i - 1], "polling_sse": SSE[i - 1], "thin": costs(2.0, 900.0, 9e-5)})
              for i, r in enumerate(RATES, 1)]
    path = tmp_path / "crossover.png"
    assert draw_crossover(sweep_doc(points), path)[0]
    found = colours_in(path)
    assert {rgb255(kind_of(m).colour) for m in ("polling_long", "polling_sse", "thin")} <= found
    assert not {rgb255(c) for c in ("#1f77b4", "#ff7f0e", "#2ca02c")} & found
