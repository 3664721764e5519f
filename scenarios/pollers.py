"""Locust pollers: the polling side of hookbench.

One user class per consumer-driven mode kind (bench.modes):
- CursorPoller (one user) reads the whole change feed, GET /changes?after=SEQ;
- EtagPoller (one user per resource) re-reads its resource, GET /resources/{id} with If-None-Match;
- LongPoller (one user) long-polls the feed, GET /changes?after=SEQ&wait=W, asking again as soon as an answer
  arrives (its intended time: that arrival);
- AdaptivePoller (one user) reads the feed at the interval bench.adaptive's policy chooses, and honours the
  producer's X-Poll-Interval / Retry-After;
- SseListener (one user) holds GET /changes/stream open and resumes with Last-Event-ID after a disconnect;
- ReconcilePoller (one user per hybrid subscription, --hb-reconcile) reads the feed every
  --hb-reconcile-interval, the safety net under that subscription's webhooks.
Fixed-interval users poll with a seeded random phase and record each poll's *intended* send time, so lateness
under load stays visible (Locust's own timings hide it: coordinated omission). Every request but the cursor
and ETag pollers' carries the mode label the producer charges it to. With --hb-records, every process writes
polls-<pid>.jsonl and observations-<pid>.jsonl there.
The requests, and what their answers teach, are scenarios/_poll_core.py's (shared with fleet.py); this
file keeps the schedule and the rows the run's analysis reads.

Run on its own against a producer (-u must be (cursor ? 1 : 0) + (etag ? R : 0) + 1 for each of long, adaptive
and sse + 1 per hybrid subscription; it defaults to that):

    locust -f scenarios/pollers.py --host http://127.0.0.1:PORT --hb-resources 50     # web UI
    locust -f scenarios/pollers.py --host http://127.0.0.1:PORT --headless -u 51 -r 51 -t 30s \\
        --hb-resources 50 --hb-interval 1 --hb-records /tmp/rec --csv /tmp/rec/locust
    python scenarios/pollers.py     # lists the --hb-* options: `locust --help` cannot (it skips the locustfile)
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from pathlib import Path
from typing import Any

import gevent
from locust import User, events, task
from locust.contrib.fasthttp import FastHttpUser
from locust.env import Environment
from locust.exception import StopUser

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench`, `scenarios` importable from any cwd
from bench.adaptive import AdaptivePolicy, Schedule  # noqa: E402
from bench.modes import (  # noqa: E402
    HYBRID,
    MODE_ADAPTIVE,
    MODE_CURSOR,
    MODE_ETAG,
    MODE_KINDS,
    MODE_LONG,
    MODE_SSE,
    default_styles,
    mode_fields,
    option_flag,
    poll_styles,
)
from bench.protocol import MODE_LABEL_HEADER, PATH_STREAM  # noqa: E402
from scenarios._locust_common import (  # noqa: E402
    Option,
    RecordFile,
    UserIndices,
    add_options,
    checked_values,
    fail_at_init,
    finite_positive,
    option_values,
    print_help,
    short_error,
    stamp_layout,
    worker_index,
)
from scenarios._ordinals import ORDINALS  # noqa: E402
from scenarios._poll_core import DETAILED, AdvisedFeed, CursorFeed, EtagResource, Outcome, run_poll  # noqa: E402
from scenarios._sse_core import EventStream, SseParser, StreamBroken  # noqa: E402
from scenarios._wire import attach  # noqa: E402

log = logging.getLogger("hookbench.pollers")
STYLES = poll_styles()  # one per polling mode kind of bench.modes
_TYPES = {"int": int, "float": float, "duration": float, "str": str, "choice": str}
# the [polling] keys the mode kinds declare (bench.modes), as --hb-<key> options with their defaults and checks
MODE_OPTIONS: dict[str, Option] = {option_flag(k): (_TYPES[f.kind], f.default, f"polling.{k}: {f.words()}")
                                   for k, f in mode_fields("polling").items()}
OPTIONS: dict[str, Option] = {
    "--hb-interval": (float, 1.0, "Seconds between two polls of one user"),
    "--hb-resources": (int, 10, "Number of resources R (ids 0..R-1); one EtagPoller per resource"),
    "--hb-styles": (str, ",".join(default_styles()), f"Comma list of polling styles to run: {', '.join(STYLES)}"),
    "--hb-seed": (int, 1, "Seed of the per-user random phases"),
    "--hb-records": (str, "", "Directory for polls-<pid>.jsonl / observations-<pid>.jsonl (empty: none)"),
    "--hb-timeout": (float, 5.0, "Seconds per request (connect and read)"),
    **MODE_OPTIONS,
    "--hb-reconcile": (str, "", "Comma list of hybrid subscriptions (webhook + reconcile): one ReconcilePoller each"),
    option_flag("reconcile_interval"): (float, HYBRID.fields["reconcile_interval"].default,
                                        "Seconds between two reconciliation polls of one hybrid subscription"),
}


def _styles(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in str(text).split(",") if s.strip())


RULES = [
    ("--hb-interval", finite_positive, "seconds > 0"),
    ("--hb-resources", lambda n: n >= 1, "an integer >= 1"),
    ("--hb-styles", lambda s: bool(_styles(s)) and set(_styles(s)) <= set(STYLES),
     f"a non-empty comma list of {','.join(STYLES)}"),
    ("--hb-timeout", finite_positive, "seconds > 0"),
    ("--hb-reconcile", lambda s: all(HYBRID.matches(n) for n in _styles(s)),
     "a comma list of hybrid subscription names (hybrid, hybrid_ff, ...)"),
    (option_flag("reconcile_interval"), finite_positive, "seconds > 0"),
    *((option_flag(k), f.check or (lambda _v: True), f.words()) for k, f in mode_fields("polling").items()),
]

CFG = argparse.Namespace(**option_values(None, OPTIONS), styles=STYLES, reconcile=())
_indices = UserIndices()  # user indices (0, 1, ... in one process); an index seeds its user's phase
_polls, _observations = RecordFile("polls"), RecordFile("observations")


class _Poller(FastHttpUser):
    abstract = True
    mode = ""
    fixed_count = 0  # the real counts are set from the options in _configure()
    rid: int | None = None  # EtagPoller: its resource
    flags_initial = True  # CursorPoller: False, its catch-up falls in the warm-up and its rows never said so
    target: CursorFeed | EtagResource

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.index = _indices.next()
        self.worker = worker_index(environment)  # rows say which worker (and so which clock) timed them
        self.period_ns = round(CFG.hb_interval * 1e9)
        rng = random.Random(CFG.hb_seed * 1_000_003 + self.index)
        self.phase_ns = int(rng.random() * self.period_ns)
        self.next_ns = 0

    def on_start(self) -> None:
        self.next_ns = time.time_ns() + self.phase_ns
        self.wait()  # Locust runs a task before the first wait: sleep until the first intended send

    def wait_time(self) -> float:
        return max(0.0, (self.next_ns - time.time_ns()) / 1e9)

    def ordinal(self) -> int:
        """This user's number in its class, unique across the run's workers (scenarios/_ordinals.py); StopUser
        when the master's plan never came."""
        ordinal = ORDINALS.take(type(self).__name__)
        if ordinal is None:
            raise StopUser()
        return ordinal

    @task
    def poll(self) -> None:
        intended, self.next_ns = self.next_ns, self.next_ns + self.period_ns  # late slots are sent, not skipped
        run_poll(self.target, self.client, DETAILED, intended, self.record)

    def record(self, o: Outcome, intended_ns: int, followup: bool) -> None:
        """A polls row and an observations row per change taught, as the run's analysis reads them: an error
        counts as an empty poll; an ETag user's first read is a sync (initial), neither empty nor new."""
        sync = o.first_read
        _polls.write({"mode": self.mode, "user": self.index, "worker": self.worker,
                      "resource_id": self.rid, "t_intended_ns": intended_ns,
                      "t_send_ns": o.t_send_ns, "t_recv_ns": o.t_recv_ns, "status": o.status,
                      "empty": o.error is not None or (not sync and o.n_new == 0), "n_new": 0 if sync else o.n_new,
                      "bytes": o.nbytes, "error": o.error, "followup": followup,
                      "initial": o.initial and self.flags_initial, **self.row_extra(followup)})
        for change in o.new:  # an ETag read: one observation, the latest change, whatever it skipped
            _observations.write({"mode": self.mode, "user": self.index, "worker": self.worker,
                                 "change_id": change.change_id,
                                 "t_obs_ns": o.t_recv_ns})

    def row_extra(self, followup: bool) -> dict[str, Any]:
        """Columns a poller adds to its polls rows (tables.py declares them)."""
        return {}


