"""Per-class ordinals unique across the Locust workers of one run: the master hands out the ranges.

Not a locustfile. Some users need an ordinal within their class that is unique across the whole run, not only in
their process: the k-th EtagPoller polls resource k mod R, the k-th ReconcilePoller serves hybrid subscription
k. In one process a counter does it. Across workers it cannot (each worker's counter starts at 0, and Locust's
dispatcher may give one worker one user more of a class than another), so:

- the master, once every worker reported its users, orders the workers by Locust's worker index and sends each
  ("hb_ordinals") the first ordinal of each class: the sum of that class's users on the workers before it.
  Together the workers then use exactly the ordinals 0..n-1 one process would. Locust fires the master's
  `spawning_complete` after waiting at most 1 s for the workers' reports, so the plan waits on (up to
  REPORT_WAIT_S) until the reported counts add up to the dispatched ones, and says so in the log if they never do.
- a worker's user asks `Ordinals.take(cls)` in its on_start; on a worker it waits (gevent) until that message has
  come, then returns offset + its local count. A worker that gets no offsets within WAIT_S (it joined after the
  ramp) gets None, and its user stops with an error in the log.

A local runner (no master) gets 0, 1, 2... at once. The counters restart at each test_start.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import gevent
from gevent.event import Event

if TYPE_CHECKING:
    from locust.env import Environment
    from locust.runners import MasterRunner

__all__ = ["Ordinals", "ORDINALS", "plan_offsets"]

log = logging.getLogger("hookbench.ordinals")

MESSAGE = "hb_ordinals"
WAIT_S = 60.0  # a worker's user waits this long for its offsets
REPORT_WAIT_S = 30.0  # the master waits this long for every worker's report of its users


def plan_offsets(counts: dict[int, dict[str, int]]) -> dict[int, dict[str, int]]:
    """{worker index: {class: users}} -> {worker index: {class: first ordinal}}, workers in index order."""
    running: dict[str, int] = {}
    out: dict[int, dict[str, int]] = {}
    for index in sorted(counts):
        out[index] = {}
        for cls, n in sorted(counts[index].items()):
            out[index][cls] = running.get(cls, 0)
            running[cls] = running.get(cls, 0) + int(n)
    return out


class Ordinals:
    """The ordinals of this process's users, per class (one instance per process: ORDINALS)."""

    def __init__(self) -> None:
        self._next: dict[str, int] = {}
        self._offsets: dict[str, int] = {}
        self._ready = Event()
        self._ready.set()
        self._attached: Any = None

    def attach(self, environment: Environment) -> None:
        """Register the message and the events on this process's runner (idempotent per runner)."""
        from locust.runners import MasterRunner, WorkerRunner  # here: plan_offsets imports without Locust's patching

        runner = environment.runner
        if runner is None or self._attached is runner:
            return
        self._attached = runner
        if isinstance(runner, WorkerRunner):
            runner.register_message(MESSAGE, self._on_offsets)
        elif isinstance(runner, MasterRunner):
            environment.events.spawning_complete.add_listener(
                lambda **_: gevent.spawn(self._send_offsets, runner))  # it waits: not in Locust's spawning greenlet
        environment.events.test_start.add_listener(lambda **_: self.reset(environment))

    def reset(self, environment: Environment | None = None) -> None:
        from locust.runners import WorkerRunner

        self._next.clear()
        self._offsets.clear()
        if environment is not None and isinstance(environment.runner, WorkerRunner):
            self._ready.clear()  # until the master's offsets come
        else:
            self._ready.set()

    def _on_offsets(self, environment: Environment, msg: Any, **_: Any) -> None:
        self._offsets = {str(k): int(v) for k, v in (msg.data or {}).get("offsets", {}).items()}
        self._ready.set()

    @staticmethod
    def _reported(runner: MasterRunner) -> bool:
        """Whether the workers' reported users add up, per class, to what the master dispatched."""
        target = {k: int(v) for k, v in (runner.target_user_classes_count or {}).items() if int(v)}
        got: dict[str, int] = {}
        for node in runner.clients.values():
            for cls, n in (node.user_classes_count or {}).items():
                got[cls] = got.get(cls, 0) + int(n)
        return all(got.get(cls, 0) == n for cls, n in target.items())

    def _send_offsets(self, runner: MasterRunner) -> None:
        deadline = time.monotonic() + REPORT_WAIT_S
        while not self._reported(runner) and time.monotonic() < deadline:
            gevent.sleep(0.05)
        if not self._reported(runner):
            log.error("ordinals: the workers' reported users never added up to the dispatched ones within %.0f s: "
                      "some ordinals may repeat or be missing (ETag resources polled twice or not at all)",
                      REPORT_WAIT_S)
        index = {cid: int(runner.get_worker_index(cid)) for cid in runner.clients}
        plan = plan_offsets({index[cid]: dict(node.user_classes_count or {}) for cid, node in runner.clients.items()})
        for cid, i in index.items():
            runner.send_message(MESSAGE, {"offsets": plan[i]}, client_id=cid)
        log.info("ordinals: offsets sent to %d worker(s): %s", len(plan), plan)

    def take(self, cls: str) -> int | None:
        """This user's ordinal in its class across the run; None when the master's offsets never came."""
        if not self._ready.wait(WAIT_S):
            log.error("ordinals: no offsets from the master within %.0f s (a worker that joined after the ramp "
                      "started gets none): this %s stops", WAIT_S, cls)
            return None
        k = self._next.get(cls, 0)
        self._next[cls] = k + 1
        return self._offsets.get(cls, 0) + k


ORDINALS = Ordinals()
