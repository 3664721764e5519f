"""The orchestrator of `hookbench load`: one server under a Locust step ramp, until it falls over or the ceiling.

`[load] target = "receiver"`: webhook storm senders (scenarios/storm.py) POST signed deliveries at the
receiver. `"producer"`: a polling fleet (scenarios/fleet.py) polls the producer. Either way the ramp
shape (scenarios/ramp.py) raises the users step by step; Locust runs headless with `--processes N`
(default one per core). Once a second the server's own counters and every process's CPU are sampled.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
import urllib.error
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import psutil

from .analysis import percentile
from .config import Scenario
from .errors import RunError
from .manifest import MANIFEST_FORMAT_VERSION, collect_metadata, write_json
from .overload import overload_section
from .procs import ProcessGroup
from .records import JsonlWriter
from .runner import Interrupted, Progress, RunResult, http_json, locust_cpu_warnings, on_sigterm
from .tables import typed
from .wiring import make_endpoints, producer_argv, receiver_config

__all__ = ["run_load", "LOAD_FORMAT_VERSION"]

LOAD_FORMAT_VERSION = 1
LOCUST_CPU_LIMIT = 90.0
SLACK_S = 90.0  # beyond the ramp's own length before the run is stopped as hung


def free_port() -> int:
    """A port free on 127.0.0.1 right now (bind to 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _read_jsonl(paths: list[Path]) -> list[dict[str, Any]]:
    rows = []
    for p in sorted(paths):
        for line in p.read_text(encoding="utf-8").splitlines(keepends=True):
            if line.endswith("\n"):
                rows.append(json.loads(line))
    return rows


def _locust_argv(sc: Scenario, scenarios_dir: Path, run_dir: Path, base: str, processes: int,
                 endpoint: Any | None) -> list[str]:
    ld = sc.load
    users = "storm.py" if ld.target == "receiver" else "fleet.py"
    argv = [sys.executable, "-m", "locust", "-f", f"{scenarios_dir / users},{scenarios_dir / 'ramp.py'}",
            "--headless", "--host", base, "--csv", str(run_dir / "locust"), "--csv-full-history",
            "--only-summary", "--exit-code-on-error", "0", "--logfile", str(run_dir / "logs" / "locust.log"),
            "--hb-start-users", str(ld.start_users), "--hb-step-users", str(ld.step_users),
            "--hb-steps", str(ld.steps), "--hb-step-seconds", repr(ld.step_duration),
            "--hb-ceiling-users", str(ld.ceiling_users), "--hb-records", str(run_dir / "records")]
    if processes > 1:
        # Locust's own master/worker link: bind it to loopback on a free port (the default 5557 on every
        # interface could meet another Locust master on this machine)
        port = free_port()
        argv += ["--processes", str(processes), "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
                 "--master-port", str(port)]
    if ld.recovery:
        argv.append("--hb-recovery")
    if ld.target == "receiver":
        assert endpoint is not None
        argv += ["--hb-path", endpoint.path(sc), "--hb-scheme", endpoint.scheme, "--hb-secret", endpoint.secret,
                 "--hb-rate", repr(ld.rate_per_user)]
    else:
        argv += ["--hb-interval", repr(1.0 / ld.rate_per_user), "--hb-resources", str(sc.resources.count),
                 "--hb-seed", str(sc.seed), "--hb-timeout", repr(sc.polling.timeout),
                 "--hb-limit", str(sc.polling.cursor_limit)]
    return argv


def run_load(scenario: Scenario, run_dir: Path, scenarios_dir: Path, *, repo: Path, processes: int | None = None,
             log: Callable[[str], None] = print) -> RunResult:
    """Carry out one load run into `run_dir`; always writes manifest.json and summary.json."""
    sc, ld = scenario, scenario.load
    records = run_dir / "records"
    records.mkdir()
    nproc = processes or ld.processes or os.cpu_count() or 1
    write_json(run_dir / "scenario.json", sc.to_dict())
    manifest: dict[str, Any] = {"format_version": MANIFEST_FORMAT_VERSION, "kind": "load", "scenario": sc.to_dict(),
                                "scenario_source": sc.source, "seed": sc.seed, "time_scale": sc.run.time_scale,
                                "locust_processes": nproc, **collect_metadata(repo), "partial": True}
    write_json(run_dir / "manifest.json", manifest)
    group = ProcessGroup()
    stats_log = JsonlWriter(records / "server_stats.jsonl")
    harness = JsonlWriter(records / "harness.jsonl")
    progress = Progress(log)
    partial, error = False, None
    old_term = signal.signal(signal.SIGTERM, on_sigterm)
    t_start = time.time_ns()
    try:
        endpoint = None
        if ld.target == "receiver":
            endpoint = make_endpoints(sc)[0]
            config = run_dir / "receiver.json"
            write_json(config, receiver_config(sc, [endpoint], run_dir / "tls"))
            config.chmod(0o600)
            server = group.start("receiver", [sys.executable, "-m", "servers.receiver", "--config", str(config),
                                              "--records", str(records), "--port", "0"],
                                 run_dir / "logs" / "receiver.log", cwd=repo)
            base = f"{'https' if sc.receiver.https else 'http'}://127.0.0.1:{server.port}"
        else:
            server = group.start("producer", producer_argv(run_dir / "scenario.json", run_dir / "producer.db",
                                                           records, 0, 0), run_dir / "logs" / "producer.log",
                                 cwd=repo)
            base = f"http://127.0.0.1:{server.port}"
        ctx = None
        if sc.receiver.https and ld.target == "receiver":
            import ssl

            ctx = ssl.create_default_context(cafile=str(run_dir / "tls" / "cert.pem"))
        argv = _locust_argv(sc, scenarios_dir, run_dir, base, nproc, endpoint)
        manifest["locust_command"] = [a.replace(endpoint.secret, "<secret>") if endpoint else a for a in argv[1:]]
        locust = group.start("locust", argv, run_dir / "logs" / "locust.out", wait_ready=False, cwd=repo)
        locust.expected_exit = True
        total = ld.total_steps * ld.step_duration
        log(f"{ld.target} on {base} (pid {server.pid}); Locust pid {locust.pid} with {nproc} process(es); "
            f"{ld.total_steps} steps of {ld.step_duration:g} s, {ld.start_users}+{ld.step_users}/step users "
            f"at {ld.rate_per_user:g} req/s each")
        procs = {"server": psutil.Process(server.pid), "locust": psutil.Process(locust.pid)}
        for p in procs.values():
            p.cpu_percent(None)
        deadline = time.monotonic() + total + SLACK_S
        t0 = time.monotonic()
        while locust.popen.poll() is None:
            time.sleep(1.0)
            group.check()
            now = time.time_ns()
            cpu: dict[str, float] = {}
            for name, p in list(procs.items()):
                try:
                    cpu[name] = p.cpu_percent(None)
                except psutil.Error:
                    continue
            try:  # Locust's --processes workers are children of its main process
                for child in procs["locust"].children():
                    key = f"locust.{child.pid}"
                    if key not in procs:
                        procs[key] = child
                        child.cpu_percent(None)
            except psutil.Error:
                pass
            for name, value in cpu.items():
                harness.write({"t_ns": now, "process": name, "cpu_pct": value})
            try:
                st = http_json(f"{base}/stats", timeout=2.0, ctx=ctx)
            except (OSError, urllib.error.URLError, RunError):
                st = {}
            stats_log.write({"t_ns": now, "server": ld.target, "in_flight": st.get("in_flight"),
                             "pending": (st.get("deliveries") or {}).get("pending"),
                             "requests": st.get("requests"), "shed_503": st.get("shed_503")})
            locust_cpu = max((v for k, v in cpu.items() if k.startswith("locust")), default=0.0)
            progress.show(f"[{time.monotonic() - t0:5.0f}/{total:.0f}s] server CPU {cpu.get('server', 0):3.0f}%  "
                          f"Locust CPU max {locust_cpu:3.0f}%  in flight {st.get('in_flight', '-')}")
            if time.monotonic() > deadline:
                raise RunError(f"Locust did not finish the ramp within {total + SLACK_S:.0f} s")
    except (KeyboardInterrupt, Interrupted):
        partial, error = True, "interrupted"
        log("\ninterrupted: stopping processes and analysing what was recorded")
    except RunError as e:
        partial, error = True, str(e)
    finally:
        signal.signal(signal.SIGTERM, old_term)
        progress.done()
        codes = group.stop_all()
        stats_log.close()
        harness.close()
        manifest["processes"] = {c.name: {"pid": c.pid, "exit_code": codes.get(c.name)} for c in group.children}
    manifest.update(partial=partial, error=error, window={"start_ns": t_start, "end_ns": time.time_ns()})
    write_json(run_dir / "manifest.json", manifest)
    summary = _analyse(sc, run_dir, records, partial)
    write_json(run_dir / "summary.json", summary)
    return RunResult(run_dir, summary, partial, error)


def _analyse(sc: Scenario, run_dir: Path, records: Path, partial: bool) -> dict[str, Any]:
    ld = sc.load
    pattern = "storm-*.jsonl" if ld.target == "receiver" else "fleet-*.jsonl"
    requests = pd.DataFrame(_read_jsonl(list(records.glob(pattern))))
    for col in ("t_intended_ns", "t_send_ns", "t_recv_ns", "status", "error", "attempt", "msg_id"):
        if col not in requests.columns:
            requests[col] = None
    requests = requests.astype({"t_intended_ns": "int64", "t_send_ns": "int64", "t_recv_ns": "int64",
                                "status": "int64"}) if len(requests) else requests
    steps = pd.DataFrame(_read_jsonl(list(records.glob("steps.jsonl"))), columns=["t_ns", "step", "users"])
    server_stats = pd.DataFrame(_read_jsonl([records / "server_stats.jsonl"]),
                                columns=["t_ns", "server", "in_flight", "pending", "requests", "shed_503"])
    harness = typed("harness", _read_jsonl([records / "harness.jsonl"]))
    loop_lag = typed("loop_lag", _read_jsonl(list(records.glob("loop_lag*.jsonl"))))
    requests.to_parquet(run_dir / "requests.parquet", index=False)
    steps.to_parquet(run_dir / "steps.parquet", index=False)
    server_stats.to_parquet(run_dir / "server_stats.parquet", index=False)
    harness.to_parquet(run_dir / "harness.parquet", index=False)
    loop_lag.to_parquet(run_dir / "loop_lag.parquet", index=False)
    overload = overload_section(requests, steps, server_stats, rate_per_user=ld.rate_per_user,
                                settle_s=ld.settle, slo_p99_ms=ld.slo_p99 * 1e3, ramp_steps=ld.steps)
    # The harness is saturated when the load generator, not the server under test, ran out of CPU.
    reasons = []
    locust = harness[harness["process"].str.startswith("locust")]
    for process, cpu in locust.groupby("process")["cpu_pct"]:
        hot = int((cpu > LOCUST_CPU_LIMIT).sum())
        if hot >= 2:
            reasons.append(f"{process} CPU above {LOCUST_CPU_LIMIT:.0f}% in {hot} one-second samples: "
                           "the load generator, not the server, may have set the pace")
    warnings = locust_cpu_warnings(run_dir / "logs")
    if warnings:
        reasons.append(f"Locust warned {warnings} times that its CPU passed 90%")
    lag = loop_lag["lag_ms"].to_numpy(dtype=float)
    return {
        "format_version": LOAD_FORMAT_VERSION, "kind": "load", "scenario": sc.name, "seed": sc.seed,
        "target": ld.target, "partial": partial, "changes": None, "modes": {},
        "duration_s": float(steps["t_ns"].max() - steps["t_ns"].min()) / 1e9 if len(steps) > 1 else 0.0,
        "harness_saturated": bool(reasons),
        "saturation": {
            "reasons": reasons, "locust_cpu_max_pct": float(locust["cpu_pct"].max()) if len(locust) else None,
            "locust_cpu_warnings": warnings,
            f"{ld.target}_loop_lag_ms": {"p99": percentile(np.sort(lag), 99) if len(lag) else None,
                                         "max": float(lag.max()) if len(lag) else None, "n": int(len(lag))},
            f"{ld.target}_cpu_max_pct": float(harness.loc[harness["process"] == "server", "cpu_pct"].max())
            if (harness["process"] == "server").any() else None,
        },
        "overload": overload,
    }
