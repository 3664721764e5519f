"""Producer app factory: store, change generator, polling API, subscriptions and dispatcher wired together."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable

from aiohttp import web

from bench.config import Scenario
from bench.modes import find_kind, route_default_modes
from bench.protocol import ATTACK_LABEL_HEADER, MODE_LABEL_HEADER, ChangeEvent
from bench.records import JsonlWriter

from ..common import loop_lag_ctx
from . import events  # noqa: F401  (registers GET PATH_EVENT, a thin event's fetch, on views.routes)
from . import stream as _stream  # noqa: F401  (registers GET /changes/stream on the views' routes)
from .advice import install_advice
from .dispatcher import Dispatcher
from .generator import ChangeGenerator, generation_seed
from .keys import DEFAULT_DELIVERY, DISPATCHER, GENERATOR, LEDGER, MARKS, NOTIFIER, SNAPSHOT, SSE_HEARTBEAT, STORE
from .ledger import METER, POLL_CPU_SAMPLE_NS, Ledger, Meter, header_bytes
from .marks import MarkLog
from .notify import ChangeNotifier
from .store import Store
from .views import EMPTY_POLL_MODES, EMPTY_POLLS, routes

__all__ = ["create_app", "drop_torn_tail"]

# Route name -> mode charged for an unlabelled request (each kind declares its route in bench.modes); a request
# labelled with a known mode name (MODE_LABEL_HEADER) is charged to that mode instead.
_ROUTE_MODE = route_default_modes()
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_LABEL_RAW = MODE_LABEL_HEADER.encode()  # lower case: raw header names are compared case-insensitively


def _request_head_bytes(request: web.Request) -> int:
    """`header_bytes` of the request line and headers (a repeated name counted once, with its last value), from
    the raw bytes: latin-1 maps byte to character, so lengths and repeats are those of the decoded text."""
    # hookbench's own measurement label is not part of the consumer's cost, however its name is spelt
    headers = {name: value for name, value in request.raw_headers if name.lower() != _LABEL_RAW}
    # "<method> <path> HTTP/1.1" CRLF, "Name: value" CRLF each, CRLF
    return len(request.method) + len(request.raw_path) + 14 + sum(map(len, headers)) + \
        sum(map(len, headers.values())) + 4 * len(headers)


def _label(request: web.Request, default: str) -> str:
    """The mode a request is charged to: its label when some mode kind claims the label, else the route's."""
    label = request.headers.get(MODE_LABEL_HEADER)
    return label if label is not None and find_kind(label) is not None else default


def _charged(mode: str, handler: Handler, ledger: Ledger) -> Handler:
    """`handler` charging each request to `mode` (or to the mode its label names) in `ledger`: the CPU of the
    handler, the request's bytes, and the response's bytes (head as sent, Date and Server included, plus body).
    A handler that awaits (long poll, stream) reports its waits, held time and streamed bytes through the
    request's `Meter` (ledger.py), so only its own CPU is counted.

    A wrapper on the two poll routes rather than a middleware and an on_response_prepare signal: those cost
    more per empty poll than the accounting itself (see `python -m bench.perf.loadbench`). It prepares the response
    itself (aiohttp would do it next) so the head is final when counted. A response aiohttp makes up for an
    unexpected exception (500) is not counted in bytes_out.

    CPU: every poll is timed while the mode is quiet; when it is busy, one poll per POLL_CPU_SAMPLE_NS is, and
    its CPU is counted once for itself and once for each poll since the previous timed one (see ledger.py).
    """
    last_timed = -POLL_CPU_SAMPLE_NS  # perf_counter_ns of the last timed poll
    untimed = 0  # polls since then, not timed: the next timed poll stands for them

    async def charged(request: web.Request) -> web.StreamResponse:
        nonlocal last_timed, untimed
        if ATTACK_LABEL_HEADER in request.headers:
            # The attack load reads the feed to rebuild real deliveries for its replays: that is not the
            # consumer's polling, so it is not charged to a polling mode (a measurement label, never a decision).
            return await handler(request)
        resp: web.StreamResponse | None = None
        now = time.perf_counter_ns()  # a vDSO read, unlike the thread-CPU clock
        timed = now - last_timed >= POLL_CPU_SAMPLE_NS
        cost = ledger.mode(_label(request, mode))
        cost.requests += 1  # counted when it arrives: a held request is a request while it waits
        cost.bytes_in += _request_head_bytes(request)
        meter = request[METER] = Meter(cost, timed)
        if timed:
            last_timed = now
        try:
            resp = await handler(request)
        except web.HTTPException as exc:  # aiohttp answers with the exception itself: it is a Response
            resp = exc
            raise
        finally:
            meter.release()
            if timed:
                cost.cpu_ns += meter.stop() * (untimed + 1)
                cost.cpu_timed += 1
                untimed = 0
            else:
                untimed += 1
            if resp is not None:  # a streamed response was prepared by its handler, which counted its body
                await resp.prepare(request)  # the head is final from here (Date, Server, Content-Length added)
                cost.bytes_out += _response_bytes(resp)
        return resp

    charged.__name__ = charged.__qualname__ = getattr(handler, "__name__", "handler")
    return charged