class CursorPoller(_Poller):
    """One subscriber reading the whole feed; a full page is followed at once by the next one."""

    mode = MODE_CURSOR
    flags_initial = False

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.target = CursorFeed(CFG.hb_cursor_limit)  # from seq 0: catch up on history during warm-up


class EtagPoller(_Poller):
    """One user per resource: conditional GET, 304 when nothing changed."""

    mode = MODE_ETAG

    def on_start(self) -> None:
        self.rid = self.ordinal() % CFG.hb_resources
        self.target = EtagResource(self.rid)
        super().on_start()


class _LabelledFeed(CursorFeed):
    """The cursor feed, each request labelled with the mode the producer charges it to."""

    def __init__(self, limit: int, mode: str) -> None:
        super().__init__(limit)
        self.label = {MODE_LABEL_HEADER: mode}

    def request(self) -> tuple[str, str, dict[str, str] | None]:
        path, name, _ = super().request()
        return path, name, self.label


class ReconcilePoller(_Poller):
    """Webhook + reconcile: one user per hybrid subscription reads the whole feed every --hb-reconcile-interval,
    as the safety net under the subscription's webhooks. Its polls are charged to the subscription's mode, and
    what they teach are that mode's observations `via` "pull" (its deliveries' arrivals are its "push" ones)."""

    flags_initial = True  # its catch-up from seq 0 is a sync, not a reconciliation

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.period_ns = round(CFG.hb_reconcile_interval * 1e9)  # the same seeded phase, as a share of its own period
        self.phase_ns = int(random.Random(CFG.hb_seed * 1_000_003 + self.index).random() * self.period_ns)

    def on_start(self) -> None:
        self.mode = CFG.reconcile[self.ordinal() % len(CFG.reconcile)]
        self.target = _LabelledFeed(CFG.hb_cursor_limit, self.mode)  # from seq 0, like CursorPoller
        super().on_start()

    def record(self, o: Outcome, intended_ns: int, followup: bool) -> None:
        super().record(o._replace(new=[]), intended_ns, followup)  # the polls row; n_new is kept
        for change in o.new:
            _observations.write({"mode": self.mode, "user": self.index, "worker": self.worker,
                                 "change_id": change.change_id,
                                 "t_obs_ns": o.t_recv_ns, "via": "pull"})



