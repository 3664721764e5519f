"""A TTL dedup store of recently processed message ids, O(1) amortised, so a retry or replay is not processed twice.
Bounded: past `max_entries` the oldest id is forgotten early, and a later copy of it would be processed again."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Callable, Hashable

__all__ = ["DedupStore", "DEFAULT_MAX_ENTRIES"]

DEFAULT_MAX_ENTRIES = 1_000_000  # far above any run's deliveries within a TTL


class DedupStore:
    """id -> first-seen time (seconds of `clock`, which must not go backwards), forgotten `ttl_s` later.

    Ids are kept in first-seen order, so the expired ones are always at the front: every call first
    evicts from the front while expired, making insert and lookup O(1) amortised. Memory is bounded
    by `max_entries`: inserting past it forgets the OLDEST id before its TTL (counted in
    `forgotten_early`); a delivery of that id arriving later would then be processed a second time.
    """

    def __init__(self, ttl_s: float, *, max_entries: int = DEFAULT_MAX_ENTRIES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not ttl_s > 0:
            raise ValueError(f"ttl_s = {ttl_s!r}: must be > 0 seconds")
        if max_entries < 1:
            raise ValueError(f"max_entries = {max_entries!r}: must be >= 1")
        self.ttl_s = float(ttl_s)
        self.max_entries = max_entries
        self._clock = clock
        self._seen: OrderedDict[Hashable, float] = OrderedDict()
        self.expired = 0  # evicted because their TTL passed
        self.forgotten_early = 0  # evicted before their TTL because the store was full

    def _evict(self, now: float) -> None:
        seen = self._seen
        horizon = now - self.ttl_s
        while seen:
            key, first = next(iter(seen.items()))
            if first > horizon:
                break
            del seen[key]
            self.expired += 1

    def __contains__(self, key: Hashable) -> bool:
        """Whether `key` was added less than `ttl_s` ago."""
        self._evict(self._clock())
        return key in self._seen

    def add(self, key: Hashable) -> bool:
        """Remember `key` now; True if it is new, False if it was already seen within the TTL (time not refreshed)."""
        now = self._clock()
        self._evict(now)
        seen = self._seen
        if key in seen:
            return False
        seen[key] = now
        if len(seen) > self.max_entries:
            seen.popitem(last=False)
            self.forgotten_early += 1
        return True

    def discard(self, key: Hashable) -> None:
        """Forget `key` (e.g. its processing failed, so a retry must be processed)."""
        self._seen.pop(key, None)

    def __len__(self) -> int:
        return len(self._seen)

    def stats(self) -> dict[str, int | float]:
        return {"size": len(self._seen), "ttl_s": self.ttl_s, "max_entries": self.max_entries,
                "expired": self.expired, "forgotten_early": self.forgotten_early}
