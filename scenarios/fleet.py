"""Locust polling fleet: many subscribers polling one producer, for `hookbench load` (or on its own).

Every user is one subscriber; its index i (unique across all processes of the run) picks its style:
with s = --hb-cursor-share, user i reads the change feed (GET /changes?after=SEQ, mode "polling") when
floor((i+1)s) > floor(is), else it polls one resource with If-None-Match (mode "polling_etag"), resource
(its rank among the ETag users) mod --hb-resources. So any N consecutive users hold round(N*s) cursor
readers (within one), interleaved, and the ETag users cover the resources evenly. A cursor reader starts
at seq 0 and catches up at once (a full page is followed at once by the next); those catch-up reads and
an ETag user's first read are its initial sync, flagged `initial`.
The requests, and what their answers teach, are scenarios/_poll_core.py's (shared with pollers.py).

Each user polls on an intended-time schedule: slot k is at join + phase + k*T + jitter_k (phase uniform
in one period, jitter_k uniform in +-jitter*T, both seeded by --hb-seed and the index). A late poll is sent
at once and keeps its intended time; no slot is skipped, so lateness under load stays in the records
(Locust's own timings hide it: coordinated omission). A request in flight when Locust stops a user is
let finish (within its timeouts) and recorded, so the producer never served a poll the rows lack.

Run on its own against `hookbench serve producer --port 0 --set resources.count=50`:

    locust -f scenarios/fleet.py --host http://127.0.0.1:PORT                      # web UI (options listed there)
    locust -f scenarios/fleet.py --headless -u 200 -r 200 -t 60s --host http://127.0.0.1:PORT \\
        --hb-interval 1 --hb-resources 50 --hb-records /tmp/rec
    locust ... --processes 2 --master-bind-host 127.0.0.1 --master-bind-port P --master-port P
        # (without the last three, the master binds 5557 on every interface, and if another Locust run
        # already holds it, the forked workers join that run instead)
    python scenarios/fleet.py     # lists the --hb-* options: `locust --help` cannot (it skips the locustfile)

Across machines (Locust's master/worker mode; the workers get the master's --hb-* options, --hb-records
included, so that directory must exist on every worker machine):

    master$  locust -f scenarios/fleet.py --master --headless --expect-workers 2 -u 2000 -r 200 -t 5m \\
                 --host http://PRODUCER:PORT --hb-records /tmp/rec
    worker$  locust -f scenarios/fleet.py --worker --master-host MASTER      # on each worker machine

Clock caveat: detection latency is t_recv (the poller's clock) - t_change_ns (the producer's clock). On
one machine they are the same clock; across machines run chrony/NTP on all of them, read figures
below the measured clock offset (typically a few ms over a LAN) as meaningless, and never sub-ms ones.

Records (--hb-records DIR), one row per request in DIR/fleet-<pid>.jsonl (written by the process that
ran the user): mode, user, worker (the runner's worker index, 0 locally), resource_id (null for a cursor
reader), t_intended_ns, t_send_ns, t_recv_ns, status (0: no response), empty, n_new (changes the
subscriber had not seen: the page's changes; for ETag the version difference, or the version on the
first read), bytes (response body), error ("timeout", "connection", "HTTP 503", "bad body: ..." or
null; an error row is neither empty nor useful), latency_ms (largest t_recv - t_change of the new changes
made after the subscriber joined, else null), followup (a catch-up page sent right after a full one),
initial (part of the subscriber's initial sync).

Metrics across processes: each process counts polls / empty / useful / errors / initial and a detection
latency histogram (ms; one sample per new change whose t_change_ns the poll saw: every change of a cursor
page, the latest change of an ETag resource; fixed buckets: "0" for <= 0, i.e. clock skew, then 10 per
decade from 0.1 ms to 100 s, then "inf"; merged by adding counts). Workers send their running totals to
the master with every Locust report (events.report_to_master, every 3 s and at quit); the master keeps
each worker's last totals (events.worker_report) and at quit writes DIR/fleet-metrics.json:
{"format_version", "polls", "empty", "useful", "errors", "initial", "workers", "complete",
"latency_ms_hist": {"<upper bound ms>": n}, "per_worker": {"<worker index>": {"polls", "empty",
"useful", "errors", "initial"}}}. "complete" is false when some worker's last report left before it
had stopped (Locust's master waits only 0.5 s for the final reports at quit): its polls are then
partly missing from the totals, not from its rows. A local run writes the same with its own totals as
worker "0".

These metrics are deliberately not fired into Locust's statistics as pseudo-requests
(environment.events.request.fire): a pseudo-request per poll enters the Aggregated row, doubling its
request count and RPS and mixing detection latencies (seconds) into the response-time percentiles of
real requests (sub-millisecond). Locust's table stays a table of real requests; the fleet figures are in
fleet-metrics.json and in the summary line logged at quit.
"""

