"""The pieces also work on their own: `hookbench serve producer` + plain `locust -f scenarios/pollers.py`."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
from support import start_server, stop_server

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def producer(tmp_path: Path) -> Iterator[int]:
    proc, port = start_server(["serve", "producer", "--port", "0", "--scenario", "scenarios/default.toml",
                               "--set", "resources.count=4", "--set", "changes.rate=2", "--db", str(tmp_path / "p.db")])
    try:
        yield port
    finally:
        stop_server(proc)


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
    # Design: 5 users spawned at 5/s (the last by ~0.8 s), a phase under 0.5 s, then a poll every 0.5 s, late
    # slots sent rather than skipped: each user has >= 6 slots before the 4 s stop, >= 5 answered (one may be in
    # flight). 4 per user leaves a further 0.5 s for a slow start; 6 per user were counted on a busy machine.
    assert int(rows["/changes"]["Request Count"]) >= 4
    assert int(rows["/resources/[id]"]["Request Count"]) >= 4 * 4
    assert int(rows["Aggregated"]["Failure Count"]) == 0
    polls = [json.loads(x) for p in rec.glob("polls-*.jsonl") for x in p.read_text().splitlines()]
    observations = [json.loads(x) for p in rec.glob("observations-*.jsonl") for x in p.read_text().splitlines()]
    assert {p["mode"] for p in polls} == {"polling", "polling_etag"}
    assert {p["resource_id"] for p in polls if p["mode"] == "polling_etag"} == {0, 1, 2, 3}
    # changes at 2/s per resource (8/s in all): a 0.5 s cursor poll is empty with probability e^-4, all of 4+
    # later ones ~1e-7
    assert any(not p["empty"] and not p["initial"] for p in polls)
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


def _sign_independently(scheme: str, secret: str, msg_id: str, body: bytes, ts: int) -> dict[str, str]:
    """Each scheme's headers computed without hookbench: the package, or hmac per the public spec."""
    import hashlib
    import hmac
    from datetime import datetime, timezone

    from standardwebhooks.webhooks import Webhook

    if scheme == "standard":
        sig = Webhook(secret).sign(msg_id, datetime.fromtimestamp(ts, tz=timezone.utc), body.decode())
        return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": sig}
    if scheme == "github":
        digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return {"X-Hub-Signature-256": f"sha256={digest}", "X-GitHub-Delivery": msg_id,
                "X-GitHub-Event": "resource.changed"}
    digest = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return {"Stripe-Signature": f"t={ts},v1={digest}"}


@pytest.mark.parametrize("scheme,secret", [("standard", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
                                           ("github", "gh-secret-0123456789abcdef"),
                                           ("stripe", "whsec_5f3c0b0e1d2a4c6b8e9f")])
def test_serve_receiver_accepts_a_signed_delivery_and_rejects_one_changed_byte(scheme: str, secret: str,
                                                                                 tmp_path: Path) -> None:
    import time
    import urllib.error
    import urllib.request

    proc, port = start_server(["serve", "receiver", "--port", "0", "--secret", secret, "--scheme", scheme,
                               "--records", str(tmp_path)])
    try:
        url = f"http://127.0.0.1:{port}/hooks"

        def post(body: bytes, headers: dict[str, str]) -> int:
            req = urllib.request.Request(url, data=body, method="POST",
                                         headers={"content-type": "application/json", **headers})
            try:
                with urllib.request.urlopen(req, timeout=10) as resp:
                    return resp.status
            except urllib.error.HTTPError as e:
                return e.code

        body = json.dumps({"id": "msg_x1", "type": "resource.changed",
                           "data": {"change_id": "x1", "resource_id": 1, "seq": 1, "version": 1,
                                    "t_change_ns": time.time_ns()}}).encode()
        headers = _sign_independently(scheme, secret, "msg_x1", body, int(time.time()))
        changed = body.replace(b'"resource_id": 1', b'"resource_id": 2')
        assert changed != body and len(changed) == len(body)
        assert post(changed, headers) == 401
        assert post(body, headers) == 204
    finally:
        stop_server(proc)
    audit = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [(r["status"], r["verdict"]) for r in audit] == [(401, "rejected"), (204, "accepted")]
