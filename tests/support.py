"""Helpers shared by the tests that drive servers in-process (imported as `support`)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from aiohttp import web

from bench.orchestration.procs import terminate
from bench.protocol import READY_PREFIX, ChangeEvent
from servers.producer.keys import DISPATCHER, STORE

WAIT_S = 10.0  # upper bound of every wait; normally met in milliseconds
REPO = Path(__file__).resolve().parents[1]


async def wait_until(cond: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    """Poll `cond` until true; fail naming `what` after `timeout` (a bound, never a timed assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"gave up after {timeout}s waiting for {what}")
        await asyncio.sleep(0.005)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def changes_db(path: Path, changes: list[tuple[int, str, int]]) -> Path:
    """A producer change log (the analysis's ground truth) holding (seq, change_id, t_change_ns) on resource 0."""
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE changes (seq INTEGER, change_id TEXT, resource_id INTEGER, version INTEGER, "
                "t_change_ns INTEGER)")
    con.executemany("INSERT INTO changes VALUES (?, ?, 0, 1, ?)", changes)
    con.commit()
    con.close()
    return path


def change(app: web.Application, resource_id: int = 0, value: int = 1) -> ChangeEvent:
    """Mutate a resource and hand the change to the dispatcher, as the generator does."""
    ch = app[STORE].apply_change(resource_id, time.time_ns(), value)
    app[DISPATCHER].submit(ch)
    return ch


def start_server(argv: list[str]) -> tuple[subprocess.Popen[str], int]:
    """`python -m bench.cli <argv>` until its ready line; returns the process and its port."""
    proc = subprocess.Popen([sys.executable, "-m", "bench.cli", *argv], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until the server listens (or exits: empty line)
    if not line.startswith(READY_PREFIX):
        stop_server(proc)
        raise AssertionError(f"no ready line: {line!r} {proc.stderr.read() if proc.stderr else ''}")
    return proc, int(line.split("port=")[1])


def stop_server(proc: subprocess.Popen[str]) -> None:
    terminate(proc)


def run_command(argv: list[str], out: Path, timeout: float) -> tuple[dict[str, Any], Path, str]:
    """`hookbench <argv> --out OUT` to completion (exit 0 required): (summary.json, run dir, stdout).

    Started in its own session and killed with its group if it overruns, so a hung run leaves nothing.
    """
    proc = subprocess.Popen([sys.executable, "-m", "bench.cli", *argv, "--out", str(out)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, f"exit {proc.returncode}\n{stdout[-3000:]}\n{stderr[-3000:]}"
    (run_dir,) = [d for d in out.iterdir() if d.is_dir()]
    return json.loads((run_dir / "summary.json").read_text()), run_dir, stdout
