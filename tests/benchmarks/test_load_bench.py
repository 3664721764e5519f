"""Micro-benchmarks of the pieces on the load path that `python -m bench.perf.loadbench` measures as a whole
(`make bench`): the empty poll's store lookups (SQLite vs the in-memory head), encoding its answer (stdlib json
vs the encoder the producer uses), the producer's per-poll accounting, and the receiver's /stats counters.

Each pair is the before and after of issue 4's tuning; the load benchmark says what they add up to. In
`make test` they run once each (--benchmark-disable) so they cannot rot.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterator

import pytest
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from bench.protocol import change_event
from servers.producer.app import _request_head_bytes
from servers.producer.ledger import header_bytes
from servers.producer.store import Store
from servers.producer.views import JSON_ENCODER, _encode
from servers.receiver.stats import HookStats

EMPTY = {"changes": [], "next_after": 2000, "has_more": False}
PAGE = {"changes": [change_event(f"ch{i}", i % 100, i, i // 100 + 1, time.time_ns()) for i in range(1, 101)],
        "next_after": 100, "has_more": True}
# What a Locust FastHttpUser poller sends
HEADERS = CIMultiDict({"Host": "127.0.0.1:8000", "User-Agent": "python/gevent-http-client-2.6.1",
                       "Accept-Encoding": "gzip, deflate", "Accept": "*/*", "Connection": "keep-alive"})


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    s = Store(Path(tmp_path_factory.mktemp("store")) / "p.db", 100)
    for i in range(2000):
        s.apply_change(i % 100, time.time_ns(), i)
    yield s
    s.close()


def _stdlib(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def test_empty_poll_lookup_sqlite(benchmark, store: Store) -> None:  # type: ignore[no-untyped-def]
    assert benchmark(store.changes_after, store.head_seq, 100) == ([], False)


def test_empty_poll_lookup_memory(benchmark, store: Store) -> None:  # type: ignore[no-untyped-def]
    assert benchmark(lambda: 2000 >= store.head_seq) is True


def test_etag_lookup_sqlite(benchmark, store: Store) -> None:  # type: ignore[no-untyped-def]
    assert benchmark(store.resource_version, 42) == 20


def test_etag_lookup_memory(benchmark, store: Store) -> None:  # type: ignore[no-untyped-def]
    assert benchmark(store.cached_version, 42) == 20


def test_encode_empty_page_stdlib(benchmark) -> None:  # type: ignore[no-untyped-def]
    assert benchmark(_stdlib, EMPTY) == b'{"changes":[],"next_after":2000,"has_more":false}'


def test_encode_empty_page_producer(benchmark) -> None:  # type: ignore[no-untyped-def]
    benchmark.extra_info["encoder"] = JSON_ENCODER
    assert benchmark(_encode, EMPTY) == _stdlib(EMPTY)


def test_encode_full_page_stdlib(benchmark) -> None:  # type: ignore[no-untyped-def]
    assert len(benchmark(_stdlib, PAGE)) > 100 * 80


def test_encode_full_page_producer(benchmark) -> None:  # type: ignore[no-untyped-def]
    benchmark.extra_info["encoder"] = JSON_ENCODER
    assert benchmark(_encode, PAGE) == _stdlib(PAGE)


def test_request_bytes_decoded_dict(benchmark) -> None:  # type: ignore[no-untyped-def]
    """How the producer counted a poll's request bytes before: every header decoded into a dict."""
    req = make_mocked_request("GET", "/changes?after=2000&limit=100", headers=HEADERS)
    n = benchmark(lambda: header_bytes(f"{req.method} {req.raw_path} HTTP/1.1",
                                       {k.decode("latin-1"): v.decode("latin-1") for k, v in req.raw_headers}))
    assert n == _request_head_bytes(req)


def test_request_bytes_raw(benchmark) -> None:  # type: ignore[no-untyped-def]
    req = make_mocked_request("GET", "/changes?after=2000&limit=100", headers=HEADERS)
    assert benchmark(_request_head_bytes, req) > 150


def test_receiver_stats_per_request(benchmark) -> None:  # type: ignore[no-untyped-def]
    stats = HookStats()

    def one() -> None:
        stats.begin()
        stats.end("accepted", 204)

    benchmark(one)
    assert stats.in_flight == 0 and stats.accepted == stats.requests > 0
