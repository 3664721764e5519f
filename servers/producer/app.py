"""Producer app factory: store, change generator, polling API, subscriptions and dispatcher wired together."""

from __future__ import annotations

import time
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable

from aiohttp import web

from bench.config import Scenario
from bench.protocol import MODE_CURSOR, MODE_ETAG, ChangeEvent
from bench.records import JsonlWriter

from ..common import loop_lag_ctx
from .dispatcher import Dispatcher
from .generator import ChangeGenerator
from .keys import DISPATCHER, GENERATOR, LEDGER, MARKS, STORE
from .ledger import Ledger, header_bytes
from .store import Store
from .views import routes

__all__ = ["create_app"]

# Route name -> mode charged for the request.
_ROUTE_MODE = {"resource": MODE_ETAG, "changes": MODE_CURSOR}
_MODE: web.RequestKey[str] = web.RequestKey("hb_mode", str)


@web.middleware
async def _cost_middleware(request: web.Request,
                           handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Charge poll requests to their mode: CPU of the handler (it never awaits I/O) and request bytes."""
    route = request.match_info.route
    mode = _ROUTE_MODE.get(route.name or "") if route is not None else None
    if mode is None:
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


def create_app(scenario: Scenario, *, db_path: str | Path, records_dir: str | Path | None = None,
               start_changes: bool = True) -> web.Application:
    """The producer. `records_dir` None = record nothing to disk (tests, `hookbench serve`)."""
    records = Path(records_dir) if records_dir is not None else None
    app = web.Application(middlewares=[_cost_middleware])
    app.add_routes(routes)
    app.on_response_prepare.append(_count_response_bytes)
    ledger = Ledger()
    app[LEDGER] = ledger
    app[MARKS] = []

    async def state_ctx(app: web.Application) -> AsyncIterator[None]:
        store = Store(db_path, scenario.resources.count)
        deliveries = JsonlWriter(records / "deliveries.jsonl") if records else None
        marks = JsonlWriter(records / "marks.jsonl") if records else None
        dispatcher = Dispatcher(scenario.webhook, ledger, deliveries, scenario.seed + 2)
        await dispatcher.start()
        for sub in store.active_subscriptions():
            dispatcher.add(sub)

        def on_change(change: ChangeEvent) -> None:
            ledger.changes += 1
            dispatcher.submit(change)

        generator = ChangeGenerator(scenario, store, on_change)
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
            if marks is not None:
                for snap in app[MARKS]:
                    marks.write(snap)
                marks.write({**ledger.snapshot(), "mark": "shutdown"})
                marks.close()
            if deliveries is not None:
                deliveries.close()
            store.close()
            if errors:
                raise errors[0]

    app.cleanup_ctx.append(loop_lag_ctx(records, "producer"))
    app.cleanup_ctx.append(state_ctx)
    return app