def _response_bytes(response: web.StreamResponse) -> int:
    body = getattr(response, "body", None)
    size = len(body) if isinstance(body, (bytes, bytearray)) else (response.content_length or 0)
    return header_bytes(f"HTTP/1.1 {response.status} {response.reason}", response.headers) + size


def _add_routes(app: web.Application, ledger: Ledger) -> None:
    """The views' routes, the poll routes wrapped by `_charged`."""
    for route in routes:
        name = route.kwargs.get("name") if isinstance(route, web.RouteDef) else None
        if name in _ROUTE_MODE:
            assert isinstance(route, web.RouteDef)  # registered as the views declare it (a GET also answers HEAD)
            route = web.RouteDef(route.method, route.path, _charged(_ROUTE_MODE[name], route.handler, ledger),
                                 route.kwargs)
        route.register(app.router)


def drop_torn_tail(path: Path) -> None:
    """Cut a JSON-lines file back to its last complete line (what a `kill -9` mid-write leaves behind)."""
    try:
        fh = open(path, "r+b")
    except FileNotFoundError:
        return
    with fh:
        end = fh.seek(0, os.SEEK_END)
        pos = end
        while pos > 0:
            start = max(0, pos - 4096)
            fh.seek(start)
            chunk = fh.read(pos - start)
            if pos == end and chunk.endswith(b"\n"):
                return  # whole lines only: nothing to do
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                fh.truncate(start + cut + 1)
                return
            pos = start
        fh.truncate(0)


def create_app(scenario: Scenario, *, db_path: str | Path, records_dir: str | Path | None = None,
               start_changes: bool = True, generation: int = 0, empty_polls: str = "sqlite") -> web.Application:
    """The producer. `records_dir` None = record nothing to disk (tests, `hookbench serve`).

    `generation` counts restarts on the same store (0 = first start): it reseeds the change schedule and
    is stamped on every mark. Subscriptions and pending outbox rows always come from the store.
    `empty_polls`: "sqlite" (default) queries the store for every poll; "memory" answers the polls that
    find nothing new from the store's in-memory head and versions, with the same bytes (see views.py).
    """
    if empty_polls not in EMPTY_POLL_MODES:
        raise ValueError(f"empty_polls={empty_polls!r}: expected one of {', '.join(map(repr, EMPTY_POLL_MODES))}")
    records = Path(records_dir) if records_dir is not None else None
    if records is not None:  # a killed earlier generation may have left half a line; we append after it
        for stem in ("deliveries", "marks", "loop_lag-producer"):
            drop_torn_tail(records / f"{stem}.jsonl")
    app = web.Application()
    ledger = Ledger()
    _add_routes(app, ledger)
    app[LEDGER] = ledger
    app[MARKS] = MarkLog(records / "marks.jsonl" if records else None)
    advice = install_advice(app, scenario)  # X-Poll-Interval under load: only when the scenario asks for it
    extra = advice.snapshot if advice is not None else dict
    app[SNAPSHOT] = lambda: {**ledger.snapshot(), "pid": os.getpid(), "generation": generation, **extra()}
    app[DEFAULT_DELIVERY] = scenario.webhook.subscriptions[0]
    app[EMPTY_POLLS] = empty_polls
    app[NOTIFIER] = ChangeNotifier()
    app[SSE_HEARTBEAT] = scenario.polling.sse_heartbeat / scenario.run.time_scale

    async def release_held(app: web.Application) -> None:  # before aiohttp waits for handlers to finish
        app[NOTIFIER].close()

    app.on_shutdown.append(release_held)

    async def state_ctx(app: web.Application) -> AsyncIterator[None]:
        store = Store(db_path, scenario.resources.count, legacy_delivery=scenario.webhook.subscriptions[0])
        deliveries = JsonlWriter(records / "deliveries.jsonl") if records else None
        dispatcher = Dispatcher(ledger, deliveries, generation_seed(scenario.seed, generation) + 2, store,
                                enabled=scenario.webhook.enabled)
        await dispatcher.start()
        for sub in store.active_subscriptions():  # resumed: outbox rows left by an earlier run are due now
            try:
                dispatcher.add(sub)
            except (ValueError, OSError) as e:  # e.g. its ca_file is gone: say so, keep the others going
                print(f"producer: subscription {sub.id} ({sub.name}) not resumed: {e}", file=sys.stderr)

        notifier = app[NOTIFIER]

        def on_change(change: ChangeEvent) -> None:
            ledger.changes += 1
            dispatcher.submit(change)
            notifier.notify()

        generator = ChangeGenerator(scenario, store, on_change, generation=generation)
        app[STORE], app[DISPATCHER], app[GENERATOR] = store, dispatcher, generator
        if start_changes:
            generator.start()
        try:
            yield
        finally:
            errors: list[BaseException] = []
            for step in (generator.close, dispatcher.close):
                try:
                    await step()
                except Exception as e:  # keep cleaning up; report all
                    errors.append(e)
            try:
                app[MARKS].write({**app[SNAPSHOT](), "mark": "shutdown"})
            except OSError as e:
                errors.append(e)
            if deliveries is not None:
                deliveries.close()
            store.close()
            if errors:
                raise errors[0]

    app.cleanup_ctx.append(loop_lag_ctx(records, "producer"))
    app.cleanup_ctx.append(state_ctx)
    return app