class AdaptivePoller(_Poller):
    """One subscriber reading the whole feed at an interval that adapts (bench.adaptive): longer after an empty
    poll, back to the shortest (or one step shorter) after a useful one, never sooner than the producer's advice.
    Its rows say the interval the policy chose (interval_s) and the advice each answer carried (advice_s)."""

    mode = MODE_ADAPTIVE
    flags_initial = False

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.target = self.feed = AdvisedFeed(CFG.hb_cursor_limit, MODE_ADAPTIVE)
        policy = AdaptivePolicy(CFG.hb_adaptive_min, CFG.hb_adaptive_max, CFG.hb_adaptive_factor,
                                CFG.hb_adaptive_shrink)
        rng = random.Random(CFG.hb_seed * 1_000_003 + self.index)
        self.phase_ns = int(rng.random() * policy.min_s * 1e9)  # the first wait: a phase in the shortest interval
        self.schedule = Schedule(policy)
        self.useful = False
        self.advice_s: float | None = None
        self.recv_ns = 0

    def poll(self) -> None:  # its only task (set below), in place of _Poller's fixed-interval one
        intended = self.next_ns
        self.useful, self.advice_s = False, None
        run_poll(self.target, self.client, DETAILED, intended, self.record)
        self.next_ns = self.schedule.after(intended, self.recv_ns, self.useful, self.advice_s)

    def record(self, o: Outcome, intended_ns: int, followup: bool) -> None:
        if not followup:
            self.useful = o.error is None and o.n_new > 0
        if self.feed.advice_s is not None:  # the longest wait any answer of this poll asked for
            self.advice_s = max(self.advice_s or 0.0, self.feed.advice_s)
        self.recv_ns = o.t_recv_ns
        super().record(o, intended_ns, followup)

    def row_extra(self, followup: bool) -> dict[str, Any]:
        return {"interval_s": None if followup else self.schedule.interval_s, "advice_s": self.feed.advice_s}


