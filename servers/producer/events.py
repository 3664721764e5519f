"""GET /events/{change_id}: the change a thin event names, for its consumer's fetch (registered on views.routes).

The route's name is the THIN kind's `charged_route`, so app.py charges each fetch (request, bytes, CPU) to the
mode its MODE_LABEL_HEADER names: the thin subscription whose delivery led to it.
"""

from __future__ import annotations

from aiohttp import web

from bench.modes import THIN
from bench.protocol import PATH_EVENT

from .keys import STORE
from .views import _json, routes

__all__ = ["get_event"]

# the protocol's path; change ids are "ch<seq>", so 1-64 letters, digits or "_" admit every id
_EVENT_ROUTE = PATH_EVENT.replace("{change_id}", r"{change_id:[A-Za-z0-9_]{1,64}}")


@routes.get(_EVENT_ROUTE, name=THIN.charged_route)
async def get_event(request: web.Request) -> web.Response:
    """The change as the feed sends it (GET /changes), by one indexed query; 404 for an id the log lacks."""
    change_id = request.match_info["change_id"]
    change = request.app[STORE].change_by_id(change_id)
    if change is None:
        raise web.HTTPNotFound(text=f"no change {change_id}")
    return _json(change)
