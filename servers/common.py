"""What every hookbench server process shares: serving an app (HTTP or HTTPS) until SIGTERM on uvloop when it is
installed, the ready line, a listener the app can pause and resume, loop-lag sampling."""

from __future__ import annotations

import asyncio
import signal
import ssl
import time
from pathlib import Path
from typing import AsyncIterator, Callable

from aiohttp import web

from bench.hosts import LOOPBACK_NAMES, is_local_address
from bench.loops import LOOP_ENV, loop_factory
from bench.protocol import READY_PREFIX
from bench.records import JsonlWriter

__all__ = ["serve", "start_app", "Listener", "LISTENER", "loop_lag_ctx", "LAG_INTERVAL_S", "loop_factory", "LOOP_ENV"]

LAG_INTERVAL_S = 0.1
LOOPBACK = LOOPBACK_NAMES


def _refused(host: str) -> str | None:
    """Why `host` may not be bound (None: it may): only addresses of this machine, never the wildcard."""
    try:
        if is_local_address(host):
            return None
    except OSError as e:
        return f"refusing to bind {host!r}: {e.strerror or e}"
    return (f"refusing to bind {host!r}: hookbench servers bind one address of this machine (127.0.0.1, ::1, or "
            "an interface's address given with --bind), never the wildcard")

class Listener:
    """Where an app listens: lets the app stop listening (new connections are refused) and listen again.

    `start_app` attaches it to the runner; the first `start()` learns the real port, so every later
    `start()` listens on the same port (a receiver outage in "refuse" mode). Open connections are not
    touched by `stop()`: the app decides what to do with requests that still arrive on them.
    """

    def __init__(self) -> None:
        self._runner: web.BaseRunner | None = None
        self._host = "127.0.0.1"
        self._port = 0
        self._ssl: ssl.SSLContext | None = None
        self.listening = False

    @property
    def attached(self) -> bool:
        return self._runner is not None

    @property
    def port(self) -> int:
        return self._port

    def attach(self, runner: web.BaseRunner, host: str, port: int, ssl_context: ssl.SSLContext | None = None) -> None:
        self._runner, self._host, self._port, self._ssl = runner, host, port, ssl_context

    async def start(self) -> int:
        """Listen on the attached host and port (the real port once known); returns the port."""
        if self._runner is None:
            raise RuntimeError("Listener.start() before attach()")
        if self.listening:
            return self._port
        site = web.TCPSite(self._runner, self._host, self._port, ssl_context=self._ssl)
        await site.start()
        if self._port == 0:  # first start on port 0: learn the port picked, and keep it
            self._port = self._runner.addresses[-1][1]
        self.listening = True
        return self._port

    async def stop(self) -> None:
        """Stop listening on every site of the runner; open connections stay open."""
        if self._runner is None:
            raise RuntimeError("Listener.stop() before attach()")
        for site in list(self._runner.sites):
            await site.stop()
        self.listening = False


LISTENER: web.AppKey[Listener] = web.AppKey("listener", Listener)


async def start_app(app: web.Application, host: str = "127.0.0.1", port: int = 0, *,
                    ssl_context: ssl.SSLContext | None = None) -> tuple[web.AppRunner, int]:
    """Set `app` up and listen on host:port (port 0 picks a free one); returns the runner and the real port.

    The app's own `LISTENER` is used when it has one (so it can stop and resume listening). The caller
    owns the runner: `await runner.cleanup()` runs every cleanup_ctx.
    """
    if (why := _refused(host)) is not None:
        raise ValueError(why)
    listener = app.get(LISTENER) or Listener()
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        listener.attach(runner, host, port, ssl_context)
        real_port = await listener.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, real_port


async def _serve(app: web.Application, host: str, port: int, ssl_context: ssl.SSLContext | None,
                 on_ready: Callable[[int], None] | None) -> None:
    runner, real_port = await start_app(app, host, port, ssl_context=ssl_context)
    try:
        # The orchestrator (and a person) learn the real port from this line; port 0 picks a free one.
        print(f"{READY_PREFIX} port={real_port}", flush=True)
        if on_ready is not None:
            on_ready(real_port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()  # runs every cleanup_ctx: records are flushed and closed


def serve(app: web.Application, host: str = "127.0.0.1", port: int = 0, *,
          ssl_context: ssl.SSLContext | None = None, on_ready: Callable[[int], None] | None = None) -> None:
    """Serve `app` until SIGTERM/SIGINT, then clean up. Only an address of this machine is allowed (not 0.0.0.0).

    With `ssl_context` it serves HTTPS. `on_ready(port)` runs once it listens, after the ready line.
    The loop is uvloop when installed, unless $HOOKBENCH_LOOP says otherwise (`loop_factory`).
    """
    if (why := _refused(host)) is not None:
        raise SystemExit(why)
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(_serve(app, host, port, ssl_context, on_ready))


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
