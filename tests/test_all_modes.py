"""Every way to consume change in one live run: `hookbench run "scenarios/all_modes.toml"` on 127.0.0.1.

One run (the scenario's shape, its window shortened) is shared by the checks: every mode has its row and loses
nothing in a clean run; long polling and SSE detect changes sooner than fixed polling at 1 s, side by side in the
same run; the report has the cost–freshness frontier with one point per mode.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from support import read_jsonl, run_command

from bench.config import load_scenario
from reports.frontier import frontier_points
from reports.rundir import load_run

pytestmark = pytest.mark.integration

SCENARIO = "scenarios/all_modes.toml"
WINDOW_S = 15.0
MODES = load_scenario(Path(__file__).resolve().parents[1] / SCENARIO).modes


@pytest.fixture(scope="module")
def all_modes(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    summary, run_dir, _ = run_command(["run", SCENARIO, "--duration", f"{WINDOW_S:g}", "--set", "run.warmup=3s"],
                                      tmp_path_factory.mktemp("all"), 240)
    return summary, run_dir


def test_the_scenario_runs_every_mode_kind() -> None:
    from bench.modes import MODE_KINDS, kind_of

    assert {kind_of(m).name for m in MODES} == {k.name for k in MODE_KINDS}


def test_every_mode_has_a_row_and_loses_nothing(all_modes: tuple[dict[str, Any], Path]) -> None:
    summary, run_dir = all_modes
    # Poisson changes: 20 resources x 0.25/s x 15 s = 75 expected (sd 8.7); 5 sd below is 32
    expected = 20 * 0.25 * WINDOW_S
    assert list(summary["modes"]) == list(MODES) and summary["changes"] >= expected - 5 * math.sqrt(expected)
    # A clean run loses nothing: every mode sees a change within the scenario's 5 s of drain (the slowest, adaptive
    # polling, waits at most adaptive_max = 4 s between polls)
    for mode, m in summary["modes"].items():
        assert m["lost"] == 0 and m["observed"] == summary["changes"] - m["coalesced"], mode
    header = next(line for line in (run_dir / "report.md").read_text().splitlines() if line.startswith("|  |"))
    assert all(f" {mode} " in header for mode in MODES)


def test_long_polling_and_sse_beat_fixed_polling_p50(all_modes: tuple[dict[str, Any], Path]) -> None:
    # A held request answers within milliseconds of a change; a fixed poll's median is half its 1 s interval
    # (~500 ms over ~75 changes): only a machine stalled for half a second at most changes could reverse them.
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


def edge_changes(run_dir: Path, lag_ms: float) -> int:
    """Changes within `lag_ms` before either edge of the window: the most pairs (a change, and a request it causes
    at most `lag_ms` later) that the edges can split, when the change is counted by its own time and the request
    by when it starts."""
    changes = pd.read_parquet(run_dir / "changes.parquet")["t_change_ns"]
    w = json.loads((run_dir / "manifest.json").read_text())["window"]
    lag = int(lag_ms * 1e6)
    return int(sum(((changes >= edge - lag) & (changes < edge)).sum() for edge in (w["start_ns"], w["end_ns"])))


def test_thin_events_cost_a_fetch_per_change(all_modes: tuple[dict[str, Any], Path]) -> None:
    summary, run_dir = all_modes
    modes = summary["modes"]
    thin, webhook = modes["thin"], modes["webhook"]
    n = summary["changes"]
    assert n > 0 and thin["observed"] == n and thin["lost"] == 0

    # every thin event was fetched after it arrived: the thin observation (the fetch's answer) of each change comes
    # after the receiver recorded the thin delivery of that change (one clock: the receiver's); so latency = delivery
    # + fetch, change by change
    fetches = read_jsonl(run_dir / "records" / "polls-receiver.jsonl")
    assert fetches and all(f["mode"] == "thin" and f["status"] == 200 and f["error"] is None for f in fetches)
    observed = read_jsonl(run_dir / "records" / "observations-receiver.jsonl")
    assert len(observed) == len(fetches)
    assert {o["t_obs_ns"] for o in observed} == {f["t_recv_ns"] for f in fetches}
    arrived: dict[str, int] = {}
    for a in read_jsonl(run_dir / "records" / "audit.jsonl"):
        if a["endpoint"] == "thin" and a["change_id"] and a["verdict"] in ("accepted", "duplicate"):
            arrived[a["change_id"]] = min(arrived.get(a["change_id"], a["t_ns"]), a["t_ns"])
    assert all(o["change_id"] in arrived and o["t_obs_ns"] > arrived[o["change_id"]] for o in observed)
    assert thin["fetch_ms_p50"] is not None and thin["fetch_ms_p50"] > 0 and thin["model"]["requests_per_change"] == 2.0
    assert thin["latency_ms"]["p50"] is not None and webhook["latency_ms"]["p50"] is not None

    # requests per change: a delivery and a fetch for every change observed (counts, not times). Deliveries are
    # counted by their change, fetches by when they start: the window's edges split at most the pairs of the
    # changes made within the slowest fetch's lag (from its change to its answer) before either edge.
    changes = pd.read_parquet(run_dir / "changes.parquet").set_index("change_id")["t_change_ns"]
    lag_ms = max((o["t_obs_ns"] - changes[o["change_id"]]) / 1e6 for o in observed)
    edge = edge_changes(run_dir, lag_ms)
    assert thin["delivery_attempts"] >= thin["observed"]
    assert abs(thin["consumer_requests"] - thin["observed"]) <= edge, (thin, lag_ms, edge)
    assert thin["requests"] == thin["delivery_attempts"] + thin["consumer_requests"] >= 2 * thin["observed"] - edge
    assert thin["requests_per_change"] == pytest.approx(thin["requests"] / n)

    # the fetches reached the producer's ledger under the thin mode: more bytes per change than a full event,
    # whose body alone is larger than a thin one (a fetch adds a request and a response)
    assert thin["bytes_per_change"] is not None and webhook["bytes_per_change"] is not None
    assert thin["bytes_per_change"] > webhook["bytes_per_change"]
    assert thin["cpu_s_per_change"] is not None and thin["cpu_s_per_change"] > 0
