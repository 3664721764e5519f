"""`hookbench run` end to end: real producer, receiver and Locust processes on 127.0.0.1.

One short run of the default scenario (time-scaled x2 so it fits in ~25 s) is shared by the checks on
its output; separate runs check Ctrl-C and a crashing child. Every test ends with no process left.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd
import psutil
import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "bench.cli"]
# The default scenario sped up twice: T = 0.5 s, lambda = 0.2/s per resource; lambda*T as in the default.
SHORT = ["--duration", "12", "--set", "run.warmup=2s", "--set", "run.drain=2s", "--set", "run.time_scale=2"]
WINDOW_S, RESOURCES, LAM, T = 12.0, 50, 0.2, 0.5  # what SHORT makes of the default scenario, live
K = 4.5  # standard errors: a two-sided false failure about 7e-6 (normal), the exact tests use P < 1e-5
DESIGN_MODE_KEYS = {"kind", "requests", "empty_requests", "wasted_fraction", "observed", "lost", "duplicates",
                    "coalesced", "requests_per_change", "bytes_per_change", "cpu_s_per_change", "latency_ms",
                    "model"}


def only_run_dir(out: Path) -> Path:
    dirs = [d for d in out.iterdir() if d.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]


def assert_no_children_left(run_dir: Path) -> None:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert set(manifest["processes"]) >= {"producer", "receiver"}
    for name, proc in manifest["processes"].items():
        assert proc["exit_code"] is not None, name
        try:
            cmd = " ".join(psutil.Process(proc["pid"]).cmdline())
        except psutil.Error:
            continue  # gone
        assert "servers." not in cmd and "locust" not in cmd, f"{name} (pid {proc['pid']}) still running: {cmd}"


def start(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(CLI + args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def finish(proc: subprocess.Popen[str], timeout: float) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"hookbench run did not finish in {timeout} s:\n{out}\n{err}")
    return proc.returncode, out, err


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("runs")
    proc = start(["run", "scenarios/default.toml", "--out", str(out), *SHORT])
    code, stdout, stderr = finish(proc, 120)
    assert code == 0, f"exit {code}\n{stdout}\n{stderr}"
    return only_run_dir(out), stdout


@pytest.fixture(scope="module")
def summary(default_run: tuple[Path, str]) -> dict:
    return json.loads((default_run[0] / "summary.json").read_text())


def test_every_output_file_is_written(default_run: tuple[Path, str]) -> None:
    run_dir, stdout = default_run
    for name in ["manifest.json", "summary.json", "changes.parquet", "observations.parquet", "polls.parquet",
                 "deliveries.parquet", "detections.parquet", "report.md", "report.html", "locust_stats.csv"]:
        assert (run_dir / name).is_file(), name
    figures = sorted(p.name for p in (run_dir / "figures").glob("*.png"))
    assert figures == ["frontier.png", "latency_cdf.png", "requests_per_change.png", "wasted_fraction.png"]
    html = (run_dir / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4
    assert f"report: {run_dir / 'report.html'}" in stdout


def test_summary_has_design_keys_for_each_mode(summary: dict) -> None:
    assert summary["format_version"] == 1 and summary["partial"] is False
    assert summary["kind"] == "run" and summary["status"] == "complete"
    assert {"scenario", "duration_s", "seed", "changes", "harness_saturated", "modes"} <= summary.keys()
    assert set(summary["modes"]) == {"polling", "polling_etag", "webhook"}
    for m in summary["modes"].values():
        assert DESIGN_MODE_KEYS <= m.keys()
    # Poisson changes: 50 resources x 0.2/s x 12 s = 120 expected (sd 11); 5 sd below is 65
    expected = RESOURCES * LAM * WINDOW_S
    assert summary["changes"] >= expected - 5 * math.sqrt(expected)


def test_nothing_lost_by_webhook_or_cursor(summary: dict) -> None:
    # a clean run: a change at the window's end has the 2 s of drain, 4 poll intervals, to be seen
    assert summary["modes"]["webhook"]["lost"] == 0
    assert summary["modes"]["polling"]["lost"] == 0
    assert summary["modes"]["webhook"]["observed"] == summary["changes"]


def poisson_binomial_p(k: int, ps: np.ndarray) -> float:
    """Exact two-sided test of k successes among independent trials of probabilities `ps` (the sum of outcomes no
    more likely than k). With all ps equal it is the exact binomial test."""
    pmf = np.ones(1)
    for p in ps:
        pmf = np.concatenate([pmf * (1 - p), [0.0]]) + np.concatenate([[0.0], pmf * p])
    return float(min(1.0, pmf[pmf <= pmf[k] * (1 + 1e-9)].sum()))


def poll_intervals(run_dir: Path, mode: str, *, counted: bool) -> pd.DataFrame:
    """`mode`'s polls, each with `gap_s`: the time since the same user's previous poll was read by the producer, and
    `rtt_s`. The producer reads somewhere between send and receipt: each read is taken at the midpoint, +-rtt/2.
    `counted`: the polls the summary counts (not a user's first, intended in the window); else every poll whose gap
    overlaps the window (the polls that observed the window's changes)."""
    polls = pd.read_parquet(run_dir / "polls.parquet")
    w = json.loads((run_dir / "manifest.json").read_text())["window"]
    mine = polls[polls["mode"] == mode].sort_values(["user", "t_send_ns"]).copy()
    mine["read_ns"] = (mine["t_send_ns"] + mine["t_recv_ns"]) // 2
    mine["gap_s"] = mine.groupby("user")["read_ns"].diff() / 1e9
    mine["rtt_s"] = (mine["t_recv_ns"] - mine["t_send_ns"]) / 1e9
    if counted:
        out = mine[~mine["initial"] & (mine["t_intended_ns"] >= w["start_ns"]) & (mine["t_intended_ns"] < w["end_ns"])]
        assert out["gap_s"].notna().all()  # every counted poll has a predecessor: the user's first is not counted
        return out
    gap_start = mine["read_ns"] - mine["gap_s"] * 1e9
    return mine[mine["gap_s"].notna() & (mine["read_ns"] > w["start_ns"]) & (gap_start < w["end_ns"])]


def test_wasted_fraction_matches_the_model(summary: dict, default_run: tuple[Path, str]) -> None:
    """A poll is empty when no change happened since the previous one: with Poisson changes at rate lam seen by
    the poll, with probability e^(-lam*gap). The model's gap is T; on a busy machine a late poll has a longer gap
    and the next one, sent on schedule, a shorter one, so each poll's probability comes from its own measured gap
    (gaps of exactly T give the model's e^(-lam*T)). Each count is then tested exactly against those
    probabilities (independent, since Poisson counts in disjoint gaps are): P < 1e-5 fails."""
    run_dir = default_run[0]
    for mode, lam in (("polling_etag", LAM), ("polling", LAM * RESOURCES)):  # a resource's changes; the whole feed
        m, polls = summary["modes"][mode], poll_intervals(run_dir, mode, counted=True)
        assert (len(polls), int(polls["empty"].sum())) == (m["requests"], m["empty_requests"])
        # ~1200 ETag polls (50 pollers x 12 s / 0.5 s), ~24 cursor polls; fewer only if the pollers fell behind
        assert m["requests"] >= (600 if mode == "polling_etag" else 12)
        ps = np.exp(-lam * polls["gap_s"].to_numpy(dtype=float))
        p = poisson_binomial_p(m["empty_requests"], ps)
        assert p > 1e-5, (mode, m["empty_requests"], m["requests"], float(ps.sum()), m["model"]["wasted_fraction"])


def expected_latency_bounds_ms(polls: pd.DataFrame, lam: float, state: bool) -> tuple[float, float]:
    """The mean detection latency the measured poll schedule implies for Poisson changes, as (low, high) ms: the
    producer's read of each poll lies between its send and its receipt, which the observation time is.

    A gap g before a poll holds changes uniformly. Cursor feed: every change is observed, lam*g of them, each on
    average g/2 before the read. State (ETag) polling: a change is observed only if it is the gap's last, which
    happens with probability 1 - e^(-lam*g), on average 1/lam - g e^(-lam*g)/(1 - e^(-lam*g)) before the read
    (the model's formula, bench.model.poll_model). Then + (receipt - read): from 0 to the round trip."""
    g = polls["gap_s"].to_numpy(dtype=float)
    rtt = polls["rtt_s"].to_numpy(dtype=float)
    if state:
        weight = -np.expm1(-lam * g)
        before_read = 1 / lam - g * np.exp(-lam * g) / weight
    else:
        weight, before_read = g, g / 2
    base = float((weight * (before_read + rtt / 2)).sum() / weight.sum())
    spread = float((weight * rtt / 2).sum() / weight.sum())
    return (base - spread) * 1e3, (base + spread) * 1e3


def test_polling_latency_near_half_the_interval(summary: dict, default_run: tuple[Path, str]) -> None:
    """The mean latency is what the measured schedule implies (T/2, or its state-polling form, plus the round trip
    when every poll is on time) within K standard errors of a mean of this run's latencies (Poisson change times
    are independent given the schedule). A busy machine sends some polls late: that lengthens the latency the
    schedule implies, and is measured, not allowed for with a wider constant."""
    run_dir = default_run[0]
    detections = pd.read_parquet(run_dir / "detections.parquet")
    for mode, state in (("polling", False), ("polling_etag", True)):
        m = summary["modes"][mode]
        lat = detections.loc[detections["mode"] == mode, "latency_ms"].to_numpy(dtype=float)
        assert len(lat) == m["latency_ms"]["n"] and math.isclose(lat.mean(), m["latency_ms"]["mean"])
        se = lat.std(ddof=1) / math.sqrt(len(lat))
        lam = LAM if state else LAM * RESOURCES
        low, high = expected_latency_bounds_ms(poll_intervals(run_dir, mode, counted=False), lam, state)
        assert low - K * se <= m["latency_ms"]["mean"] <= high + K * se, (mode, m["latency_ms"], low, high, se,
                                                                           m["model"]["latency_mean_ms"])


def test_webhooks_detect_sooner_than_polls(summary: dict) -> None:
    # a delivery takes milliseconds, a poll's median is half its 0.5 s interval (~120 changes): only a machine
    # stalled for a quarter of a second at most changes could reverse them
    p50 = {mode: m["latency_ms"]["p50"] for mode, m in summary["modes"].items()}
    assert p50["webhook"] < p50["polling"] and p50["webhook"] < p50["polling_etag"]


def test_manifest_makes_the_run_reproducible(default_run: tuple[Path, str]) -> None:
    run_dir = default_run[0]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["seed"] == 42 and manifest["time_scale"] == 2.0 and manifest["partial"] is False
    assert manifest["scenario"]["polling"]["interval"] == 1.0  # nominal; the live interval is 0.5 s
    w = manifest["window"]
    # Between the producer's two marks the orchestrator sleeps the whole 12 s (monotonic clock; 10 ms for the wall
    # clock's slew, at most 500 ppm). After it the window can only overrun, by the last once-a-second tick (its
    # /stats request gives up after 2 s) and the end mark's request (5 s): never by the 18 s of a nominal 30 s run.
    assert w["start_ns"] < w["end_ns"] < w["grace_end_ns"] and WINDOW_S - 0.01 <= w["duration_s"] <= WINDOW_S + 7
    assert {"python", "aiohttp", "locust", "pandas"} <= manifest["versions"].keys()
    assert manifest["machine"]["cpu_count"] >= 1 and manifest["command_line"]


def test_processes_are_gone(default_run: tuple[Path, str]) -> None:
    assert_no_children_left(default_run[0])


def test_report_rebuilds_from_the_run_directory(default_run: tuple[Path, str]) -> None:
    run_dir = default_run[0]
    (run_dir / "report.md").unlink()
    done = subprocess.run(CLI + ["report", str(run_dir)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (run_dir / "report.md").read_text().startswith("# hookbench report: default")


def lines(path: Path) -> list[dict[str, Any]]:
    """The complete JSON lines of a file another process is still writing (a last, partial line is left out)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]


def wait_until(what: str, cond: Callable[[], bool], proc: subprocess.Popen[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"gave up after {timeout} s waiting for {what}"
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)


def wait_for(path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)


@pytest.fixture
def long_run(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """A run that would last a minute, handed over once Locust is polling; killed if the test did not end it.

    (Its children die with it: the orchestrator sets PR_SET_PDEATHSIG on each.)
    """
    out = tmp_path / "runs"
    proc = start(["run", "scenarios/default.toml", "--out", str(out), "--duration", "60", "--set", "run.warmup=1s"])
    try:
        wait_for(out, 15)
        run_dir = only_run_dir(out)
        deadline = time.monotonic() + 40
        while not any(p.name.startswith("polls-") for p in (run_dir / "records").glob("*.jsonl")):
            assert time.monotonic() < deadline, "Locust never started polling"
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        yield proc, run_dir
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_ctrl_c_flushes_what_was_measured(long_run: tuple[subprocess.Popen[str], Path]) -> None:
    proc, run_dir = long_run
    records = run_dir / "records"

    def window_has_a_change_and_an_etag_poll() -> bool:
        start = next((m for m in lines(records / "marks.jsonl") if m.get("mark") == "window_start"), None)
        if start is None:
            return False
        # the producer's change count passed the one its window-start mark holds: a change inside the window
        changed = any(e.get("event") == "stats" and e["t_ns"] > start["t_ns"] and e["changes"] > start["changes"]
                      for e in lines(records / "events.jsonl"))
        polled = any(r.get("mode") == "polling_etag" and r["t_intended_ns"] >= start["t_ns"]
                     for f in records.glob("polls-*.jsonl") for r in lines(f))
        return changed and polled

    # into the measured window (waited for, not slept for); then interrupt like a terminal's Ctrl-C would
    wait_until("a change and an ETag poll in the window", window_has_a_change_and_an_etag_poll, proc, 40)
    os.kill(proc.pid, signal.SIGINT)
    code, stdout, stderr = finish(proc, 60)
    assert code == 130, stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["partial"] is True and summary["status"] == "interrupted" and summary["changes"] > 0
    assert summary["modes"]["polling_etag"]["requests"] > 0
    assert "[PARTIAL]" in stdout and (run_dir / "report.html").is_file()
    assert (run_dir / "records" / "marks.jsonl").exists()
    assert_no_children_left(run_dir)


def test_a_crashing_child_stops_the_run_cleanly(long_run: tuple[subprocess.Popen[str], Path]) -> None:
    proc, run_dir = long_run
    receiver = next(p for p in psutil.Process(proc.pid).children() if "servers.receiver" in " ".join(p.cmdline()))
    receiver.kill()  # a child we started (through hookbench), by its PID
    code, stdout, stderr = finish(proc, 60)
    assert code == 1
    assert "receiver" in stderr and "exited unexpectedly" in stderr and "Traceback" not in stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["partial"] is True and summary["status"] == "partial"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert "receiver" in manifest["error"] and manifest["status"] == "partial"
    assert_no_children_left(run_dir)
