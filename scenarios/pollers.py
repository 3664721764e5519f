"""Locust pollers: the polling side of hookbench.

CursorPoller (one user) reads the whole change feed, GET /changes?after=SEQ; EtagPoller (one user per
resource) re-reads its resource, GET /resources/{id} with If-None-Match. Every user polls at a fixed
interval with a seeded random phase and records each poll's *intended* send time, so lateness under
load stays visible (Locust's own timings hide it: coordinated omission). With --hb-records, every
process writes polls-<pid>.jsonl and observations-<pid>.jsonl there.

Run on its own against a producer (-u must be (cursor ? 1 : 0) + (etag ? R : 0); it defaults to that):

    locust -f scenarios/pollers.py --host http://127.0.0.1:PORT --hb-resources 50     # web UI
    locust -f scenarios/pollers.py --host http://127.0.0.1:PORT --headless -u 51 -r 51 -t 30s \\
        --hb-resources 50 --hb-interval 1 --hb-records /tmp/rec --csv /tmp/rec/locust
    python scenarios/pollers.py     # lists the --hb-* options: `locust --help` cannot (it skips the locustfile)
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import gevent
from locust import events, task
from locust.contrib.fasthttp import FastHttpUser
from locust.env import Environment

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench` importable from any cwd
from bench.modes import MODE_CURSOR, MODE_ETAG  # noqa: E402
from bench.protocol import PATH_CHANGES, PATH_RESOURCE, etag_for  # noqa: E402
from bench.records import JsonlWriter  # noqa: E402

log = logging.getLogger("hookbench.pollers")
STYLES = ("cursor", "etag")
# option -> (type, default, help); the defaults also serve library mode, where there is no parser
OPTIONS: dict[str, tuple[type, Any, str]] = {
    "--hb-interval": (float, 1.0, "Seconds between two polls of one user"),
    "--hb-resources": (int, 10, "Number of resources R (ids 0..R-1); one EtagPoller per resource"),
    "--hb-styles": (str, "cursor,etag", "Comma list of polling styles to run: cursor, etag"),
    "--hb-limit": (int, 100, "Page size of GET /changes"),
    "--hb-seed": (int, 1, "Seed of the per-user random phases"),
    "--hb-records": (str, "", "Directory for polls-<pid>.jsonl / observations-<pid>.jsonl (empty: none)"),
    "--hb-timeout": (float, 5.0, "Seconds per request (connect and read)"),
}


def _dest(flag: str) -> str:
    return flag[2:].replace("-", "_")


CFG = argparse.Namespace(**{_dest(k): v[1] for k, v in OPTIONS.items()}, styles=STYLES)
_user_ids = itertools.count()  # user index, unique within the process; seeds the phase
_etag_ids = itertools.count()  # EtagPoller resource ids, modulo R
_writers: dict[str, JsonlWriter] = {}


class Result(NamedTuple):
    status: int  # 0: no response
    t_send_ns: int
    t_recv_ns: int
    nbytes: int
    error: str | None
    data: Any  # what the parse function returned; None for 304 and errors


def _short(exc: object) -> str:
    exc = getattr(exc, "original", None) or exc  # geventhttpclient wraps timeouts in RetriesExceeded
    return f"{type(exc).__name__}: {exc}"[:120]


def _write(kind: str, row: dict[str, Any]) -> None:
    if not CFG.hb_records:
        return
    if kind not in _writers:  # opened lazily: a master process that runs no users writes no files
        _writers[kind] = JsonlWriter(Path(CFG.hb_records) / f"{kind}-{os.getpid()}.jsonl")
    _writers[kind].write(row)


class _Poller(FastHttpUser):
    abstract = True
    mode = ""
    fixed_count = 0  # the real counts are set from the options in _configure()

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.index = next(_user_ids)
        self.period_ns = round(CFG.hb_interval * 1e9)
        rng = random.Random(CFG.hb_seed * 1_000_003 + self.index)
        self.phase_ns = int(rng.random() * self.period_ns)
        self.next_ns = 0

    def on_start(self) -> None:
        self.next_ns = time.time_ns() + self.phase_ns
        self.wait()  # Locust runs a task before the first wait: sleep until the first intended send

    def wait_time(self) -> float:
        return max(0.0, (self.next_ns - time.time_ns()) / 1e9)

    @task
    def poll(self) -> None:
        intended, self.next_ns = self.next_ns, self.next_ns + self.period_ns  # late slots are sent, not skipped
        self.poll_once(intended)

    def poll_once(self, intended_ns: int) -> None:
        raise NotImplementedError

    def get(self, path: str, name: str, headers: dict[str, str] | None, parse: Callable[[Any, Any], Any]) -> Result:
        """One GET that never raises on a bad response; failures are reported to Locust and returned."""
        t_send = time.time_ns()
        with self.client.get(path, name=name, headers=headers, catch_response=True) as resp:
            t_recv = time.time_ns()
            status = int(getattr(resp, "status_code", 0) or 0)  # a connection error has no status
            body = getattr(resp, "content", None) or b""
            error, data = None, None
            if status == 0:
                error = _short(getattr(resp, "error", None) or "no response")
            elif status >= 400:
                error = f"HTTP {status}"
            elif status != 304:
                try:
                    data = parse(json.loads(body), resp.headers)
                except json.JSONDecodeError:
                    error = "bad JSON"
                except (ValueError, KeyError, TypeError, AttributeError) as exc:
                    error = f"bad body: {_short(exc)}"
            if error:
                resp.failure(error)
            else:
                resp.success()  # explicit, so a 304 counts as a success too
        return Result(status, t_send, t_recv, len(body), error, data)

    def record(self, rid: int | None, res: Result, intended_ns: int, empty: bool, n_new: int,
               followup: bool = False, initial: bool = False) -> None:
        _write("polls", {"mode": self.mode, "user": self.index, "resource_id": rid, "t_intended_ns": intended_ns,
                         "t_send_ns": res.t_send_ns, "t_recv_ns": res.t_recv_ns, "status": res.status,
                         "empty": empty, "n_new": n_new, "bytes": res.nbytes, "error": res.error, "followup": followup, "initial": initial})

    def observe(self, change_id: str, t_obs_ns: int) -> None:
        _write("observations", {"mode": self.mode, "user": self.index, "change_id": change_id, "t_obs_ns": t_obs_ns})


def _parse_changes(body: Any, _headers: Any) -> tuple[list[str], int, bool]:
    return [str(c["change_id"]) for c in body["changes"]], int(body["next_after"]), bool(body["has_more"])


def _parse_resource(body: Any, headers: Any) -> tuple[int, str | None, str | None]:
    change_id = body["change_id"]
    return int(body["version"]), None if change_id is None else str(change_id), headers.get("ETag")


class CursorPoller(_Poller):
    """One subscriber reading the whole feed; a full page is followed at once by the next one."""

    mode = MODE_CURSOR

    def on_start(self) -> None:
        self.after = 0  # catch up on history during warm-up
        super().on_start()

    def poll_once(self, intended_ns: int) -> None:
        followup = False
        while True:
            res = self.get(f"{PATH_CHANGES}?after={self.after}&limit={CFG.hb_limit}", PATH_CHANGES, None,
                           _parse_changes)
            if res.error:
                return self.record(None, res, intended_ns, True, 0, followup)
            change_ids, next_after, has_more = res.data
            self.record(None, res, intended_ns, not change_ids, len(change_ids), followup)
            for change_id in change_ids:
                self.observe(change_id, res.t_recv_ns)
            progressed, self.after = next_after > self.after, max(self.after, next_after)
            if not (has_more and progressed):  # no progress would loop forever on a faulty server
                return
            intended_ns, followup = res.t_recv_ns, True


class EtagPoller(_Poller):
    """One user per resource: conditional GET, 304 when nothing changed."""

    mode = MODE_ETAG

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.rid = next(_etag_ids) % CFG.hb_resources
        self.etag: str | None = None
        self.version: int | None = None

    def poll_once(self, intended_ns: int) -> None:
        last = self.version  # None until the first successful read, which is a sync, not a poll outcome
        headers = {"If-None-Match": self.etag} if self.etag else None
        res = self.get(PATH_RESOURCE.format(id=self.rid), "/resources/[id]", headers, _parse_resource)
        if res.error or res.data is None:  # error or 304
            return self.record(self.rid, res, intended_ns, True, 0, initial=last is None)
        version, change_id, etag = res.data
        n_new = 0 if last is None else max(0, version - last)
        self.record(self.rid, res, intended_ns, last is not None and n_new == 0, n_new, initial=last is None)
        if change_id is not None and (last is None or n_new):
            self.observe(change_id, res.t_recv_ns)  # one observation: the latest change, whatever it skipped
        self.version = version if last is None else max(last, version)
        self.etag = etag or etag_for(self.rid, self.version)


def _configure(opts: Any) -> list[str]:
    """Check the --hb-* options; if valid, apply them to CFG and the user classes. Returns the errors."""
    o = {_dest(k): getattr(opts, _dest(k), v[1]) for k, v in OPTIONS.items()}
    styles = tuple(s.strip() for s in str(o["hb_styles"]).split(",") if s.strip())
    checks = [
        ("--hb-interval", o["hb_interval"] > 0 and math.isfinite(o["hb_interval"]), "seconds > 0"),
        ("--hb-resources", o["hb_resources"] >= 1, "an integer >= 1"),
        ("--hb-styles", bool(styles) and set(styles) <= set(STYLES), "a non-empty comma list of cursor,etag"),
        ("--hb-limit", o["hb_limit"] >= 1, "an integer >= 1"),
        ("--hb-timeout", o["hb_timeout"] > 0 and math.isfinite(o["hb_timeout"]), "seconds > 0"),
    ]
    errors = [f"{name} must be {expected}, got {o[_dest(name)]!r}" for name, ok, expected in checks if not ok]
    if o["hb_records"] and not errors:
        try:
            os.makedirs(o["hb_records"], exist_ok=True)
        except OSError as exc:
            errors.append(f"--hb-records must be a writable directory: {exc}")
    if errors:
        return errors
    vars(CFG).update(o, styles=styles)
    CursorPoller.fixed_count = 1 if "cursor" in styles else 0
    EtagPoller.fixed_count = o["hb_resources"] if "etag" in styles else 0
    for cls in (CursorPoller, EtagPoller):
        cls.weight = 0  # fixed counts only: a larger -u must not spawn extra pollers
        cls.network_timeout = cls.connection_timeout = o["hb_timeout"]
    return []


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    for flag, (kind, default, text) in OPTIONS.items():
        # parser.add_argument, not a group: Locust's web UI only lists options added on the parser itself
        parser.add_argument(flag, type=kind, default=default, metavar=f"<{kind.__name__}>",
                            help=f"{text} (default: {default!r})")


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    if errors := _configure(environment.parsed_options):
        for error in errors:
            log.error("pollers: %s", error)
        sys.exit(2)  # SystemExit passes through the event hook; a plain exception would only give exit code 1
    opts, total = environment.parsed_options, CursorPoller.fixed_count + EtagPoller.fixed_count
    if opts is None:  # library mode: the caller picks the user count
        return
    if opts.num_users is None:
        opts.num_users, opts.spawn_rate = total, opts.spawn_rate or total
    elif opts.num_users != total:
        log.warning("pollers: -u %s but the styles and resources make %d users", opts.num_users, total)
    if opts.processes or opts.worker or opts.master:
        log.warning("pollers: resource ids and user indices are per process: run pollers in one process")


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_: Any) -> None:
    global _user_ids, _etag_ids
    _user_ids, _etag_ids = itertools.count(), itertools.count()  # the same phases and ids on every run
    # Re-applied here because the web UI and a master may have changed the options since init.
    if errors := _configure(environment.parsed_options):
        log.error("pollers: not starting: %s", "; ".join(errors))
        if environment.runner is not None:
            gevent.spawn(environment.runner.stop)  # start() goes on spawning after this event: stop after it


@events.test_stop.add_listener
@events.quitting.add_listener
def _close_writers(**_: Any) -> None:
    while _writers:  # a row written after this reopens the file: nothing is lost at SIGTERM
        _writers.popitem()[1].close()


if __name__ == "__main__":  # `locust --help` never imports the locustfile (Locust issue #2917): list them here
    help_parser = argparse.ArgumentParser(prog="locust -f scenarios/pollers.py", description=__doc__.split("\n")[0])
    _add_options(help_parser)
    help_parser.print_help()