AdaptivePoller.tasks = [AdaptivePoller.poll]  # Locust adds a base class's @task to a subclass's: replace, not add


LONG_POLL_RETRY_NS = 1_000_000_000  # a failed long poll is retried after this (a timed-out one at once)


class LongPoller(_Poller):
    """Long polling on the feed: each request is held by the producer until a change or --hb-long-wait, and the
    next is sent as soon as an answer arrives (its intended time: that arrival); a failed one 1 s later, so a
    producer that is down is not hammered. Locust's stop kills a held request at once (_stop_long_polls)."""

    mode = MODE_LONG
    default_headers = {MODE_LABEL_HEADER: MODE_LONG}  # the producer charges its requests to polling_long

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.target = CursorFeed(CFG.hb_cursor_limit, wait=CFG.hb_long_wait)

    def on_start(self) -> None:
        self.next_ns = time.time_ns()  # no phase: it is due at once

    @task
    def poll(self) -> None:
        run_poll(self.target, self.client, DETAILED, self.next_ns, self.record)

    def record(self, o: Outcome, intended_ns: int, followup: bool) -> None:
        super().record(o, intended_ns, followup)
        self.next_ns = o.t_recv_ns + (LONG_POLL_RETRY_NS if o.error is not None else 0)



LongPoller.tasks = [LongPoller.poll]  # Locust adds a base class's @task to a subclass's: replace, not add


SSE_BACKOFF_S = (0.2, 2.0)  # a failed (re)connect waits 0.2 s, doubling up to 2 s; after a stream ends: at once
_listening: set[SseListener] = set()


