"""`hookbench load --master` with two `hookbench load --worker` processes on 127.0.0.1 (Locust master/worker mode):
the master's summary has its steps, and what it aggregated equals the sum over the workers. The workers' rows reach
the master over Locust's messaging (scenarios/_wire.py): each worker keeps its own copy in a directory of its own
(HOOKBENCH_WORKER_RECORDS), and the master's files hold exactly those rows; one worker's clock is skewed by the
test hook (HOOKBENCH_CLOCK_SKEW_NS) and the master measures that skew."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from support import REPO, read_jsonl

from bench.cli import main
from bench.orchestration.distributed import free_port
from bench.wire import LOCAL_COPY_ENV, SKEW_ENV

pytestmark = pytest.mark.integration

SCENARIO = "scenarios/overload_producer.toml"
# What a local `hookbench load` summary has (tests/test_load_integration.py runs those): the master's has the same.
SUMMARY_KEYS = {"format_version", "kind", "scenario", "seed", "target", "partial", "status", "changes", "modes",
                "duration_s", "harness_saturated", "target_server", "unavailable", "saturation", "overload", "records",
                "clocks"}
SKEW_NS = 250_000_000  # worker A's clock reads 250 ms ahead (the test hook shifts every time it reports)


def _start(argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "bench.cli", *argv], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env={**os.environ, **(env or {})})


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: the servers and Locust processes it started too
    proc.wait()


def test_master_and_two_workers(tmp_path: Path) -> None:
    port = free_port()
    out_dir, own = tmp_path / "runs", {"A": tmp_path / "worker-A", "B": tmp_path / "worker-B"}
    procs = [_start(["load", SCENARIO, "--master", "--expect-workers", "2", "--master-bind-port", str(port),
                     "--expect-workers-max-wait", "60", "--duration", "12", "--set", "load.steps=3",
                     "--set", "load.settle=1s", "--out", str(out_dir)])]
    try:
        for name, env in (("A", {SKEW_ENV: str(SKEW_NS)}), ("B", {})):
            procs.append(_start(["load", SCENARIO, "--worker", "--master-host", "127.0.0.1", "--master-port",
                                 str(port)], env={**env, LOCAL_COPY_ENV: str(own[name])}))
        master_out, _ = procs[0].communicate(timeout=180)
        worker_outs = [p.communicate(timeout=60)[0] for p in procs[1:]]
    finally:
        for proc in procs:
            _stop(proc)
    assert procs[0].returncode == 0, master_out[-3000:]
    assert "waiting for Locust workers" in master_out and "2 Locust worker(s) connected" in master_out
    for proc, out in zip(procs[1:], worker_outs):
        assert proc.returncode == 0, out[-3000:]  # each worker exits once the master stops it
        # the master acknowledged exactly the rows the worker declared (scenarios/_wire.py warns otherwise)
        assert "the master acknowledged every row" in out and "never acknowledged" not in out, out[-3000:]

    (run_dir,) = [d for d in out_dir.iterdir() if d.is_dir()]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary) == SUMMARY_KEYS and summary["partial"] is False and summary["status"] == "complete"
    steps = summary["overload"]["steps"]
    assert [s["step"] for s in steps] == [0, 1, 2] and all(s["achieved_rps"] > 0 for s in steps)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["locust_master"]["expect_workers"] == 2 and manifest["locust_processes"] == 0
    assert manifest["clocks"]["single_clock"] is False and "clock" in manifest["clocks"]["note"]

    # Per worker, from the files the master wrote of what each worker sent (one per worker process, one worker
    # index in each) ...
    files = {p.name: read_jsonl(p) for p in (run_dir / "records").glob("fleet-*.jsonl")}
    assert len(files) == 2 and all(re.fullmatch(r"fleet-w[01]-\d+\.jsonl", name) for name in files)
    # ... which are the rows each worker kept in its own directory: they came over the wire, line for line
    pid_of = {}
    for name, path in own.items():
        (copy,) = path.glob("fleet-*.jsonl")
        pid_of[name] = int(copy.stem.split("-")[1])
        (master_file,) = (run_dir / "records").glob(f"fleet-w*-{pid_of[name]}.jsonl")
        assert master_file.read_bytes() == copy.read_bytes() and copy.stat().st_size > 0
    per_file = {name: {r["worker"] for r in rows} for name, rows in files.items()}
    assert sorted(w for ws in per_file.values() for w in ws) == [0, 1]
    rows_per_worker = Counter(r["worker"] for rows in files.values() for r in rows)
    assert min(rows_per_worker.values()) > 0
    # ... and aggregated on the master: Locust's own request count (the sum of the workers' stats reports), the
    # fleet's custom metrics (events.report_to_master / worker_report), and the rows the analysis read.
    # Counts, not times: each worker sends Locust's stats report before its final totals, so the master has counted
    # every request when it acknowledges them (not only if the report sent at "quit" beats Locust's 0.5 s).
    rec = summary["records"]
    assert rec["per_worker"] == {str(w): n for w, n in sorted(rows_per_worker.items())}
    assert rec["locust_requests"] == sum(rows_per_worker.values()) == rec["rows"] and rec["complete"] is True
    assert rec["lost"] == rec["surplus"] == rec["unacknowledged"] == [] and rec["wire"]["compression"] > 1
    for w, entry in rec["wire"]["workers"].items():  # declared = received by the master = read = Locust's count
        assert entry["declared"] == entry["received"] == entry["read"] == entry["locust_requests"] == \
            rows_per_worker[int(w)]
    wire_file = json.loads((run_dir / "records" / "wire.json").read_text())["workers"]
    for entry in wire_file.values():  # the end-of-run exchange, as the master saw it: asked, answered, acknowledged
        final = entry["final"]
        assert final["asked"] is True and final["done"] is True and final["dones"] >= 1, final
        assert final["acked_rows"] == sum(entry["received"].values()) and final["ack_error"] is None, final
    index_of = {name: next(int(w) for w, e in rec["wire"]["workers"].items() if e["pid"] == pid)
                for name, pid in pid_of.items()}

    # Worker health: both workers, once a second, over the same channel
    health = read_jsonl(run_dir / "records" / "worker_health.jsonl")
    assert {h["worker"] for h in health} == {0, 1} and all(h["cpu_pct"] is not None for h in health)
    assert set(summary["saturation"]["workers"]) == {"0", "1"}

    # Clocks: offsets at start and end in the manifest; the injected skew recovered within its uncertainty. Exact,
    # not statistical: an exchange's offset errs by at most half its delay (both workers share this machine's clock
    # and the hook adds an exact skew); 2e-6 ms for the manifest's rounding of both figures to the nanosecond.
    clocks = manifest["clocks"]["workers"]
    assert set(clocks) == {"0", "1"} and all({"start", "end"} <= set(c) for c in clocks.values())
    for phase in ("start", "end"):
        a, b = clocks[str(index_of["A"])][phase], clocks[str(index_of["B"])][phase]
        assert abs(a["offset_ms"] - SKEW_NS / 1e6) <= a["uncertainty_ms"] + 2e-6, a
        assert abs(b["offset_ms"]) <= b["uncertainty_ms"] + 2e-6, b
    # The skewed worker's poll latencies (its receive time minus the producer's change time) read 250 ms too long
    # until corrected. Exact arithmetic, no spread: each of A's rows is moved by the offset interpolated between
    # its start and end estimates (each within its uncertainty of the injected 250 ms, checked above), so every
    # order statistic, p50 included, moves by an amount between the two (0.1 ms: the rows' latency_ms rounding).
    # B's offset is within its uncertainty: not applied, its latencies unchanged. (The two workers' corrected
    # medians are not compared with each other: each worker's own scheduling delay is in its latencies, and how
    # much CPU each process got on a busy machine is no property of the clocks.)
    lat = {name: summary["clocks"]["workers"][str(i)]["latency_ms"] for name, i in index_of.items()}
    # enough latencies for a median: 5 changes/s for 12 s, each seen by every cursor poller of the worker
    assert lat["A"]["raw"]["n"] > 20 and lat["B"]["raw"]["n"] > 20
    a_offsets = [clocks[str(index_of["A"])][phase]["offset_ms"] for phase in ("start", "end")]
    moved = lat["A"]["raw"]["p50"] - lat["A"]["corrected"]["p50"]
    assert min(a_offsets) - 0.1 <= moved <= max(a_offsets) + 0.1, (moved, a_offsets)
    assert summary["clocks"]["workers"][str(index_of["A"])]["applied"] is True
    assert summary["clocks"]["workers"][str(index_of["B"])]["applied"] is False
    assert lat["B"]["raw"] == lat["B"]["corrected"]
    metrics = json.loads((run_dir / "records" / "fleet-metrics.json").read_text())
    assert metrics["workers"] == 2 and metrics["complete"] is True
    assert {int(w): c["polls"] for w, c in metrics["per_worker"].items()} == dict(rows_per_worker)
    assert metrics["polls"] == sum(rows_per_worker.values())


def test_master_gives_up_without_workers(tmp_path: Path) -> None:
    proc = _start(["load", SCENARIO, "--master", "--expect-workers", "2", "--master-bind-port", str(free_port()),
                   "--expect-workers-max-wait", "2", "--out", str(tmp_path)])
    try:
        out, _ = proc.communicate(timeout=90)
    finally:
        _stop(proc)
    assert proc.returncode == 1, out[-3000:]
    assert "only 0 of 2 Locust worker(s) connected within 2 s" in out and "Traceback" not in out
    (run_dir,) = [d for d in tmp_path.iterdir() if d.is_dir()]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["partial"] is True and summary["status"] == "partial"


@pytest.mark.parametrize(("argv", "message"), [
    (["--worker"], "--worker needs the master's address"),
    (["--master", "--processes", "2"], "--processes = 2: cannot be combined with --master"),
    (["--master", "--worker", "--master-host", "h"], "cannot be combined with --master"),
    (["--expect-workers", "2"], "--expect-workers = 2: only applies with --master"),
    (["--master-host", "h"], "--master-host = 'h': only applies with --worker"),
    (["--worker", "--master-host", "h", "--duration", "5"], "--duration = 5.0: does not apply with --worker"),
    (["--master", "--master-bind-port", "70000"], "must be an integer from 1 to 65535"),
])
def test_bad_master_worker_flags(argv: list[str], message: str, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    assert main(["load", SCENARIO, *argv]) == 2  # refused before anything starts
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err
