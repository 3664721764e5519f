"""What every hookbench server process shares: serving an app until SIGTERM, the ready line, loop-lag sampling."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import AsyncIterator, Callable

from aiohttp import web

from bench.protocol import READY_PREFIX
from bench.records import JsonlWriter

__all__ = ["serve", "loop_lag_ctx", "LAG_INTERVAL_S"]

LAG_INTERVAL_S = 0.1


async def _serve(app: web.Application, host: str, port: int) -> None:
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        real_port = runner.addresses[0][1]
        # The orchestrator (and a person) learn the real port from this line; port 0 picks a free one.
        print(f"{READY_PREFIX} port={real_port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()  # runs every cleanup_ctx: records are flushed and closed


def serve(app: web.Application, host: str = "127.0.0.1", port: int = 0) -> None:
    """Serve `app` until SIGTERM/SIGINT, then clean up. Only loopback is allowed."""
    if host not in ("127.0.0.1", "::1", "localhost"):
        raise SystemExit(f"refusing to bind {host!r}: hookbench servers bind loopback only (127.0.0.1 or ::1)")
    asyncio.run(_serve(app, host, port))


def loop_lag_ctx(records_dir: Path | None, name: str) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup_ctx sampling event-loop lag and process CPU every LAG_INTERVAL_S into loop_lag-<name>.jsonl.

    Lag = how late a sleep of LAG_INTERVAL_S wakes up: the harness's own saturation signal.
    """

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        if records_dir is None:
            yield
            return
        writer = JsonlWriter(Path(records_dir) / f"loop_lag-{name}.jsonl")
        loop = asyncio.get_running_loop()

        async def sample() -> None:
            while True:
                t0 = loop.time()
                await asyncio.sleep(LAG_INTERVAL_S)
                lag = loop.time() - t0 - LAG_INTERVAL_S
                writer.write({"server": name, "t_ns": time.time_ns(), "lag_ms": max(0.0, lag) * 1e3,
                              "cpu_s": time.process_time()})

        task = asyncio.create_task(sample())
        try:
            yield
        finally:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            writer.close()

    return ctx
