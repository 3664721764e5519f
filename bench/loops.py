"""The event loop a server process runs on (uvloop when installed, unless $HOOKBENCH_LOOP says otherwise).

Shared by the servers (`servers.common.serve`) and the harness's benchmark (`bench.perf`), which serves bare
handlers on the same loop so that its comparisons are like for like.
"""

from __future__ import annotations

import asyncio
import os
from typing import Callable

__all__ = ["LOOP_ENV", "loop_factory"]

LOOP_ENV = "HOOKBENCH_LOOP"  # auto (default: uvloop when importable), uvloop (required), asyncio (the stdlib loop)


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop a server process runs on, from $HOOKBENCH_LOOP; None = the stdlib loop.

    uvloop serves the same aiohttp app with less CPU per request (measured by `python -m bench.perf`);
    HOOKBENCH_LOOP=asyncio turns it off, e.g. to compare or to rule it out.
    """
    choice = os.environ.get(LOOP_ENV, "auto") or "auto"
    if choice not in ("auto", "uvloop", "asyncio"):
        raise SystemExit(f"{LOOP_ENV}={choice!r}: expected auto, uvloop or asyncio")
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise SystemExit(f"{LOOP_ENV}=uvloop but uvloop is not installed: pip install uvloop") from None
        return None
    return uvloop.new_event_loop