from __future__ import annotations

import argparse
import bisect
import json
import logging
import os
import random
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import gevent
from locust import events, task
from locust.contrib.fasthttp import FastHttpUser
from locust.env import Environment
from locust.runners import STATE_STOPPED

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench`, `scenarios` importable from any cwd
from bench.modes import MODE_CURSOR, MODE_ETAG  # noqa: E402
from scenarios._locust_common import (  # noqa: E402
    Option,
    RecordFile,
    UserIndices,
    add_options,
    checked_values,
    fail_at_init,
    finite_positive,
    is_worker,
    option_values,
    print_help,
    shielded,
    stamp_layout,
    worker_index,
)
from scenarios._poll_core import TERSE, CursorFeed, EtagResource, Outcome, run_poll  # noqa: E402
from scenarios._wire import attach  # noqa: E402

log = logging.getLogger("hookbench.fleet")

OPTIONS: dict[str, Option] = {
    "--hb-interval": (float, 1.0, "Seconds between two polls of one subscriber"),
    "--hb-jitter": (float, 0.1, "Jitter of each poll, uniform +- this fraction of the interval, in [0, 0.5)"),
    "--hb-cursor-share": (float, 0.5, "Fraction of the subscribers that read the change feed; the rest poll "
                                      "one resource with ETags"),
    "--hb-resources": (int, 50, "Resources R of the producer (ids 0..R-1) the ETag subscribers spread over"),
    "--hb-limit": (int, 100, "Page size of GET /changes"),
    "--hb-seed": (int, 1, "Seed of the per-subscriber phases and jitter"),
    "--hb-timeout": (float, 5.0, "Seconds per request (connect and read)"),
    "--hb-records": (str, "", "Directory for fleet-<pid>.jsonl and fleet-metrics.json (empty: none)"),
}
RULES = [
    ("--hb-interval", finite_positive, "seconds > 0"),
    ("--hb-jitter", lambda x: 0 <= x < 0.5, "a fraction in [0, 0.5) (keeps the slots in order)"),
    ("--hb-cursor-share", lambda x: 0 <= x <= 1, "a fraction in [0, 1]"),
    ("--hb-resources", lambda n: n >= 1, "an integer >= 1"),
    ("--hb-limit", lambda n: 1 <= n <= 10_000, "an integer from 1 to 10000 (the producer's bound)"),
    ("--hb-timeout", finite_positive, "seconds > 0"),
]
SHARE_SCALE = 1_000_000  # the share in millionths: integer arithmetic, no float drift in floor(i*s)

COUNTS = ("polls", "empty", "useful", "errors", "initial")
# Upper bounds (ms) of the latency buckets: <= 0 (clock skew), 10 per decade 0.1 ms .. 100 s, then "inf".
BOUNDS = (0.0, *(float(f"{10 ** (k / 10 - 1):.3g}") for k in range(61)))
BUCKET_KEYS = (*(format(b, "g") for b in BOUNDS), "inf")
METRICS_FILE = "fleet-metrics.json"


class Metrics:
    """This process's poll counts and latency histogram; a snapshot is plain data, merged by adding."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.counts = dict.fromkeys(COUNTS, 0)
        self.hist = [0] * len(BUCKET_KEYS)

    def add(self, outcome: str, initial: bool, latencies_ms: list[float]) -> None:
        self.counts["polls"] += 1
        self.counts[outcome] += 1
        self.counts["initial"] += initial
        for ms in latencies_ms:
            self.hist[bisect.bisect_left(BOUNDS, ms)] += 1  # bucket = the first upper bound >= ms

    def snapshot(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "hist": list(self.hist)}


CFG = argparse.Namespace(**option_values(None, OPTIONS), share_q=SHARE_SCALE // 2)
_env: list[Environment] = []  # the run's environment, kept at init (report_to_master does not pass it)
_indices = UserIndices()
_metrics = Metrics()
_per_worker: dict[int, dict[str, Any]] = {}  # master: each worker's last snapshot
_polls = RecordFile("fleet", ms_fields=("latency_ms",))  # latency_ms: t_recv (ours) - t_change (producer)


def _configure(opts: Any) -> list[str]:
    """Check the --hb-* options; if valid, apply them to CFG and FleetPoller. Returns the errors."""
    values, errors = checked_values(opts, OPTIONS, RULES)
    if errors:
        return errors
    vars(CFG).update(values, share_q=round(values["hb_cursor_share"] * SHARE_SCALE))
    _polls.directory = values["hb_records"]
    FleetPoller.network_timeout = FleetPoller.connection_timeout = values["hb_timeout"]
    return []


class FleetPoller(FastHttpUser):
    """One subscriber of the fleet: a change-feed reader or an ETag poller of one resource (module doc)."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.index = i = _indices.next()
        self.worker = _indices.worker
        cursors_before = i * CFG.share_q // SHARE_SCALE  # floor(i*s): cursor readers among indices 0..i-1
        self.cursor = (i + 1) * CFG.share_q // SHARE_SCALE > cursors_before
        self.mode = MODE_CURSOR if self.cursor else MODE_ETAG
        self.rid = None if self.cursor else (i - cursors_before) % CFG.hb_resources
        self.target = CursorFeed(CFG.hb_limit) if self.rid is None else EtagResource(self.rid)
        self.period_ns = round(CFG.hb_interval * 1e9)
        self.jitter_ns = round(CFG.hb_jitter * self.period_ns)
        self.rng = random.Random(CFG.hb_seed * 1_000_003 + i)
        self.phase_ns = self.jitter_ns + int(self.rng.random() * self.period_ns)  # slot 0 never before the join
        self.t_join_ns = self.next_ns = self.slot = 0

    def _slot_ns(self, k: int) -> int:
        jitter = round(self.rng.uniform(-1.0, 1.0) * self.jitter_ns) if self.jitter_ns else 0
        return self.t_join_ns + self.phase_ns + k * self.period_ns + jitter

    def on_start(self) -> None:
        self.t_join_ns = time.time_ns()
        self.slot, self.next_ns = 0, self._slot_ns(0)
        self.wait()  # Locust runs a task before the first wait: sleep until the first intended send

    def wait_time(self) -> float:
        return max(0.0, (self.next_ns - time.time_ns()) / 1e9)

    @task
    def poll(self) -> None:
        intended = self.next_ns
        self.slot += 1
        self.next_ns = self._slot_ns(self.slot)  # late slots are sent, not skipped
        grace_s = 2 * CFG.hb_timeout + 1.0  # connect + read: a stopped user's last request
        run_poll(self.target, self.client, TERSE, intended, self._record, run=partial(shielded, grace_s=grace_s))

    def _record(self, o: Outcome, intended_ns: int, followup: bool) -> None:
        """A fleet row; an error row is neither empty nor useful. Latencies: the new changes made after the join."""
        outcome = "errors" if o.error else ("useful" if o.n_new else "empty")
        latencies = [(o.t_recv_ns - c.t_change_ns) / 1e6 for c in o.new
                     if c.t_change_ns is not None and c.t_change_ns >= self.t_join_ns]
        _metrics.add(outcome, o.initial, latencies)
        _polls.write({"mode": self.mode, "user": self.index, "worker": self.worker, "resource_id": self.rid,
                      "t_intended_ns": intended_ns, "t_send_ns": o.t_send_ns, "t_recv_ns": o.t_recv_ns,
                      "status": o.status, "empty": outcome == "empty", "n_new": o.n_new, "bytes": o.nbytes,
                      "error": o.error, "latency_ms": round(max(latencies), 3) if latencies else None,
                      "followup": followup, "initial": o.initial})


def _merged() -> dict[str, Any]:
    """fleet-metrics.json: this process's totals (local run) or the sum of the workers' last totals."""
    snaps = dict(_per_worker) if _per_worker else {0: {"worker": 0, "stopped": True, **_metrics.snapshot()}}
    totals = dict.fromkeys(COUNTS, 0)
    hist = [0] * len(BUCKET_KEYS)
    for snap in snaps.values():
        for key in COUNTS:
            totals[key] += snap["counts"][key]
        hist = [a + b for a, b in zip(hist, snap["hist"])]
    return {"format_version": 1, **totals, "workers": len(snaps),
            "complete": all(snap.get("stopped") for snap in snaps.values()),
            "latency_ms_hist": dict(zip(BUCKET_KEYS, hist)),
            "per_worker": {str(w): snap["counts"] for w, snap in sorted(snaps.items())}}


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    add_options(parser, OPTIONS)


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    _env[:] = [environment]
    if errors := attach(environment, _polls):  # on a Locust worker the rows go to the master (scenarios/_wire.py)
        fail_at_init("fleet", errors)
    if is_worker(environment):
        return  # a worker runs with the master's options, which arrive with the first spawn message
    if errors := _configure(environment.parsed_options):
        fail_at_init("fleet", errors)


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_: Any) -> None:
    stamp_layout(environment)
    _indices.reset(environment)  # the same indices, phases and resources on every run
    _metrics.reset()
    _per_worker.clear()
    # Re-applied here: the web UI and the master may have changed the options since init.
    if errors := _configure(environment.parsed_options):
        log.error("fleet: not starting: %s", "; ".join(errors))
        if environment.runner is not None:
            gevent.spawn(environment.runner.stop)  # start() goes on spawning after this event: stop after it


@events.report_to_master.add_listener
def _report(data: dict[str, Any], **_: Any) -> None:
    env = _env[0] if _env else None
    stopped = env is not None and env.runner is not None and env.runner.state == STATE_STOPPED
    data["hb_fleet"] = {"worker": worker_index(env), "stopped": stopped, **_metrics.snapshot()}


@events.worker_report.add_listener
def _collect(client_id: str, data: dict[str, Any], **_: Any) -> None:
    snap = data.get("hb_fleet")
    if isinstance(snap, dict):
        _per_worker[int(snap["worker"])] = snap  # running totals: the last one wins


@events.test_stop.add_listener
def _close_rows(**_: Any) -> None:
    _polls.close()  # a row written after this reopens the file: nothing is lost


@events.quitting.add_listener
def _on_quitting(environment: Environment, **_: Any) -> None:
    _polls.close()
    if is_worker(environment):
        return  # its totals went to the master with its last report
    merged = _merged()
    polls = merged["polls"]
    if not merged["complete"]:
        log.warning("fleet: a worker's last report was sent before it stopped (Locust's master waits 0.5 s for "
                    "the final ones): the totals may miss its last polls, which its fleet-<pid>.jsonl still has")
    log.info("fleet: %d polls from %d worker(s): %d empty (%.1f%%), %d useful, %d errors, %d initial",
             polls, merged["workers"], merged["empty"], 100 * merged["empty"] / max(1, polls), merged["useful"],
             merged["errors"], merged["initial"])
    if CFG.hb_records:
        path = Path(CFG.hb_records) / METRICS_FILE
        tmp = path.with_name(f".{METRICS_FILE}.{os.getpid()}")
        tmp.write_text(json.dumps(merged, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)  # whole or absent, never half-written


if __name__ == "__main__":
    print_help("scenarios/fleet.py", __doc__ or "", OPTIONS)
