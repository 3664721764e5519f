"""Trace replay: recorded change streams from a CSV or a git history, replayed cyclically at their mean rate."""

from __future__ import annotations

import itertools
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from bench.config import load_scenario
from bench.traces import TraceError, load_trace, trace_from_csv, trace_from_git, write_trace_csv
from bench.workload import change_schedule, change_times

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str, name: str = "t.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_csv_with_header_comments_unsorted_lines(tmp_path: Path) -> None:
    tr = trace_from_csv(write(tmp_path, "unix_time\n# a comment\n1000.5\n\n1000\n1010\n"))
    assert tr.times.tolist() == [0.0, 0.5, 10.0]
    assert tr.start_unix == 1000.0 and tr.ids is None and tr.events == 3
    assert tr.cycle == pytest.approx(15.0)  # span 10 plus one mean gap of 5
    assert tr.mean_rate == pytest.approx(3 / 15)


def test_csv_ids_are_numbered_by_first_appearance(tmp_path: Path) -> None:
    tr = trace_from_csv(write(tmp_path, "5,b\n1,a\n3,b\n7,c\n"))
    assert tr.times.tolist() == [0, 2, 4, 6]
    assert tr.ids is not None and tr.ids.tolist() == [0, 1, 1, 2]  # a first (t=1), then b, then c
    assert tr.distinct_ids == 3


def test_written_trace_reads_back_the_same(tmp_path: Path) -> None:
    tr = trace_from_csv(write(tmp_path, "5,b\n1,a\n3,b\n"))
    back = trace_from_csv(write_trace_csv(tr, tmp_path / "copy.csv"))
    assert back.sha256 == tr.sha256


@pytest.mark.parametrize("text,fragment", [
    ("1000\nabc\n", "line 2: 'abc' is not a Unix time"),
    ("1000\n", "1 event(s)"),
    ("1000\n1001,x\n", "line 2: has a resource id while earlier lines do not"),
    ("1000,1,2\n1001\n", "line 1: 3 columns"),
    ("1000\n-5\n", "line 2: '-5' is not a Unix time >= 0"),
    ("1000\ninf\n", "line 2: 'inf' is not a Unix time >= 0"),
])
def test_bad_csv_names_file_and_line(tmp_path: Path, text: str, fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(TraceError) as e:
        trace_from_csv(path)
    assert str(path) in str(e.value) and fragment in str(e.value)


def test_missing_sources(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="file not found"):
        trace_from_csv(tmp_path / "nope.csv")
    with pytest.raises(TraceError, match="not a directory"):
        trace_from_git(tmp_path / "nope")
    with pytest.raises(TraceError, match="exactly one"):
        load_trace()


needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


@needs_git
def test_git_history_of_this_project() -> None:
    """The project's own history: one event per commit reachable from HEAD."""
    tr = trace_from_git(REPO)
    commits = int(subprocess.run(["git", "-C", str(REPO), "rev-list", "--count", "HEAD"], capture_output=True,
                                 text=True, check=True).stdout)
    assert tr.events == commits
    assert np.all(np.diff(tr.times) >= 0) and tr.times[0] == 0


@needs_git
def test_git_outside_a_repository(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="git log"):
        trace_from_git(tmp_path)


def test_replay_keeps_the_mean_rate_and_the_order_of_gaps(tmp_path: Path) -> None:
    """Without ids each resource replays the whole trace from its own offset: over whole cycles it sees
    exactly the trace's events, and its gaps are the trace's gaps (scaled)."""
    rng = np.random.default_rng(3)
    tr = trace_from_csv(write(tmp_path, "\n".join(str(1000 + x) for x in (0, 1, 2, 30, 31, 60, 95))))
    scale, resources, cycles = 10.0, 4, 6
    horizon = tr.cycle / scale * cycles
    t, r = change_times("trace", resources, horizon, rng, trace=tr, trace_scale=scale)
    assert np.all(np.diff(t) >= 0)
    assert np.bincount(r, minlength=resources).tolist() == [tr.events * cycles] * resources
    own = t[r == 2]
    trace_gaps = np.sort(np.diff(np.concatenate([tr.times, [tr.cycle]])) / scale)
    seen = np.sort(np.diff(own)[: tr.events])  # any tr.events consecutive gaps are one cycle's gaps, rotated
    assert np.allclose(seen, trace_gaps)


def test_trace_with_ids_maps_to_resources(tmp_path: Path) -> None:
    tr = trace_from_csv(write(tmp_path, "0,a\n1,b\n2,c\n3,a\n"))
    t, r = change_times("trace", 2, tr.cycle, np.random.default_rng(1), trace=tr)
    assert t.tolist() == [0, 1, 2, 3] and r.tolist() == [0, 1, 0, 0]  # ids a,b,c -> 0,1,2 -> mod 2


def test_live_schedule_of_a_trace_is_exact_across_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.workload as workload
    tr = trace_from_csv(write(tmp_path, "\n".join(str(x) for x in (0, 1, 5, 9))))
    monkeypatch.setattr(workload, "BLOCK_EVENTS", 3)  # many small blocks
    events = list(itertools.islice(change_schedule("trace", 1, 7, trace=tr), 40))
    times = np.array([e[0] for e in events])
    assert np.all(np.diff(times) > 0)
    gaps = np.round(np.diff(times), 9)
    assert set(gaps.tolist()) <= {1.0, 4.0, 3.0}  # the trace's gaps (9 -> 12 wraps with the mean gap 3)


def test_scenario_trace_path_is_relative_to_the_scenario(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub", "100\n160\n220\n", "times.csv")
    sc = tmp_path / "sub" / "s.toml"
    sc.write_text('name = "t"\n[run]\nduration = "10s"\n[resources]\ncount = 2\n[changes]\nprocess = "trace"\n'
                  'trace = "times.csv"\n[polling]\ninterval = "1s"\n')
    s = load_scenario(sc)
    assert s.changes.trace == str((tmp_path / "sub" / "times.csv").resolve())
    assert s.changes.rate_per_resource(2) == pytest.approx(3 / 180)
    again = load_scenario(sc, ["run.time_scale=10"])
    assert again.live_change_rate == pytest.approx(10 * 3 / 180)
