"""Locust step ramp: a load shape that raises the user count step by step, for `hookbench load` (or on its own).

It has no users of its own: name it after a locustfile that has them (Locust 2.47 takes the first shape
class it finds in the files of a comma-separated -f, whichever file it is in):

    locust -f scenarios/storm.py,scenarios/ramp.py --headless --host http://127.0.0.1:PORT \\
        --hb-secret whsec_... --hb-records /tmp/rec \\
        --hb-start-users 10 --hb-step-users 10 --hb-steps 5 --hb-step-seconds 15 [--hb-recovery]
    locust -f scenarios/fleet.py,scenarios/ramp.py --host http://127.0.0.1:PORT     # web UI
    python scenarios/ramp.py     # lists the --hb-* options: `locust --help` cannot (it skips the locustfile)

Step k (0-based) runs min(ceiling, start + k*step) users for --hb-step-seconds, spawning or stopping the
difference within about a second; with --hb-recovery one more step returns to --hb-start-users (how fast
does the target recover?). After the last step the shape returns None and a headless run ends: the
shape, not -t, bounds the run (Locust ignores -u/-r/-t with a shape, and says so). A headless Locust
only installs its SIGTERM handler after the shape has ended, so this file installs one for the ramp:
SIGTERM ends it like its last step (records closed, quitting listeners run, exit code 0). The step semantics
are bench.config.LoadCfg's, the [load] section of a scenario. The shape runs in the master (or the
local runner), so with --processes N or workers it is the master that steps; the users' records come
from the workers.

When the other locustfile defines --hb-records (fleet and storm do), every step's start is appended to
DIR/steps.jsonl at once: {"t_ns", "step", "users"}, and a last row {"t_ns", "step": -1, "users": 0}
when the ramp ends (or the run is stopped before). t_ns is when the shape asked for the step's users;
reaching them takes up to a second more.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

import gevent
from locust import LoadTestShape, events
from locust.env import Environment

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench`, `scenarios` importable from any cwd
from bench.config import LoadCfg  # noqa: E402
from bench.records import JsonlWriter  # noqa: E402
from scenarios._locust_common import Option, add_options, check, fail_at_init, is_worker, option_values, print_help  # noqa: E402

log = logging.getLogger("hookbench.ramp")

# Only options of its own: --hb-records belongs to the locustfile it is combined with.
OPTIONS: dict[str, Option] = {
    "--hb-start-users": (int, 10, "Users in the first step of the ramp"),
    "--hb-step-users": (int, 10, "Users added at each step"),
    "--hb-steps": (int, 5, "Rising steps"),
    "--hb-step-seconds": (float, 15.0, "Seconds per step"),
    "--hb-recovery": (bool, False, "After the last step, one more step back at --hb-start-users"),
    "--hb-ceiling-users": (int, 100_000, "Never more users than this: later steps stay at it"),
}
RULES = [  # the bounds of the [load] section of a scenario (bench/config.py)
    ("--hb-start-users", lambda n: 1 <= n <= 100_000, "an integer from 1 to 100000"),
    ("--hb-step-users", lambda n: 1 <= n <= 100_000, "an integer from 1 to 100000"),
    ("--hb-steps", lambda n: 1 <= n <= 100, "an integer from 1 to 100"),
    ("--hb-step-seconds", lambda x: 2 <= x < float("inf"), "seconds >= 2 (Locust ticks a shape once a second)"),
    ("--hb-ceiling-users", lambda n: n >= 1, "an integer >= 1"),
]
STEPS_FILE = "steps.jsonl"


def _plan(opts: Any) -> LoadCfg:
    o = option_values(opts, OPTIONS)
    # Only the ramp's fields matter here; the others are the orchestrator's and stay neutral.
    return LoadCfg(target="", rate_per_user=0.0, start_users=o["hb_start_users"], step_users=o["hb_step_users"],
                   steps=o["hb_steps"], step_duration=o["hb_step_seconds"], settle=0.0, recovery=o["hb_recovery"],
                   slo_p99=0.0, processes=0, ceiling_users=o["hb_ceiling_users"])


class StepRamp(LoadTestShape):
    """Steps of users as in LoadCfg; records each step's start in steps.jsonl (module doc)."""

    def __init__(self) -> None:
        super().__init__()
        self.plan: LoadCfg | None = None
        self.step = -1  # the step last asked for
        self.spawn_rate = 1.0
        self.writer: JsonlWriter | None = None
        self.ended = True  # no ramp running: the next tick begins one

    # Not reset_time(): Locust calls it more than once per start (start_shape, then the master's first start()).
    def _begin(self, opts: Any) -> LoadCfg:
        """A new ramp, with the options as they are now (the web UI may have changed them)."""
        self.step, self.ended = -1, False
        records = str(getattr(opts, "hb_records", "") or "")
        self.writer = JsonlWriter(Path(records) / STEPS_FILE) if records else None
        self.plan = _plan(opts)
        return self.plan

    def tick(self) -> tuple[int, float] | None:
        opts = self.runner.environment.parsed_options if self.runner is not None else None
        plan = self._begin(opts) if self.ended or self.plan is None else self.plan
        step = int(self.get_run_time() // plan.step_duration)
        if step >= plan.total_steps:
            self.finish()
            return None
        users = plan.users(step)
        if step != self.step:
            before = plan.users(self.step) if self.step >= 0 else 0
            self.step, self.spawn_rate = step, float(max(1, abs(users - before)))  # the difference in ~1 s
            self._write({"t_ns": time.time_ns(), "step": step, "users": users})
            log.info("ramp: step %d of %d: %d users", step + 1, plan.total_steps, users)
        return users, self.spawn_rate

    def finish(self) -> None:
        """The end row, once per ramp (at its end, or when the run stops before)."""
        if not self.ended:
            self.ended = True
            self._write({"t_ns": time.time_ns(), "step": -1, "users": 0})
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def _write(self, row: dict[str, Any]) -> None:
        if self.writer is not None:
            self.writer.write(row)
            self.writer.flush()  # readable at once by whoever watches the run


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    add_options(parser, OPTIONS)


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    if is_worker(environment):
        return  # the shape runs in the master
    if errors := check(option_values(environment.parsed_options, OPTIONS), RULES):
        fail_at_init("ramp", errors)
    if getattr(environment.parsed_options, "headless", False) and isinstance(environment.shape_class, StepRamp):
        # A headless Locust 2.47 installs its SIGTERM handler only once a shape has ended: until then SIGTERM
        # kills it outright, with no quitting event, so no file is closed. Stop the ramp the orderly way instead.
        gevent.signal_handler(signal.SIGTERM, _stop_on_sigterm, environment)


def _stop_on_sigterm(environment: Environment) -> None:
    runner = environment.runner
    if runner is not None and runner.shape_greenlet is not None:  # after the ramp, Locust's own handler acts
        log.info("ramp: SIGTERM, stopping the ramp")
        gevent.spawn(runner.quit)  # the shape's join returns, and Locust shuts down as after the last step


@events.test_stop.add_listener
@events.quitting.add_listener
def _on_stop(environment: Environment, **_: Any) -> None:
    if isinstance(environment.shape_class, StepRamp):
        environment.shape_class.finish()


if __name__ == "__main__":
    print_help("scenarios/ramp.py", __doc__ or "", OPTIONS)
