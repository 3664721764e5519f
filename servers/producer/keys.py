"""Typed application keys of the producer app (shared state lives under these)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .dispatcher import Dispatcher
    from .generator import ChangeGenerator
    from .ledger import Ledger
    from .store import Store

STORE: web.AppKey["Store"] = web.AppKey("store")
DISPATCHER: web.AppKey["Dispatcher"] = web.AppKey("dispatcher")
GENERATOR: web.AppKey["ChangeGenerator"] = web.AppKey("generator")
LEDGER: web.AppKey["Ledger"] = web.AppKey("ledger")
MARKS: web.AppKey[list] = web.AppKey("marks")
