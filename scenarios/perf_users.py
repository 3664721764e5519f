"""Locust users of the harness's own load benchmark (`python -m bench.perf.loadbench`, `make bench`): no wait time, one
request per task, as fast as each user can go. Pick one class by name on the command line.

- FastGetUser / HttpGetUser: GET --perf-path with FastHttpUser (geventhttpclient) / HttpUser (requests): the
  two Locust clients compared on the same endpoint.
- FastHookUser: POST a validly signed change event (Standard Webhooks, --perf-secret) with a fresh id every
  time to --perf-path: the receiver's verify + dedup + record path.

Every process counts the requests that complete in its own measured window (from its first request:
--perf-warmup seconds of warm-up, then --perf-duration seconds) and writes perf-<pid>.json into --perf-out:
{"requests", "failures", "seconds", "cpu_s", "t0", "t1"}. Locust's own stats are not used for the rate: with
--processes they are reset in each worker every report, and they include the warm-up.

    locust -f scenarios/perf_users.py --headless -u 32 -r 32 -t 8s --host http://127.0.0.1:PORT FastGetUser \\
        --perf-path '/changes?after=0' --perf-warmup 1 --perf-duration 5 --perf-out /tmp/perf [--processes 2]
    python scenarios/perf_users.py     # lists the --perf-* options (`locust --help` skips the locustfile)
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import gevent
from locust import HttpUser, events, task
from locust.contrib.fasthttp import FastHttpUser
from locust.env import Environment

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench` importable from any cwd
from bench.protocol import change_event, encode_event  # noqa: E402
from bench.signing import make_scheme  # noqa: E402
from scenarios._locust_common import Option, add_options, dest, option_values  # noqa: E402

OPTIONS: dict[str, Option] = {
    "--perf-path": (str, "/", "Path (and query) every request goes to"),
    "--perf-secret": (str, "", "Standard Webhooks secret FastHookUser signs with (whsec_...)"),
    "--perf-warmup": (float, 1.0, "Seconds after a process's first request before its window starts"),
    "--perf-duration": (float, 5.0, "Seconds of the measured window"),
    "--perf-out": (str, "", "Directory for perf-<pid>.json (empty: print it on stderr)"),
    "--perf-nonce": (str, "x", "Prefix of the message ids FastHookUser sends (fresh ids across runs)"),
}
CFG = argparse.Namespace(**{dest(flag): spec[1] for flag, spec in OPTIONS.items()})

_requests = 0  # completed requests of this process, failures included
_failures = 0
_window: gevent.Greenlet | None = None


@events.request.add_listener
def _count(exception: BaseException | None = None, **_: Any) -> None:
    global _requests, _failures, _window
    _requests += 1
    if exception is not None:
        _failures += 1
    if _window is None:  # the first request of this process starts its clock
        _window = gevent.spawn(_measure)


def _measure() -> None:
    gevent.sleep(CFG.perf_warmup)
    n0, f0, c0, t0 = _requests, _failures, time.process_time(), time.monotonic()
    gevent.sleep(CFG.perf_duration)
    n1, f1, c1, t1 = _requests, _failures, time.process_time(), time.monotonic()
    # t0/t1: CLOCK_MONOTONIC, shared by every process of the machine, so the caller can line up server CPU samples
    row = {"pid": os.getpid(), "requests": n1 - n0, "failures": f1 - f0, "seconds": t1 - t0, "cpu_s": c1 - c0,
           "t0": t0, "t1": t1}
    if CFG.perf_out:
        out = Path(CFG.perf_out)
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / f".perf-{os.getpid()}.json"
        tmp.write_text(json.dumps(row))
        tmp.replace(out / f"perf-{os.getpid()}.json")  # whole files only: the reader may look at any time
    else:
        print(json.dumps(row), file=sys.stderr, flush=True)


class FastGetUser(FastHttpUser):
    """GET --perf-path through FastHttpUser's client (geventhttpclient)."""

    @task
    def get(self) -> None:
        self.client.get(CFG.perf_path, name="get")


class HttpGetUser(HttpUser):
    """GET --perf-path through HttpUser's client (requests)."""

    @task
    def get(self) -> None:
        self.client.get(CFG.perf_path, name="get")


_ids = itertools.count()


class FastHookUser(FastHttpUser):
    """POST a signed change event with a fresh message id (pid and counter), as the dispatcher sends one."""

    def on_start(self) -> None:
        self.scheme = make_scheme("standard", [CFG.perf_secret])

    @task
    def post(self) -> None:
        change_id = f"{CFG.perf_nonce}-{os.getpid()}-{next(_ids)}"
        body = encode_event(change_event(change_id, 1, 1, 1, time.time_ns())).encode()
        headers = self.scheme.sign(f"msg_{change_id}", body, int(time.time()))
        self.client.post(CFG.perf_path, data=body, headers={"Content-Type": "application/json", **headers},
                         name="post")


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    add_options(parser, OPTIONS)


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    opts = environment.parsed_options
    if opts is None:  # library mode: CFG keeps its defaults unless the caller sets them
        return
    vars(CFG).update(option_values(opts, OPTIONS))
    if not (CFG.perf_warmup >= 0 and CFG.perf_duration > 0):
        print(f"perf_users: --perf-warmup must be >= 0 and --perf-duration > 0, got {CFG.perf_warmup!r} and "
              f"{CFG.perf_duration!r}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":  # `locust --help` never imports the locustfile: list the options here
    help_parser = argparse.ArgumentParser(prog="locust -f scenarios/perf_users.py", description=__doc__,
                                          formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_options(help_parser)
    help_parser.print_help()
