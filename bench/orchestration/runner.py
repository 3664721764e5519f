"""The orchestrator of `hookbench run`: producer, receiver and Locust as processes; warm-up -> window -> drain.

It never imports the servers or Locust: it starts them by module name, talks HTTP to the producer for
control and progress, samples every child's CPU, and stops them all, also on Ctrl-C or a crash. Then
it gathers the records (tables), analyses them and writes summary.json. Reports are made by the caller.

With `master` the pollers run on Locust workers started apart (`hookbench run SCENARIO --worker`, on this
machine or others): Locust runs here as their master, the run starts when they have connected and polled, and
their rows, CPU and clock answers come back over Locust's messaging (bench.orchestration.distributed).
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import time
import urllib.error
from pathlib import Path
from typing import Any, Callable

import psutil

from bench.analysis.clocks import clock_estimates, manifest_clocks
from bench.analysis.remote import corrected_tables, remote_sections
from bench.analysis.summary import Window, detections, summarize
from bench.analysis.tables import Tables, load_records, read_jsonl, read_marks, write_parquet
from bench.analysis.workers import locust_requests, read_health, read_wire
from bench.config import Scenario
from bench.errors import RunError
from bench.hosts import DEFAULT_BIND, url_host
from bench.manifest import collect_metadata
from bench.modes import is_push, kind_of
from bench.orchestration.distributed import WORKER_CLOCKS, MasterOptions, master_argv, wait_for_workers
from bench.orchestration.procs import Child, ProcessGroup
from bench.orchestration.session import (
    Interrupted,
    Progress,
    RunResult,
    http_json,
    locust_cpu_warnings,
    on_sigterm,
)
from bench.orchestration.wiring import (
    Endpoint,
    attack_argv,
    make_endpoints,
    poller_argv,
    producer_argv,
    receiver_argv,
    receiver_config,
    subscription_body,
)
from bench.protocol import (
    PATH_CONTROL_CHANGES,
    PATH_CONTROL_MARK,
    PATH_RECEIVER_START,
    PATH_STATS,
    PATH_SUBSCRIPTIONS,
)
from bench.records import JsonlWriter
from bench.results import (
    Kind,
    RunStatus,
    Summary,
    manifest_keys,
    status_keys,
    write_json,
    write_manifest,
    write_summary,
)
from bench.traces import write_trace_csv
from bench.wire import CLOCK_FILE

__all__ = ["run_scenario", "STARTUP_TIMEOUT_S"]

STARTUP_TIMEOUT_S = 60.0  # Locust imports gevent and friends; on a busy 2-core machine that takes seconds


class _Orchestra:
    """The processes of one run and what the orchestrator does to them over time."""

    def __init__(self, scenario: Scenario, run_dir: Path, scenarios_dir: Path, repo: Path,
                 manifest: dict[str, Any], log: Callable[[str], None], bind: str = DEFAULT_BIND,
                 master: MasterOptions | None = None) -> None:
        self.sc, self.run_dir, self.scenarios_dir, self.repo, self.log = scenario, run_dir, scenarios_dir, repo, log
        self.bind = bind  # where both servers listen, and the host of every URL handed out
        self.master = master  # the pollers on separately started Locust workers
        self.manifest = manifest
        self.records = run_dir / "records"
        self.group = ProcessGroup()
        self.harness = JsonlWriter(self.records / "harness.jsonl")
        self.events = JsonlWriter(self.records / "events.jsonl")
        self.progress = Progress(log)
        self.watched: dict[str, psutil.Process] = {}
        self.producer_port = 0
        self.producer_up = False
        self.generation = 0
        self.ssl: ssl.SSLContext | None = None
        self.window: dict[str, int] = {}
        self.t0 = time.monotonic()

    # --- starting ---------------------------------------------------------------------------------
    def _watch(self, child: Child) -> None:
        p = psutil.Process(child.pid)
        p.cpu_percent(None)  # prime: the next call returns usage since now
        self.watched[child.name] = p

    def _event(self, event: str, **extra: Any) -> None:
        self.events.write({"t_ns": time.time_ns(), "source": "orchestrator", "event": event, **extra})

    def start_producer(self) -> None:
        # The first producer holds its changes until every consumer is attached (start_changes); a restarted one
        # resumes at once, its consumers are still there.
        argv = producer_argv(self.run_dir / "scenario.json", self.run_dir / "producer.db", self.records,
                             self.producer_port, self.generation, bind=self.bind, hold_changes=self.generation == 0)
        child = self.group.start("producer" if self.generation == 0 else f"producer.{self.generation}", argv,
                                 self.run_dir / "logs" / "producer.log", cwd=self.repo)
        self.producer_port = child.port or 0
        self.producer_up = True
        self.producer = child
        self._watch(child)

    @property
    def base(self) -> str:
        return f"http://{url_host(self.bind)}:{self.producer_port}"

    def start_servers(self) -> None:
        sc = self.sc
        self.endpoints = make_endpoints(sc)
        tls_dir = self.run_dir / "tls"
        config = self.run_dir / "receiver.json"
        # the producer first: its address is in the receiver's config (a thin endpoint fetches from it), and a
        # restarted producer keeps it
        self.start_producer()
        write_json(config, receiver_config(sc, self.endpoints, tls_dir, producer=self.base))
        config.chmod(0o600)  # it holds the endpoints' secrets
        receiver = self.group.start("receiver", receiver_argv(config, self.records, bind=self.bind),
                                    self.run_dir / "logs" / "receiver.log", cwd=self.repo)
        # stopped last all the same (children stop newest first): a producer still delivering finds it there
        self.group.children.remove(receiver)
        self.group.children.insert(0, receiver)
        self._watch(receiver)
        scheme = "https" if sc.receiver.https else "http"
        self.receiver_base = f"{scheme}://{url_host(self.bind)}:{receiver.port}"
        ca = tls_dir / "cert.pem" if sc.receiver.https else None
        if ca is not None:  # trust exactly the receiver's own certificate, never "verification off"
            self.ssl = ssl.create_default_context(cafile=str(ca))
        self.log(f"producer on {self.base} (pid {self.producer.pid}), receiver on {self.receiver_base} "
                 f"(pid {receiver.pid})")
        if sc.webhook.enabled:
            for ep in self.endpoints:
                http_json(f"{self.base}{PATH_SUBSCRIPTIONS}", subscription_body(sc, ep, self.receiver_base, ca))

    def start_pollers(self) -> Child:
        sc = self.sc
        total = sc.run.warmup + sc.run.duration + sc.run.drain + STARTUP_TIMEOUT_S
        if self.master is not None:
            total += self.master.max_wait_s
        argv = poller_argv(sc, self.scenarios_dir / "pollers.py", self.base, self.run_dir, total)
        if self.master is not None:  # no users here: the workers get every --hb-* option from the master
            argv += master_argv(self.master, self.bind)
        self.manifest["locust_command"] = argv[1:]
        locust = self.group.start("locust", argv, self.run_dir / "logs" / "locust.out", wait_ready=False,
                                  cwd=self.repo)
        locust.expected_exit = True  # it ends by itself at --run-time; we stop it earlier ourselves
        self._watch(locust)
        return locust

    def start_attack(self) -> None:
        sc = self.sc
        argv = attack_argv(sc, self.scenarios_dir / "attack.py", self.receiver_base, self.base, self.endpoints[0],
                           self.run_dir, sc.run.duration)
        self.manifest["attack_command"] = [_redact(a, self.endpoints) for a in argv[1:]]
        attack = self.group.start("attack", argv, self.run_dir / "logs" / "attack.out", wait_ready=False,
                                  cwd=self.repo)
        attack.expected_exit = True
        self._watch(attack)
        self.log(f"attack load: {sc.attack.rate:g} hostile requests/s at {self.endpoints[0].name} (pid {attack.pid})")

    # --- while running ----------------------------------------------------------------------------
    def tick(self) -> dict[str, Any] | None:
        self.group.check()
        now = time.time_ns()
        for name, p in self.watched.items():
            try:
                with p.oneshot():
                    self.harness.write({"t_ns": now, "process": name, "cpu_pct": p.cpu_percent(None),
                                        "rss_bytes": p.memory_info().rss, "fds": p.num_fds()})
            except psutil.Error:
                pass
        if not self.producer_up:
            return None
        stats = http_json(f"{self.base}{PATH_STATS}", timeout=2.0)
        d = stats["deliveries"]
        self.events.write({"t_ns": now, "source": "producer", "event": "stats", "changes": stats["changes"],
                           "attempts": d["attempts"], "ok": d["ok"], "failed": d["failed"], "pending": d["pending"]})
        for mode, cost in stats["modes"].items():
            if cost.get("held_max"):  # modes that ever held a request open (long polls, streams)
                self.events.write({"t_ns": now, "source": "producer", "event": "held", "mode": mode,
                                   "held": cost["held"]})
        return stats

    def phase(self, label: str, seconds: float, actions: list[tuple[float, Callable[[], None]]] = ()) -> None:
        """Run `seconds`, ticking once a second and doing each (offset, action) when its offset is reached."""
        start = time.monotonic()
        end = start + seconds
        todo = sorted(actions, key=lambda a: a[0])
        while (left := end - time.monotonic()) > 0:
            due = todo[0][0] + start if todo else end
            time.sleep(max(0.0, min(1.0, left, due - time.monotonic())))
            while todo and time.monotonic() >= todo[0][0] + start:
                todo.pop(0)[1]()
            s = self.tick()
            done = min(seconds, time.monotonic() - start)
            if s is None:
                self.progress.show(f"[{time.monotonic() - self.t0:5.1f}s] {label} {done:3.0f}/{seconds:.0f}s"
                                   "  producer down")
                continue
            polls = sum(v["requests"] for k, v in s["modes"].items() if not is_push(k))
            d = s["deliveries"]
            self.progress.show(f"[{time.monotonic() - self.t0:5.1f}s] {label} {done:3.0f}/{seconds:.0f}s"
                               f"  changes {s['changes']}  polls {polls}  deliveries "
                               f"{d['attempts']} ({d['failed']} failed, {d['pending']} pending)")
        for _, action in todo:  # an action due exactly at the end
            action()

    def crash_actions(self) -> list[tuple[float, Callable[[], None]]]:
        """kill -9 the producer at each crash time, restart it on the same store `down` seconds later."""
        out: list[tuple[float, Callable[[], None]]] = []
        for crash in self.sc.faults.producer_crash:
            out.append((crash.at, self.kill_producer))
            out.append((crash.at + crash.down, self.restart_producer))
        return out

    def kill_producer(self) -> None:
        self.producer.expected_exit = True
        os.kill(self.producer.pid, signal.SIGKILL)
        self.producer.popen.wait(10)
        self.producer_up = False
        self._event("producer_killed", pid=self.producer.pid)
        self.log(f"\nfault: producer (pid {self.producer.pid}) killed with SIGKILL")

    def restart_producer(self) -> None:
        self.generation += 1
        self.start_producer()
        self._event("producer_restarted", pid=self.producer.pid, generation=self.generation)
        self.log(f"\nfault: producer restarted on the same store (pid {self.producer.pid})")

    def start_changes(self) -> None:
        """Every consumer is attached: the change generator starts, so every change is one each mode can observe."""
        http_json(f"{self.base}{PATH_CONTROL_CHANGES}", {"running": True})
        self.manifest["changes_started_ns"] = now = time.time_ns()
        self._event("changes_started", t_ns_started=now)

    def start_window(self) -> None:
        self.window["start_ns"] = http_json(f"{self.base}{PATH_CONTROL_MARK}", {"name": "window_start"})["t_ns"]
        http_json(f"{self.receiver_base}{PATH_RECEIVER_START}", {"t0_ns": self.window["start_ns"]}, ctx=self.ssl)
        if self.sc.attack.enabled:
            self.start_attack()

    def end_window(self) -> None:
        self.window["end_ns"] = http_json(f"{self.base}{PATH_CONTROL_MARK}", {"name": "window_end"})["t_ns"]
        http_json(f"{self.base}{PATH_CONTROL_CHANGES}", {"running": False})

    def close(self) -> dict[str, int | None]:
        self.progress.done()
        codes = self.group.stop_all()
        self.harness.close()
        self.events.close()
        return codes


def _polled(stats: dict[str, Any] | None) -> bool:
    """Whether the producer has answered a poll (any consumer-driven mode's request)."""
    return bool(stats) and sum(v["requests"] for k, v in stats["modes"].items() if not is_push(k)) > 0


def _attached(stats: dict[str, Any] | None, scenario: Scenario) -> bool:
    """Whether every consumer-driven mode has made at least as many requests as it has Locust users (each user
    polls once as it starts: -r equals -u). Push modes are attached once their subscription exists, before Locust
    starts."""
    if not stats:
        return False
    for mode in scenario.modes:
        if is_push(mode):
            continue
        users = kind_of(mode).users_per_run(scenario.resources.count) or 1
        if stats["modes"].get(mode, {}).get("requests", 0) < users:
            return False
    return True


def run_scenario(scenario: Scenario, run_dir: Path, scenarios_dir: Path, *, repo: Path, bind: str = DEFAULT_BIND,
                 master: MasterOptions | None = None, log: Callable[[str], None] = print) -> RunResult:
    """Carry out one run into `run_dir` (already created, empty). Always writes manifest.json and summary.json.

    `bind`: the address of this machine (checked by the caller) both servers listen on, and with `master` the
    Locust master too; the pollers then run on `master.expect_workers` separately started workers.
    """
    records = run_dir / "records"
    records.mkdir()
    write_json(run_dir / "scenario.json", scenario.to_dict())
    manifest: dict[str, Any] = {**manifest_keys(Kind.RUN), "scenario": scenario.to_dict(),
                                "scenario_source": scenario.source, "seed": scenario.seed,
                                "time_scale": scenario.run.time_scale, **collect_metadata(repo),
                                "window": None, **status_keys(RunStatus.PARTIAL), "processes": {},
                                "clocks": {"single_clock": True, "note": "producer, receiver and pollers run on this "
                                           "machine: every timestamp is from one clock"},
                                "bind": bind}
    if master is not None:
        manifest["locust_master"] = master.public(bind)
        manifest["clocks"] = dict(WORKER_CLOCKS)
    if scenario.changes.process == "trace":  # keep the replayed stream itself: the run reproduces without it
        trace = scenario.changes.load_trace()
        write_trace_csv(trace, run_dir / "trace.csv")
        manifest["trace"] = {"source": trace.source, "sha256": trace.sha256, "events": trace.events,
                             "cycle_s": trace.cycle, "mean_rate_per_s": trace.mean_rate, "copy": "trace.csv",
                             "gap_cv": trace.burstiness()}
    write_manifest(run_dir, manifest)

    error: str | None = None
    status = RunStatus.COMPLETE
    old_term = signal.signal(signal.SIGTERM, on_sigterm)
    o = _Orchestra(scenario, run_dir, scenarios_dir, repo, manifest, log, bind, master)
    try:
        o.start_servers()
        locust = o.start_pollers()
        if master is not None:
            log(f"Locust master pid {locust.pid} on {url_host(bind)}:{master.bind_port}, waiting for "
                f"{master.expect_workers} worker(s)")
            wait_for_workers(locust, o.group, run_dir / "logs" / "locust.log", master, o.progress, bind,
                             started=lambda: _polled(o.tick()), command="run")
            o.progress.done()
            log(f"{master.expect_workers} Locust worker(s) connected: the pollers have started")
        # t0 = every polling mode has polled: Locust's start-up is not part of the warm-up, and the first change is
        # made only now, so that no change happens before a consumer could see it (ground truth is every change).
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if locust.popen.poll() is not None:
                raise RunError(f"Locust exited with code {locust.popen.returncode} before polling "
                               f"(logs {run_dir / 'logs'}):\n{locust.tail()}")
            if _attached(o.tick(), scenario):
                break
            if time.monotonic() > deadline:
                raise RunError(f"the pollers did not all poll within {STARTUP_TIMEOUT_S:.0f} s "
                               f"(logs {run_dir / 'logs'}):\n{locust.tail()}")
            time.sleep(0.1)
        o.start_changes()
        o.t0 = time.monotonic()
        sc = scenario
        log(f"warm-up {sc.run.warmup:g}s, window {sc.run.duration:g}s, drain {sc.run.drain:g}s "
            f"(Locust pid {locust.pid})")
        o.phase("warm-up", sc.run.warmup)
        o.start_window()
        o.phase("window", sc.run.duration, o.crash_actions())
        o.end_window()
        o.phase("drain", sc.run.drain)
        o.window["grace_end_ns"] = time.time_ns()
    except (KeyboardInterrupt, Interrupted):
        status, error = RunStatus.INTERRUPTED, RunStatus.INTERRUPTED.value
        log("\ninterrupted: stopping processes and analysing what was recorded")
    except RunError as e:
        status, error = RunStatus.PARTIAL, str(e)
    except (OSError, urllib.error.URLError) as e:  # a child stopped answering
        status, error = RunStatus.PARTIAL, f"lost contact with a child process: {e}"
    finally:
        signal.signal(signal.SIGTERM, old_term)
        codes = o.close()
        manifest["processes"] = {c.name: {"pid": c.pid, "exit_code": codes.get(c.name)} for c in o.group.children}

    now = time.time_ns()
    window = o.window
    start = window.get("start_ns", now)
    end = window.get("end_ns", max(start, now))
    w = Window(start, end, window.get("grace_end_ns", max(end, now)))
    manifest["window"] = {"start_ns": w.start_ns, "end_ns": w.end_ns, "grace_end_ns": w.grace_end_ns,
                          "warmup_s": scenario.run.warmup, "duration_s": w.duration_s,
                          "drain_s": (w.grace_end_ns - w.end_ns) / 1e9}
    manifest.update(status_keys(status))
    manifest["error"] = error
    estimates = clock_estimates(read_jsonl(list(records.glob(CLOCK_FILE))))
    if master is not None:  # each worker's clock against this machine's, measured over Locust's messaging
        manifest["clocks"] = {**manifest["clocks"], "bound_ms": scenario.load.clock_bound * 1e3,
                              "workers": manifest_clocks(estimates)}
    write_manifest(run_dir, manifest)

    raw = load_records(records, run_dir / "producer.db")
    tables = corrected_tables(raw, estimates)  # the pollers' times on this machine's clock, as the changes'
    write_parquet(tables, run_dir)
    detections(tables, w).to_parquet(run_dir / "detections.parquet", index=False)
    summary = summarize(tables, w, scenario.to_dict(), read_marks(records), modes=list(scenario.modes),
                        status=status, locust_cpu_warnings=locust_cpu_warnings(run_dir / "logs"))
    if master is not None:
        _add_remote(summary, raw, tables, estimates, records, run_dir, scenario, o.watched)
    write_summary(run_dir, summary)
    return RunResult(run_dir, Summary.from_dict(summary), status, error)


def _add_remote(summary: dict[str, Any], raw: Tables, tables: Tables, estimates: dict[int, Any], records: Path,
                run_dir: Path, scenario: Scenario, watched: dict[str, psutil.Process]) -> None:
    """The sections a run with remote pollers adds: records per worker, clocks, and the workers' own CPU in the
    saturation verdict."""
    health = read_health(records)
    health.to_parquet(run_dir / "worker_health.parquet", index=False)
    local = {p.pid for p in watched.values()}
    files = len(list(records.glob("polls*.jsonl")))
    remote = remote_sections(raw, tables, estimates=estimates, health=health, wire=read_wire(records),
                             locust_requests=locust_requests(run_dir), poll_files=files,
                             bound_s=scenario.load.clock_bound, local_pids=local, host=socket.gethostname())
    summary["records"], summary["clocks"] = remote["records"], remote["clocks"]
    sat = summary["saturation"]
    sat["workers"] = remote["workers"]
    sat["reasons"] = [*sat["reasons"], *remote["reasons"]]
    summary["harness_saturated"] = bool(sat["reasons"])


def _redact(arg: str, endpoints: list[Endpoint]) -> str:
    for ep in endpoints:
        for secret in (ep.secret, ep.password, ep.token):
            if secret and secret in arg:
                arg = arg.replace(secret, "<secret>")
    return arg
