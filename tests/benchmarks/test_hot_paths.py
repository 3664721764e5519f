"""Micro-benchmarks of synchronous hot paths (`make bench`): signing, verification, store queries, analysis.

In `make test` they run once each (--benchmark-disable) so they cannot rot.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bench.analysis.summary import Window, summarize
from bench.analysis.tables import Tables
from bench.config import scenario_from_dict
from bench.protocol import change_event, encode_event
from bench.signing import Signer, new_secret
from servers.producer.store import Store

SECRET = new_secret()
BODY = encode_event(change_event("ch123", 7, 123, 4, time.time_ns()))


def test_sign(benchmark) -> None:  # type: ignore[no-untyped-def]
    signer = Signer(SECRET)
    headers = benchmark(signer.headers, "msg_ch123", BODY, int(time.time()))
    assert headers["webhook-signature"].startswith("v1,")


def test_verify(benchmark) -> None:  # type: ignore[no-untyped-def]
    signer = Signer(SECRET)
    headers = signer.headers("msg_ch123", BODY, int(time.time()))
    benchmark(signer.verify, BODY.encode(), headers)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "p.db", 100)
    for i in range(2000):
        s.apply_change(i % 100, time.time_ns(), i)
    yield s
    s.close()


def test_store_empty_cursor_poll(benchmark, store: Store) -> None:  # type: ignore[no-untyped-def]
    changes, more = benchmark(store.changes_after, 2000, 100)
    assert changes == [] and not more


def test_store_etag_check(benchmark, store: Store) -> None:  # type: ignore[no-untyped-def]
    assert benchmark(store.resource_version, 42) == 20


def test_store_apply_change(benchmark, store: Store) -> None:  # type: ignore[no-untyped-def]
    benchmark(store.apply_change, 3, time.time_ns(), 1)


def test_summarize_100k_polls(benchmark) -> None:  # type: ignore[no-untyped-def]
    n = 100_000
    scenario = scenario_from_dict({"name": "b", "run": {"duration": 100}, "resources": {"count": 100},
                                   "changes": {"rate": 0.1}, "polling": {"interval": 1}}, "bench").to_dict()
    polls = [{"mode": "polling_etag", "user": i % 100, "resource_id": i % 100, "t_intended_ns": i * 10_000_000,
              "t_send_ns": i * 10_000_000, "t_recv_ns": i * 10_000_000 + 1_000_000, "status": 304,
              "empty": i % 10 != 0, "n_new": 0, "bytes": 0, "error": None, "followup": False, "initial": False}
             for i in range(n)]
    changes = [{"change_id": f"ch{i}", "resource_id": i % 100, "seq": i + 1, "version": i // 100 + 1,
                "t_change_ns": i * 100_000_000} for i in range(n // 10)]
    obs = [{"mode": "polling_etag", "user": 0, "change_id": f"ch{i}", "t_obs_ns": i * 100_000_000 + 5_000_000}
           for i in range(n // 10)]
    tables = Tables.from_frames(polls=polls, changes=changes, observations=obs)
    w = Window(0, n * 10_000_000, n * 10_000_000 + 10**9)
    s = benchmark(summarize, tables, w, scenario, {}, modes=["polling_etag"])
    assert s["modes"]["polling_etag"]["requests"] == n
