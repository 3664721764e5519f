"""Trace replay, live: `scenarios/trace_git.toml` replays a git history through the producer, and the changes it
made are the trace's, gap for gap."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support import run_command

from bench.config import load_scenario
from bench.traces import trace_from_csv, trace_from_git
from bench.workload import change_schedule

pytestmark = [pytest.mark.integration, pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")]
REPO = Path(__file__).resolve().parents[1]



def _history(path: Path) -> Path:
    """A git repository whose commits come in bursts over 40 nominal minutes (4 s live at trace_git's scale).

    Not this project's own history: its shape changes with every commit (a week between two sessions made
    the replayed cycle longer than the test's window, so no resource changed twice in it)."""
    path.mkdir()
    git = ["git", "-C", str(path), "-c", "user.name=hookbench", "-c", "user.email=test@hookbench.invalid"]
    subprocess.run(git[:3] + ["init", "-q"], check=True)
    t0, times = 1_700_000_000, []
    for burst in range(4):  # 4 bursts of 6 commits, 10 minutes apart, 20-50 s between commits of a burst
        times += [t0 + burst * 600 + 35 * i + (i % 3) * 15 for i in range(6)]
    for i, t in enumerate(times):
        env = {**os.environ, "GIT_AUTHOR_DATE": f"@{t} +0000", "GIT_COMMITTER_DATE": f"@{t} +0000"}
        subprocess.run(git + ["commit", "-q", "--allow-empty", "-m", f"change {i}"], check=True, env=env)
    return path


def test_replays_a_git_history(tmp_path: Path) -> None:
    repo = _history(tmp_path / "history")
    trace = trace_from_git(repo)
    assert trace.events == 24
    summary, run_dir, _ = run_command(["run", "scenarios/trace_git.toml", "--duration", "8",
                                       "--set", "run.warmup=2s", "--set", "run.drain=2s",
                                       "--set", f"changes.git={repo}"], tmp_path / "runs", 120)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["trace"]["sha256"] == trace.sha256 and manifest["trace"]["events"] == trace.events
    assert trace_from_csv(run_dir / "trace.csv").sha256 == trace.sha256  # the copy kept with the run

    # The stream replayed is the recorded one, not a Poisson stand-in: the k-th change the producer made is the k-th
    # event of the schedule drawn (seed, time scale) from this trace, resource for resource -- exact, whatever the
    # machine's speed.
    scale = manifest["time_scale"]
    sc = load_scenario(REPO / "scenarios/trace_git.toml", [f"changes.git={repo}"])
    changes = pd.read_parquet(run_dir / "changes.parquet").sort_values("seq")
    n = len(changes)
    schedule = list(itertools.islice(change_schedule("trace", sc.resources.count, manifest["seed"], trace=trace,
                                                     trace_scale=scale), n))
    assert n > 2 * sc.resources.count, n  # ~1,400: 24 events per resource per 3.5 s cycle, over 10 s
    assert changes["resource_id"].tolist() == [rid for _, rid in schedule]
    # ... and at the schedule's times: each change's lateness against its offset (relative to the least late one:
    # the generator's start is not recorded) is the producer's scheduling error. Lateness only adds, so its median
    # stays ~1 ms unless most changes are late, i.e. the producer is saturated; a rare stall moves the max (27 ms
    # in one quiet run here, more than the 20 ms a gap was once allowed), never the median. The bound is the
    # design's: half the smallest distance between two different gaps of the trace (8.3, 83.3, 145.3, 658.3 ms
    # live), within which every gap is still told apart from its neighbours; a replay at a wrong pace drifts past
    # it within seconds (1% over the 10 s of changes: 100 ms).
    gaps = np.unique(np.round(np.diff(np.concatenate([trace.times, [trace.cycle]])) / scale, 9))
    half_separation = float(np.diff(gaps).min()) / 2  # 31 ms
    late = changes["t_change_ns"].to_numpy() / 1e9 - np.array([t for t, _ in schedule])
    late -= late.min()
    assert float(np.median(late)) < half_separation, (np.median(late), half_separation)

    for mode in ("polling", "webhook"):
        assert summary["modes"][mode]["lost"] == 0
    etag = summary["modes"]["polling_etag"]
    assert etag["model"]["assumes"] == "poisson_same_mean_rate"
    assert "Poisson with the same mean rate" in etag["model"]["note"]
    assert summary["workload"]["rate_per_resource"] == pytest.approx(trace.mean_rate * scale)
