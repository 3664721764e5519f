"""Typed application keys of the producer app (shared state lives under these)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from aiohttp import web

if TYPE_CHECKING:
    from bench.config import DeliveryCfg

    from .dispatcher import Dispatcher
    from .generator import ChangeGenerator
    from .ledger import Ledger
    from .marks import MarkLog
    from .notify import ChangeNotifier
    from .store import Store

STORE: web.AppKey["Store"] = web.AppKey("store")
DISPATCHER: web.AppKey["Dispatcher"] = web.AppKey("dispatcher")
GENERATOR: web.AppKey["ChangeGenerator"] = web.AppKey("generator")
LEDGER: web.AppKey["Ledger"] = web.AppKey("ledger")
MARKS: web.AppKey["MarkLog"] = web.AppKey("marks")
# the counters plus who took them (pid, generation): what /stats and every mark start from
SNAPSHOT: web.AppKey[Callable[[], dict[str, Any]]] = web.AppKey("snapshot")
# delivery policy of a POST /subscriptions without "delivery": the scenario's first subscription
DEFAULT_DELIVERY: web.AppKey["DeliveryCfg"] = web.AppKey("default_delivery")
# wakes held requests (long polls, streams) on every committed change
NOTIFIER: web.AppKey["ChangeNotifier"] = web.AppKey("notifier")
# seconds of silence after which an event stream gets a heartbeat comment (live: polling.sse_heartbeat / time_scale)
SSE_HEARTBEAT: web.AppKey[float] = web.AppKey("sse_heartbeat", float)
