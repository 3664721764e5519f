"""The harness's own load benchmark (issue 4): our servers' hot paths against bare aiohttp handlers that serve the
same bytes, and the load generators against each other, in one run on this machine, loopback only.

    python -m bench.perf [--duration 5] [--warmup 1] [--repeat 3] [--client auto|wrk|locust] [--out FILE]
    python -m bench.perf show FILE                                 # the table of an earlier result
    python -m bench.perf serve-bare --get-body JSON [--port 0]    # the bare server; the benchmark starts it

Pairs, each measured by the same client for the same time: the producer's empty poll (SQLite, then the
in-memory head) vs a bare GET handler returning the same bytes; the receiver's verify + dedup + record path
(signed POSTs with fresh ids) vs a bare POST handler answering 204; Locust's FastHttpUser vs HttpUser on the
bare GET; Locust vs wrk on the bare GET. Servers and clients are separate processes. Each measurement is a
warm-up then a measured window, repeated; medians are reported with their spread, ratios are paired by
repetition, and every server's CPU over each window shows whether it (and not the client) was the bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from bench.errors import HookbenchError, RunError
from bench.loops import loop_factory
from bench.manifest import collect_metadata
from bench.orchestration.procs import ProcessGroup, terminate
from bench.protocol import READY_PREFIX, change_event, encode_event
from bench.results import write_json
from bench.signing import make_scheme, new_secret_for

__all__ = ["Settings", "run", "main", "TARGETS", "PERF_FORMAT_VERSION"]

PERF_FORMAT_VERSION = 1
REPO = Path(__file__).resolve().parents[2]
PERF_USERS = REPO / "scenarios" / "perf_users.py"
DEFAULT_OUT = REPO / ".benchmarks" / "load.json"
HOOK_PATH = "/hooks/webhook"  # the receiver endpoint's path, as the dispatcher posts to it
SERVER_BUSY = 0.85  # a server below this CPU share (of one core) in its window was probably not the bottleneck
BUSY_BEFORE = 0.20  # share of all CPUs busy in the half second before the run (other work): above it, warn

# ratio -> (numerator, denominator, target, what it says)
TARGETS: dict[str, tuple[str, str, float, str]] = {
    "producer_sqlite/bare": ("producer_sqlite", "bare_get", 0.60, "empty poll, SQLite, vs bare handler"),
    "producer_memory/bare": ("producer_memory", "bare_get", 0.85, "empty poll, in-memory head, vs bare handler"),
    "receiver/bare": ("receiver", "bare_post", 0.70, "verify + dedup + record vs bare 204"),
    "fasthttp/httpuser": ("locust_fast", "locust_http", math.nan, "Locust FastHttpUser vs HttpUser (no target)"),
    "locust/wrk": ("locust_fast", "wrk_bare_get", 0.40, "Locust FastHttpUser vs wrk, bare GET"),
}
GROUPS = ("producer", "receiver", "locust")
SERVER_KEYS = ("bare_get", "producer_sqlite", "producer_memory", "bare_post", "receiver")  # server comparisons


@dataclass(frozen=True)
class Settings:
    duration: int = 5  # seconds of each measured window (wrk takes whole seconds)
    warmup: int = 1
    repeat: int = 3
    client: str = "auto"  # server comparisons: "wrk" (if installed), "locust" (FastHttpUser), "auto" = wrk if present
    connections: int = 32  # wrk connections = Locust users
    locust_processes: int = 2
    loop: str = "auto"  # HOOKBENCH_LOOP of every server process: auto (uvloop when importable), uvloop, asyncio
    groups: tuple[str, ...] = GROUPS
    out: Path = DEFAULT_OUT

    def check(self) -> None:
        problems = []
        if self.duration < 1:
            problems.append(f"--duration {self.duration}: must be a whole number of seconds >= 1")
        if self.warmup < 0:
            problems.append(f"--warmup {self.warmup}: must be a whole number of seconds >= 0")
        if self.repeat < 1:
            problems.append(f"--repeat {self.repeat}: must be >= 1")
        if not 1 <= self.connections <= 1000:
            problems.append(f"--connections {self.connections}: must be 1..1000")
        if not 1 <= self.locust_processes <= 64:
            problems.append(f"--locust-processes {self.locust_processes}: must be 1..64")
        if self.client not in ("auto", "wrk", "locust"):
            problems.append(f"--client {self.client!r}: must be auto, wrk or locust")
        if self.loop not in ("auto", "uvloop", "asyncio"):
            problems.append(f"--loop {self.loop!r}: must be auto, uvloop or asyncio")
        unknown = [g for g in self.groups if g not in GROUPS]
        if unknown or not self.groups:
            problems.append(f"--only {','.join(self.groups)!r}: must be a comma list of {', '.join(GROUPS)}")
        if problems:
            raise RunError("bench.perf: " + "; ".join(problems))


# --- the bare server ------------------------------------------------------------------------------

def serve_bare(argv: list[str]) -> int:
    """An aiohttp app with the least work possible: GET /changes -> fixed JSON bytes, POST /hooks/* -> 204.

    It runs on the same event loop policy as our servers (HOOKBENCH_LOOP), so a ratio compares handlers.
    """
    from aiohttp import web  # only this process serves

    ap = argparse.ArgumentParser(prog="python -m bench.perf serve-bare")
    ap.add_argument("--get-body", required=True, help="the exact body of GET /changes")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args(argv)
    body = args.get_body.encode()

    async def get_changes(_request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json", charset="utf-8")

    async def post_hook(request: web.Request) -> web.Response:
        await request.read()  # the receiver reads every body: so does the bare handler
        return web.Response(status=204)

    app = web.Application()
    app.router.add_get("/changes", get_changes)
    app.router.add_post("/hooks/{tail:.*}", post_hook)

    async def serve() -> None:
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", args.port)
        await site.start()
        print(f"{READY_PREFIX} port={runner.addresses[0][1]}", flush=True)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()

    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(serve())
    return 0


# --- measuring ------------------------------------------------------------------------------------

class CpuSampler:
    """Samples the CPU time of some processes every 50 ms, so any window's CPU share can be read afterwards."""

    def __init__(self, pids: dict[str, int], period: float = 0.05) -> None:
        import psutil

        self._procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self._period = period
        self.samples: dict[str, list[tuple[float, float]]] = {name: [] for name in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="perf-cpu", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, proc in self._procs.items():
                try:
                    t = proc.cpu_times()
                except Exception:  # gone: nothing more to sample
                    continue
                self.samples[name].append((time.monotonic(), t.user + t.system))
            self._stop.wait(self._period)

    def __enter__(self) -> "CpuSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def share(self, name: str, t0: float, t1: float) -> float | None:
        """CPU seconds per second of `name` over [t0, t1] (monotonic), interpolated between samples."""
        s = self.samples.get(name) or []
        if len(s) < 2 or t1 <= t0:
            return None
        return (_interp(s, t1) - _interp(s, t0)) / (t1 - t0)


def _interp(samples: list[tuple[float, float]], t: float) -> float:
    if t <= samples[0][0]:
        return samples[0][1]
    for (ta, ca), (tb, cb) in zip(samples, samples[1:]):
        if ta <= t <= tb:
            return ca + (cb - ca) * (t - ta) / (tb - ta) if tb > ta else cb
    return samples[-1][1]


@dataclass
class Sample:
    """One measured window."""

    rps: float
    requests: int
    errors: int
    seconds: float
    server_cpu: float | None = None  # CPU seconds per second of the server under test
    client_cpu: float | None = None  # the same, of the busiest client process
    extra: dict[str, Any] = field(default_factory=dict)


_WRK_DONE = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('HB-WRK {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d}\n', summary.requests, summary.duration, e.connect,
    e.read, e.write, e.status, e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""
# Each line of the data file: webhook-id TAB webhook-timestamp TAB webhook-signature TAB body (pre-signed).
_WRK_POST = r"""
local reqs, n, i = {}, 0, 0
init = function(args)
  for line in io.lines(args[1]) do
    local id, ts, sig, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
    n = n + 1
    reqs[n] = wrk.format("POST", args[2], {["Content-Type"] = "application/json", ["webhook-id"] = id,
      ["webhook-timestamp"] = ts, ["webhook-signature"] = sig}, body)
  end
end
request = function()
  i = i + 1
  if i > n then i = 1 end
  return reqs[i]
end
""" + _WRK_DONE


class Bench:
    """One benchmark run: its processes, its temporary directory, its samples."""

    def __init__(self, settings: Settings, workdir: Path, group: ProcessGroup, log: Callable[[str], None]) -> None:
        self.s = settings
        self.dir = workdir
        self.pg = group
        self.log = log
        self.wrk = shutil.which("wrk") if settings.client in ("auto", "wrk") else None
        if settings.client == "wrk" and self.wrk is None:
            raise RunError("bench.perf: --client wrk but wrk is not installed (apt-get install wrk), "
                           "or use --client auto")
        self.server_client = "wrk" if self.wrk else "locust"
        self.pids: dict[str, int] = {}
        self.ports: dict[str, int] = {}
        self.secret = new_secret_for("standard")
        self.after = 0
        self.samples: dict[str, list[Sample]] = {}
        self.skipped: dict[str, str] = {}
        self._n = 0

    # --- servers ---
    def _start(self, servers: dict[str, list[str]], timeout: float = 30.0) -> None:
        """Start the servers at once and wait for every ready line (each prints its port)."""
        children = [self.pg.start(name, argv, self.dir / "logs" / f"{name}.log", cwd=REPO, wait_ready=False)
                    for name, argv in servers.items()]
        deadline = time.monotonic() + timeout
        for child in children:
            while child.port is None:
                if child.popen.poll() is not None or time.monotonic() > deadline:
                    raise RunError(f"bench.perf: {child.name} did not start (log {child.log_path}):\n{child.tail()}")
                time.sleep(0.02)
            self.pids[child.name], self.ports[child.name] = child.pid, child.port

    def _producer_argv(self, mode: str) -> list[str]:
        scenario = {"name": "perf", "seed": 1, "run": {"duration": "1s"}, "resources": {"count": 50},
                    "changes": {"rate": 20.0}, "polling": {"interval": "1s"}, "webhook": {"enabled": False}}
        path = self.dir / f"producer-{mode}.json"
        path.write_text(json.dumps(scenario))
        common = ["--scenario-json", str(path), "--db", str(self.dir / f"producer-{mode}.db"),
                  "--records", str(self.dir / f"records-producer-{mode}")]
        if mode == "sqlite":  # the default: exactly what a run starts
            return [sys.executable, "-m", "servers.producer", *common]
        # The in-memory head is an app option without a `python -m servers.producer` flag yet: the same
        # serve(create_app(...)) that entry point runs, with empty_polls set.
        boot = ("import json, sys; from bench.config import scenario_from_dict; from servers.common import serve; "
                "from servers.producer import create_app; a = sys.argv[1:]; "
                "serve(create_app(scenario_from_dict(json.loads(open(a[0]).read()), a[0]), db_path=a[1], "
                "records_dir=a[2], empty_polls=a[3]))")
        return [sys.executable, "-c", boot, str(path), common[3], common[5], mode]

    def start_servers(self) -> None:
        groups = self.s.groups
        servers: dict[str, list[str]] = {}
        if "producer" in groups:
            servers.update({f"producer_{mode}": self._producer_argv(mode) for mode in ("sqlite", "memory")})
        if "receiver" in groups:
            config = {"receiver": {}, "faults": {}, "seed": 1, "inspect_last": 200,
                      "endpoints": [{"name": "webhook", "scheme": "standard", "secrets": [self.secret]}]}
            path = self.dir / "receiver.json"
            path.write_text(json.dumps(config))
            servers["receiver"] = [sys.executable, "-m", "servers.receiver", "--config", str(path),
                                   "--records", str(self.dir / "records-receiver"), "--port", "0"]
        self._start(servers)
        if "producer" in groups:
            time.sleep(0.5)  # the change generators fill the log a little (about 500 changes each)...
            heads = []
            for mode in ("sqlite", "memory"):  # ...then stop: every measured poll is an empty one
                base = f"http://127.0.0.1:{self.ports['producer_' + mode]}"
                _http("POST", f"{base}/control/changes", {"running": False})
                heads.append(_head(base))
            self.after = max(heads)
        page = json.dumps({"changes": [], "next_after": self.after, "has_more": False}, separators=(",", ":"))
        self._start({"bare": [sys.executable, "-m", "bench.perf", "serve-bare", "--get-body", page]})
        if "producer" in groups:
            self._check_same_bytes()

    def url(self, server: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[server]}{path}"

    def get_path(self) -> str:
        return f"/changes?after={self.after}"

    def _check_same_bytes(self) -> None:
        """The comparison is only fair if the bare handler answers exactly what the producer answers."""
        want = _fetch(self.url("bare", self.get_path()))
        for mode in ("sqlite", "memory"):
            got = _fetch(self.url(f"producer_{mode}", self.get_path()))
            if got != want:
                raise RunError(f"bench.perf: producer ({mode}) answers {got!r} but the bare handler {want!r}")

    # --- clients ---
    def _wrk_once(self, url: str, script: str, args: list[str], seconds: int) -> dict[str, Any]:
        assert self.wrk is not None
        path = self.dir / ("wrk-post.lua" if script is _WRK_POST else "wrk-get.lua")
        if not path.exists():
            path.write_text(script)
        cmd = [self.wrk, "-t1", f"-c{self.s.connections}", f"-d{seconds}s", "--timeout", "5s", "-s", str(path),
               url, "--", *args]
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
        except subprocess.TimeoutExpired:
            raise RunError(f"bench.perf: wrk did not finish within {seconds + 60} s: {' '.join(cmd)}") from None
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith("HB-WRK ")), None)
        if out.returncode != 0 or line is None:
            raise RunError(f"bench.perf: wrk failed (exit {out.returncode}): {out.stderr.strip()[-400:]}")
        return json.loads(line[len("HB-WRK "):])

    def run_wrk(self, server: str, url: str, post_file: Callable[[str, int], Path] | None,
            cpu: CpuSampler) -> Sample:
        script = _WRK_DONE if post_file is None else _WRK_POST
        path_only = "/" + url.split("/", 3)[3]

        def args(phase: str, seconds: int) -> list[str]:
            return [] if post_file is None else [str(post_file(phase, seconds)), path_only]

        if self.s.warmup:
            self._wrk_once(url, script, args("warmup", self.s.warmup), self.s.warmup)
        measured_args = args("measured", self.s.duration)
        ru0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
        r = self._wrk_once(url, script, measured_args, self.s.duration)
        ru1, t1 = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
        seconds = r["duration_us"] / 1e6
        errors = sum(r[k] for k in ("connect", "read", "write", "status", "timeout"))
        client_cpu = (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) / (t1 - t0)
        return Sample(r["requests"] / seconds, r["requests"], errors, seconds, cpu.share(server, t0, t1), client_cpu,
                      {"p50_ms": r["p50_us"] / 1e3, "p99_ms": r["p99_us"] / 1e3})

    def run_locust(self, server: str, user: str, path: str, cpu: CpuSampler, processes: int) -> Sample:
        self._n += 1
        out = self.dir / f"locust-{self._n}"
        run_s = self.s.warmup + self.s.duration + 3  # the window starts at each process's first request
        users = self.s.connections
        cmd = [sys.executable, "-m", "locust", "-f", str(PERF_USERS), "--headless", "-u", str(users), "-r",
               str(users), "-t", f"{run_s}s", "--host", f"http://127.0.0.1:{self.ports[server]}", "--only-summary",
               "--loglevel", "WARNING", "--perf-path", path, "--perf-secret", self.secret, "--perf-nonce",
               f"l{self._n}-{secrets.token_hex(3)}", "--perf-warmup", str(self.s.warmup), "--perf-duration",
               str(self.s.duration), "--perf-out", str(out), user]
        if processes > 1:
            cmd += ["--processes", str(processes)]
        log = open(self.dir / "logs" / f"locust-{self._n}.log", "w")
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        deadline = time.monotonic() + run_s + 60
        try:  # every process writes its file when its window ends: no need to wait for -t after that
            while len(list(out.glob("perf-*.json"))) < processes and proc.poll() is None:
                if time.monotonic() > deadline:
                    raise RunError(f"bench.perf: Locust did not end within {run_s + 60} s (log {log.name})")
                time.sleep(0.05)
        finally:
            _stop_session(proc)
            log.close()
        rows = [json.loads(p.read_text()) for p in sorted(out.glob("perf-*.json"))]
        if not rows:
            raise RunError(f"bench.perf: Locust measured nothing (no perf-*.json; log {log.name})")
        t0 = min(r["t0"] for r in rows)
        t1 = max(r["t1"] for r in rows)
        rps = sum(r["requests"] / r["seconds"] for r in rows)
        return Sample(rps, sum(r["requests"] for r in rows), sum(r["failures"] for r in rows), t1 - t0,
                      cpu.share(server, t0, t1), max(r["cpu_s"] / r["seconds"] for r in rows),
                      {"processes": len(rows)})

    # --- the measurements ---
    def _signed_file(self, name: str, n: int) -> Path:
        """n pre-signed change events with fresh ids (wrk cannot sign): one request per line."""
        scheme = make_scheme("standard", [self.secret])
        nonce = secrets.token_hex(4)
        path = self.dir / f"{name}.tsv"
        ts = int(time.time())
        with open(path, "w") as fh:
            for i in range(n):
                change_id = f"{nonce}-{i}"
                body = encode_event(change_event(change_id, 1, 1, 1, time.time_ns()))
                h = scheme.sign(f"msg_{change_id}", body.encode(), ts)
                fh.write(f"{h['webhook-id']}\t{h['webhook-timestamp']}\t{h['webhook-signature']}\t{body}\n")
        return path

    def measure(self, key: str, cpu: CpuSampler, rep: int) -> Sample:
        wrk, get = self.server_client == "wrk", self.get_path()
        lp = self.s.locust_processes
        if key in ("bare_get", "producer_sqlite", "producer_memory"):
            server = {"bare_get": "bare"}.get(key, key)
            if wrk:
                return self.run_wrk(server, self.url(server, get), None, cpu)
            return self.run_locust(server, "FastGetUser", get, cpu, lp)
        if key == "bare_post":
            if not wrk:
                return self.run_locust("bare", "FastHookUser", HOOK_PATH, cpu, lp)
            fixed = self._signed_file("bare-post", 20_000)  # no dedup there: a fixed set of requests, cycled
            return self.run_wrk("bare", self.url("bare", HOOK_PATH), lambda _phase, _s: fixed, cpu)
        if key == "receiver":
            before = self._receiver_stats()
            if wrk:  # fresh ids for every request: enough for the bare handler's rate (an upper bound of ours)
                guide = [x.rps for x in self.samples.get("receiver", [])] or [x.rps for x in self.samples.get(
                    "bare_post", [])] or [30_000.0]
                rate = max(guide) * (1.5 if "receiver" in self.samples else 1.2)
                sample = self.run_wrk("receiver", self.url("receiver", HOOK_PATH),
                                      lambda phase, s: self._signed_file(f"receiver-{rep}-{phase}",
                                                                         math.ceil(rate * s) + 1000), cpu)
            else:
                sample = self.run_locust("receiver", "FastHookUser", HOOK_PATH, cpu, lp)
            sample.extra["receiver"] = _stats_delta(before, self._receiver_stats())  # warm-up included
            return sample
        if key == "locust_fast":
            return self.run_locust("bare", "FastGetUser", get, cpu, lp)
        if key == "locust_http":
            return self.run_locust("bare", "HttpGetUser", get, cpu, lp)
        raise AssertionError(key)

    def _receiver_stats(self) -> dict[str, Any]:
        try:
            return _http("GET", self.url("receiver", "/stats"))
        except (OSError, ValueError):  # a receiver without GET /stats: no check of what it accepted
            return {}

    def plan(self) -> list[str]:
        keys: list[str] = []
        if "producer" in self.s.groups:
            keys += ["bare_get", "producer_sqlite", "producer_memory"]
        if "receiver" in self.s.groups:
            keys += ["bare_post", "receiver"]
        if "locust" in self.s.groups:
            if self.wrk is None and "bare_get" in keys:
                keys += ["locust_http"]  # FastHttpUser on the bare GET is bare_get itself: not measured twice
            else:
                keys += ["locust_fast", "locust_http"]
            if self.wrk is not None and "bare_get" not in keys:
                keys.insert(0, "bare_get")  # Locust/wrk needs wrk's number on the same endpoint
        return keys

    def run(self) -> None:
        keys = self.plan()
        if self.wrk is None:
            self.skipped["wrk"] = "wrk is not installed (apt-get install wrk): Locust/wrk not measured"
        with CpuSampler({**self.pids}) as cpu:
            for rep in range(self.s.repeat):
                for key in keys:
                    self.log(f"  [{rep + 1}/{self.s.repeat}] {LABELS[key][0]} ...")
                    sample = self.measure(key, cpu, rep)
                    self.samples.setdefault(key, []).append(sample)
                    self.log(f"      {sample.rps:,.0f} req/s" + (f", {sample.errors} errors" if sample.errors else ""))
                    self.pg.check()
        if self.wrk is not None and "bare_get" in self.samples:
            self.samples["wrk_bare_get"] = self.samples["bare_get"]
        elif "locust" in self.s.groups and "bare_get" in self.samples:
            self.samples["locust_fast"] = self.samples["bare_get"]


LABELS = {  # key -> (label, server)
    "bare_get": ("bare GET /changes (same bytes)", "bare"),
    "producer_sqlite": ("producer empty poll, sqlite", "producer_sqlite"),
    "producer_memory": ("producer empty poll, memory", "producer_memory"),
    "bare_post": ("bare POST /hooks -> 204", "bare"),
    "receiver": ("receiver verify+dedup+record", "receiver"),
    "locust_fast": ("Locust FastHttpUser, bare GET", "bare"),
    "locust_http": ("Locust HttpUser, bare GET", "bare"),
}


# --- small HTTP helpers (urllib: no event loop in this process) -------------------------------------

def _http(method: str, url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def _fetch(url: str) -> tuple[int, str | None, bytes]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.status, resp.headers.get("Content-Type"), resp.read()


def _head(base: str) -> int:
    """The producer's last seq, read through the feed itself."""
    after = 0
    while True:
        page = _http("GET", f"{base}/changes?after={after}&limit=10000")
        after = page["next_after"]
        if not page["has_more"]:
            return int(after)


def _stats_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in ("requests", "accepted", "duplicate", "shed_503", "errors"):
        out[k] = after.get(k, 0) - before.get(k, 0)
    out["rejected"] = sum(after.get("rejected", {}).values()) - sum(before.get("rejected", {}).values())
    out["max_in_flight"] = after.get("max_in_flight")
    return out


def _stop_session(proc: subprocess.Popen[Any]) -> None:
    """End a client we started in its own session: Locust's forked workers share its process group."""
    terminate(proc)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the group we created (pgid = its pid): any worker left behind
    except (ProcessLookupError, PermissionError):
        pass


# --- statistics and report ------------------------------------------------------------------------

def _summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(samples: dict[str, list[Sample]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per-measurement medians and spreads; ratios paired by repetition, with their own median and spread."""
    measurements: dict[str, Any] = {}
    for key, ss in samples.items():
        shares = [s.server_cpu for s in ss if s.server_cpu is not None]
        clients = [s.client_cpu for s in ss if s.client_cpu is not None]
        per_req = [_us_per_request(s) for s in ss]
        measurements[key] = {"rps": _summary([s.rps for s in ss]), "values": [asdict(s) for s in ss],
                             "server_cpu": statistics.median(shares) if shares else None,
                             "server_us_per_request": None if None in per_req else _summary(per_req),  # type: ignore
                             "client_cpu": statistics.median(clients) if clients else None,
                             "errors": sum(s.errors for s in ss)}
    ratios: dict[str, Any] = {}
    for name, (num, den, target, what) in TARGETS.items():
        if num not in samples or den not in samples:
            continue
        pairs = [a.rps / b.rps for a, b in zip(samples[num], samples[den]) if b.rps > 0]
        if not pairs:
            continue
        r = _summary(pairs)
        verdict = None if math.isnan(target) else ("PASS" if r["median"] >= target else "MISS")
        # The same comparison from the servers' CPU per request (inverse): less sensitive to other processes
        # taking the CPU than req/s; None for the client comparisons, where the server is not the limit.
        cost = [b / a for a, b in ((_us_per_request(x), _us_per_request(y)) for x, y in zip(samples[num], samples[den]))
                if a and b] if num in SERVER_KEYS and den in SERVER_KEYS else []
        ratios[name] = {**r, "values": pairs, "target": None if math.isnan(target) else target,
                        "verdict": verdict, "what": what, "by_cpu": statistics.median(cost) if cost else None}
    return measurements, ratios


def _us_per_request(s: Sample) -> float | None:
    """Server CPU microseconds per request in the window."""
    return None if s.server_cpu is None or not s.requests else s.server_cpu * s.seconds / s.requests * 1e6


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.0f}%"


def report(result: dict[str, Any]) -> str:
    m, ratios, st = result["measurements"], result["ratios"], result["settings"]
    lines = [f"hookbench load benchmark: {st['duration']} s windows after {st['warmup']} s warm-up, "
             f"median of {st['repeat']}; {result['machine']['cpu_count']} CPUs; server loop {result['server_loop']}",
             f"client of the server comparisons: {result['server_client']}"
             + (f" (-t1 -c{st['connections']})" if result["server_client"] == "wrk" else
                f" FastHttpUser, {st['connections']} users, --processes {st['locust_processes']}"),
             "", f"{'measurement':36} {'client':10} {'req/s':>8} {'spread':>15} {'server CPU':>10} "
                 f"{'us/req':>7} {'client CPU':>10}"]
    for key, (label, _server) in LABELS.items():
        if key not in m:
            continue
        x = m[key]
        client = result["clients"][key]
        rps, us = x["rps"], x["server_us_per_request"]
        lines.append(f"{label:36} {client:10} {rps['median']:>8,.0f} {rps['min']:>7,.0f}-{rps['max']:<7,.0f} "
                     f"{_pct(x['server_cpu']):>10} {'-' if us is None else format(us['median'], '.1f'):>7} "
                     f"{_pct(x['client_cpu']):>10}" + (f"  {x['errors']} errors" if x["errors"] else ""))
    lines += ["", f"{'ratio':22} {'median':>7} {'spread':>11}  {'target':>7}  {'verdict':7}  by CPU/req"]
    for name, r in ratios.items():
        target = "-" if r["target"] is None else f">= {r['target']:.2f}"
        by_cpu = "" if r["by_cpu"] is None else f"{r['by_cpu']:.2f}"
        lines.append(f"{name:22} {r['median']:>7.2f} {r['min']:>5.2f}-{r['max']:<5.2f}  {target:>7}  "
                     f"{r['verdict'] or '':7}  {by_cpu}")
    for name, why in result["skipped"].items():
        lines.append(f"{name}: skipped: {why}")
    lines += [f"warning: {w}" for w in result["warnings"]]
    return "\n".join(lines)


def _warnings(measurements: dict[str, Any], ratios: dict[str, Any], server_client: str) -> list[str]:
    out = []
    for key, x in measurements.items():
        rps = x["rps"]
        if key in LABELS and rps["median"] > 0 and (rps["max"] - rps["min"]) / rps["median"] > 0.10:
            out.append(f"{LABELS[key][0]}: spread {(rps['max'] - rps['min']) / rps['median']:.0%} of the median "
                       "(noisy machine? rerun with more --repeat or a longer --duration)")
        if x["errors"]:
            out.append(f"{LABELS.get(key, (key,))[0]}: {x['errors']} failed requests (see the logs)")
        if key in SERVER_KEYS and \
                x["server_cpu"] is not None and x["server_cpu"] < SERVER_BUSY:
            out.append(f"{LABELS[key][0]}: server CPU {x['server_cpu']:.0%} < {SERVER_BUSY:.0%}: the client "
                       f"({server_client}) or other processes held it back; compare 'by CPU/req'")
    rx = [v["extra"].get("receiver") for v in measurements.get("receiver", {}).get("values", [])]
    for d in filter(None, rx):
        if d["requests"] and (d["duplicate"] or d["rejected"] or d["errors"] or d["shed_503"]):
            out.append(f"receiver: {d['duplicate']} duplicates, {d['rejected']} rejected, {d['errors']} errors, "
                       f"{d['shed_503']} shed of {d['requests']} requests: not all were fresh valid deliveries")
            break
    return out


# --- entry ----------------------------------------------------------------------------------------

def run(settings: Settings, log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True)
        ) -> dict[str, Any]:
    """Run the benchmark; return the result (also written to settings.out)."""
    settings.check()
    import psutil

    busy_before = psutil.cpu_percent(interval=0.5) / 100  # other work on the machine makes every number noisy
    env = {**os.environ, "HOOKBENCH_LOOP": settings.loop}
    with tempfile.TemporaryDirectory(prefix="hookbench-perf-") as tmp, ProcessGroup(env=env) as group:
        bench = Bench(settings, Path(tmp), group, log)
        log(f"bench.perf: starting servers (client for server comparisons: {bench.server_client})")
        bench.start_servers()
        bench.run()
        measurements, ratios = summarize(bench.samples)
        clients = {}
        for key in measurements:
            if key.startswith("locust_"):
                clients[key] = f"locust x{settings.locust_processes}"
            elif key == "wrk_bare_get":
                clients[key] = "wrk"
            else:
                clients[key] = "wrk" if bench.server_client == "wrk" else f"locust x{settings.locust_processes}"
        result = {"format_version": PERF_FORMAT_VERSION, **collect_metadata(REPO),
                  "settings": {**asdict(settings), "out": str(settings.out), "groups": list(settings.groups)},
                  "server_client": bench.server_client, "server_loop": _server_loop(settings.loop),
                  "wrk_version": _wrk_version(bench.wrk), "clients": clients, "measurements": measurements,
                  "ratios": ratios, "skipped": bench.skipped, "cpu_busy_before": busy_before,
                  "warnings": _warnings(measurements, ratios, bench.server_client)}
        if busy_before > BUSY_BEFORE:
            result["warnings"].insert(0, f"the machine was busy before the run ({busy_before:.0%} of its CPUs in "
                                         "the half second before): expect noise, rerun when it is idle")
    settings.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(settings.out, result)
    return result


def _server_loop(choice: str) -> str:
    """What the server processes run on: what `bench.loops.loop_factory` picks in an interpreter like this one."""
    if choice == "asyncio":
        return "asyncio"
    try:
        import uvloop
    except ImportError:
        return "asyncio (uvloop not installed)"
    return f"uvloop {getattr(uvloop, '__version__', '')}".strip()


def _wrk_version(wrk: str | None) -> str | None:
    if wrk is None:
        return None
    try:
        out = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out.stdout or out.stderr).splitlines()[0].strip() if (out.stdout or out.stderr) else None


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m bench.perf", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    d = Settings()
    ap.add_argument("--duration", type=int, default=d.duration, help="seconds of each measured window")
    ap.add_argument("--warmup", type=int, default=d.warmup, help="seconds of warm-up before each window")
    ap.add_argument("--repeat", type=int, default=d.repeat, help="repetitions (medians and spreads over them)")
    ap.add_argument("--client", default=d.client, choices=("auto", "wrk", "locust"),
                    help="client of the server comparisons (auto: wrk when installed, else Locust)")
    ap.add_argument("--connections", type=int, default=d.connections, help="wrk connections = Locust users")
    ap.add_argument("--locust-processes", type=int, default=d.locust_processes,
                    help="Locust --processes for every Locust measurement")
    ap.add_argument("--loop", default=d.loop, choices=("auto", "uvloop", "asyncio"),
                    help="event loop of the servers (HOOKBENCH_LOOP)")
    ap.add_argument("--only", default=",".join(GROUPS), help=f"comma list of {', '.join(GROUPS)}")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON result file")
    return ap


def show(path: Path) -> str:
    """The table of a result file written earlier (recomputed from its raw samples)."""
    result = json.loads(Path(path).read_text())
    samples = {k: [Sample(**v) for v in m["values"]] for k, m in result["measurements"].items()}
    result["measurements"], result["ratios"] = summarize(samples)
    busy = [w for w in result.get("warnings", []) if w.startswith("the machine was busy")]
    result["warnings"] = busy + _warnings(result["measurements"], result["ratios"], result["server_client"])
    return report(result)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve-bare"]:
        return serve_bare(argv[1:])
    if argv[:1] == ["show"] and len(argv) == 2:
        print(show(Path(argv[1])))
        return 0
    a = _parser().parse_args(argv)
    settings = Settings(duration=a.duration, warmup=a.warmup, repeat=a.repeat, client=a.client,
                        connections=a.connections, locust_processes=a.locust_processes, loop=a.loop,
                        groups=tuple(g.strip() for g in a.only.split(",") if g.strip()), out=a.out)
    try:
        result = run(settings)
    except HookbenchError as e:
        print(e, file=sys.stderr)
        return e.exit_code
    print(report(result))
    print(f"\nwritten to {settings.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
