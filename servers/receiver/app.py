"""Receiver app factory and routes: POST /hooks[/<name-or-token>[/<status>]] through the defences, dedup and faults
(any sender's verified JSON accepted; a thin endpoint's own accepted deliveries then fetched, fetch.py);
GET /health, GET /stats, POST /control/start, GET /inspect and /inspect.json."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator, Callable

from aiohttp import web

from bench.protocol import (
    PATH_HEALTH,
    PATH_HOOKS,
    PATH_INSPECT,
    PATH_INSPECT_JSON,
    PATH_RECEIVER_ANY,
    PATH_RECEIVER_START,
    PATH_STATS,
)
from bench.signing import Scheme, make_scheme

from ..common import LISTENER, Listener, loop_lag_ctx
from .audit import Arrival, AuditLog, Redactor
from .checks import Reject, Target, answer, check_request, resolve
from .config import ReceiverSetup
from .dedup import DedupStore
from .faults import FaultModel, Outages
from .fetch import Fetcher
from .inspector import CSP, as_html, as_json
from .stats import HookStats

__all__ = ["create_app", "Receiver", "RECEIVER"]

log = logging.getLogger("hookbench.receiver")

RETRY_AFTER = {"Retry-After": "1"}
AUDIT_FLUSH_S = 0.5  # audit.jsonl is buffered: flushed at least this often, and on shutdown


class Shed(Reject):
    """503 at capacity (receiver_max_concurrent): a Reject that /stats counts apart from other errors."""


@dataclass
class Receiver:
    """The state behind the routes: set-up, one verifier per endpoint, dedup, faults, outages, audit, stats."""

    setup: ReceiverSetup
    schemes: dict[str, Scheme]
    dedup: DedupStore
    faults: FaultModel
    outages: Outages
    audit: AuditLog
    wall_clock: Callable[[], float]
    stats: HookStats = field(default_factory=HookStats)
    fetcher: Fetcher | None = None  # set when some endpoint receives thin events
    _targets: dict[str, Target] = field(default_factory=dict, repr=False)

    def resolve(self, path: str) -> Target:
        """`checks.resolve`, remembered for the paths that reach an endpoint by name (a bounded set: endpoints x
        forced statuses). Paths with a secret token are resolved every time, in constant time, and never kept."""
        target = self._targets.get(path)
        if target is None:
            target = resolve(path, self.setup)
            if target.endpoint is not None and not self.setup.receiver.path_token:
                self._targets[path] = target
        return target

    async def handle(self, request: web.Request, target: Target, a: Arrival) -> web.Response:
        """The pipeline for one /hooks request; raises Reject for every answer but the successful ones."""
        outages = self.outages
        if outages.windows:  # without receiver_down windows there is no outage to look up on every request
            if outages.refusing:  # a connection opened before the outage: it fails with no answer at all
                if request.transport is not None:
                    request.transport.close()
                a.verdict, a.reason = "error", "receiver down (refuse window): connection closed without an answer"
                return answer(503)  # never delivered: the transport is closed
            if outages.answering_503:
                raise Reject(503, "receiver down (503 window)", "error", RETRY_AFTER)
        ep = target.endpoint
        if ep is None:
            raise Reject(404, "unknown endpoint" if target.path.startswith(PATH_HOOKS) else "unknown path")
        await check_request(request, ep, self.setup, self.schemes[ep.name], a, self.wall_clock)
        assert a.msg_id is not None
        key = (ep.name, a.msg_id)  # ids are per endpoint: two senders may use the same ids
        if target.forced is not None:
            return self._forced(target.forced, key, a)
        if key in self.dedup:
            a.status, a.verdict = 200, "duplicate"
            return answer(200, "duplicate: already processed")
        faults = self.faults
        if not faults.try_acquire():
            raise Shed(503, f"over capacity: {faults.in_processing} requests in processing "
                         f"(receiver_max_concurrent = {faults.cfg.receiver_max_concurrent})", "error", RETRY_AFTER)
        try:
            if faults.inject_error():
                raise Reject(500, "injected error (receiver_error_rate)", "error")
            # Remembered before any await: a copy arriving while this one is processed is a duplicate, and
            # nothing after this line can fail the delivery, so a sender told "duplicate" lost nothing.
            self.dedup.add(key)
            if faults.cfg.receiver_processing > 0:
                await asyncio.sleep(faults.cfg.receiver_processing)
        finally:
            faults.release()
        delay = faults.delay_s()
        if delay > 0:
            await asyncio.sleep(delay)
        a.status, a.verdict = 204, "accepted"
        return answer(204)

    def _forced(self, status: int, key: tuple[str, str], a: Arrival) -> web.Response:
        """/hooks/<key>/<status>: a 2xx counts as accepted (deduplicated); anything else is not processed.

        The fault model (capacity, injected errors, delay) is bypassed: the point is a predictable answer.
        """
        a.status, a.reason = status, f"forced status {status}"
        if 200 <= status < 300:
            a.verdict = "accepted" if self.dedup.add(key) else "duplicate"
        else:
            a.verdict = "forced"
        return answer(status, f"forced status {status}")


RECEIVER: web.AppKey[Receiver] = web.AppKey("receiver", Receiver)


async def hook(request: web.Request) -> web.StreamResponse:
    """Every request not on a fixed route: resolved, checked, processed, and audited whatever happens."""
    rx = request.app[RECEIVER]
    t_ns, started = time.time_ns(), time.perf_counter()
    rx.stats.begin()
    shed = False
    target = rx.resolve(request.path)
    a = Arrival(t_ns=t_ns, method=request.method, path=target.path, remote=request.remote,
                headers=request.headers, endpoint=target.endpoint.name if target.endpoint else None)
    try:
        resp = await rx.handle(request, target, a)
        # only hookbench's own thin events name a change to fetch; a foreign sender's event is recorded, not fetched
        if a.verdict == "accepted" and not a.foreign and rx.fetcher is not None and target.endpoint is not None \
                and rx.setup.fetches(target.endpoint):
            assert a.msg_id is not None and a.change_id is not None and a.body is not None  # accepted: checked
            rx.fetcher.submit(target.endpoint.name, a.change_id, a.body, (target.endpoint.name, a.msg_id))
    except Reject as r:
        shed = isinstance(r, Shed)
        a.status, a.verdict, a.reason = r.status, r.verdict, r.reason
        resp = answer(r.status, r.reason, r.headers)
        if r.status == 413:
            resp.force_close()  # the rest of the body is not wanted on this connection
    except asyncio.CancelledError:
        a.status, a.verdict, a.reason = None, "error", "cancelled: the client went away"
        raise
    except Exception as e:  # a bug in a check must cost one request, never the receiver
        log.exception("receiver: unexpected error on %s %s", request.method, target.path)
        a.status, a.verdict, a.reason = 500, "error", f"internal error: {e.__class__.__name__}"
        resp = answer(500, a.reason)
    finally:
        a.latency_ms = (time.perf_counter() - started) * 1e3
        rx.stats.end(a.verdict, a.status, shed, bool(a.foreign))
        rx.audit.record(a)
    return resp


async def health(request: web.Request) -> web.Response:
    rx = request.app[RECEIVER]
    return web.json_response({"ok": True, "role": "receiver", "counts": dict(rx.audit.counts),
                              "dedup": rx.dedup.stats(), "in_processing": rx.faults.in_processing,
                              "down": {"refusing": rx.outages.refusing, "answering_503": rx.outages.answering_503,
                                       "t0_ns": rx.outages.t0_ns},
                              "fetches": None if rx.fetcher is None else rx.fetcher.stats()})


async def stats(request: web.Request) -> web.Response:
    """Counters of the hook traffic for load runs (see stats.py); event-loop lag is in loop_lag-receiver.jsonl."""
    return web.json_response(request.app[RECEIVER].stats.as_dict(), headers={"Cache-Control": "no-store"})


async def control_start(request: web.Request) -> web.Response:
    """POST {"t0_ns": N}: the measured window starts at wall-clock N; receiver_down windows count from it."""
    try:
        data = await request.json()
        t0_ns = data["t0_ns"]
        if isinstance(t0_ns, bool) or not isinstance(t0_ns, int) or t0_ns <= 0:
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise web.HTTPBadRequest(text='expected a JSON body {"t0_ns": <wall clock ns, an integer > 0>}') from None
    outages = request.app[RECEIVER].outages
    await outages.start(t0_ns)
    return web.json_response({"ok": True, "t0_ns": t0_ns, "windows": len(outages.windows)})


def _endpoints(setup: ReceiverSetup) -> list[dict[str, str]]:
    """The endpoints as the inspector shows them: tokens never appear."""
    by_token = setup.receiver.path_token
    return [{"name": ep.name, "scheme": ep.scheme,
             "url_path": f"{PATH_HOOKS}/<token>" if by_token else f"{PATH_HOOKS}/{ep.name}"} for ep in setup.endpoints]


async def inspect_json(request: web.Request) -> web.Response:
    rx = request.app[RECEIVER]
    return web.json_response(as_json(rx.audit.newest_first(), rx.audit.counts, _endpoints(rx.setup)),
                             headers={"Cache-Control": "no-store"})


async def inspect_html(request: web.Request) -> web.Response:
    rx = request.app[RECEIVER]
    page = as_html(rx.audit.newest_first(), rx.audit.counts, _endpoints(rx.setup), rx.setup.inspect_last)
    return web.Response(text=page, content_type="text/html", charset="utf-8",
                        headers={"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                                 "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


async def _flush_every(audit: AuditLog, period: float) -> None:
    """Rows are flushed by the writes that follow them; this also flushes the last ones before a quiet spell."""
    while True:
        await asyncio.sleep(period)
        audit.flush_due()


def create_app(setup: ReceiverSetup, *, records_dir: str | Path | None = None,
               clock: Callable[[], float] = time.monotonic,
               wall_clock: Callable[[], float] = time.time) -> web.Application:
    """The receiver for `setup`. `clock` (monotonic seconds) times the dedup TTL; `wall_clock` checks signatures.

    HTTPS is the server's business: serve it with `tls.server_context(setup.tls_dir)` when setup.receiver.https.
    """
    if not isinstance(setup, ReceiverSetup):
        raise TypeError(f"create_app needs a ReceiverSetup, got {type(setup).__name__}; "
                        "servers.receiver.config.simple_setup([secret]) builds one from a secret")
    records = Path(records_dir) if records_dir is not None else None
    # ReceiverSetup was validated, so every scheme builds; a bug here should fail loudly at start.
    schemes = {ep.name: make_scheme(ep.scheme, list(ep.secrets), tolerance_s=setup.receiver.tolerance)
               for ep in setup.endpoints}
    # The body cap is the receiver's own (read_body); aiohttp's must not be lower.
    app = web.Application(client_max_size=setup.receiver.max_body + 1)
    listener = Listener()
    app[LISTENER] = listener
    app[RECEIVER] = Receiver(
        setup=setup, schemes=schemes, dedup=DedupStore(setup.receiver.dedup_ttl, clock=clock),
        faults=FaultModel(setup.faults, setup.seed), outages=Outages(setup.faults.receiver_down, listener, records),
        audit=AuditLog(setup.inspect_last, Redactor(setup.secret_values())), wall_clock=wall_clock)
    rx = app[RECEIVER]
    if setup.producer is not None and any(setup.fetches(ep) for ep in setup.endpoints):
        # a fetch that gave up forgets its delivery, so a copy the sender sends again is processed (and fetched)
        rx.fetcher = Fetcher(setup.producer, records, rx.dedup.discard)

    async def fetch_ctx(app: web.Application) -> AsyncIterator[None]:
        fetcher = app[RECEIVER].fetcher
        if fetcher is None:
            yield
            return
        await fetcher.start()
        try:
            yield
        finally:
            await fetcher.close()

    async def records_ctx(app: web.Application) -> AsyncIterator[None]:
        rx = app[RECEIVER]
        flusher = None
        if records is not None:
            rx.audit.open(records)
            flusher = asyncio.create_task(_flush_every(rx.audit, AUDIT_FLUSH_S))
        try:
            yield
        finally:
            if flusher is not None:
                flusher.cancel()
                try:
                    await flusher
                except asyncio.CancelledError:
                    pass
            await rx.outages.close()
            rx.audit.close()

    app.router.add_get(PATH_HEALTH, health)
    app.router.add_get(PATH_STATS, stats)
    app.router.add_post(PATH_RECEIVER_START, control_start)
    app.router.add_get(PATH_INSPECT, inspect_html)
    app.router.add_get(PATH_INSPECT_JSON, inspect_json)
    app.router.add_route("*", PATH_RECEIVER_ANY, hook)  # last: everything else is a (possibly hostile) webhook
    app.cleanup_ctx.append(loop_lag_ctx(records, "receiver"))
    app.cleanup_ctx.append(records_ctx)
    app.cleanup_ctx.append(fetch_ctx)  # stopped first: its cancelled fetches are recorded before anything closes
    return app
