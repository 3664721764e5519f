"""The load locustfiles (scenarios/fleet.py, storm.py, ramp.py) run the plain Locust way against real servers.

Every Locust run is bounded (-t, or the ramp's own length) and a subprocess timeout; every process
started here is stopped here. Master ports are picked free on 127.0.0.1: Locust's default (5557, bound
on every interface) may belong to another run on the machine, whose master our workers would join.
"""

from __future__ import annotations

import collections
import http.server
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from support import read_jsonl, start_server, stop_server

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
LOCUST = [sys.executable, "-m", "locust"]
FLEET_KEYS = {"mode", "user", "worker", "resource_id", "t_intended_ns", "t_send_ns", "t_recv_ns", "status", "empty",
              "n_new", "bytes", "error", "latency_ms", "followup", "initial"}
STORM_KEYS = {"user", "worker", "msg_id", "attempt", "t_intended_ns", "t_send_ns", "t_recv_ns", "status", "error",
              "retry_after_s"}
COUNTS = ("polls", "empty", "useful", "errors", "initial")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def locust(args: list[str], timeout: float = 40) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LOCUST, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def rows_by_file(directory: Path, stem: str) -> dict[str, list[dict[str, Any]]]:
    return {p.name: read_jsonl(p) for p in sorted(directory.glob(f"{stem}-*.jsonl"))}


@pytest.fixture
def producer(tmp_path: Path) -> Iterator[int]:
    proc, port = start_server(["serve", "producer", "--port", "0", "--set", "resources.count=50",
                               "--db", str(tmp_path / "producer.db")])
    try:
        yield port
    finally:
        stop_server(proc)


def check_fleet_metrics(rec: Path, rows: list[dict[str, Any]], workers: int) -> dict[str, Any]:
    metrics = json.loads((rec / "fleet-metrics.json").read_text())
    assert metrics["polls"] == len(rows)
    assert metrics["empty"] + metrics["useful"] + metrics["errors"] == metrics["polls"]
    assert metrics["empty"] == sum(r["empty"] for r in rows)
    assert metrics["errors"] == sum(r["error"] is not None for r in rows)
    assert metrics["initial"] == sum(r["initial"] for r in rows)
    assert metrics["workers"] == workers == len(metrics["per_worker"])
    assert metrics["complete"] is True  # every worker's last report came after it had stopped
    for key in COUNTS:
        assert metrics[key] == sum(w[key] for w in metrics["per_worker"].values()), key
    with_latency = sum(r["latency_ms"] is not None for r in rows)
    assert sum(metrics["latency_ms_hist"].values()) >= with_latency  # one sample per change; rows hold the max
    return metrics


def test_fleet_plain_run_polls_in_both_styles(producer: int, tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    done = locust(["-f", "scenarios/fleet.py", "--headless", "-u", "20", "-r", "20", "-t", "10s",
                   "--host", f"http://127.0.0.1:{producer}", "--hb-records", str(rec), "--only-summary"])
    assert done.returncode == 0, done.stderr[-3000:]
    files = rows_by_file(rec, "fleet")
    assert len(files) == 1
    rows = [r for rs in files.values() for r in rs]
    assert rows and all(set(r) == FLEET_KEYS for r in rows)
    assert all(r["error"] is None and r["status"] in (200, 304) for r in rows)
    by_mode = collections.defaultdict(set)
    for r in rows:
        by_mode[r["mode"]].add(r["user"])
    # cursor share 0.5: users alternate, so 10 of each; the 10 ETag users cover resources 0..9
    assert {m: len(u) for m, u in by_mode.items()} == {"polling": 10, "polling_etag": 10}
    assert {r["resource_id"] for r in rows if r["mode"] == "polling_etag"} == set(range(10))
    assert any(not r["empty"] and not r["initial"] for r in rows)  # changes at 0.1/s x 50 resources were seen
    assert any(r["status"] == 304 for r in rows)  # ETag users send If-None-Match
    # the schedule: one slot per interval (1 s, jitter +-0.1 s), whatever the replies
    for user in by_mode["polling_etag"]:
        slots = [r["t_intended_ns"] for r in rows if r["user"] == user and not r["followup"]]
        gaps = [(b - a) / 1e9 for a, b in zip(slots, slots[1:])]
        # intended times are computed (1 s +- 0.1 s jitter: exact bounds); their count is the design's: 20 users
        # spawned within 1 s (-r 20), a first slot within one interval, then one per <= 1.1 s until 10 s: >= 8
        assert 8 <= len(slots) <= 11 and all(0.79 <= g <= 1.21 for g in gaps), gaps
    metrics = check_fleet_metrics(rec, rows, workers=1)
    assert metrics["errors"] == 0 and metrics["useful"] > 0 and metrics["empty"] > 0


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int, Path]]:
    records = tmp_path / "receiver"
    proc, port = start_server(["serve", "receiver", "--port", "0", "--secret", SECRET, "--records", str(records)])
    try:
        yield proc, port, records
    finally:
        stop_server(proc)


