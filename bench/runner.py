"""The orchestrator of `hookbench run`: producer, receiver and Locust as processes; warm-up -> window -> drain.

It never imports the servers or Locust: it starts them by module name, talks HTTP to the producer for
control and progress, samples every child's CPU, and stops them all, also on Ctrl-C or a crash. Then
it gathers the records (tables), analyses them and writes summary.json. Reports are made by the caller.
"""

from __future__ import annotations

import json
import signal
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import psutil

from .analysis import Window, detections, summarize
from .config import Scenario
from .errors import RunDirError, RunError
from .manifest import MANIFEST_FORMAT_VERSION, collect_metadata, write_json
from .procs import ProcessGroup
from .protocol import STYLE_MODE
from .records import JsonlWriter
from .signing import new_secret
from .tables import load_records, read_marks, write_parquet

__all__ = ["RunResult", "run_scenario", "new_run_dir"]

STARTUP_TIMEOUT_S = 60.0  # Locust imports gevent and friends; on a busy 2-core machine that takes seconds


@dataclass
class RunResult:
    run_dir: Path
    summary: dict[str, Any]
    partial: bool
    error: str | None = None


def new_run_dir(base: Path, name: str) -> Path:
    """runs/<UTC timestamp>-<name>/, never an existing directory (a suffix is added instead)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    for i in range(1000):
        d = base / (f"{stamp}-{name}" + (f"-{i}" if i else ""))
        try:
            d.mkdir(parents=True, exist_ok=False)
            return d
        except FileExistsError:
            continue
        except OSError as e:
            raise RunDirError(f"{base}: cannot create a run directory there ({e.strerror}); "
                              "pass a writable --out DIR") from None
    raise RunError(f"cannot create a new run directory under {base}")


def _http(url: str, data: dict[str, Any] | None = None, timeout: float = 5.0) -> dict[str, Any]:
    body = None if data is None else json.dumps(data).encode()
    req = urllib.request.Request(url, data=body, method="GET" if data is None else "POST",
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read() or b"{}")


class _Progress:
    """One status line, rewritten in place on a terminal, printed every few seconds otherwise."""

    def __init__(self, out: Callable[[str], None] | None) -> None:
        self.out = out
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def show(self, text: str) -> None:
        if self.tty:
            sys.stderr.write("\r\033[K" + text)
            sys.stderr.flush()
        elif self.out is not None and time.monotonic() - self.last >= 5.0:
            self.out(text)
            self.last = time.monotonic()

    def done(self) -> None:
        if self.tty:
            sys.stderr.write("\n")
            sys.stderr.flush()


class _Interrupted(Exception):
    pass


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Interrupted()


def run_scenario(scenario: Scenario, run_dir: Path, locustfile: Path, *, repo: Path,
                 log: Callable[[str], None] = print) -> RunResult:
    """Carry out one run into `run_dir` (already created, empty). Always writes manifest.json and summary.json."""
    records = run_dir / "records"
    records.mkdir()
    db = run_dir / "producer.db"
    scenario_json = run_dir / "scenario.json"
    write_json(scenario_json, scenario.to_dict())
    manifest: dict[str, Any] = {"format_version": MANIFEST_FORMAT_VERSION, "scenario": scenario.to_dict(),
                                "scenario_source": scenario.source, "seed": scenario.seed,
                                "time_scale": scenario.run.time_scale, **collect_metadata(repo),
                                "window": None, "partial": True, "processes": {}}
    write_json(run_dir / "manifest.json", manifest)

    harness = JsonlWriter(records / "harness.jsonl")
    progress = _Progress(log)
    window: dict[str, int] = {}
    error: str | None = None
    partial = False
    py = sys.executable
    old_term = signal.signal(signal.SIGTERM, _on_sigterm)
    group = ProcessGroup()
    try:
        secret = new_secret()
        producer = group.start("producer", [py, "-m", "servers.producer", "--scenario-json", str(scenario_json),
                                            "--db", str(db), "--records", str(records)],
                               run_dir / "logs" / "producer.log", cwd=repo)
        receiver = group.start("receiver", [py, "-m", "servers.receiver", "--secret", secret,
                                            "--records", str(records)], run_dir / "logs" / "receiver.log", cwd=repo)
        base = f"http://127.0.0.1:{producer.port}"
        log(f"producer on {base} (pid {producer.pid}), receiver on http://127.0.0.1:{receiver.port} "
            f"(pid {receiver.pid})")
        if scenario.webhook.enabled:
            _http(f"{base}/subscriptions", {"url": f"http://127.0.0.1:{receiver.port}/hooks", "secret": secret})

        sc = scenario
        styles = sc.polling.styles
        users = (1 if "cursor" in styles else 0) + (sc.resources.count if "etag" in styles else 0)
        total_s = sc.run.warmup + sc.run.duration + sc.run.drain
        locust_argv = [py, "-m", "locust", "-f", str(locustfile), "--headless", "-u", str(users), "-r", str(users),
                       "--run-time", f"{int(total_s + STARTUP_TIMEOUT_S)}s", "--stop-timeout", "2",
                       "--host", base, "--csv", str(run_dir / "locust"), "--only-summary",
                       "--logfile", str(run_dir / "logs" / "locust.log"),
                       "--hb-interval", repr(sc.live_poll_interval), "--hb-resources", str(sc.resources.count),
                       "--hb-styles", ",".join(styles), "--hb-limit", str(sc.polling.cursor_limit),
                       "--hb-seed", str(sc.seed), "--hb-timeout", repr(sc.polling.timeout),
                       "--hb-records", str(records)]
        manifest["locust_command"] = locust_argv[1:]
        locust = group.start("locust", locust_argv, run_dir / "logs" / "locust.out", wait_ready=False, cwd=repo)
        locust.expected_exit = True  # it ends by itself at --run-time; we stop it earlier ourselves

        watched = {c.name: psutil.Process(c.pid) for c in group.children}
        for p in watched.values():
            p.cpu_percent(None)  # prime: the next call returns usage since now

        def tick() -> dict[str, Any]:
            group.check()
            now = time.time_ns()
            for name, p in watched.items():
                try:
                    harness.write({"t_ns": now, "process": name, "cpu_pct": p.cpu_percent(None)})
                except psutil.Error:
                    pass
            return _http(f"{base}/stats", timeout=2.0)

        # t0 = the first poll the producer sees: Locust's start-up is not part of the warm-up.
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if locust.popen.poll() is not None:
                raise RunError(f"Locust exited with code {locust.popen.returncode} before polling "
                               f"(logs {run_dir / 'logs'}):\n{locust.tail()}")
            stats = tick()
            if sum(v["requests"] for k, v in stats["modes"].items() if k in STYLE_MODE.values()) > 0:
                break
            if time.monotonic() > deadline:
                raise RunError(f"Locust sent no poll within {STARTUP_TIMEOUT_S:.0f} s:\n{locust.tail()}")
            time.sleep(0.1)
        t0 = time.monotonic()

        def phase(label: str, seconds: float) -> None:
            end = time.monotonic() + seconds
            while (left := end - time.monotonic()) > 0:
                time.sleep(min(1.0, left))
                s = tick()
                polls = sum(v["requests"] for k, v in s["modes"].items() if k in STYLE_MODE.values())
                d = s["deliveries"]
                done = min(seconds, seconds - (end - time.monotonic()))
                progress.show(f"[{time.monotonic() - t0:5.1f}s] {label} {done:3.0f}/{seconds:.0f}s"
                              f"  changes {s['changes']}  polls {polls}  deliveries "
                              f"{d['attempts']} ({d['failed']} failed, {d['pending']} pending)")

        log(f"warm-up {sc.run.warmup:g}s, window {sc.run.duration:g}s, drain {sc.run.drain:g}s "
            f"({users} Locust users, pid {locust.pid})")
        phase("warm-up", sc.run.warmup)
        window["start_ns"] = _http(f"{base}/control/mark", {"name": "window_start"})["t_ns"]
        phase("window", sc.run.duration)
        window["end_ns"] = _http(f"{base}/control/mark", {"name": "window_end"})["t_ns"]
        _http(f"{base}/control/changes", {"running": False})
        phase("drain", sc.run.drain)
        window["grace_end_ns"] = time.time_ns()
    except (KeyboardInterrupt, _Interrupted):
        partial = True
        error = "interrupted"
        log("\ninterrupted: stopping processes and analysing what was recorded")
    except RunError as e:
        partial = True
        error = str(e)
    finally:
        progress.done()
        signal.signal(signal.SIGTERM, old_term)
        codes = group.stop_all()
        harness.close()
        manifest["processes"] = {c.name: {"pid": c.pid, "exit_code": codes.get(c.name)} for c in group.children}

    now = time.time_ns()
    start = window.get("start_ns", now)
    end = window.get("end_ns", max(start, now))
    w = Window(start, end, window.get("grace_end_ns", max(end, now)))
    manifest["window"] = {"start_ns": w.start_ns, "end_ns": w.end_ns, "grace_end_ns": w.grace_end_ns,
                          "warmup_s": scenario.run.warmup, "duration_s": w.duration_s,
                          "drain_s": (w.grace_end_ns - w.end_ns) / 1e9}
    manifest["partial"] = partial
    manifest["error"] = error
    write_json(run_dir / "manifest.json", manifest)

    tables = load_records(records, db)
    write_parquet(tables, run_dir)
    detections(tables, w).to_parquet(run_dir / "detections.parquet", index=False)
    summary = summarize(tables, w, scenario.to_dict(), read_marks(records), modes=list(scenario.modes),
                        partial=partial, locust_cpu_warnings=_locust_cpu_warnings(run_dir / "logs"))
    write_json(run_dir / "summary.json", summary)
    return RunResult(run_dir, summary, partial, error)


def _locust_cpu_warnings(logs: Path) -> int:
    """Locust logs a warning when its own CPU passes 90%: count them."""
    n = 0
    for name in ("locust.log", "locust.out"):
        try:
            n += (logs / name).read_text(errors="replace").count("CPU usage above")
        except OSError:
            pass
    return n
