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
from typing import Iterator

import psutil
import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "bench.cli"]
# The default scenario sped up twice: T = 0.5 s, lambda = 0.2/s per resource; lambda*T as in the default.
SHORT = ["--duration", "12", "--set", "run.warmup=2s", "--set", "run.drain=2s", "--set", "run.time_scale=2"]
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
    assert summary["changes"] > 60  # 50 resources x 0.2/s x 12 s = 120 expected


def test_nothing_lost_by_webhook_or_cursor(summary: dict) -> None:
    assert summary["modes"]["webhook"]["lost"] == 0
    assert summary["modes"]["polling"]["lost"] == 0
    assert summary["modes"]["webhook"]["observed"] == summary["changes"]


def binomial_two_sided_p(k: int, n: int, p: float) -> float:
    """Exact two-sided binomial test (sum of outcomes no more likely than k)."""
    pmf = [math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(n + 1)]
    return min(1.0, sum(x for x in pmf if x <= pmf[k] * (1 + 1e-9)))


def test_wasted_fraction_matches_the_model(summary: dict) -> None:
    # ETag polling: ~1200 polls at p = e^-0.1; the normal approximation holds: within 3 SE of the model.
    m = summary["modes"]["polling_etag"]
    p0, n = m["model"]["wasted_fraction"], m["requests"]
    assert n > 600
    assert abs(m["wasted_fraction"] - p0) <= 3 * math.sqrt(p0 * (1 - p0) / n), (m["wasted_fraction"], p0, n)
    # Cursor feed: ~24 polls at p = e^-5 = 0.7%: too few for a normal approximation, so an exact test.
    c = summary["modes"]["polling"]
    assert binomial_two_sided_p(c["empty_requests"], c["requests"], c["model"]["wasted_fraction"]) > 0.0027


def test_polling_latency_near_half_the_interval(summary: dict) -> None:
    for mode in ("polling", "polling_etag"):
        m = summary["modes"][mode]
        model = m["model"]["latency_mean_ms"]  # T/2 (or its state-polling form) + measured round trip
        assert abs(m["latency_ms"]["mean"] - model) <= 0.2 * model, (mode, m["latency_ms"], model)


def test_webhooks_detect_sooner_than_polls(summary: dict) -> None:
    p50 = {mode: m["latency_ms"]["p50"] for mode, m in summary["modes"].items()}
    assert p50["webhook"] < p50["polling"] and p50["webhook"] < p50["polling_etag"]


def test_manifest_makes_the_run_reproducible(default_run: tuple[Path, str]) -> None:
    run_dir = default_run[0]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["seed"] == 42 and manifest["time_scale"] == 2.0 and manifest["partial"] is False
    assert manifest["scenario"]["polling"]["interval"] == 1.0  # nominal; the live interval is 0.5 s
    w = manifest["window"]
    assert w["start_ns"] < w["end_ns"] < w["grace_end_ns"] and abs(w["duration_s"] - 12) < 0.5
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
    time.sleep(4)  # into the measured window; then interrupt like a terminal's Ctrl-C would
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
