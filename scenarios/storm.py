"""Locust webhook storm: correctly signed deliveries POSTed to one receiver, for `hookbench load` (or on its own).

Every user is one sender offering --hb-rate deliveries per second on an intended-time schedule: delivery
k is due at t0 + k/rate (t0: the user's start). A delivery is a change event (bench.protocol: body
{"id": msg_id, "type": "resource.changed", "data": {change_id, resource_id, seq, version, t_change_ns}},
t_change_ns = the delivery's intended time), with an id unique across processes and runs, signed with
make_scheme(--hb-scheme, [--hb-secret]) at each attempt.

A sender retries as a real one does: after a timeout, a connection error, 429, 503 or another 5xx it
tries again, up to --hb-attempts attempts in all. Before retry n it waits the n-th of --hb-delays (the
last repeats; `hookbench load` passes the scenario's delivery schedule there, a provider profile's
included: bench.config.DeliveryCfg.nominal_delay), or without a list --hb-backoff seconds doubled after
each attempt; either varied by +-(--hb-jitter) of itself, as the producer's dispatcher does. On 429/503 a
Retry-After is honoured instead, capped at --hb-retry-after-cap. Other answers are final (2xx, including
the receiver's 200 "duplicate"; 4xx: a bad request is not retried). Retries do not take a schedule slot:
the next delivery keeps its intended time, so a backlog shows as lateness (t_send - t_intended), never
as fewer deliveries. A user is one greenlet with one request in flight, so this is open-loop only as far
as Locust allows: when the receiver is slower than the schedule the sends fall behind instead of piling
up concurrently; the records keep the intended times to correct for it (Locust's own timings do not:
coordinated omission). In Locust's statistics, first attempts are named by the path, later ones
"<path> (retry)"; 2xx are successes, everything else (429/503/5xx/timeouts/4xx) failures. An attempt
in flight when Locust stops a user is let finish (within its timeouts) and recorded, so the receiver
never accepted a delivery the rows lack.

Run on its own against `hookbench serve receiver --port 0 --secret whsec_... --records DIR`:

    locust -f scenarios/storm.py --host http://127.0.0.1:PORT --hb-secret whsec_...      # web UI
    locust -f scenarios/storm.py --headless -u 20 -r 20 -t 30s --host http://127.0.0.1:PORT \\
        --hb-secret whsec_... --hb-rate 10 --hb-records /tmp/rec
    locust -f scenarios/storm.py,scenarios/ramp.py --headless --host http://127.0.0.1:PORT \\
        --hb-secret whsec_... --hb-records /tmp/rec --hb-start-users 10 --hb-step-users 10 --hb-steps 5
    python scenarios/storm.py     # lists the --hb-* options: `locust --help` cannot (it skips the locustfile)

The secret can come from the environment instead, as `hookbench load` passes it: LOCUST_HB_SECRET=whsec_...
(kept out of `ps` and shell history). The web UI masks --hb-secret in its form, but Locust 2.47 writes the
value into the page source: keep the web UI on 127.0.0.1 (--web-host 127.0.0.1).

Records (--hb-records DIR): one row per attempt in DIR/storm-<pid>.jsonl: user (unique across the
processes of a run), worker (the runner's worker index, 0 locally), msg_id, attempt (1, 2, ...),
t_intended_ns (the delivery's slot, the same for all its attempts), t_send_ns, t_recv_ns, status (0: no
response), error ("timeout", "connection", "HTTP 503"... or null), retry_after_s (the answer's
Retry-After in seconds, or null).
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import secrets
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import gevent
from locust import events, task
from locust.contrib.fasthttp import FastHttpUser
from locust.env import Environment

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench`, `scenarios` importable from any cwd
from bench.protocol import PATH_HOOKS, SCHEMES, change_event, encode_event, msg_id_for  # noqa: E402
from bench.signing import Scheme, make_scheme  # noqa: E402
from scenarios._locust_common import (  # noqa: E402
    Option,
    RecordFile,
    UserIndices,
    add_options,
    check,
    fail_at_init,
    finite_positive,
    is_worker,
    option_values,
    print_help,
    records_dir_error,
    request_error,
    retry_after_s,
    shielded,
    stamp_layout,
)
from scenarios._wire import attach  # noqa: E402

log = logging.getLogger("hookbench.storm")

OPTIONS: dict[str, Option] = {
    "--hb-path": (str, PATH_HOOKS, f"Receiver endpoint path, e.g. {PATH_HOOKS} or {PATH_HOOKS}/<token>"),
    "--hb-scheme": (str, "standard", f"Signing scheme: {', '.join(SCHEMES)}"),
    "--hb-secret": (str, "", "The endpoint's signing secret (required)"),
    "--hb-rate": (float, 10.0, "Deliveries per second offered by each user"),
    "--hb-attempts": (int, 3, "Attempts per delivery, the first included"),
    "--hb-backoff": (float, 0.2, "Seconds before the first retry, doubled after each attempt (without --hb-delays)"),
    "--hb-delays": (str, "", "Seconds before retry 1, 2, ..., comma-separated (the last repeats), e.g. 0.2,0.4; "
                             "empty: --hb-backoff doubled"),
    "--hb-jitter": (float, 0.0, "Each retry delay varies by up to +- this fraction of itself, in [0, 1)"),
    "--hb-retry-after-cap": (float, 5.0, "Longest Retry-After (seconds) a 429/503 answer is honoured for"),
    "--hb-timeout": (float, 2.0, "Seconds per attempt (connect and read)"),
    "--hb-records": (str, "", "Directory for storm-<pid>.jsonl (empty: none)"),
}
RULES = [
    ("--hb-path", lambda p: p.startswith("/"), "a path starting with '/', like /hooks"),
    ("--hb-scheme", lambda s: s in SCHEMES, f"one of {', '.join(SCHEMES)}"),
    ("--hb-secret", bool, "the receiver endpoint's secret, e.g. --hb-secret whsec_<base64> (standard)"),
    ("--hb-rate", lambda x: finite_positive(x) and x <= 10_000, "deliveries per second per user in (0, 10000]"),
    ("--hb-attempts", lambda n: 1 <= n <= 100, "an integer from 1 to 100"),
    ("--hb-backoff", lambda x: 0 <= x < 3600, "seconds in [0, 3600)"),
    ("--hb-delays", lambda s: parse_delays(s) is not None,
     "seconds >= 0, comma-separated, like 0.2,0.4 or 60,120,240 (empty: --hb-backoff doubled)"),
    ("--hb-jitter", lambda x: 0 <= x < 1, "a fraction in [0, 1)"),
    ("--hb-retry-after-cap", lambda x: 0 <= x < 1e7, "seconds >= 0"),
    ("--hb-timeout", finite_positive, "seconds > 0"),
]
RETRY_STATUSES = (429, 503)  # the ones whose Retry-After is honoured; every 5xx is retried


def parse_delays(text: str) -> tuple[float, ...] | None:
    """--hb-delays as seconds (empty: ()), or None when a part is not a finite number >= 0."""
    parts = [p.strip() for p in text.split(",")] if text.strip() else []
    try:
        delays = tuple(float(p) for p in parts)
    except ValueError:
        return None
    return delays if all(0 <= d < 1e9 for d in delays) else None  # also refuses nan and inf


def retry_delay(attempt: int, delays: tuple[float, ...], backoff: float, jitter: float, rng: random.Random) -> float:
    """Seconds to wait after failed attempt `attempt` (1-based): the list's entry (its last repeats), else the
    back-off doubled per attempt; +-jitter of itself (the dispatcher's backoff_delay)."""
    base = delays[min(attempt, len(delays)) - 1] if delays else backoff * 2 ** (attempt - 1)
    return base * (1.0 + rng.uniform(-jitter, jitter)) if jitter else base


CFG = argparse.Namespace(**option_values(None, OPTIONS), delays=())
_scheme: list[Scheme] = []  # built from the options at init / test_start
_run = {"prefix": ""}  # change-id prefix of this process and run: pid + random, set at test_start (after a fork)
_indices = UserIndices()
_rows = RecordFile("storm")


def _configure(opts: Any) -> list[str]:
    """Check the --hb-* options; if valid, apply them to CFG and StormSender. Returns the errors."""
    values = option_values(opts, OPTIONS)
    errors = check(values, RULES)
    scheme = None
    if not errors:
        try:
            scheme = make_scheme(values["hb_scheme"], [values["hb_secret"]])
        except ValueError as exc:
            errors.append(f"--hb-secret does not suit --hb-scheme {values['hb_scheme']}: {exc}")
    if not errors and (bad_dir := records_dir_error(values["hb_records"])):
        errors.append(bad_dir)
    if errors:
        return errors
    vars(CFG).update(values, delays=parse_delays(values["hb_delays"]))
    _scheme[:] = [scheme]
    _rows.directory = values["hb_records"]
    StormSender.network_timeout = StormSender.connection_timeout = values["hb_timeout"]
    return []


class StormSender(FastHttpUser):
    """One webhook sender: signed deliveries at --hb-rate per second, retried like a real sender."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.index = _indices.next()
        self.worker = _indices.worker
        self.period_ns = round(1e9 / CFG.hb_rate)
        self.rng = random.Random(f"retry:{self.index}")  # the retry jitter, seeded per sender
        self.sent = 0
        self.t0_ns = self.next_ns = 0

    def on_start(self) -> None:
        # A random phase per sender (seeded by its index): senders started in the same second must not
        # all fire together every period, or the storm measures its own synchronisation.
        phase = random.Random(self.index).uniform(0, self.period_ns)
        self.t0_ns = self.next_ns = time.time_ns() + int(phase)

    def wait_time(self) -> float:
        return max(0.0, (self.next_ns - time.time_ns()) / 1e9)

    @task
    def deliver(self) -> None:
        intended, n = self.next_ns, self.sent
        if (early := intended - time.time_ns()) > 0:  # Locust runs a user's first task before any wait_time:
            gevent.sleep(early / 1e9)  # without this, delivery 0 would go out before its slot (at on_start)
        self.sent += 1
        self.next_ns = self.t0_ns + self.sent * self.period_ns  # late slots are sent, not skipped
        change_id = f"{_run['prefix']}u{self.index}-{n}"
        body = encode_event(change_event(change_id, self.index, n + 1, n + 1, intended)).encode()
        msg_id = msg_id_for(change_id)
        for attempt in range(1, CFG.hb_attempts + 1):
            delay = shielded(partial(self._attempt, msg_id, body, attempt, intended),
                             2 * CFG.hb_timeout + 1.0)  # connect + read: a stopped user's last attempt
            if delay is None:
                return  # accepted, or an answer not worth retrying
            if attempt < CFG.hb_attempts:
                gevent.sleep(delay)

    def _attempt(self, msg_id: str, body: bytes, attempt: int, intended_ns: int) -> float | None:
        """One POST; returns the delay before a retry, or None when the delivery is over."""
        headers = {"content-type": "application/json", **_scheme[0].sign(msg_id, body, int(time.time()))}
        name = CFG.hb_path if attempt == 1 else f"{CFG.hb_path} (retry)"
        t_send = time.time_ns()
        with self.client.post(CFG.hb_path, data=body, headers=headers, name=name, allow_redirects=False,
                              catch_response=True) as resp:
            t_recv = time.time_ns()
            status, error = request_error(resp)
            if 200 <= status < 300:
                resp.success()
            else:
                error = error or f"HTTP {status}"  # e.g. a 3xx: not followed, not a delivery
                resp.failure(error)
            asked = retry_after_s(resp.headers.get("Retry-After") if status and resp.headers else None)
        _rows.write({"user": self.index, "worker": self.worker, "msg_id": msg_id, "attempt": attempt,
                     "t_intended_ns": intended_ns, "t_send_ns": t_send, "t_recv_ns": t_recv, "status": status,
                     "error": error, "retry_after_s": asked})
        if status == 0 or status >= 500 or status == 429:
            if status in RETRY_STATUSES and asked is not None:
                return min(asked, CFG.hb_retry_after_cap)
            return retry_delay(attempt, CFG.delays, CFG.hb_backoff, CFG.hb_jitter, self.rng)
        return None


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    add_options(parser, OPTIONS, secret=("--hb-secret",))


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    if errors := attach(environment, _rows):  # on a Locust worker the rows go to the master (scenarios/_wire.py)
        fail_at_init("storm", errors)
    if is_worker(environment):
        return  # a worker runs with the master's options (--hb-secret included), sent with the first spawn
    if errors := _configure(environment.parsed_options):
        fail_at_init("storm", errors)


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_: Any) -> None:
    stamp_layout(environment)
    _indices.reset(environment)
    _run["prefix"] = f"st{os.getpid()}{secrets.token_hex(3)}-"  # never a message id of an earlier run
    # Re-applied here: the web UI and the master may have changed the options since init.
    if errors := _configure(environment.parsed_options):
        log.error("storm: not starting: %s", "; ".join(errors))
        if environment.runner is not None:
            gevent.spawn(environment.runner.stop)  # start() goes on spawning after this event: stop after it


@events.test_stop.add_listener
@events.quitting.add_listener
def _close_rows(**_: Any) -> None:
    _rows.close()  # a row written after this reopens the file: nothing is lost


if __name__ == "__main__":
    print_help("scenarios/storm.py", __doc__ or "", OPTIONS)
