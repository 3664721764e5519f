"""Circuit breaker of one webhook endpoint: stop sending to an endpoint that keeps failing, probe it later.

closed -> open when the last `window` attempt outcomes are all in and at least `failure_ratio` of them
failed; open -> half-open after `open_s` seconds; half-open admits exactly one probe attempt: its success
closes the breaker (with a fresh window), its failure opens it again. While open or half-open, callers
wait in `admit()`: their jobs are neither failed nor attempted. A breaker made with `enabled=False` (a
provider profile: no provider documents one) admits every attempt and never opens; its state is "off".
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

__all__ = ["Breaker", "CLOSED", "OPEN", "HALF_OPEN", "OFF"]

CLOSED, OPEN, HALF_OPEN, OFF = "closed", "open", "half_open", "off"


class Breaker:
    def __init__(self, window: int, failure_ratio: float, open_s: float, enabled: bool = True) -> None:
        self.window, self.failure_ratio, self.open_s = window, failure_ratio, open_s
        self.enabled = enabled
        self.state = CLOSED if enabled else OFF
        self.opened = 0  # times it opened
        self.transitions: deque[tuple[int, str]] = deque(maxlen=1000)  # (wall clock ns, new state)
        self._outcomes: deque[bool] = deque(maxlen=window)  # True = success
        self._until = 0.0  # loop time the open state ends
        self._probing = False
        self._stopped = False
        self._changed = asyncio.Event()

    def _set(self, state: str) -> None:
        self.state = state
        self.transitions.append((time.time_ns(), state))
        self._changed.set()  # wake every waiter; each re-checks
        self._changed = asyncio.Event()

    def stop(self) -> None:
        """The endpoint is going away: every `admit()` returns None from now on."""
        self._stopped = True
        self._changed.set()

    async def admit(self) -> bool | None:
        """Wait until an attempt may start. True: it is the half-open probe; False: closed; None: stopped."""
        if not self.enabled:
            return None if self._stopped else False
        loop = asyncio.get_running_loop()
        while not self._stopped:
            if self.state == OPEN and loop.time() >= self._until:
                self._set(HALF_OPEN)
                self._probing = False
            if self.state == CLOSED:
                return False
            if self.state == HALF_OPEN and not self._probing:
                self._probing = True
                return True
            changed = self._changed
            timeout = self._until - loop.time() if self.state == OPEN else None
            try:
                await asyncio.wait_for(changed.wait(), timeout)
            except TimeoutError:
                pass
        return None

    def record(self, ok: bool, probe: bool) -> None:
        """The outcome of an attempt admitted by `admit()` (`probe` is what it returned)."""
        if not self.enabled:
            return
        if probe:
            self._probing = False
            if ok:
                self._outcomes.clear()
                self._set(CLOSED)
            else:
                self._open()
            return
        if self.state != CLOSED:
            return  # an attempt begun before the breaker opened: the probe alone decides now
        self._outcomes.append(ok)
        # `- 1e-9`: 0.3*10 > 3.0 in floats
        if len(self._outcomes) >= self.window and \
                self._outcomes.count(False) >= self.failure_ratio * len(self._outcomes) - 1e-9:
            self._open()

    def _open(self) -> None:
        self._until = asyncio.get_running_loop().time() + self.open_s
        self.opened += 1
        self._set(OPEN)
