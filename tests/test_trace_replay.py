"""Trace replay, live: `scenarios/trace_git.toml` replays a git history through the producer, and the changes it
made are the trace's, gap for gap."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support import run_command

from bench.traces import trace_from_csv, trace_from_git

pytestmark = [pytest.mark.integration, pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")]



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

    # every gap between two changes of one resource is a gap of the trace (scaled), up to the producer's
    # scheduling error: the stream replayed is the recorded one, not a Poisson stand-in
    scale = manifest["time_scale"]
    gaps = np.diff(np.concatenate([trace.times, [trace.cycle]])) / scale
    changes = pd.read_parquet(run_dir / "changes.parquet")
    checked = 0
    for _, own in changes.groupby("resource_id"):
        seen = np.diff(np.sort(own["t_change_ns"].to_numpy())) / 1e9
        if seen.size:
            nearest = np.abs(seen[:, None] - gaps[None, :]).min(axis=1)
            assert nearest.max() < 0.02, nearest.max()  # 20 ms of scheduling error at most
            checked += seen.size
    assert checked > 0

    for mode in ("polling", "webhook"):
        assert summary["modes"][mode]["lost"] == 0
    etag = summary["modes"]["polling_etag"]
    assert etag["model"]["assumes"] == "poisson_same_mean_rate"
    assert "Poisson with the same mean rate" in etag["model"]["note"]
    assert summary["workload"]["rate_per_resource"] == pytest.approx(trace.mean_rate * scale)
