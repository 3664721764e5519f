"""Micro-benchmarks of the receiver's dedup store (`make bench`): insert and lookup at a realistic size.

Every delivery costs one lookup and, when new, one insert. In `make test` they run once each
(--benchmark-disable) so they cannot rot; the assertions check the store stayed correct and bounded.
"""

from __future__ import annotations

import itertools

from servers.receiver.dedup import DedupStore

SIZE = 100_000  # ids held: a long run's deliveries within one TTL


class Ticks:
    """A clock advancing one second per reading: in steady state each insert makes one id expire."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def filled(ttl_s: float = 3600.0, clock: Ticks | None = None) -> DedupStore:
    store = DedupStore(ttl_s, clock=clock or (lambda: 0.0))
    for i in range(SIZE):
        store.add(("webhook", f"msg_ch{i}"))
    return store


def test_insert_new_ids(benchmark) -> None:  # type: ignore[no-untyped-def]
    store = filled()
    ids = (("webhook", f"msg_new{i}") for i in itertools.count())
    assert benchmark(lambda: store.add(next(ids))) is True
    assert len(store) > SIZE and store.expired == 0


def test_insert_steady_state_with_expiry(benchmark) -> None:  # type: ignore[no-untyped-def]
    clock = Ticks()
    store = filled(ttl_s=SIZE, clock=clock)  # one id per tick, TTL of SIZE ticks: the store stays at SIZE
    ids = (("webhook", f"msg_new{i}") for i in itertools.count())
    assert benchmark(lambda: store.add(next(ids))) is True
    assert len(store) <= SIZE and store.expired > 0 and store.forgotten_early == 0


def test_lookup_hit(benchmark) -> None:  # type: ignore[no-untyped-def]
    store = filled()
    key = ("webhook", f"msg_ch{SIZE // 2}")
    assert benchmark(lambda: key in store) is True
    assert not store.add(key)  # a duplicate, as a retry would be


def test_lookup_miss(benchmark) -> None:  # type: ignore[no-untyped-def]
    store = filled()
    key = ("webhook", "msg_never_sent")
    assert benchmark(lambda: key in store) is False
    assert len(store) == SIZE
