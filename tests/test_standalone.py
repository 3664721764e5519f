"""The pieces also work on their own: `hookbench serve producer` + plain `locust -f scenarios/pollers.py`."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from bench.protocol import READY_PREFIX

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def producer(tmp_path: Path) -> Iterator[int]:
    proc = subprocess.Popen([sys.executable, "-m", "bench.cli", "serve", "producer", "--port", "0",
                             "--scenario", "scenarios/default.toml", "--set", "resources.count=4",
                             "--set", "changes.rate=2", "--db", str(tmp_path / "p.db")],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the server listens (or exits: empty line)
        assert line.startswith(READY_PREFIX), (line, proc.stderr.read() if proc.poll() is not None else "")
        yield int(line.split("port=")[1])
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_plain_locust_polls_a_served_producer(producer: int, tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    done = subprocess.run(
        [sys.executable, "-m", "locust", "-f", "scenarios/pollers.py", "--headless", "-u", "5", "-r", "5",
         "-t", "4s", "--host", f"http://127.0.0.1:{producer}", "--hb-resources", "4", "--hb-interval", "0.5",
         "--hb-records", str(rec), "--csv", str(tmp_path / "locust"), "--only-summary"],
        cwd=REPO, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(tmp_path / "locust_stats.csv") as fh:
        rows = {r["Name"]: r for r in csv.DictReader(fh)}
    assert int(rows["/changes"]["Request Count"]) >= 4
    assert int(rows["/resources/[id]"]["Request Count"]) >= 16
    assert int(rows["Aggregated"]["Failure Count"]) == 0
    polls = [json.loads(x) for p in rec.glob("polls-*.jsonl") for x in p.read_text().splitlines()]
    observations = [json.loads(x) for p in rec.glob("observations-*.jsonl") for x in p.read_text().splitlines()]
    assert {p["mode"] for p in polls} == {"polling", "polling_etag"}
    assert {p["resource_id"] for p in polls if p["mode"] == "polling_etag"} == {0, 1, 2, 3}
    assert any(not p["empty"] and not p["initial"] for p in polls)  # changes at 2/s per resource were seen
    assert observations


def test_serve_receiver_rejects_a_bad_secret() -> None:
    done = subprocess.run([sys.executable, "-m", "bench.cli", "serve", "receiver", "--port", "0",
                           "--secret", "not a secret"], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "--secret" in done.stderr and "base64" in done.stderr and "Traceback" not in done.stderr


def test_pollers_reject_bad_options(producer: int) -> None:
    done = subprocess.run([sys.executable, "-m", "locust", "-f", "scenarios/pollers.py", "--headless", "-t", "2s",
                           "--host", f"http://127.0.0.1:{producer}", "--hb-interval", "0"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--hb-interval" in done.stderr
