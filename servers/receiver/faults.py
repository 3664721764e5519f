"""The receiver's fault model: outage windows (refuse / 503), injected errors, delay, and a capacity limit.

It exists to measure what senders lose, so every decision is seeded and every outage is recorded.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from pathlib import Path

from bench.config import DownWindow, FaultsCfg
from bench.records import JsonlWriter

from ..common import Listener

__all__ = ["FaultModel", "Outages"]

log = logging.getLogger("hookbench.receiver")

RESTART_RETRY_S = 0.05  # the port is ours, but the kernel may need a moment after the old socket closed
RESTART_ATTEMPTS = 100


class FaultModel:
    """Per-request decisions for otherwise-valid requests: shed at capacity, fail at random, delay.

    Errors and delays draw from separate seeded generators, so the error sequence of a seed does not
    change with the delay distribution.
    """

    def __init__(self, faults: FaultsCfg, seed: int) -> None:
        self.cfg = faults
        self._errors = random.Random(f"{seed}:receiver-errors")
        self._delays = random.Random(f"{seed}:receiver-delays")
        self.in_processing = 0

    def try_acquire(self) -> bool:
        """Take a processing slot; False (shed: answer 503 at once) when max_concurrent are taken."""
        limit = self.cfg.receiver_max_concurrent
        if limit > 0 and self.in_processing >= limit:
            return False
        self.in_processing += 1
        return True

    def release(self) -> None:
        self.in_processing -= 1

    def inject_error(self) -> bool:
        """True for a fraction receiver_error_rate of calls (deterministic sequence for a seed)."""
        rate = self.cfg.receiver_error_rate
        return rate > 0 and self._errors.random() < rate

    def delay_s(self) -> float:
        """Seconds to wait before answering: receiver_delay, fixed or exponential with that mean."""
        mean = self.cfg.receiver_delay
        if mean <= 0:
            return 0.0
        return mean if self.cfg.receiver_delay_dist == "fixed" else self._delays.expovariate(1.0 / mean)


class Outages:
    """The receiver_down windows, counted from the window start announced by POST /control/start.

    "refuse": the listener stops (connections refused) and requests on connections already open get no
    answer; it listens again on the same port at the end. "503": hook requests are answered 503.
    Each transition is a row in faults.jsonl: {"t_ns", "event": "down"|"up", "mode", "window"}.
    """

    def __init__(self, windows: tuple[DownWindow, ...], listener: Listener, records_dir: Path | None) -> None:
        self.windows = windows
        self._listener = listener
        self._records_dir = records_dir
        self._writer: JsonlWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._active: set[int] = set()  # indexes of windows in force
        self.t0_ns: int | None = None

    @property
    def refusing(self) -> bool:
        return any(self.windows[i].mode == "refuse" for i in self._active)

    @property
    def answering_503(self) -> bool:
        return any(self.windows[i].mode == "503" for i in self._active)

    def _record(self, event: str, index: int, t_begin_ns: int) -> None:
        """One faults.jsonl row: t_ns when the transition was complete (the port closed or listening again),
        t_begin_ns when it began; a request sent between the two met either state."""
        if self._records_dir is not None and self._writer is None:
            self._writer = JsonlWriter(self._records_dir / "faults.jsonl")
        if self._writer is not None:
            self._writer.write({"t_ns": time.time_ns(), "t_begin_ns": t_begin_ns, "event": event,
                                "mode": self.windows[index].mode, "window": index})
            self._writer.flush()

    async def _set(self, index: int, down: bool) -> None:
        t_begin_ns = time.time_ns()
        was_refusing = self.refusing
        if down:
            self._active.add(index)
        else:
            self._active.discard(index)
        if self.refusing != was_refusing:
            await self._switch_listener(listen=not self.refusing)
        self._record("down" if down else "up", index, t_begin_ns)

    async def _switch_listener(self, listen: bool) -> None:
        if not self._listener.attached:
            log.warning("refuse window: no listener attached; requests get no answer but connections are accepted")
            return
        if not listen:
            await self._listener.stop()
            return
        for attempt in range(RESTART_ATTEMPTS):
            try:
                await self._listener.start()
                return
            except OSError as e:
                if attempt == RESTART_ATTEMPTS - 1:
                    log.error("cannot listen again on port %s after a refuse window: %s", self._listener.port, e)
                    return
                await asyncio.sleep(RESTART_RETRY_S)

    async def start(self, t0_ns: int) -> None:
        """(Re)start the schedule from `t0_ns` (wall clock).

        Windows already over are skipped; those in force begin before this returns (so the answer to
        /control/start means the outage is on); later transitions run in a background task.
        """
        await self.stop()
        self.t0_ns = t0_ns
        events = sorted([(t0_ns + int(w.start * 1e9), True, i) for i, w in enumerate(self.windows)]
                        + [(t0_ns + int(w.end * 1e9), False, i) for i, w in enumerate(self.windows)],
                        key=lambda e: (e[0], e[1]))  # at equal times an "up" comes before a "down"
        now = time.time_ns()
        over = {i for t, down, i in events if not down and t <= now}
        pending = [e for e in events if e[2] not in over]
        while pending and pending[0][0] <= now:
            _, down, index = pending.pop(0)
            await self._set(index, down)
        if pending:
            self._task = asyncio.create_task(self._run(pending), name="receiver-outages")

    async def _run(self, events: list[tuple[int, bool, int]]) -> None:
        for t_ns, down, index in events:
            wait = (t_ns - time.time_ns()) / 1e9
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                await self._set(index, down)
            except Exception:  # one failed transition must not end the schedule (the next "up" must still run)
                log.exception("receiver_down window %d: %s failed", index, "down" if down else "up")

    async def _cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def stop(self) -> None:
        """Cancel the schedule and end every window in force (listening again if refusing)."""
        await self._cancel()
        for index in sorted(self._active):
            await self._set(index, False)

    async def close(self) -> None:
        """At shutdown: cancel the schedule (the server is going away: no listening again) and close the record."""
        await self._cancel()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
