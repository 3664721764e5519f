"""Poll advice under load: while loaded, every answer of GET /changes carries X-Poll-Interval.

"Loaded" is measured, not guessed: more than `above` answers of GET /changes (every mode's) in the last
second, this one included. Configured by [polling] advise_interval (the advice, nominal; 0 = off, the
default, so no other mode's bytes change) and advise_above (answers per second, nominal; 0 = always loaded).
Installed only when on, as an on_response_prepare signal: the header is set before the head is sent, so the
ledger counts its bytes (app.py's `_charged` prepares the response itself, then counts it).
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Callable

from aiohttp import web

from bench.config import Scenario
from bench.protocol import POLL_INTERVAL_HEADER

__all__ = ["PollAdvice", "install_advice", "ADVISED_ROUTE"]

ADVISED_ROUTE = "changes"  # the aiohttp route name of GET /changes (views.py)
_SPAN_S = 1.0  # "the last second"


class PollAdvice:
    """Counts answers of the advised route over the last second and advises while there were more than
    `above_per_s`. `answers`/`advised` count every answer and those that carried the header."""

    def __init__(self, interval_s: float, above_per_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if not interval_s > 0 or above_per_s < 0:
            raise ValueError(f"advice needs interval_s > 0 (got {interval_s}) and above_per_s >= 0 ({above_per_s})")
        self.interval_s = interval_s
        self.above = above_per_s
        self.header_value = f"{interval_s:.6g}"
        self.clock = clock
        self.answers = 0
        self.advised = 0
        self._recent: deque[float] = deque()

    @classmethod
    def from_scenario(cls, scenario: Scenario) -> "PollAdvice | None":
        """Live values of the scenario's keys (its times are nominal); None when advise_interval is 0."""
        interval = scenario.polling.advise_interval
        if interval <= 0:
            return None
        scale = scenario.run.time_scale
        return cls(interval / scale, scenario.polling.advise_above * scale)

    def answer(self) -> str | None:
        """One more answer of the route now: the header value it carries, or None when not loaded."""
        now = self.clock()
        recent = self._recent
        recent.append(now)
        while recent and recent[0] <= now - _SPAN_S:
            recent.popleft()
        self.answers += 1
        if len(recent) > self.above:
            self.advised += 1
            return self.header_value
        return None

    async def on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        route = request.match_info.route
        if route.name == ADVISED_ROUTE and (value := self.answer()) is not None:
            response.headers[POLL_INTERVAL_HEADER] = value

    def snapshot(self) -> dict[str, Any]:
        """What /stats and the marks show of it."""
        return {"advice": {"interval_s": self.interval_s, "above_per_s": self.above, "answers": self.answers,
                           "advised": self.advised}}


def install_advice(app: web.Application, scenario: Scenario) -> PollAdvice | None:
    """Advise on `app`'s GET /changes as the scenario says; None (and nothing installed) when it is off."""
    advice = PollAdvice.from_scenario(scenario)
    if advice is not None:
        app.on_response_prepare.append(advice.on_prepare)
    return advice
