"""The change generator: applies the scenario's change process to the store and hands each change to the dispatcher.

A producer restarted after a crash runs with a higher `generation`: its schedule is drawn from a seed
derived from (scenario seed, generation), so it does not replay the first generation's changes.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Callable

import numpy as np

from bench.config import Scenario
from bench.protocol import ChangeEvent
from bench.workload import change_schedule

from .store import Store

__all__ = ["ChangeGenerator", "generation_seed"]


def generation_seed(seed: int, generation: int) -> int:
    """The seed of restart number `generation`: `seed` itself for the first (0), an independent one after."""
    if generation == 0:
        return seed
    return int(np.random.SeedSequence([seed, generation]).generate_state(1, np.uint64)[0] >> np.uint64(1))


class ChangeGenerator:
    def __init__(self, scenario: Scenario, store: Store, on_change: Callable[[ChangeEvent], None], *,
                 generation: int = 0) -> None:
        self.scenario = scenario
        self.seed = generation_seed(scenario.seed, generation)
        self.store = store
        self.on_change = on_change
        self.running = False
        self.late_max_s = 0.0  # worst lateness against the schedule: a sign the producer could not keep up
        self._task: asyncio.Task[None] | None = None
        self._extra = random.Random(self.seed + 2)  # resources and values of changes made off schedule

    def start(self) -> None:
        """Start the schedule (its time 0 is now). Once only: a stopped generator stays stopped, since starting
        it again would repeat its schedule's change ids' resources and times from the beginning."""
        if self._task is not None:
            return
        self.running = True
        self._task = asyncio.create_task(self._run())

    def stop(self) -> None:
        self.running = False
        if self._task is not None:
            self._task.cancel()

    def apply_now(self) -> ChangeEvent:
        """One change made at once, off the schedule, handed on as scheduled ones are (POST /control/changes
        {"apply": N}: `python -m bench.perf held` wakes its held long polls with one)."""
        rid = self._extra.randrange(self.scenario.resources.count)
        change = self.store.apply_change(rid, time.time_ns(), self._extra.randrange(1 << 30))
        self.on_change(change)
        return change

    async def close(self) -> None:
        self.stop()
        if self._task is not None:
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        sc = self.scenario
        scale = sc.run.time_scale
        ch = sc.changes
        sched = change_schedule(
            ch.process, sc.resources.count, self.seed,
            rate=None if ch.rate is None else ch.rate * scale,
            interval=None if ch.interval is None else ch.interval / scale,
            on=None if ch.on is None else ch.on / scale, off=None if ch.off is None else ch.off / scale,
            trace=ch.load_trace() if ch.process == "trace" else None, trace_scale=scale)
        values = random.Random(self.seed + 1)
        loop = asyncio.get_running_loop()
        start = loop.time()
        for offset, rid in sched:
            delay = start + offset - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                self.late_max_s = max(self.late_max_s, -delay)
            # Ground truth: t_change is the wall-clock time the mutation is made, whatever the schedule said.
            change = self.store.apply_change(rid, time.time_ns(), values.randrange(1 << 30))
            self.on_change(change)
