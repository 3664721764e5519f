"""Helpers shared by the locustfiles (pollers.py, attack.py, fleet.py, storm.py, ramp.py): options, records,
user indices, errors.

Not a locustfile: it defines no User, registers no option and no event listener. Each locustfile wires what
it needs from here in its own listeners, so any combination of them (`-f storm.py,ramp.py`) stays valid.
"""

from __future__ import annotations

import argparse
import email.utils
import itertools
import logging
import math
import os
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypeVar

import gevent
from geventhttpclient.response import HTTPParseError
from geventhttpclient.useragent import ConnectionError as GhcConnectionError
from locust.runners import MasterRunner, WorkerRunner

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench` importable from any cwd
from bench.records import JsonlWriter  # noqa: E402

if TYPE_CHECKING:
    from locust.env import Environment

__all__ = ["Option", "add_options", "option_values", "check", "checked_values", "finite_positive", "records_dir_error",
           "fail_at_init", "print_help", "RecordFile", "worker_index", "is_master", "is_worker", "stamp_layout",
           "UserIndices", "request_error", "short_error", "retry_after_s", "shielded"]

log = logging.getLogger("hookbench.load")
T = TypeVar("T")

# --- options --------------------------------------------------------------------------------------

# flag -> (type, default, help). `bool` means a store_true flag. The defaults also serve library mode.
Option = tuple[type, Any, str]


def dest(flag: str) -> str:
    return flag[2:].replace("-", "_")


def add_options(parser: Any, options: dict[str, Option], secret: tuple[str, ...] = ()) -> None:
    """Add `options` to Locust's parser (or a plain argparse one, for `python scenarios/x.py`)."""
    locust_parser = hasattr(parser, "args_included_in_web_ui")
    for flag, (kind, default, text) in options.items():
        # a secret can also come from the environment (LOCUST_HB_SECRET for --hb-secret): never on a command line
        # that `ps` shows
        extra = {"is_secret": True, "env_var": f"LOCUST_{dest(flag).upper()}"} if locust_parser and flag in secret \
            else {}
        # parser.add_argument, not a group: Locust's web UI only lists options added on the parser itself
        if kind is bool:
            parser.add_argument(flag, action="store_true", default=False, help=text, **extra)
        else:
            shown = f"{text} (default: {default!r})" if default != "" else text
            parser.add_argument(flag, type=kind, default=default, metavar=f"<{kind.__name__}>", help=shown, **extra)


def option_values(opts: Any, options: dict[str, Option]) -> dict[str, Any]:
    """{dest: value} of `options`, defaults where `opts` lacks one (library mode: opts is None)."""
    return {dest(k): getattr(opts, dest(k), v[1]) for k, v in options.items()}


def check(values: dict[str, Any], rules: list[tuple[str, Callable[[Any], bool], str]]) -> list[str]:
    """One message per broken rule (flag, predicate on its value, what was expected)."""
    errors = []
    for flag, ok, expected in rules:
        value = values[dest(flag)]
        try:
            good = bool(ok(value))
        except (TypeError, ValueError):
            good = False
        if not good:
            errors.append(f"{flag} must be {expected}, got {value!r}")
    return errors


def finite_positive(x: float) -> bool:
    return x > 0 and math.isfinite(x)


def records_dir_error(path: str) -> str | None:
    if not path or RecordFile.over_wire:
        return None  # a worker's rows go to its master (scenarios/_wire.py): the path is the master's, not ours
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        return f"--hb-records must be a writable directory: {exc}"
    return None


def checked_values(opts: Any, options: dict[str, Option],
                   rules: list[tuple[str, Callable[[Any], bool], str]]) -> tuple[dict[str, Any], list[str]]:
    """`options`' values from `opts` and the errors of their `rules`; when those pass, the records directory
    (--hb-records, if given) is made, or its error added."""
    values = option_values(opts, options)
    errors = check(values, rules)
    if not errors and (bad_dir := records_dir_error(values.get("hb_records", ""))):
        errors.append(bad_dir)
    return values, errors


def fail_at_init(name: str, errors: list[str]) -> None:
    for error in errors:
        log.error("%s: %s", name, error)
    sys.exit(2)  # SystemExit passes through the event hook; a plain exception would only give exit code 1


def print_help(prog: str, doc: str, options: dict[str, Option]) -> None:
    """`locust --help` never imports the locustfile (Locust issue #2917): `python scenarios/x.py` lists them."""
    parser = argparse.ArgumentParser(prog=f"locust -f {prog}", description=doc.split("\n")[0])
    add_options(parser, options)
    parser.print_help()


# --- records --------------------------------------------------------------------------------------


class RecordFile:
    """`<dir>/<stem>-<pid>.jsonl`, opened at the first row (after any fork), so a master writes no file.

    On a Locust worker, scenarios/_wire.py sets `sink`: the rows then travel to the master, which writes them
    into its own directory, and this process writes none (`over_wire`, for the whole process). `ms_fields`
    names the row's millisecond fields that subtract another clock's time from this process's (the clock test
    hook shifts them as it shifts every `*_ns` time).
    """

    over_wire = False  # set by scenarios/_wire.py on a worker: --hb-records is then the master's directory

    def __init__(self, stem: str, ms_fields: tuple[str, ...] = ()) -> None:
        self.stem = stem
        self.ms_fields = ms_fields
        self.directory = ""
        self.sink: Callable[[RecordFile, dict[str, Any]], None] | None = None
        self._writer: JsonlWriter | None = None

    def write(self, row: dict[str, Any]) -> None:
        if not self.directory:
            return
        if self.sink is not None:
            self.sink(self, row)
            return
        if self._writer is None:  # also reopens after close(): a late row is appended, never lost
            self._writer = JsonlWriter(Path(self.directory) / f"{self.stem}-{os.getpid()}.jsonl")
        self._writer.write(row)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


# --- where this process sits in a distributed run --------------------------------------------------


def worker_index(environment: Environment | None) -> int:
    """The index the master gave this worker (0, 1, ...); 0 in a local run (and on the master)."""
    runner = environment.runner if environment is not None else None
    return max(0, int(getattr(runner, "worker_index", 0) or 0))


def is_master(environment: Environment) -> bool:
    return isinstance(environment.runner, MasterRunner)


def is_worker(environment: Environment) -> bool:
    opts = environment.parsed_options
    return isinstance(environment.runner, WorkerRunner) or bool(getattr(opts, "worker", False))


LAYOUT_ATTR = "hb_layout_workers"  # set on the master's options, which travel with every spawn message
BLOCK = 1_000_000_000  # user indices of a worker outside the layout start at BLOCK * worker index


def stamp_layout(environment: Environment) -> None:
    """On a master, at test_start: note how many worker indices exist, for UserIndices on the workers.

    Locust sends the master's parsed options (custom ones included) with every spawn message and applies
    them on the worker before its test_start, so every worker sees the same count.
    """
    runner, opts = environment.runner, environment.parsed_options
    if opts is not None and is_master(environment):
        count = max(int(getattr(runner, "worker_index_max", 0) or 0), int(getattr(runner, "worker_count", 0) or 0))
        setattr(opts, LAYOUT_ATTR, max(1, count))


class UserIndices:
    """User indices unique across all the processes of a run, dense when the workers are balanced.

    The k-th user of worker w (of W) gets k*W + (w+k) mod W (a local run: 0, 1, 2...): in every round k
    the W workers take the W indices kW..kW+W-1 between them, so balanced workers together use exactly the
    indices one process with all the users would. The offset turns with k so that a pattern with period W
    (cursor/ETag alternating when W = 2) does not give one worker every user of one kind. A worker that
    joined after the test started (index >= W) counts from BLOCK*w instead: still unique, not interleaved.
    """

    def __init__(self) -> None:
        self._local = itertools.count()
        self.worker, self.workers = 0, 1

    def reset(self, environment: Environment) -> None:
        self._local = itertools.count()
        self.worker = worker_index(environment)
        opts = environment.parsed_options
        self.workers = max(1, int(getattr(opts, LAYOUT_ATTR, 1) or 1))
        if self.worker >= self.workers:
            log.warning("worker %d joined after the test started (%d workers then): its user indices start at %d",
                        self.worker, self.workers, BLOCK * self.worker)

    def next(self) -> int:
        k = next(self._local)
        if self.worker >= self.workers:
            return BLOCK * self.worker + k
        return k * self.workers + (self.worker + k) % self.workers


# --- requests -------------------------------------------------------------------------------------


def short_error(exc: object) -> str:
    """"<type>: <message>" of an exception (the one geventhttpclient wrapped, if any), at most 120 characters."""
    exc = getattr(exc, "original", None) or exc  # geventhttpclient wraps what it gave up on in RetriesExceeded
    return f"{type(exc).__name__}: {exc}"[:120]


def request_error(resp: Any, classify: bool = True) -> tuple[int, str | None]:
    """(status, error) of a FastHttpUser response: status 0 when there was none; error None for < 400.

    error is "HTTP <status>", or when there was no answer: "timeout", "connection" (refused, reset, closed
    without an answer), or `short_error` for anything else; with classify=False, `short_error` always.
    """
    status = int(getattr(resp, "status_code", 0) or 0)
    if status:
        return status, (f"HTTP {status}" if status >= 400 else None)
    exc = getattr(resp, "error", None)
    if not classify:
        return 0, short_error(exc or "no response")
    exc = getattr(exc, "original", None) or exc
    if isinstance(exc, (TimeoutError, socket.timeout, gevent.Timeout)):
        return 0, "timeout"
    if isinstance(exc, (OSError, GhcConnectionError, HTTPParseError)):  # refused, reset, closed, empty answer
        return 0, "connection"
    return 0, (short_error(exc) if exc is not None else "no response")


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or an HTTP-date); None if absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(int(text))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def shielded(fn: Callable[[], T], grace_s: float) -> T | None:
    """Run fn() in its own greenlet; if the caller is killed meanwhile, let fn finish (<= grace_s), then die.

    Locust stops a user by killing its greenlet, in the middle of a request if need be. The server has
    then seen a request that no record shows. A request run through here is always recorded: fn sends it
    and writes its row, and the kill takes effect once that is done.
    """
    job = gevent.spawn(fn)
    try:
        job.join()
    except gevent.GreenletExit:
        job.join(timeout=grace_s)
        if not job.dead:
            job.kill(block=False)
        raise
    if not job.successful():
        raise job.exception  # type: ignore[misc]  # a bug in fn surfaces in the user, as Locust expects
    return job.value