class SseListener(User):
    """One subscriber holding GET /changes/stream (Server-Sent Events) open; after a disconnect it reconnects
    with Last-Event-ID = the last event's id, so the producer replays exactly what it missed.

    Rows: an observation per event, stamped when its bytes arrived; a polls row per connection (attempts that
    failed included), written when the connection ends, or when Locust stops (test_stopping closes the socket):
    t_intended_ns = t_send_ns = when it connected, t_recv_ns = when it ended, n_new = its events, bytes = its
    body. A connection that hears nothing for 2 heartbeats + --hb-timeout is taken for dead and replaced.
    """

    mode = MODE_SSE
    fixed_count = 0  # set from the options in _configure()
    network_timeout = connection_timeout = 5.0

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.index = _indices.next()
        self.worker = worker_index(environment)  # rows say which worker (and so which clock) timed them
        self.last_id: str | None = None  # the Last-Event-ID of the next connection (None: start at the head)
        self.backoff = SSE_BACKOFF_S[0]
        self.stream: EventStream | None = None
        self.stopping = False

    def wait_time(self) -> float:
        return 0.0  # the task waits itself (the back-off), between connections only

    def on_start(self) -> None:
        _listening.add(self)

    def on_stop(self) -> None:
        _listening.discard(self)

    def stop_listening(self) -> None:
        """Locust is stopping: end the held connection now (its row is written) rather than be killed in it."""
        self.stopping = True
        if self.stream is not None:
            self.stream.close()  # the read blocked on it raises at once

    @task
    def listen(self) -> None:
        if self.stopping:
            raise StopUser()  # Locust is stopping: no new connection
        if self.connect() or self.stopping:
            return
        gevent.sleep(self.backoff)
        self.backoff = min(SSE_BACKOFF_S[1], self.backoff * 2)

    def connect(self) -> bool:
        """One connection, to its end; whether the producer accepted it (HTTP 200)."""
        headers = {MODE_LABEL_HEADER.title(): self.mode}  # as aiohttp's clients send it: not charged as bytes
        if self.last_id is not None:
            headers["Last-Event-ID"] = self.last_id
        status, events, nbytes, error, t_head = 0, 0, 0, None, None
        t_send = time.time_ns()
        try:
            self.stream = EventStream(self.host or "", PATH_STREAM, headers, CFG.hb_timeout,
                                      CFG.hb_timeout + 2 * CFG.hb_sse_heartbeat)
            status, t_head = self.stream.status, time.time_ns()
            if self.stopping:  # Locust began stopping while this connection was being made
                return status == 200
            if status != 200:
                error = f"HTTP {status}"
                return False
            self.backoff = SSE_BACKOFF_S[0]
            parser = SseParser()
            for piece in self.stream.body():
                t_obs = time.time_ns()
                nbytes += len(piece)
                for event in parser.feed(piece):
                    change_id = json.loads(event.data)["change_id"]
                    self.last_id = event.id  # only once the event is whole and read: a cut one is replayed
                    events += 1
                    _observations.write({"mode": self.mode, "user": self.index, "worker": self.worker,
                                         "change_id": change_id,
                                         "t_obs_ns": t_obs})
            return True
        except (OSError, StreamBroken) as exc:  # refused, reset, cut off (a producer killed), silent too long
            if not self.stopping:  # the socket we closed ourselves at the end of the run is no error
                error = short_error(exc)
            return status == 200  # a stream that was running: reconnect at once, then back off
        except (ValueError, KeyError, TypeError) as exc:  # not a change: resume after the last good event, later
            error = "bad event: " + short_error(exc)
            return False
        finally:  # also when Locust kills the greenlet: a connection always leaves its row
            if self.stream is not None:
                self.stream.close()
                self.stream = None
            t_end = time.time_ns()
            _polls.write({"mode": self.mode, "user": self.index, "worker": self.worker,
                          "resource_id": None, "t_intended_ns": t_send,
                          "t_send_ns": t_send, "t_recv_ns": t_end, "status": status, "empty": events == 0,
                          "n_new": events, "bytes": nbytes, "error": error, "followup": False, "initial": False})
            self.environment.events.request.fire(
                request_type="GET", name=PATH_STREAM, response_time=((t_head or t_end) - t_send) / 1e6,
                response_length=nbytes, exception=StreamBroken(error) if error else None, context={},
                response=None, url=PATH_STREAM)


USERS: dict[str, type[User]] = {cls.__name__: cls for cls in (CursorPoller, EtagPoller, LongPoller, AdaptivePoller,
                                                              SseListener, ReconcilePoller)}  # by class name


