"""Child processes of a run: start by module name, wait for the ready line, watch, and always stop.

Children get their own session (a terminal Ctrl-C reaches only the orchestrator, which then stops them
in order so they flush their records) and, on Linux, die with the orchestrator (PR_SET_PDEATHSIG) so
nothing is orphaned even if the orchestrator is killed.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from bench.errors import RunError
from bench.protocol import READY_PREFIX

__all__ = ["Child", "ProcessGroup", "terminate"]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass


@dataclass
class Child:
    name: str
    popen: subprocess.Popen[str]
    log_path: Path
    port: int | None = None
    expected_exit: bool = False  # set once we asked it to stop, or when it may end by itself (Locust)
    _ready: threading.Event = field(default_factory=threading.Event)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def terminate(popen: subprocess.Popen[Any], timeout: float = 10.0) -> int | None:
    """End a process we started: SIGTERM, wait up to `timeout`, then SIGKILL. Returns its exit code."""
    if popen.poll() is None:
        popen.terminate()  # a process that ended meanwhile is no error (Popen ignores ProcessLookupError)
        try:
            popen.wait(timeout)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(5)
    return popen.returncode


class ProcessGroup:
    """Owns every process it starts; `stop_all` (also run by `with`) ends them all, by PID only."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.children: list[Child] = []
        self.env = env

    def __enter__(self) -> "ProcessGroup":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def start(self, name: str, argv: list[str], log_path: Path, *, wait_ready: bool = True,
              timeout: float = 30.0, cwd: Path | None = None) -> Child:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log: IO[str] = open(log_path, "a", encoding="utf-8")
        popen = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True,
                                 start_new_session=True, preexec_fn=_die_with_parent, cwd=cwd, env=self.env,
                                 bufsize=1)
        child = Child(name, popen, log_path)
        self.children.append(child)

        def pump() -> None:  # copy stdout to the log, noting the ready line; keeps the pipe from filling
            assert popen.stdout is not None
            for line in popen.stdout:
                if child.port is None and line.startswith(READY_PREFIX):
                    child.port = int(line.split("port=", 1)[1])
                    child._ready.set()
                log.write(line)
                log.flush()
            log.close()

        threading.Thread(target=pump, name=f"pump-{name}", daemon=True).start()
        if wait_ready:
            deadline = time.monotonic() + timeout
            while not child._ready.wait(0.05):
                if popen.poll() is not None:
                    raise RunError(f"{name} exited with code {popen.returncode} before it was ready "
                                   f"(log {log_path}):\n{child.tail()}")
                if time.monotonic() > deadline:
                    raise RunError(f"{name} did not become ready within {timeout:.0f} s (log {log_path}):\n"
                                   f"{child.tail()}")
        return child

    def check(self) -> None:
        """Raise RunError if a child ended that should still be running."""
        for c in self.children:
            if not c.expected_exit and c.popen.poll() is not None:
                raise RunError(f"{c.name} (pid {c.pid}) exited unexpectedly with code {c.popen.returncode} "
                               f"(log {c.log_path}):\n{c.tail()}")

    def stop(self, child: Child, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait, then SIGKILL. Returns the exit code."""
        child.expected_exit = True
        return terminate(child.popen, timeout)

    def stop_all(self) -> dict[str, int | None]:
        """Stop every child, newest first (Locust before the servers it talks to)."""
        codes: dict[str, int | None] = {}
        for c in reversed(self.children):
            codes[c.name] = self.stop(c)
        return codes
