"""Every way to consume change in one live run: `hookbench run "scenarios/all_modes.toml"` on 127.0.0.1.

One run (the scenario's shape, its window shortened) is shared by the checks: every mode has its row and loses
nothing in a clean run; long polling and SSE detect changes sooner than fixed polling at 1 s, side by side in the
same run; the report has the cost–freshness frontier with one point per mode.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support import read_jsonl, run_command

from bench.config import load_scenario
from reports.frontier import frontier_points
from reports.rundir import load_run

pytestmark = pytest.mark.integration

SCENARIO = "scenarios/all_modes.toml"
EDGE = 2  # fetches are counted by when they start, deliveries by their change: the window's edges may split a pair
MODES = load_scenario(Path(__file__).resolve().parents[1] / SCENARIO).modes


@pytest.fixture(scope="module")
def all_modes(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    summary, run_dir, _ = run_command(["run", SCENARIO, "--duration", "15", "--set", "run.warmup=3s"],
                                      tmp_path_factory.mktemp("all"), 240)
    return summary, run_dir


def test_the_scenario_runs_every_mode_kind() -> None:
    from bench.modes import MODE_KINDS, kind_of

    assert {kind_of(m).name for m in MODES} == {k.name for k in MODE_KINDS}


def test_every_mode_has_a_row_and_loses_nothing(all_modes: tuple[dict[str, Any], Path]) -> None:
    summary, run_dir = all_modes
    assert list(summary["modes"]) == list(MODES) and summary["changes"] > 50
    for mode, m in summary["modes"].items():
        assert m["lost"] == 0 and m["observed"] == summary["changes"] - m["coalesced"], mode
    header = next(line for line in (run_dir / "report.md").read_text().splitlines() if line.startswith("|  |"))
    assert all(f" {mode} " in header for mode in MODES)


def test_long_polling_and_sse_beat_fixed_polling_p50(all_modes: tuple[dict[str, Any], Path]) -> None:
    modes = all_modes[0]["modes"]
    fixed = modes["polling"]["latency_ms"]["p50"]
    assert modes["polling_long"]["latency_ms"]["p50"] < fixed
    assert modes["polling_sse"]["latency_ms"]["p50"] < fixed


def test_long_polling_and_sse_hold_connections(all_modes: tuple[dict[str, Any], Path]) -> None:
    modes = all_modes[0]["modes"]
    assert modes["polling_long"]["held_connections"]["max"] >= 1
    assert modes["polling_sse"]["held_connections"]["max"] >= 1
    assert "held_connections" not in modes["polling"]  # a fixed-interval poll is answered at once


def test_the_frontier_has_one_point_per_mode(all_modes: tuple[dict[str, Any], Path]) -> None:
    run_dir = all_modes[1]
    assert (run_dir / "figures" / "frontier.png").stat().st_size > 10_000
    points = frontier_points(load_run(run_dir))
    assert sorted(points["mode"]) == sorted(MODES)
    assert "figures/frontier.png" in (run_dir / "report.md").read_text()


def test_thin_events_cost_a_fetch_per_change(all_modes: tuple[dict[str, Any], Path]) -> None:
    summary, run_dir = all_modes
    modes = summary["modes"]
    thin, webhook = modes["thin"], modes["webhook"]
    n = summary["changes"]
    assert n > 0 and thin["observed"] == n and thin["lost"] == 0

    # requests per change: a delivery and a fetch for every change observed (counts, not times)
    assert thin["delivery_attempts"] >= thin["observed"]
    assert abs(thin["consumer_requests"] - thin["observed"]) <= EDGE
    assert thin["requests"] == thin["delivery_attempts"] + thin["consumer_requests"] >= 2 * thin["observed"] - EDGE
    assert thin["requests_per_change"] == pytest.approx(thin["requests"] / n)

    # the fetches reached the producer's ledger under the thin mode: more bytes per change than a full event,
    # whose body alone is larger than a thin one (a fetch adds a request and a response)
    assert thin["bytes_per_change"] is not None and webhook["bytes_per_change"] is not None
    assert thin["bytes_per_change"] > webhook["bytes_per_change"]
    assert thin["cpu_s_per_change"] is not None and thin["cpu_s_per_change"] > 0

    # latency = delivery + fetch: in the same run, the thin mode's median comes after the full event's
    assert thin["latency_ms"]["p50"] > webhook["latency_ms"]["p50"]
    assert thin["fetch_ms_p50"] is not None and thin["model"]["requests_per_change"] == 2.0

    # every fetch the receiver made carried its mode and found its change; no arrival of the thin endpoint
    # became an observation by itself (the fetch rows are the observations)
    fetches = read_jsonl(run_dir / "records" / "polls-receiver.jsonl")
    assert fetches and all(f["mode"] == "thin" and f["status"] == 200 and f["error"] is None for f in fetches)
    observed = read_jsonl(run_dir / "records" / "observations-receiver.jsonl")
    assert len(observed) == len(fetches)
    assert {o["t_obs_ns"] for o in observed} == {f["t_recv_ns"] for f in fetches}
