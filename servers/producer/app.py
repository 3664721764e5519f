"""Producer app factory: store, change generator, polling API, subscriptions and dispatcher wired together."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable

from aiohttp import web

from bench.config import Scenario
from bench.protocol import ATTACK_LABEL_HEADER, MODE_CURSOR, MODE_ETAG, ChangeEvent
from bench.records import JsonlWriter

from ..common import loop_lag_ctx
from .dispatcher import Dispatcher
from .generator import ChangeGenerator, generation_seed
from .keys import DEFAULT_DELIVERY, DISPATCHER, GENERATOR, LEDGER, MARKS, SNAPSHOT, STORE
from .ledger import Ledger, header_bytes
from .marks import MarkLog
from .store import Store
from .views import routes

__all__ = ["create_app", "drop_torn_tail"]

# Route name -> mode charged for the request.
_ROUTE_MODE = {"resource": MODE_ETAG, "changes": MODE_CURSOR}
_MODE: web.RequestKey[str] = web.RequestKey("hb_mode", str)


@web.middleware
async def _cost_middleware(request: web.Request,
                           handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Charge poll requests to their mode: CPU of the handler (it never awaits I/O) and request bytes."""
    route = request.match_info.route
    mode = _ROUTE_MODE.get(route.name or "") if route is not None else None
    if mode is None or ATTACK_LABEL_HEADER in request.headers:
        # The attack load reads the feed to rebuild real deliveries for its replays: that is not the
        # consumer's polling, so it is not charged to a polling mode (a measurement label, never a decision).
        return await handler(request)
    cost = request.app[LEDGER].mode(mode)
    cpu0 = time.thread_time_ns()
    try:
        return await handler(request)
    finally:
        cost.cpu_ns += time.thread_time_ns() - cpu0
        cost.requests += 1
        cost.bytes_in += header_bytes(f"{request.method} {request.raw_path} HTTP/1.1",
                                      {k.decode("latin-1"): v.decode("latin-1") for k, v in request.raw_headers})
        request[_MODE] = mode


async def _count_response_bytes(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: the head is final here (Date, Server, Content-Length added), so count it."""
    mode = request.get(_MODE)
    if mode is None:
        return
    body = getattr(response, "body", None)
    size = len(body) if isinstance(body, (bytes, bytearray)) else (response.content_length or 0)
    request.app[LEDGER].mode(mode).bytes_out += header_bytes(
        f"HTTP/1.1 {response.status} {response.reason}", response.headers) + size


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
               start_changes: bool = True, generation: int = 0) -> web.Application:
    """The producer. `records_dir` None = record nothing to disk (tests, `hookbench serve`).

    `generation` counts restarts on the same store (0 = first start): it reseeds the change schedule and
    is stamped on every mark. Subscriptions and pending outbox rows always come from the store.
    """
    records = Path(records_dir) if records_dir is not None else None
    if records is not None:  # a killed earlier generation may have left half a line; we append after it
        for stem in ("deliveries", "marks", "loop_lag-producer"):
            drop_torn_tail(records / f"{stem}.jsonl")
    app = web.Application(middlewares=[_cost_middleware])
    app.add_routes(routes)
    app.on_response_prepare.append(_count_response_bytes)
    ledger = Ledger()
    app[LEDGER] = ledger
    app[MARKS] = MarkLog(records / "marks.jsonl" if records else None)
    app[SNAPSHOT] = lambda: {**ledger.snapshot(), "pid": os.getpid(), "generation": generation}
    app[DEFAULT_DELIVERY] = scenario.webhook.subscriptions[0]

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

        def on_change(change: ChangeEvent) -> None:
            ledger.changes += 1
            dispatcher.submit(change)

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
