"""The polling both polling locustfiles share: pollers.py (`hookbench run`) and fleet.py (`hookbench load`).

A subscriber reads the change feed (CursorFeed: GET /changes?after=SEQ, a full page followed at once by the
next; AdvisedFeed: the same, labelled, keeping the wait each answer advised) or one resource (EtagResource:
GET /resources/{id} with If-None-Match). Here: building the request, timing and reading the answer, moving the
cursor or the ETag, and what the answer taught (an Outcome). The locustfiles keep what differs: their schedules
and the rows they write from each Outcome.

Not a locustfile: no User, no option, no event listener.
"""

from __future__ import annotations

import json
import time
from functools import partial
from typing import Any, Callable, NamedTuple

from bench.adaptive import parse_poll_interval
from bench.protocol import MODE_LABEL_HEADER, PATH_CHANGES, PATH_RESOURCE, POLL_INTERVAL_HEADER, etag_for
from scenarios._locust_common import request_error, retry_after_s, short_error

__all__ = ["Change", "Outcome", "Wording", "TERSE", "DETAILED", "CursorFeed", "EtagResource", "AdvisedFeed",
           "run_poll"]

NAME_RESOURCE = PATH_RESOURCE.replace("{id}", "[id]")  # one row in Locust's statistics for all the resources
NAME_LONG_POLL = PATH_CHANGES + "?wait"  # long polls: their own row (their times are mostly the producer's wait)
_BAD_BODY = (ValueError, KeyError, TypeError, AttributeError)  # JSON errors are ValueErrors
RETRY_AFTER_STATUSES = (429, 503)  # answers whose Retry-After an adaptive poller honours


class Change(NamedTuple):
    """A change a poll taught the subscriber: its id, and when the producer made it (None: not said)."""

    change_id: str
    t_change_ns: int | None


class Outcome(NamedTuple):
    """One request of a poll and what its answer taught the subscriber."""

    status: int  # 0: no response
    t_send_ns: int
    t_recv_ns: int
    nbytes: int  # response body
    error: str | None
    initial: bool  # sent before the subscriber's initial sync was over
    first_read: bool  # the ETag subscriber's first successful read of its resource
    new: list[Change]  # the page's changes past the cursor; an ETag read's latest change when the version moved
    n_new: int  # changes not seen before: len(new) for a cursor; the versions gained (all of them at a first read)
    more: bool  # a full page that moved the cursor: the next page is due at once


class Wording(NamedTuple):
    """How a failed request reads in a row's `error`: each locustfile keeps the words its records always had."""

    transport: Callable[[Any], tuple[int, str | None]]  # (status, error) of a response, before its body is read
    bad_body: Callable[[Exception], str]


# fleet.py: "timeout", "connection", "HTTP 503", "bad body: KeyError"
TERSE = Wording(request_error, lambda exc: f"bad body: {type(exc).__name__}")
# pollers.py: the exception's own text, "HTTP 503", "bad JSON", "bad body: KeyError: 'changes'"
DETAILED = Wording(partial(request_error, classify=False),
                   lambda exc: "bad JSON" if isinstance(exc, json.JSONDecodeError) else f"bad body: {short_error(exc)}")


class _Target:
    """What a subscriber polls; subclasses say how to ask, how to read the answer and what it taught."""

    @property
    def initial(self) -> bool:
        raise NotImplementedError

    def request(self) -> tuple[str, str, dict[str, str] | None]:
        """(path, name in Locust's statistics, headers) of the next request."""
        raise NotImplementedError

    def parse(self, body: Any, headers: Any) -> Any:
        """The answer's JSON body, checked; raises one of _BAD_BODY when it is not what the producer sends."""
        raise NotImplementedError

    def take(self, data: Any) -> tuple[bool, list[Change], int, bool]:
        """Move the subscriber's state past `data` (None: 304); returns (first_read, new, n_new, more)."""
        raise NotImplementedError

    def answered(self, status: int, headers: Any) -> None:
        """Told each answer's status and headers (0 and {} without one) before its body is read."""

    def poll(self, client: Any, wording: Wording) -> Outcome:
        """One GET that never raises on a bad answer: failures are reported to Locust and returned."""
        initial = self.initial
        path, name, headers = self.request()
        t_send = time.time_ns()
        with client.get(path, name=name, headers=headers, catch_response=True) as resp:
            t_recv = time.time_ns()
            status, error = wording.transport(resp)
            self.answered(status, getattr(resp, "headers", None) or {})
            body = getattr(resp, "content", None) or b""
            data = None
            if error is None and status != 304:
                try:
                    data = self.parse(json.loads(body), resp.headers)
                except _BAD_BODY as exc:
                    error = wording.bad_body(exc)
            if error:
                resp.failure(error)
            else:
                resp.success()  # explicit, so a 304 counts as a success too
        if error:
            return Outcome(status, t_send, t_recv, len(body), error, initial, False, [], 0, False)
        return Outcome(status, t_send, t_recv, len(body), None, initial, *self.take(data))


