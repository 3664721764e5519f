"""What every orchestrator shares (`hookbench run` and `hookbench load`): the run directory, HTTP to a child, the
status line, SIGTERM as an interruption, Locust's CPU warnings in its logs, and the result handed back."""

from __future__ import annotations

import json
import ssl
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from bench.errors import RunDirError, RunError
from bench.results import RunStatus, Summary

__all__ = ["RunResult", "new_run_dir", "http_json", "Progress", "Interrupted", "on_sigterm", "locust_cpu_warnings"]


@dataclass(frozen=True)
class RunResult:
    """What a run handed back: its directory, its summary.json (typed), how it ended and what failed."""

    run_dir: Path
    summary: Summary
    status: RunStatus
    error: str | None = None  # as manifest.json records it: what failed, "interrupted", or None

    @property
    def partial(self) -> bool:
        return self.status.partial


def new_run_dir(base: Path, name: str) -> Path:
    """runs/<UTC timestamp>-<name>/, never an existing directory (a suffix is added instead)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    for i in range(1000):
        d = base / (f"{stamp}-{name}" + (f"-{i}" if i else ""))
        try:
            d.mkdir(parents=True, exist_ok=False)
            return d
        except FileExistsError:
            continue
        except OSError as e:
            raise RunDirError(f"{base}: cannot create a run directory there ({e.strerror}); "
                              "pass a writable --out DIR") from None
    raise RunError(f"cannot create a new run directory under {base}")


def http_json(url: str, data: dict[str, Any] | None = None, timeout: float = 5.0,
              ctx: ssl.SSLContext | None = None) -> dict[str, Any]:
    body = None if data is None else json.dumps(data).encode()
    req = urllib.request.Request(url, data=body, method="GET" if data is None else "POST",
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as resp:
            return json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:  # a child refused what we sent: say what it said
        detail = e.read().decode(errors="replace")[:300]
        raise RunError(f"{req.method} {url.split('?')[0]} answered {e.code}: {detail}") from None


class Progress:
    """One status line, rewritten in place on a terminal, printed every few seconds otherwise."""

    def __init__(self, out: Callable[[str], None] | None) -> None:
        self.out = out
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def show(self, text: str) -> None:
        if self.tty:
            sys.stderr.write("\r\033[K" + text)
            sys.stderr.flush()
        elif self.out is not None and time.monotonic() - self.last >= 5.0:
            self.out(text)
            self.last = time.monotonic()

    def done(self) -> None:
        if self.tty:
            sys.stderr.write("\n")
            sys.stderr.flush()


class Interrupted(Exception):
    """SIGTERM during a run: handled like Ctrl-C (stop the children, analyse what was recorded)."""


def on_sigterm(signum: int, frame: object) -> None:
    raise Interrupted()


def locust_cpu_warnings(logs: Path) -> int:
    """Locust logs a warning when its own CPU passes 90%: count them."""
    n = 0
    for name in ("locust.log", "locust.out", "attack.log", "attack.out"):
        try:
            n += (logs / name).read_text(errors="replace").count("CPU usage above")
        except OSError:
            pass
    return n
