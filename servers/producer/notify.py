"""Wakes the producer's held requests (long polls, event streams) when a change is committed.

One asyncio.Event per generation of the log: a change sets the current event and starts a new one, so
every waiter wakes once per change without anyone polling the store in a loop. A waiter re-checks the
log's head itself (a change may have come between its check and its wait).
"""

from __future__ import annotations

import asyncio

__all__ = ["ChangeNotifier"]


class ChangeNotifier:
    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.closed = False

    def notify(self) -> None:
        """A change was committed: wake everyone waiting now."""
        event, self._event = self._event, asyncio.Event()
        event.set()

    def close(self) -> None:
        """The producer is stopping: wake everyone, for good (held requests then answer and end)."""
        self.closed = True
        self._event.set()

    async def wait(self, timeout: float) -> bool:
        """Wait for the next change, at most `timeout` seconds; False when the time ran out first."""
        if self.closed:
            return False
        event = self._event
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return not self.closed
