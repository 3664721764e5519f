"""Cheap counters of the receiver's webhook traffic for load runs, served as JSON by GET /stats.

A few integer updates per request, nothing else: no clock, no allocation on the common paths. Every request
that reached the hook handler is in exactly one outcome once it is answered, so
requests = in_flight + accepted + duplicate + sum(rejected) + shed_503 + errors + forced.
`foreign_accepted` and `foreign_duplicate` are the parts of `accepted` and `duplicate` that were a foreign sender's
events (verified JSON that is not a hookbench change event).
"""

from __future__ import annotations

__all__ = ["HookStats"]


class HookStats:
    """Counts of the hook handler: how many requests, how many at once, and how each ended."""

    __slots__ = ("requests", "in_flight", "max_in_flight", "accepted", "duplicate", "rejected", "shed_503",
                 "errors", "forced", "foreign_accepted", "foreign_duplicate")

    def __init__(self) -> None:
        self.requests = 0
        self.in_flight = 0  # in the handler now (reading, verifying, processing, or waiting to answer)
        self.max_in_flight = 0
        self.accepted = 0
        self.duplicate = 0
        self.rejected: dict[int, int] = {}  # status (400, 401, 404, 405, 413, 415...) -> requests
        self.shed_503 = 0  # turned away at capacity (receiver_max_concurrent)
        self.errors = 0  # every other failure: outage windows, injected errors, internal errors, clients gone
        self.forced = 0  # /hooks/<key>/<status> with a status that is not 2xx
        self.foreign_accepted = 0  # of accepted: a foreign sender's events
        self.foreign_duplicate = 0  # of duplicate: a foreign sender's events

    def begin(self) -> None:
        self.requests += 1
        self.in_flight += 1
        if self.in_flight > self.max_in_flight:
            self.max_in_flight = self.in_flight

    def end(self, verdict: str, status: int | None, shed: bool = False, foreign: bool = False) -> None:
        """One request answered (or given up) with the audit log's `verdict`; `shed`: a 503 at capacity;
        `foreign`: its body was a foreign sender's event."""
        self.in_flight -= 1
        if verdict == "accepted":
            self.accepted += 1
            self.foreign_accepted += foreign
        elif verdict == "duplicate":
            self.duplicate += 1
            self.foreign_duplicate += foreign
        elif verdict == "rejected" and status is not None:
            self.rejected[status] = self.rejected.get(status, 0) + 1
        elif verdict == "forced":
            self.forced += 1
        elif shed:
            self.shed_503 += 1
        else:
            self.errors += 1

    def as_dict(self) -> dict[str, object]:
        return {"requests": self.requests, "in_flight": self.in_flight, "max_in_flight": self.max_in_flight,
                "accepted": self.accepted, "duplicate": self.duplicate,
                "rejected": {str(k): v for k, v in sorted(self.rejected.items())}, "shed_503": self.shed_503,
                "errors": self.errors, "forced": self.forced,
                "foreign_accepted": self.foreign_accepted, "foreign_duplicate": self.foreign_duplicate}
