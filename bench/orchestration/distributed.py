"""Locust's master/worker mode as `hookbench run` and `hookbench load` use it: the master's options and command
line, waiting for its workers (read from its log), the clocks note of the manifest, and `--worker` processes.

The workers are separately started Locust processes (`hookbench run|load SCENARIO --worker`), on this machine or
another one. They get every --hb-* option, the records directory included, from the master with their first spawn
message, and send their rows, health and clock answers back over Locust's messaging (scenarios/_wire.py).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from bench.errors import RunError
from bench.hosts import is_loopback, url_host
from bench.orchestration.procs import ProcessGroup, terminate
from bench.orchestration.session import Interrupted, Progress, on_sigterm
from bench.wire import LOCAL_COPY_ENV

__all__ = ["MasterOptions", "master_argv", "wait_for_workers", "run_workers", "free_port", "WORKER_CLOCKS",
           "ONE_CLOCK", "SLACK_S"]

SLACK_S = 90.0  # beyond a run's own length before it is stopped as hung


@dataclass(frozen=True)
class MasterOptions:
    """`--master`: Locust's master on the run's bind address, port `bind_port`, waits for `expect_workers`
    workers."""

    expect_workers: int
    bind_port: int
    max_wait_s: int  # give up (exit 1) when the workers have not all connected by then

    def public(self, bind: str) -> dict[str, Any]:
        """What the manifest says of the master (`locust_master`)."""
        return {"expect_workers": self.expect_workers, "bind": f"{url_host(bind)}:{self.bind_port}",
                "max_wait_s": self.max_wait_s}


# The master's log line as each worker connects (Locust 2.x): "... reported as ready. 2 workers connected."
CONNECTED = re.compile(r"reported as ready(?: \(duplicate message\))?\. (\d+) workers connected")
GAVE_UP = "Gave up waiting for workers to connect"

# What the manifest says of the clocks behind the timings (design.md section 6: the clock-sync caveat).
ONE_CLOCK = {"single_clock": True, "note": "servers and every Locust process on this machine: one clock"}
WORKER_CLOCKS = {
    "single_clock": False,
    "note": "Locust master with separately started workers: the master's machine (servers, steps, changes) keeps "
            "one clock, each request is timed by its worker's clock. The master measures each worker's offset "
            "over Locust's messaging at start and end (`workers`), and the analysis moves a worker's times to the "
            "master's clock when the offset exceeds its uncertainty; figures below that uncertainty remain "
            "meaningless. Workers on this machine share its clock.",
}


def free_port() -> int:
    """A port free on 127.0.0.1 right now (bind to 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def master_argv(master: MasterOptions, bind: str) -> list[str]:
    """Locust's flags for a master with no users of its own, listening on `bind`."""
    return ["--master", "--expect-workers", str(master.expect_workers), "--expect-workers-max-wait",
            str(master.max_wait_s), "--master-bind-host", bind, "--master-bind-port", str(master.bind_port)]


def worker_hint(command: str, bind: str, master: MasterOptions) -> str:
    """How to start the missing workers, in words for an error message."""
    where = "on this machine" if is_loopback(bind) else "on this machine or any that reaches it"
    return (f"start them, {where}, with `hookbench {command} SCENARIO --worker --master-host {bind} --master-port "
            f"{master.bind_port}` (or raise --expect-workers-max-wait)")


def wait_for_workers(locust: Any, group: ProcessGroup, log_file: Path, master: MasterOptions, progress: Progress,
                     bind: str, *, started: Callable[[], bool], command: str,
                     tick: Callable[[], object] | None = None) -> None:
    """Until `started()` (the master began spawning: a ramp's first step, a run's first poll), show how many
    workers the master has; RunError if it gives up, exits, or neither starts nor gives up in time.
    `tick`: called every half second meanwhile (the orchestrator's own sampling)."""
    t0 = time.monotonic()
    connected = 0
    while not started():
        text = log_file.read_text(encoding="utf-8", errors="replace") if log_file.is_file() else ""
        counts = CONNECTED.findall(text)
        connected = int(counts[-1]) if counts else connected
        if locust.popen.poll() is not None:
            if GAVE_UP in text:
                raise RunError(f"only {connected} of {master.expect_workers} Locust worker(s) connected within "
                               f"{master.max_wait_s} s; {worker_hint(command, bind, master)}")
            raise RunError(f"the Locust master exited with code {locust.popen.returncode} before the workers "
                           f"started; see {log_file}")
        group.check()
        if tick is not None:
            tick()
        waited = time.monotonic() - t0
        progress.show(f"waiting for Locust workers: {connected} of {master.expect_workers} connected to "
                      f"{url_host(bind)}:{master.bind_port} [{waited:3.0f}/{master.max_wait_s} s]")
        if waited > master.max_wait_s + SLACK_S:  # the master should have given up long before
            raise RunError(f"the Locust master neither started nor gave up within {waited:.0f} s")
        time.sleep(0.5)


def run_workers(locustfile: str, *, master_host: str, master_port: int, processes: int, repo: Path,
                records_dir: Path | None = None, what: str = "", log: Callable[[str], None] = print) -> int:
    """`hookbench run|load SCENARIO --worker`: Locust workers of `locustfile` (comma list), until their master
    stops them.

    No server and no run directory: the workers get every --hb-* option (records directory included) from the
    master, and send their rows to it over Locust's messaging (scenarios/_wire.py). With `records_dir` each also
    keeps its own copy of those rows there (LOCAL_COPY_ENV). Returns Locust's exit code (130 when interrupted).
    """
    argv = [sys.executable, "-m", "locust", "-f", locustfile, "--worker", "--master-host", master_host,
            "--master-port", str(master_port)]
    if processes > 1:
        argv += ["--processes", str(processes)]
    env = dict(os.environ)
    if records_dir is not None:
        records_dir.mkdir(parents=True, exist_ok=True)
        env[LOCAL_COPY_ENV] = str(records_dir.resolve())
    log(f"Locust worker(s) for {what} ({processes} process(es)) connecting to {url_host(master_host)}:{master_port}; "
        "they stop when the master does" + (f"; a copy of their rows in {records_dir}" if records_dir is not None
                                             else ""))
    old_term = signal.signal(signal.SIGTERM, on_sigterm)
    proc = subprocess.Popen(argv, cwd=repo, env=env)
    try:
        return proc.wait()
    except (KeyboardInterrupt, Interrupted):
        terminate(proc)
        return 130
    finally:
        signal.signal(signal.SIGTERM, old_term)
