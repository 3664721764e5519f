"""Thin events + fetch in a real run: producer, receiver and Locust processes on 127.0.0.1, the default scenario
sped up (as tests/test_run_integration.py's SHORT) with a full-event and a thin subscription side by side."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import read_jsonl, run_command

pytestmark = pytest.mark.integration

SHORT = ["--duration", "12", "--set", "run.warmup=2s", "--set", "run.drain=2s", "--set", "run.time_scale=2"]
SUBSCRIPTIONS = 'webhook.subscriptions=[{name="webhook"},{name="thin"}]'
EDGE = 2  # fetches are counted by when they start, deliveries by their change: the window's edges may split a pair


def test_thin_events_lose_nothing_and_cost_a_fetch_per_change(tmp_path: Path) -> None:
    summary, run_dir, _ = run_command(["run", "scenarios/default.toml", *SHORT, "--set", SUBSCRIPTIONS],
                                      tmp_path, timeout=120)
    modes = summary["modes"]
    thin, webhook = modes["thin"], modes["webhook"]
    n = summary["changes"]
    assert n > 0 and thin["observed"] == n and thin["lost"] == 0

    # requests per change: a delivery and a fetch for every change observed (counts, not times)
    assert thin["delivery_attempts"] >= thin["observed"]
    assert abs(thin["consumer_requests"] - thin["observed"]) <= EDGE
    assert thin["requests"] == thin["delivery_attempts"] + thin["consumer_requests"] >= 2 * thin["observed"] - EDGE
    assert thin["requests_per_change"] == pytest.approx(thin["requests"] / n)

    # the fetches reached the producer's ledger under the thin mode: more bytes per change than a full event,
    # whose body alone is larger than a thin one (a fetch adds a request and a response)
    assert thin["bytes_per_change"] is not None and webhook["bytes_per_change"] is not None
    assert thin["bytes_per_change"] > webhook["bytes_per_change"]
    assert thin["cpu_s_per_change"] is not None and thin["cpu_s_per_change"] > 0

    # latency = delivery + fetch: in the same run, the thin mode's median comes after the full event's
    assert thin["latency_ms"]["p50"] > webhook["latency_ms"]["p50"]
    assert thin["fetch_ms_p50"] is not None and thin["model"]["requests_per_change"] == 2.0

    # every fetch the receiver made carried its mode and found its change; no arrival of the thin endpoint
    # became an observation by itself (the fetch rows are the observations)
    fetches = read_jsonl(run_dir / "records" / "polls-receiver.jsonl")
    assert fetches and all(f["mode"] == "thin" and f["status"] == 200 and f["error"] is None for f in fetches)
    observed = read_jsonl(run_dir / "records" / "observations-receiver.jsonl")
    assert len(observed) == len(fetches)
    assert {o["t_obs_ns"] for o in observed} == {f["t_recv_ns"] for f in fetches}
