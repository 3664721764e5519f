"""Per-mode cost counters of the producer: requests, bytes each way, CPU spent in our code for the mode.

CPU is thread CPU time (time.thread_time_ns) around code that does not await: the poll handlers
(query + serialisation) and, for webhooks, building and signing each attempt. HTTP framing done by
aiohttp itself is outside these spans; the process's total CPU is snapshotted beside them.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

__all__ = ["ModeCost", "Ledger"]


@dataclass
class ModeCost:
    requests: int = 0
    bytes_in: int = 0  # bytes the producer received (request line + headers + body; response for webhooks)
    bytes_out: int = 0  # bytes the producer sent
    cpu_ns: int = 0


@dataclass
class Ledger:
    modes: dict[str, ModeCost] = field(default_factory=dict)
    changes: int = 0

    def mode(self, name: str) -> ModeCost:
        cost = self.modes.get(name)
        if cost is None:
            cost = self.modes[name] = ModeCost()
        return cost

    def snapshot(self) -> dict[str, object]:
        return {"t_ns": time.time_ns(), "process_cpu_s": time.process_time(), "changes": self.changes,
                "modes": {k: asdict(v) for k, v in self.modes.items()}}


def header_bytes(first_line: str, headers: object) -> int:
    """Size on the wire of an HTTP/1.1 head: first line, 'Name: value' lines, CRLFs and the blank line."""
    n = len(first_line) + 2
    for k, v in headers.items():  # type: ignore[attr-defined]
        n += len(k) + 2 + len(v) + 2
    return n + 2
