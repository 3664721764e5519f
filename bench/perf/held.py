"""`python -m bench.perf held`: what one waiting long-poll client costs the producer, in memory and file descriptors.

    python -m bench.perf held [--counts 0,250,500,1000] [--out .benchmarks/held.json]

Starts a real producer process on 127.0.0.1 (as a run does), stops its change generator, then holds N long
polls at once (GET /changes?after=HEAD&wait=300, each on its own connection) for each N of --counts, in
increasing order. At each N, once the producer's held gauge (/stats) shows N, it samples the producer's RSS and
open file descriptors (psutil, the median of a few samples). The least-squares slopes over the N's are the
bytes and descriptors per waiting client. Then ONE change (POST /control/changes {"apply": 1}) must answer every
waiter with that change: the producer wakes them all without polling its store.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from aiohttp import ClientSession, ClientTimeout, TCPConnector

from bench.errors import HookbenchError, RunError, ScenarioError
from bench.manifest import collect_metadata
from bench.modes import MODE_LONG
from bench.orchestration.procs import ProcessGroup
from bench.protocol import LONG_WAIT_MAX_S, MODE_LABEL_HEADER, PATH_CHANGES, PATH_CONTROL_CHANGES, PATH_STATS
from bench.results import write_json

__all__ = ["HeldSettings", "run", "main", "HELD_FORMAT_VERSION"]

HELD_FORMAT_VERSION = 1
REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / ".benchmarks" / "held.json"
DEFAULT_COUNTS = (0, 250, 500, 1000)
MAX_WAITERS = 5000
BATCH = 100  # connections opened at once: under the listen backlog (128), so no SYN waits a second to be retried
SETTLE_S = 0.5  # after the gauge shows N, before sampling
SAMPLES = 5  # RSS and fds read this many times, 0.1 s apart: the median is kept
GAUGE_TIMEOUT_S = 60.0  # bound on waiting for the held gauge to reach N, and for the release
LABEL = {MODE_LABEL_HEADER: MODE_LONG}


@dataclass(frozen=True)
class HeldSettings:
    counts: tuple[int, ...] = DEFAULT_COUNTS
    out: Path = DEFAULT_OUT

    def check(self) -> None:
        c = self.counts
        if not 2 <= len(c) <= 20 or list(c) != sorted(set(c)) or c[0] < 0 or c[-1] > MAX_WAITERS:
            raise ScenarioError("python -m bench.perf held", "--counts", ",".join(map(str, c)),
                                f"expected 2 to 20 increasing whole numbers from 0 to {MAX_WAITERS}, "
                                "e.g. 0,250,500,1000")


def _fd_headroom(need: int) -> None:
    """This process holds one socket per waiter and the producer (which inherits the limit) another."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return
    if hard != resource.RLIM_INFINITY and hard < need:
        raise RunError(f"bench.perf held: {need} open files needed but the hard limit is {hard} "
                       "(ulimit -Hn): raise it or ask for fewer waiters (--counts)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def _slope(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares (slope, intercept) of ys on xs."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return slope, my - slope * mx


class _Producer:
    """The client side: the waiters, the gauge, the samples of the producer process."""

    def __init__(self, session: ClientSession, base: str, pid: int) -> None:
        import psutil

        self.session = session
        self.base = base
        self.proc = psutil.Process(pid)
        self.head = 0
        self.waiters: list[asyncio.Task[tuple[int, Any]]] = []

    async def _json(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        async with self.session.request(method, self.base + path, json=body, **kw) as resp:
            if resp.status != 200:
                raise RunError(f"bench.perf held: {method} {path}: HTTP {resp.status}: {await resp.text()}")
            return await resp.json()

    async def quiet(self) -> None:
        """Stop the change generator and find the head of the log: from now on nothing changes."""
        await self._json("POST", PATH_CONTROL_CHANGES, {"running": False})
        after = 0
        while True:
            page = await self._json("GET", PATH_CHANGES, params={"after": after, "limit": 10_000})
            after = page["next_after"]
            if not page["has_more"]:
                self.head = after
                return

    async def _wait(self) -> tuple[int, Any]:
        params = {"after": self.head, "limit": 1, "wait": f"{LONG_WAIT_MAX_S:g}"}
        async with self.session.get(self.base + PATH_CHANGES, params=params, headers=LABEL) as resp:
            return resp.status, await resp.json()

    async def held(self) -> int:
        stats = await self._json("GET", PATH_STATS)
        return int(stats["modes"].get(MODE_LONG, {}).get("held", 0))

    async def hold(self, n: int) -> None:
        """Open waiters (in batches) until `n` are held, as the producer's gauge says."""
        while len(self.waiters) < n:
            more = min(BATCH, n - len(self.waiters))
            self.waiters += [asyncio.create_task(self._wait()) for _ in range(more)]
            loop = asyncio.get_running_loop()
            deadline = loop.time() + GAUGE_TIMEOUT_S
            while (held := await self.held()) < len(self.waiters):
                done = [t for t in self.waiters if t.done()]
                if done:
                    raise RunError(f"bench.perf held: a long poll ended while nothing changed: {_outcome(done[0])}")
                if loop.time() > deadline:
                    raise RunError(f"bench.perf held: {held} long polls held after {GAUGE_TIMEOUT_S:.0f} s, "
                                   f"{len(self.waiters)} sent")
                await asyncio.sleep(0.05)

    async def sample(self) -> dict[str, Any]:
        await asyncio.sleep(SETTLE_S)
        rss, fds = [], []
        for _ in range(SAMPLES):
            rss.append(self.proc.memory_info().rss)
            fds.append(self.proc.num_fds())
            await asyncio.sleep(0.1)
        return {"waiters": len(self.waiters), "held": await self.held(), "rss_bytes": statistics.median(rss),
                "fds": statistics.median(fds), "rss_samples": rss, "fd_samples": fds}

    async def release(self) -> dict[str, Any]:
        """ONE change: every waiter must come back with exactly that change."""
        t0 = time.perf_counter()
        await self._json("POST", PATH_CONTROL_CHANGES, {"apply": 1})
        done, pending = await asyncio.wait(self.waiters, timeout=GAUGE_TIMEOUT_S) if self.waiters else (set(), set())
        seconds = time.perf_counter() - t0
        for t in pending:
            t.cancel()
        want = [self.head + 1]
        woken = sum(1 for t in done if _ok(t) and [c["seq"] for c in t.result()[1]["changes"]] == want)
        failed = [_outcome(t) for t in done if not _ok(t)]
        return {"waiters": len(self.waiters), "answered": len(done), "woken_by_the_change": woken,
                "not_answered": len(pending), "failures": failed[:5], "seconds": seconds,
                "held_after": await self.held()}


def _ok(task: asyncio.Task[tuple[int, Any]]) -> bool:
    return not task.cancelled() and task.exception() is None and task.result()[0] == 200


def _outcome(task: asyncio.Task[tuple[int, Any]]) -> str:
    if task.cancelled():
        return "cancelled"
    if task.exception() is not None:
        return f"{type(task.exception()).__name__}: {task.exception()}"
    status, body = task.result()
    return f"HTTP {status} {json.dumps(body)[:200]}"


async def _measure(base: str, pid: int, counts: tuple[int, ...], log: Callable[[str], None]
                   ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    timeout = ClientTimeout(total=None, sock_connect=10, sock_read=LONG_WAIT_MAX_S + 30)
    async with ClientSession(connector=TCPConnector(limit=0), timeout=timeout) as session:
        p = _Producer(session, base, pid)
        await p.quiet()
        points = []
        try:
            for n in counts:
                await p.hold(n)
                point = await p.sample()
                log(f"bench.perf held: {n:5d} held: RSS {point['rss_bytes'] / 2**20:7.1f} MiB, {point['fds']:g} fds")
                points.append(point)
            return points, await p.release()
        finally:
            for t in p.waiters:
                t.cancel()


def run(settings: HeldSettings, log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True)
        ) -> dict[str, Any]:
    """Measure; return the result (also written to settings.out)."""
    settings.check()
    _fd_headroom(settings.counts[-1] + 256)
    scenario = {"name": "perf-held", "seed": 1, "run": {"duration": "1s"}, "resources": {"count": 10},
                "changes": {"rate": 0.1}, "polling": {"interval": "1s"}, "webhook": {"enabled": False}}
    with tempfile.TemporaryDirectory(prefix="hookbench-held-") as tmp, ProcessGroup() as group:
        path = Path(tmp) / "scenario.json"
        path.write_text(json.dumps(scenario))
        producer = group.start("producer", [sys.executable, "-m", "servers.producer", "--scenario-json", str(path),
                                            "--db", str(Path(tmp) / "producer.db"), "--port", "0"],
                               Path(tmp) / "producer.log", cwd=REPO)
        base = f"http://127.0.0.1:{producer.port}"
        log(f"bench.perf held: producer pid {producer.pid} on {base}; counts {list(settings.counts)}")
        points, release = asyncio.run(_measure(base, producer.pid, settings.counts, log))
    ns = [float(p["waiters"]) for p in points]
    rss_slope, rss_at_0 = _slope(ns, [float(p["rss_bytes"]) for p in points])
    fd_slope, fd_at_0 = _slope(ns, [float(p["fds"]) for p in points])
    result = {"format_version": HELD_FORMAT_VERSION, "kind": "perf_held", **collect_metadata(REPO),
              "settings": {"counts": list(settings.counts), "out": str(settings.out), "wait_s": LONG_WAIT_MAX_S},
              "points": points,
              "per_waiter": {"rss_bytes": rss_slope, "fds": fd_slope, "rss_bytes_at_0": rss_at_0, "fds_at_0": fd_at_0,
                             "method": "least-squares slope over the points"},
              "release": release}
    settings.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(settings.out, result)
    return result


def report(result: dict[str, Any]) -> str:
    lines = ["held long polls   producer RSS (MiB)   open fds"]
    for p in result["points"]:
        lines.append(f"{p['waiters']:>15d}   {p['rss_bytes'] / 2**20:>18.1f}   {p['fds']:>8g}")
    w, r = result["per_waiter"], result["release"]
    lines.append(f"per waiting client (least-squares slope): {w['rss_bytes'] / 1024:.1f} KiB of RSS, "
                 f"{w['fds']:.2f} fds")
    lines.append(f"release: ONE change answered {r['woken_by_the_change']} of {r['waiters']} waiters with that change "
                 f"in {r['seconds']:.2f} s ({r['not_answered']} not answered, {len(r['failures'])} failed)")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m bench.perf held", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counts", default=",".join(map(str, DEFAULT_COUNTS)),
                    help="comma list of how many long polls to hold, increasing (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON result file (default: %(default)s)")
    return ap


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    try:
        try:
            counts = tuple(int(x) for x in a.counts.split(","))
        except ValueError:
            raise ScenarioError("python -m bench.perf held", "--counts", a.counts,
                                "expected a comma list of whole numbers, e.g. 0,250,500,1000") from None
        result = run(HeldSettings(counts=counts, out=a.out))
    except HookbenchError as e:
        print(e, file=sys.stderr)
        return e.exit_code
    print(report(result))
    print(f"\nwritten to {a.out}")
    r = result["release"]
    return 0 if r["woken_by_the_change"] == r["waiters"] else 1