def check_deliveries(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Every msg_id is one delivery: one user, one slot, attempts 1..n."""
    by_msg: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for r in rows:
        by_msg[r["msg_id"]].append(r)
    for attempts in by_msg.values():
        assert [a["attempt"] for a in attempts] == list(range(1, len(attempts) + 1))
        assert len({(a["user"], a["worker"], a["t_intended_ns"]) for a in attempts}) == 1
    return by_msg


def test_storm_with_step_ramp(receiver: tuple[subprocess.Popen[str], int, Path], tmp_path: Path) -> None:
    proc, port, receiver_records = receiver
    rec = tmp_path / "rec"
    done = locust(["-f", "scenarios/storm.py,scenarios/ramp.py", "--headless", "--host", f"http://127.0.0.1:{port}",
                   "--hb-secret", SECRET, "--hb-records", str(rec), "--hb-start-users", "2", "--hb-step-users", "2",
                   "--hb-steps", "3", "--hb-step-seconds", "3", "--only-summary"])
    assert done.returncode == 0, done.stderr[-3000:]
    stop_server(proc)  # flushes the audit log
    steps = read_jsonl(rec / "steps.jsonl")
    assert [(s["step"], s["users"]) for s in steps] == [(0, 2), (1, 4), (2, 6), (-1, 0)]
    gaps = [(b["t_ns"] - a["t_ns"]) / 1e9 for a, b in zip(steps, steps[1:])]
    # a step is seen at the shape's next tick: ticks come every 1 s (gevent.sleep(1) after each, so never early),
    # and 3 s is three of them: a gap is 3 s plus the ticks' drift; the bounds allow half a second either way
    assert all(2.5 <= g <= 4.5 for g in gaps), gaps
    rows = [r for rs in rows_by_file(rec, "storm").values() for r in rs]
    assert rows and all(set(r) == STORM_KEYS for r in rows)
    assert len({(r["user"], r["worker"]) for r in rows}) == 6
    by_msg = check_deliveries(rows)
    assert len(by_msg) == sum(r["attempt"] == 1 for r in rows)
    ok = [r for r in rows if 200 <= r["status"] < 300]
    audit = read_jsonl(receiver_records / "audit.jsonl")
    accepted = [a for a in audit if a["verdict"] == "accepted"]
    assert len(accepted) == len(ok) > 100  # 2, 4, 6 users x 3 s x 10/s = 360 offered; > 100 only says it ran
    assert sorted(a["msg_id"] for a in accepted) == sorted(r["msg_id"] for r in ok)  # each accepted once


def test_fleet_master_and_two_workers(producer: int, tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    port = free_port()
    procs: list[subprocess.Popen[str]] = []
    try:
        procs.append(subprocess.Popen(
            [*LOCUST, "-f", "scenarios/fleet.py", "--master", "--headless", "--expect-workers", "2", "-u", "10",
             "-r", "10", "-t", "5s", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
             "--host", f"http://127.0.0.1:{producer}", "--hb-records", str(rec), "--only-summary"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        for _ in range(2):
            procs.append(subprocess.Popen(
                [*LOCUST, "-f", "scenarios/fleet.py", "--worker", "--master-host", "127.0.0.1", "--master-port",
                 str(port), "--hb-records", str(rec)],
                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        outputs = [p.communicate(timeout=45) for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0], outputs[0][1][-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    files = rows_by_file(rec, "fleet")
    assert len(files) == 2  # one per worker, written by the master from what each sent (scenarios/_wire.py)
    rows = [r for rs in files.values() for r in rs]
    metrics = check_fleet_metrics(rec, rows, workers=2)
    per_file = [{r["worker"] for r in rs} for rs in files.values()]
    assert sorted(w for ws in per_file for w in ws) == [0, 1]  # one worker index per file
    for worker, counts in metrics["per_worker"].items():
        assert counts["polls"] == sum(r["worker"] == int(worker) for r in rows)
    users = [{r["user"] for r in rs} for rs in files.values()]
    assert not users[0] & users[1] and users[0] | users[1] == set(range(10))  # distinct, and dense


def test_fleet_processes_have_distinct_users(producer: int, tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    port = free_port()
    done = locust(["-f", "scenarios/fleet.py", "--headless", "--processes", "2", "-u", "10", "-r", "10", "-t", "5s",
                   "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port), "--master-port", str(port),
                   "--host", f"http://127.0.0.1:{producer}", "--hb-records", str(rec), "--only-summary"])
    assert done.returncode == 0, done.stderr[-3000:]
    files = rows_by_file(rec, "fleet")
    assert len(files) == 2
    users = [{r["user"] for r in rs} for rs in files.values()]
    assert not users[0] & users[1] and users[0] | users[1] == set(range(10))
    for rs in files.values():  # each process runs both styles (the indices rotate between workers)
        assert {r["mode"] for r in rs} == {"polling", "polling_etag"}
    rows = [r for rs in files.values() for r in rs]
    etag = {(r["user"], r["resource_id"]) for r in rows if r["mode"] == "polling_etag"}
    assert sorted(rid for _, rid in etag) == list(range(5))  # not every process on the same resources
    check_fleet_metrics(rec, rows, workers=2)


def test_ramp_stopped_by_sigterm_still_closes_its_records(producer: int, tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    proc = subprocess.Popen([*LOCUST, "-f", "scenarios/fleet.py,scenarios/ramp.py", "--headless", "--only-summary",
                             "--host", f"http://127.0.0.1:{producer}", "--hb-records", str(rec),
                             "--hb-start-users", "4", "--hb-steps", "3", "--hb-step-seconds", "20"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not list(rec.glob("fleet-[0-9]*.jsonl")):
            time.sleep(0.2)
        time.sleep(1.5)
        proc.terminate()  # SIGTERM in the middle of the first step
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    assert [(s["step"], s["users"]) for s in read_jsonl(rec / "steps.jsonl")] == [(0, 4), (-1, 0)]
    rows = [r for rs in rows_by_file(rec, "fleet").values() for r in rs]
    check_fleet_metrics(rec, rows, workers=1)


class _FlakyReceiver(http.server.BaseHTTPRequestHandler):
    """Per webhook-id: 503 with Retry-After: 1, then 500, then 204. /slow answers after 1 s."""

    protocol_version = "HTTP/1.1"
    seen: collections.Counter[str] = collections.Counter()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        if self.path == "/slow":
            time.sleep(1.0)
        msg_id = self.headers.get("webhook-id", "")
        n = self.seen[msg_id]
        self.seen[msg_id] += 1
        self.send_response((503, 500)[n] if n < 2 else 204)
        if n == 0:
            self.send_header("Retry-After", "1")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def flaky() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FlakyReceiver)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def test_storm_retries_like_a_sender_and_keeps_its_schedule(flaky: int, tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    done = locust(["-f", "scenarios/storm.py", "--headless", "-u", "1", "-r", "1", "-t", "4s", "--only-summary",
                   "--host", f"http://127.0.0.1:{flaky}", "--hb-secret", SECRET, "--hb-records", str(rec),
                   "--hb-rate", "2", "--hb-backoff", "0.1", "--exit-code-on-error", "0"])
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [r for rs in rows_by_file(rec, "storm").values() for r in rs]
    by_msg = check_deliveries(rows)
    complete = [a for a in by_msg.values() if len(a) == 3]
    assert complete
    for first, second, third in complete:
        assert (first["status"], first["error"], first["retry_after_s"]) == (503, "HTTP 503", 1.0)
        # Retry-After: 1 honoured: at least 1 s (less timer resolution); an upper bound only to tell it from the
        # wrong answers: the back-off (0.1 s) is caught below, waiting twice (2 s) above. Scheduling noise is late.
        assert 0.95 <= (second["t_send_ns"] - first["t_recv_ns"]) / 1e9 < 1.9
        assert (second["status"], second["retry_after_s"]) == (500, None)
        # back-off 0.1 s doubled after attempt 1 = 0.2 s; below 1 s, which honouring the old Retry-After would give
        assert 0.19 <= (third["t_send_ns"] - second["t_recv_ns"]) / 1e9 < 0.9
        assert (third["status"], third["error"]) == (204, None)
    slots = sorted(a[0]["t_intended_ns"] for a in by_msg.values())
    assert all(abs((b - a) / 1e9 - 0.5) < 1e-6 for a, b in zip(slots, slots[1:]))  # retries take no slot
    lateness = [(a[0]["t_send_ns"] - a[0]["t_intended_ns"]) / 1e9 for a in sorted(by_msg.values(),
                                                                                  key=lambda a: a[0]["t_intended_ns"])]
    # The schedule's arithmetic: slots every 1/rate = 0.5 s; one user sends one delivery at a time, and each takes
    # at least Retry-After (1 s) + the doubled back-off (0.2 s) = 1.2 s before the next can start. So a delivery
    # is never sent before its slot, and each one starts at least 1.2 - 0.5 = 0.7 s later against its slot than
    # the one before: the backlog grows while retries are pending. Noise (round trips, a busy machine) only makes
    # the sends later; the 50 ms below 0.7 s is for gevent's timers, which may fire a millisecond or so early.
    assert len(lateness) >= 2, lateness  # delivery 1 starts by ~1.7 s of the 4 s run
    assert lateness[0] >= -0.005, lateness  # not before its slot (beyond timer resolution)
    assert all(b - a >= 0.65 for a, b in zip(lateness, lateness[1:])), lateness
    assert "POST /hooks (retry)" in done.stdout + done.stderr

    slow = tmp_path / "slow"
    done = locust(["-f", "scenarios/storm.py", "--headless", "-u", "1", "-r", "1", "-t", "2s", "--only-summary",
                   "--host", f"http://127.0.0.1:{flaky}", "--hb-secret", SECRET, "--hb-records", str(slow),
                   "--hb-path", "/slow", "--hb-timeout", "0.3", "--hb-attempts", "2", "--hb-rate", "2"])
    assert done.returncode == 1  # Locust's exit code when requests failed
    rows = [r for rs in rows_by_file(slow, "storm").values() for r in rs]
    assert rows and all((r["status"], r["error"]) == (0, "timeout") for r in rows)
    assert {r["attempt"] for r in rows} == {1, 2}


def test_web_ui_lists_the_options(receiver: tuple[subprocess.Popen[str], int, Path], tmp_path: Path) -> None:
    _, port, _ = receiver
    web = free_port()
    proc = subprocess.Popen([*LOCUST, "-f", "scenarios/storm.py,scenarios/ramp.py", "--web-host", "127.0.0.1",
                             "--web-port", str(web), "--host", f"http://127.0.0.1:{port}", "--hb-secret", SECRET],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        import urllib.request

        deadline, page = time.monotonic() + 20, ""
        while time.monotonic() < deadline and not page:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{web}/", timeout=2) as resp:
                    page = resp.read().decode()
            except OSError:
                time.sleep(0.2)
        assert page, "the web UI never answered"
        for option in ("hb_rate", "hb_attempts", "hb_backoff", "hb_path", "hb_secret", "hb_start_users", "hb_steps",
                       "hb_recovery"):
            assert f'"{option}"' in page, option
        assert '"is_secret": true' in page  # --hb-secret is a masked field
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


@pytest.mark.parametrize("args,flag", [
    (["-f", "scenarios/fleet.py", "--hb-interval", "0"], "--hb-interval"),
    (["-f", "scenarios/fleet.py", "--hb-cursor-share", "1.5"], "--hb-cursor-share"),
    (["-f", "scenarios/storm.py"], "--hb-secret"),
    (["-f", "scenarios/storm.py", "--hb-secret", SECRET, "--hb-attempts", "0"], "--hb-attempts"),
    (["-f", "scenarios/storm.py", "--hb-secret", SECRET, "--hb-delays", "0.2,soon"], "--hb-delays"),
    (["-f", "scenarios/storm.py", "--hb-secret", SECRET, "--hb-delays", "-1"], "--hb-delays"),
    (["-f", "scenarios/storm.py", "--hb-secret", SECRET, "--hb-jitter", "1"], "--hb-jitter"),
    (["-f", "scenarios/storm.py,scenarios/ramp.py", "--hb-secret", SECRET, "--hb-step-seconds", "1"],
     "--hb-step-seconds"),
    # a replay copies an acknowledged delivery: without the producer's delivery records there is none to copy
    (["-f", "scenarios/attack.py", "--hb-secret", SECRET, "--hb-producer", "http://127.0.0.1:9"], "--hb-captured"),
])
def test_bad_options_exit_2_naming_the_option(args: list[str], flag: str) -> None:
    done = locust([*args, "--headless", "-t", "2s", "--host", "http://127.0.0.1:9"], timeout=30)
    assert done.returncode == 2, done.stderr[-2000:]
    assert flag in done.stderr and "Traceback" not in done.stderr
