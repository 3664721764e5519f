"""bench/protocol.py is authoritative: every route the producer and the receiver register is one of its PATH_* paths."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from test_producer import make_scenario

import bench.protocol as protocol
from servers.producer import create_app as create_producer
from servers.receiver import create_app as create_receiver
from servers.receiver import simple_setup

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
DECLARED = {name: value for name, value in vars(protocol).items() if name.startswith("PATH_")}


def _canonical(path: str) -> str:
    """A route path as aiohttp resolves it: "/resources/{id:\\d+}" and "/resources/{id}" are the same route."""
    return web.Application().router.add_resource(path).canonical


def _routes(app: web.Application) -> set[tuple[str, str]]:
    """(method, canonical path) of every route `app` registered."""
    return {(route.method, route.resource.canonical) for route in app.router.routes() if route.resource is not None}


def test_every_route_is_a_protocol_path(tmp_path: Path) -> None:
    declared = {_canonical(path) for path in DECLARED.values()}
    producer = _routes(create_producer(make_scenario(), db_path=tmp_path / "p.db", start_changes=False))
    receiver = _routes(create_receiver(simple_setup([SECRET])))
    assert len(producer) >= 8 and len(receiver) >= 6  # the apps registered their routes: nothing checked vacuously
    undeclared = sorted(route for route in producer | receiver if route[1] not in declared)
    assert not undeclared, f"routes with a literal path, not a bench.protocol PATH_* constant: {undeclared}"


def test_every_protocol_path_is_served(tmp_path: Path) -> None:
    served = {path for _, path in _routes(create_producer(make_scenario(), db_path=tmp_path / "p.db",
                                                          start_changes=False))}
    served |= {path for _, path in _routes(create_receiver(simple_setup([SECRET])))}
    unserved = {name for name, path in DECLARED.items() if _canonical(path) not in served}
    # /hooks[/<key>[/<status>]] has no route of its own: the receiver's catch-all (PATH_RECEIVER_ANY) serves it
    assert unserved == {"PATH_HOOKS"}