class CursorFeed(_Target):
    """A reader of the whole change feed from seq 0; its catch-up pages are its initial sync. With `wait`
    (seconds) it long-polls: each request asks the producer to hold it until a change or the wait ends."""

    def __init__(self, limit: int, wait: float | None = None) -> None:
        self.limit = limit
        self.after = 0  # the last seq seen
        self.synced = False  # caught up once (a page without has_more)
        self._wait = "" if wait is None else f"&wait={wait:g}"  # plain seconds, as bench.protocol says
        self._name = PATH_CHANGES if wait is None else NAME_LONG_POLL

    @property
    def initial(self) -> bool:
        return not self.synced

    def request(self) -> tuple[str, str, dict[str, str] | None]:
        return f"{PATH_CHANGES}?after={self.after}&limit={self.limit}{self._wait}", self._name, None

    def parse(self, body: Any, headers: Any) -> tuple[list[tuple[int, Change]], int, bool]:
        changes = [(int(c["seq"]), Change(str(c["change_id"]), int(c["t_change_ns"]))) for c in body["changes"]]
        return changes, int(body["next_after"]), bool(body["has_more"])

    def take(self, data: tuple[list[tuple[int, Change]], int, bool] | None) -> tuple[bool, list[Change], int, bool]:
        if data is None:  # a 304 the feed never sends: nothing learnt, no progress
            return False, [], 0, False
        changes, next_after, has_more = data
        new = [change for seq, change in changes if seq > self.after]
        progressed, self.after = next_after > self.after, max(self.after, next_after)
        if not has_more:
            self.synced = True
        return False, new, len(new), has_more and progressed  # no progress would loop forever on a faulty server


class EtagResource(_Target):
    """A conditional reader of one resource: 304 when nothing changed; its first read is its initial sync."""

    def __init__(self, rid: int) -> None:
        self.rid = rid
        self.etag: str | None = None
        self.version: int | None = None  # the last version seen; None before the first read

    @property
    def initial(self) -> bool:
        return self.version is None

    def request(self) -> tuple[str, str, dict[str, str] | None]:
        headers = {"If-None-Match": self.etag} if self.etag else None
        return PATH_RESOURCE.format(id=self.rid), NAME_RESOURCE, headers

    def parse(self, body: Any, headers: Any) -> tuple[int, Change | None, str | None]:
        change_id = body["change_id"]
        latest = None if change_id is None else Change(str(change_id), body.get("t_change_ns"))
        return int(body["version"]), latest, headers.get("ETag")

    def take(self, data: tuple[int, Change | None, str | None] | None) -> tuple[bool, list[Change], int, bool]:
        if data is None:  # 304: not modified
            return False, [], 0, False
        version, latest, etag = data
        last = self.version
        n_new = version if last is None else max(0, version - last)
        self.version = version if last is None else max(last, version)
        self.etag = etag or etag_for(self.rid, self.version)
        # one change taught, the latest, whatever the version skipped (coalesced)
        return last is None, [latest] if n_new and latest is not None else [], n_new, False


class AdvisedFeed(CursorFeed):
    """The cursor feed as the adaptive poller reads it: every request labelled with its mode, and the wait each
    answer asked for kept in `advice_s` (seconds; None: none): X-Poll-Interval on any answer, Retry-After on a
    429/503 (the longer of the two when both)."""

    def __init__(self, limit: int, mode: str) -> None:
        super().__init__(limit)
        self.headers = {MODE_LABEL_HEADER: mode}
        self.advice_s: float | None = None

    def request(self) -> tuple[str, str, dict[str, str] | None]:
        path, name, _ = super().request()
        return path, name, self.headers

    def answered(self, status: int, headers: Any) -> None:
        advice = parse_poll_interval(headers.get(POLL_INTERVAL_HEADER))
        if status in RETRY_AFTER_STATUSES and (asked := retry_after_s(headers.get("Retry-After"))) is not None:
            advice = asked if advice is None else max(advice, asked)
        self.advice_s = advice


def _call(fn: Callable[[], Outcome]) -> Outcome | None:
    return fn()


def run_poll(target: _Target, client: Any, wording: Wording, intended_ns: int,
             record: Callable[[Outcome, int, bool], None],
             run: Callable[[Callable[[], Outcome]], Outcome | None] = _call) -> None:
    """One scheduled poll of `target`, with its follow-up pages: each sent at once, its intended time the
    previous answer's arrival. record(outcome, intended_ns, followup) writes each request's rows; run(fn) runs
    each request and its rows (fleet.py shields them from Locust's kill)."""
    followup = False
    while True:
        outcome = run(partial(_request, target, client, wording, intended_ns, followup, record))
        if outcome is None or not outcome.more:
            return
        intended_ns, followup = outcome.t_recv_ns, True


def _request(target: _Target, client: Any, wording: Wording, intended_ns: int, followup: bool,
             record: Callable[[Outcome, int, bool], None]) -> Outcome:
    outcome = target.poll(client, wording)
    record(outcome, intended_ns, followup)
    return outcome
