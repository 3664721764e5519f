"""Per-mode cost counters of the producer: requests, bytes each way, CPU spent in our code for the mode.

CPU is thread CPU time (time.thread_time_ns) around code that does not await: the poll handlers
(query + serialisation) and, for webhooks, building and signing each attempt. HTTP framing done by
aiohttp itself is outside these spans; the process's total CPU is snapshotted beside them.
Webhook attempts are all timed. Polls are timed when the mode is quiet, and at most every
POLL_CPU_SAMPLE_NS when it is busy (a thread-CPU clock read is a system call, a fifth of a bare empty
poll): a timed poll then stands for itself and the polls since the previous timed one, and `cpu_timed`
says how many were timed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from aiohttp import web

__all__ = ["ModeCost", "Ledger", "Meter", "METER", "header_bytes", "POLL_CPU_SAMPLE_NS"]

POLL_CPU_SAMPLE_NS = 1_000_000  # busy poll modes: at most ~1000 CPU reads a second each (about 0.1% of a core)


@dataclass
class ModeCost:
    requests: int = 0
    bytes_in: int = 0  # bytes the producer received (request line + headers + body; response for webhooks)
    bytes_out: int = 0  # bytes the producer sent
    cpu_ns: int = 0  # measured, or for polls in a busy spell estimated from the timed ones (see above)
    cpu_timed: int = 0  # requests whose CPU was read, not estimated
    held: int = 0  # requests of the mode held open right now (long polls waiting, streams)
    held_max: int = 0  # the most held at once since the producer started


METER: web.RequestKey["Meter"] = web.RequestKey("hookbench_meter")  # the request's Meter (charged routes only)


class Meter:
    """What a charged handler that awaits (a long poll, a stream) tells the charging wrapper.

    The wrapper reads thread CPU around the whole handler, which is only right for a handler that never
    awaits. One that does calls `pause()` before each wait and `resume()` after it, so the CPU of other
    requests served meanwhile is not charged to it; `hold()`/`release()` count it as a held connection;
    `sent(n)` adds the bytes it streamed itself (the wrapper counts only a response's head and fixed body); and
    `charge()` books the CPU counted so far at once (a stream that lasts the whole run).
    """

    __slots__ = ("cost", "timed", "cpu_ns", "_t0", "_held")

    def __init__(self, cost: ModeCost, timed: bool) -> None:
        self.cost = cost
        self.timed = timed  # an untimed request (a busy mode's, see above) never reads the clock
        self.cpu_ns = 0
        self._t0 = time.thread_time_ns() if timed else None
        self._held = False

    def pause(self) -> None:
        if self._t0 is not None:
            self.cpu_ns += time.thread_time_ns() - self._t0
            self._t0 = None

    def resume(self) -> None:
        if self.timed:
            self._t0 = time.thread_time_ns()

    def charge(self) -> None:
        """Charge the CPU counted so far to the mode now rather than when the request ends (call it paused): a
        stream held across the window marks must show its CPU between them."""
        self.cost.cpu_ns += self.cpu_ns
        self.cpu_ns = 0

    def stop(self) -> int:
        """The CPU counted so far (the wrapper calls it once, when the handler is done)."""
        self.pause()
        return self.cpu_ns

    def hold(self) -> None:
        if not self._held:
            self._held = True
            self.cost.held += 1
            self.cost.held_max = max(self.cost.held_max, self.cost.held)

    def release(self) -> None:
        if self._held:
            self._held = False
            self.cost.held -= 1

    def sent(self, nbytes: int) -> None:
        self.cost.bytes_out += nbytes


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


def header_bytes(first_line: str, headers: Mapping[str, str]) -> int:
    """Size on the wire of an HTTP/1.1 head: first line, 'Name: value' lines, CRLFs and the blank line.

    `headers` may be a multidict: keys() and values() then list every entry, repeats included.
    """
    return len(first_line) + 4 + sum(map(len, headers.keys())) + sum(map(len, headers.values())) + 4 * len(headers)
