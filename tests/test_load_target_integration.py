"""`hookbench load --target-url` end to end, against servers started apart with `hookbench serve` (short ramps).

The storm goes to a `hookbench serve receiver` with the overload scenario's capacity, signed with a secret
given in $HOOKBENCH_TARGET_SECRET; the fleet polls a `hookbench serve producer`. No built-in server is started,
so the knee comes from the client's records and the server's own figures are named as unavailable.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from support import read_jsonl, run_command, start_server, stop_server

from bench.orchestration.target import SECRET_ENV
from bench.signing import new_secret_for

pytestmark = pytest.mark.integration

RECEIVER, PRODUCER = "scenarios/overload_receiver.toml", "scenarios/overload_producer.toml"
SHORT = ["--set", "load.settle=1s", "--set", "load.recovery=false"]


def _check_external(summary: dict, run_dir: Path, url: str, kind: str) -> None:
    assert summary["kind"] == "load" and summary["partial"] is False and summary["target"] == kind
    assert summary["target_server"]["external"] is True and summary["target_server"]["url"] == url
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["target"]["external"] is True and manifest["target"]["url"] == url
    assert set(manifest["processes"]) == {"locust"}  # no built-in server was started
    # the knee (or its absence) comes from the client's rows alone
    o = summary["overload"]
    assert len(o["steps"]) >= 2 and all(s["achieved_rps"] > 0 for s in o["steps"])
    knee = o["knee"]
    assert knee["reasons"] and (knee["reached"] or knee["reasons"][0].startswith("not reached, ceiling"))
    # what only the built-in server gives is named, and absent rather than zero
    names = {u["figure"] for u in summary["unavailable"]}
    assert {f"{kind} CPU", f"{kind} event-loop lag", "in flight at each step's end"} <= names
    assert f"{kind}_cpu_max_pct" not in summary["saturation"] and f"{kind}_loop_lag_ms" not in summary["saturation"]
    assert all("in_flight_end" not in s for s in o["steps"])
    rec = summary["records"]
    assert rec["complete"] is True and rec["rows"] == rec["locust_requests"] > 0
    md = (run_dir / "report.md").read_text()
    assert url in md and "Not measured: the target's own figures" in md and "knee" in md.lower()


def test_storm_against_a_served_receiver_with_the_scenarios_capacity(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    secret = new_secret_for("standard")
    audit_dir = tmp_path / "receiver"
    proc, port = start_server(["serve", "receiver", "--port", "0", "--secret", secret, "--scenario", RECEIVER,
                               "--records", str(audit_dir)])
    try:
        monkeypatch.setenv(SECRET_ENV, secret)  # the way the README recommends: not on the command line
        url = f"http://127.0.0.1:{port}/hooks"
        summary, run_dir, stdout = run_command(["load", RECEIVER, "--target-url", url, "--duration", "9",
                                                "--set", "load.steps=3", *SHORT], tmp_path / "runs", timeout=60)
    finally:
        stop_server(proc)  # flushes the receiver's audit log
    _check_external(summary, run_dir, url, "receiver")
    assert "unavailable (external target, not measured): receiver CPU" in stdout
    for path in run_dir.rglob("*"):  # the secret is nowhere in the run directory
        if path.is_file() and path.suffix != ".parquet":
            assert secret not in path.read_text(errors="replace"), path
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["senders"]["attempts"] == 3 and manifest["senders"]["retry_delays_s"] == [0.2, 0.4]
    # every delivery the senders saw accepted was verified and recorded by the receiver they loaded
    requests = pd.read_parquet(run_dir / "requests.parquet")
    accepted = set(requests.loc[requests["status"].between(200, 299), "msg_id"])
    audit = read_jsonl(audit_dir / "audit.jsonl")
    assert accepted and accepted <= {a["msg_id"] for a in audit if a["verdict"] in ("accepted", "duplicate")}
    # the senders ran the scenario's schedule: at most 3 attempts, and a 503's Retry-After waited out (a sleep
    # never ends early; a busy machine only makes the gap longer; 10 ms for gevent's timer clock against the wall
    # clock the rows are stamped with)
    assert requests.groupby("msg_id")["attempt"].max().max() <= 3
    rows = requests.sort_values(["msg_id", "attempt"]).reset_index(drop=True)
    nxt = rows.groupby("msg_id").shift(-1)
    waited = rows[nxt["t_send_ns"].notna() & rows["retry_after_s"].notna()]
    gaps = (nxt.loc[waited.index, "t_send_ns"] - waited["t_recv_ns"]) / 1e9
    assert (gaps >= waited["retry_after_s"].clip(upper=5.0) - 0.01).all()


def test_fleet_against_a_served_producer(tmp_path: Path) -> None:
    proc, port = start_server(["serve", "producer", "--port", "0", "--scenario", PRODUCER,
                               "--db", str(tmp_path / "producer.db")])
    try:
        url = f"http://127.0.0.1:{port}"
        summary, run_dir, _ = run_command(["load", PRODUCER, "--target-url", url, "--duration", "6",
                                           "--set", "load.steps=2", "--set", "load.start_users=20",
                                           "--set", "load.step_users=20", *SHORT], tmp_path / "runs", timeout=60)
    finally:
        stop_server(proc)
    _check_external(summary, run_dir, url, "producer")
    assert "delivery backlog at each step's end" in {u["figure"] for u in summary["unavailable"]}
    polls = pd.read_parquet(run_dir / "requests.parquet")
    assert set(polls["mode"]) == {"polling", "polling_etag"} and (polls["status"] == 304).any()