def _configure(opts: Any) -> list[str]:
    """Check the --hb-* options; if valid, apply them to CFG and the user classes. Returns the errors."""
    values, errors = checked_values(opts, OPTIONS, RULES)
    if errors:
        return errors
    if values["hb_adaptive_min"] > values["hb_adaptive_max"]:
        return [f"--hb-adaptive-min {values['hb_adaptive_min']!r} must be <= --hb-adaptive-max "
                f"{values['hb_adaptive_max']!r}"]
    styles = _styles(values["hb_styles"])
    reconcile = _styles(values["hb_reconcile"])
    vars(CFG).update(values, styles=styles, reconcile=reconcile)
    _polls.directory = _observations.directory = values["hb_records"]
    for kind in MODE_KINDS:  # each polling kind names its user and how many it needs (bench.modes)
        if kind.locust_user is not None and kind.users_per_run is not None:
            cls = USERS.get(kind.locust_user)
            if cls is None:  # a kind whose user is not written yet (tests/test_modes.py): it cannot run
                if kind.style in styles:
                    return [f"--hb-styles {kind.style}: no Locust user {kind.locust_user} in scenarios/pollers.py"]
                continue
            cls.fixed_count = kind.users_per_run(values["hb_resources"]) if kind.style in styles else 0
            if kind is HYBRID:  # configured by [webhook]: its users per subscription of its kind
                cls.fixed_count = len(reconcile) * kind.users_per_run(values["hb_resources"])
            cls.weight = 0  # fixed counts only: a larger -u must not spawn extra pollers
            cls.network_timeout = cls.connection_timeout = values["hb_timeout"]
    LongPoller.network_timeout = values["hb_timeout"] + values["hb_long_wait"]  # a held answer is not late
    return []


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    add_options(parser, OPTIONS)


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    if errors := attach(environment, _polls, _observations):  # on a Locust worker: rows to the master
        fail_at_init("pollers", errors)
    if errors := _configure(environment.parsed_options):
        fail_at_init("pollers", errors)
    ORDINALS.attach(environment)  # resource ids and hybrid subscriptions unique across workers
    opts, total = environment.parsed_options, sum(cls.fixed_count for cls in USERS.values())
    if opts is None:  # library mode: the caller picks the user count
        return
    if opts.num_users is None:
        opts.num_users, opts.spawn_rate = total, opts.spawn_rate or total
    elif opts.num_users != total:
        log.warning("pollers: -u %s but the styles and resources make %d users", opts.num_users, total)


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_: Any) -> None:
    stamp_layout(environment)
    _indices.reset(environment)  # the same phases and ids on every run
    # Re-applied here because the web UI and a master may have changed the options since init.
    if errors := _configure(environment.parsed_options):
        log.error("pollers: not starting: %s", "; ".join(errors))
        if environment.runner is not None:
            gevent.spawn(environment.runner.stop)  # start() goes on spawning after this event: stop after it


@events.test_stopping.add_listener
def _stop_listening(**_: Any) -> None:
    for listener in list(_listening):
        listener.stop_listening()


@events.test_stopping.add_listener
@events.quitting.add_listener
def _stop_long_polls(environment: Environment, **_: Any) -> None:
    """A held long poll is a wait, not a task to let finish: kill it now, or Locust's stop would wait up to
    --stop-timeout for it and SIGTERM would leave its greenlet to a blocking read (the request is not recorded)."""
    runner = environment.runner
    users = [g.args[0] for g in runner.user_greenlets if g.args] if runner is not None else []
    for user in users:
        if isinstance(user, LongPoller) and not user.greenlet.dead:
            user.stop(force=True)  # kills and waits: gone from Locust's group before it stops the others


@events.test_stop.add_listener
@events.quitting.add_listener
def _close_rows(**_: Any) -> None:
    _polls.close()  # a row written after this reopens the file: nothing is lost at SIGTERM
    _observations.close()


if __name__ == "__main__":  # `locust --help` never imports the locustfile (Locust issue #2917): list them here
    print_help("scenarios/pollers.py", __doc__ or "", OPTIONS)
