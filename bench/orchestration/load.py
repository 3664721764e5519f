"""The orchestrator of `hookbench load`: one server under a Locust step ramp, until it falls over or the ceiling.

`[load] target = "receiver"`: webhook storm senders (scenarios/storm.py) POST signed deliveries at the
receiver, retrying on the scenario's delivery schedule. `"producer"`: a polling fleet (scenarios/fleet.py)
polls the producer. Either way the ramp shape (scenarios/ramp.py) raises the users step by step; Locust runs
headless with `--processes N` (default one per core), or as a master whose workers are started apart
(`run_load(..., master=...)` and `run_workers`, Locust's own master/worker mode). Once a second the server's own
counters and every local process's CPU are sampled; Locust workers send their rows, their own CPU and their clock
answers to the master over Locust's messaging (scenarios/_wire.py), and the analysis reads what the master wrote.
With `external` (`--target-url`, bench.orchestration.target)
no server is started: the load goes to the user's URL, and the server's counters are named as unavailable.
"""

from __future__ import annotations

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

from bench.analysis.clocks import clock_estimates, clocks_section, correct_frame, manifest_clocks
from bench.analysis.overload import overload_section
from bench.analysis.saturation import locust_cpu_reasons
from bench.analysis.stats import percentile
from bench.analysis.tables import read_jsonl, typed
from bench.analysis.workers import (
    health_samples,
    health_summary,
    locust_requests,
    read_health,
    read_wire,
    records_section,
)
from bench.config import Scenario
from bench.errors import RunError
from bench.hosts import DEFAULT_BIND, url_host
from bench.manifest import collect_metadata
from bench.orchestration import distributed
from bench.orchestration.distributed import (
    ONE_CLOCK,
    SLACK_S,
    WORKER_CLOCKS,
    MasterOptions,
    free_port,
    master_argv,
    wait_for_workers,
)
from bench.orchestration.procs import ProcessGroup
from bench.orchestration.session import Interrupted, Progress, RunResult, http_json, locust_cpu_warnings, on_sigterm
from bench.orchestration.target import ExternalTarget, unavailable_figures
from bench.orchestration.wiring import (
    SENDER_RULES_NOT_RUN,
    make_endpoints,
    producer_argv,
    receiver_argv,
    receiver_config,
    storm_policy_argv,
)
from bench.protocol import PATH_STATS
from bench.records import JsonlWriter
from bench.results import (
    Kind,
    RunStatus,
    Summary,
    manifest_keys,
    status_keys,
    version_keys,
    write_json,
    write_manifest,
    write_summary,
)
from bench.wire import CLOCK_FILE

__all__ = ["run_load", "run_workers", "MasterOptions"]

SECRET_ENV_LOCUST = "LOCUST_HB_SECRET"  # scenarios/storm.py reads --hb-secret from it: never on a command line
ROW_NS_COLS = ("t_intended_ns", "t_send_ns", "t_recv_ns")  # a worker's own clock in a storm/fleet row
ROW_MS_COLS = ("latency_ms",)  # a fleet row's: the worker's receive time minus the producer's change time


def _locustfiles(sc: Scenario, scenarios_dir: Path) -> str:
    users = "storm.py" if sc.load.target == "receiver" else "fleet.py"
    return f"{scenarios_dir / users},{scenarios_dir / 'ramp.py'}"


def _locust_argv(sc: Scenario, scenarios_dir: Path, run_dir: Path, base: str, processes: int,
                 hook_path: str | None, master: MasterOptions | None = None, bind: str = DEFAULT_BIND) -> list[str]:
    """Locust's command line. For a receiver: the storm posts to `hook_path`, signed with the first subscription's
    scheme, retrying on its delivery schedule; the secret travels in the environment (SECRET_ENV_LOCUST)."""
    ld = sc.load
    argv = [sys.executable, "-m", "locust", "-f", _locustfiles(sc, scenarios_dir), "--headless", "--host", base,
            "--csv", str(run_dir / "locust"), "--csv-full-history",
            "--only-summary", "--exit-code-on-error", "0", "--logfile", str(run_dir / "logs" / "locust.log"),
            "--hb-start-users", str(ld.start_users), "--hb-step-users", str(ld.step_users),
            "--hb-steps", str(ld.steps), "--hb-step-seconds", repr(ld.step_duration),
            "--hb-ceiling-users", str(ld.ceiling_users), "--hb-records", str(run_dir / "records")]
    if master is not None:
        # The workers are other processes (`hookbench load --worker`); they get every --hb-* option, the records
        # directory included, from the master with their first spawn message.
        argv += master_argv(master, bind)
    elif processes > 1:
        # Locust's own master/worker link: bind it to loopback on a free port (the default 5557 on every
        # interface could meet another Locust master on this machine)
        port = free_port()
        argv += ["--processes", str(processes), "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
                 "--master-port", str(port)]
    if ld.recovery:
        argv.append("--hb-recovery")
    if ld.target == "receiver":
        assert hook_path is not None
        delivery = sc.webhook.subscriptions[0]
        argv += ["--hb-path", hook_path, "--hb-scheme", delivery.scheme, "--hb-rate", repr(ld.rate_per_user),
                 *storm_policy_argv(delivery)]
    else:
        argv += ["--hb-interval", repr(1.0 / ld.rate_per_user), "--hb-resources", str(sc.resources.count),
                 "--hb-seed", str(sc.seed), "--hb-timeout", repr(sc.polling.timeout),
                 "--hb-limit", str(sc.polling.cursor_limit)]
    return argv


def sender_policy(sc: Scenario) -> dict[str, Any]:
    """What the manifest says of the storm senders' retry policy: the first subscription's, as they run it."""
    d = sc.webhook.subscriptions[0]
    return {"subscription": d.name, "profile": d.profile, "scheme": d.scheme, "attempts": d.attempts,
            "retry_delays_s": [d.nominal_delay(n) for n in range(1, d.attempts)], "jitter": d.jitter,
            "timeout_s": d.timeout, "retry_after_cap_s": d.retry_after_cap, "delay_scale": d.delay_scale,
            "not_run": list(SENDER_RULES_NOT_RUN),
            "note": "each storm user is one sender with one request in flight; 4xx answers are final"}


def _redacted(argv: list[str], secrets: list[str]) -> list[str]:
    out = list(argv)
    for secret in filter(None, secrets):
        out = [a.replace(secret, "<secret>") for a in out]
    return out


def run_load(scenario: Scenario, run_dir: Path, scenarios_dir: Path, *, repo: Path, processes: int | None = None,
             master: MasterOptions | None = None, external: ExternalTarget | None = None,
             bind: str = DEFAULT_BIND, log: Callable[[str], None] = print) -> RunResult:
    """Carry out one load run into `run_dir`; always writes manifest.json and summary.json.

    With `master`, Locust runs as a master only (no users of its own) and the ramp starts once
    `master.expect_workers` workers have connected; RunError if they have not within `master.max_wait_s`.
    With `external`, no server is started: Locust's users load the user's own receiver or producer.
    `bind` (an address of this machine, checked by the caller) is where the server and the master listen, and the
    host of the URL the users are given.
    """
    sc, ld = scenario, scenario.load
    records = run_dir / "records"
    records.mkdir()
    nproc = 0 if master is not None else processes or ld.processes or os.cpu_count() or 1
    write_json(run_dir / "scenario.json", sc.to_dict())
    manifest: dict[str, Any] = {**manifest_keys(Kind.LOAD), "scenario": sc.to_dict(),
                                "scenario_source": sc.source, "seed": sc.seed, "time_scale": sc.run.time_scale,
                                "locust_processes": nproc, **collect_metadata(repo),
                                **status_keys(RunStatus.PARTIAL)}
    manifest["clocks"] = ONE_CLOCK
    manifest["bind"] = bind
    manifest["target"] = external.public() if external else {"external": False, "kind": ld.target}
    if ld.target == "receiver":
        manifest["senders"] = sender_policy(sc)
    if external is not None:
        manifest["command_line"] = _redacted(manifest["command_line"], [external.secret or ""])
    if master is not None:
        manifest["locust_master"] = master.public(bind)
        manifest["clocks"] = WORKER_CLOCKS
    write_manifest(run_dir, manifest)
    group = ProcessGroup(env=dict(os.environ))  # the storm's secret is added to it below, for Locust only
    stats_log = JsonlWriter(records / "server_stats.jsonl")
    harness = JsonlWriter(records / "harness.jsonl")
    progress = Progress(log)
    status, error = RunStatus.COMPLETE, None
    old_term = signal.signal(signal.SIGTERM, on_sigterm)
    t_start = time.time_ns()
    try:
        secret, hook_path, server = None, None, None  # server: the built-in one's Child, if any
        if external is not None:
            base, hook_path, secret = external.base, external.path or None, external.secret
        elif ld.target == "receiver":
            endpoint = make_endpoints(sc)[0]
            hook_path, secret = endpoint.path(sc), endpoint.secret
            config = run_dir / "receiver.json"
            write_json(config, receiver_config(sc, [endpoint], run_dir / "tls"))
            config.chmod(0o600)
            server = group.start("receiver", receiver_argv(config, records, bind=bind),
                                 run_dir / "logs" / "receiver.log", cwd=repo)
            base = f"{'https' if sc.receiver.https else 'http'}://{url_host(bind)}:{server.port}"
        else:
            server = group.start("producer", producer_argv(run_dir / "scenario.json", run_dir / "producer.db",
                                                           records, 0, 0, bind=bind),
                                 run_dir / "logs" / "producer.log", cwd=repo)
            base = f"http://{url_host(bind)}:{server.port}"
        ctx = None
        if sc.receiver.https and ld.target == "receiver" and external is None:
            import ssl

            ctx = ssl.create_default_context(cafile=str(run_dir / "tls" / "cert.pem"))
        argv = _locust_argv(sc, scenarios_dir, run_dir, base, nproc, hook_path, master, bind)
        manifest["locust_command"] = _redacted(argv[1:], [secret or ""])
        if secret is not None and group.env is not None:
            group.env[SECRET_ENV_LOCUST] = secret  # started after the server: only Locust sees it
        locust = group.start("locust", argv, run_dir / "logs" / "locust.out", wait_ready=False, cwd=repo)
        locust.expected_exit = True
        total = ld.total_steps * ld.step_duration
        who = (f"Locust master pid {locust.pid} on {url_host(bind)}:{master.bind_port}, waiting for "
               f"{master.expect_workers} worker(s)" if master else f"Locust pid {locust.pid} with {nproc} process(es)")
        where = f"external {ld.target} {external.shown} (not started by hookbench)" if external else \
            f"{ld.target} on {base} (pid {server.pid})"
        log(f"{where}; {who}; "
            f"{ld.total_steps} steps of {ld.step_duration:g} s, {ld.start_users}+{ld.step_users}/step users "
            f"at {ld.rate_per_user:g} req/s each")
        if master is not None:
            steps = records / "steps.jsonl"
            wait_for_workers(locust, group, run_dir / "logs" / "locust.log", master, progress, bind, command="load",
                             started=lambda: steps.is_file() and steps.stat().st_size > 0)
            progress.done()
            log(f"{master.expect_workers} Locust worker(s) connected: the ramp has started")
        procs = {"locust": psutil.Process(locust.pid)}
        if server is not None:
            procs["server"] = psutil.Process(server.pid)
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
            st: dict[str, Any] = {}
            if server is not None:  # an external target's /stats is not ours to read (it may have none)
                try:
                    st = http_json(f"{base}{PATH_STATS}", timeout=2.0, ctx=ctx)
                except (OSError, urllib.error.URLError, RunError):
                    st = {}
                stats_log.write({"t_ns": now, "server": ld.target, "in_flight": st.get("in_flight"),
                                 "pending": (st.get("deliveries") or {}).get("pending"),
                                 "requests": st.get("requests"), "shed_503": st.get("shed_503")})
            locust_cpu = max((v for k, v in cpu.items() if k.startswith("locust")), default=0.0)
            server_part = f"server CPU {cpu.get('server', 0):3.0f}%  " if server is not None else ""
            progress.show(f"[{time.monotonic() - t0:5.0f}/{total:.0f}s] {server_part}"
                          f"Locust CPU max {locust_cpu:3.0f}%  in flight {st.get('in_flight', '-')}")
            if time.monotonic() > deadline:
                raise RunError(f"Locust did not finish the ramp within {total + SLACK_S:.0f} s")
        if master is not None and locust.popen.returncode != 0:
            raise RunError(f"the Locust master exited with code {locust.popen.returncode}; see "
                           f"{run_dir / 'logs' / 'locust.log'}")
    except (KeyboardInterrupt, Interrupted):
        status, error = RunStatus.INTERRUPTED, RunStatus.INTERRUPTED.value
        log("\ninterrupted: stopping processes and analysing what was recorded")
    except RunError as e:
        status, error = RunStatus.PARTIAL, str(e)
    finally:
        signal.signal(signal.SIGTERM, old_term)
        progress.done()
        codes = group.stop_all()
        stats_log.close()
        harness.close()
        manifest["processes"] = {c.name: {"pid": c.pid, "exit_code": codes.get(c.name)} for c in group.children}
    manifest.update(status_keys(status), error=error, window={"start_ns": t_start, "end_ns": time.time_ns()})
    # each Locust worker's clock against the master's, measured over Locust's messaging (scenarios/_wire.py)
    manifest["clocks"] = {**manifest["clocks"], "bound_ms": ld.clock_bound * 1e3,
                          "workers": manifest_clocks(clock_estimates(read_jsonl(list(records.glob(CLOCK_FILE)))))}
    write_manifest(run_dir, manifest)
    summary = _analyse(sc, run_dir, records, status, external)
    write_summary(run_dir, summary)
    return RunResult(run_dir, Summary.from_dict(summary), status, error)


def run_workers(scenario: Scenario, scenarios_dir: Path, *, master_host: str, master_port: int, processes: int,
                repo: Path, records_dir: Path | None = None, log: Callable[[str], None] = print) -> int:
    """`hookbench load --worker`: Locust workers of the scenario's locustfiles (bench.orchestration.distributed)."""
    return distributed.run_workers(_locustfiles(scenario, scenarios_dir), master_host=master_host,
                                   master_port=master_port, processes=processes, repo=repo, records_dir=records_dir,
                                   what=scenario.load.target, log=log)


def _records_section(requests: pd.DataFrame, run_dir: Path, records: Path, target: str) -> dict[str, Any]:
    """Where the per-request rows came from, and whether they hold every request Locust counted.

    A local run's single Locust process writes its own file. Locust workers (separately started, or forked by
    `--processes`) send their rows to the master (scenarios/_wire.py), which writes `<stem>-w<index>-<pid>.jsonl`
    and wire.json: per worker, the rows received and the total the worker declared at its end.
    """
    stem = "storm" if target == "receiver" else "fleet"
    files = sorted(records.glob(f"{stem}-*.jsonl"))
    return records_section(requests, files=len(files), locust_requests=locust_requests(run_dir),
                           wire=read_wire(records))


def _analyse(sc: Scenario, run_dir: Path, records: Path, status: RunStatus,
             external: ExternalTarget | None = None) -> dict[str, Any]:
    ld = sc.load
    pattern = "storm-*.jsonl" if ld.target == "receiver" else "fleet-*.jsonl"
    requests = pd.DataFrame(read_jsonl(list(records.glob(pattern))))
    for col in ("t_intended_ns", "t_send_ns", "t_recv_ns", "status", "error", "attempt", "msg_id"):
        if col not in requests.columns:
            requests[col] = None
    requests = requests.astype({"t_intended_ns": "int64", "t_send_ns": "int64", "t_recv_ns": "int64",
                                "status": "int64"}) if len(requests) else requests
    steps = pd.DataFrame(read_jsonl(list(records.glob("steps.jsonl"))), columns=["t_ns", "step", "users"])
    server_stats = pd.DataFrame(read_jsonl([records / "server_stats.jsonl"]),
                                columns=["t_ns", "server", "in_flight", "pending", "requests", "shed_503"])
    harness = typed("harness", read_jsonl([records / "harness.jsonl"]))
    loop_lag = typed("loop_lag", read_jsonl(list(records.glob("loop_lag*.jsonl"))))
    estimates = clock_estimates(read_jsonl(list(records.glob(CLOCK_FILE))))
    raw_requests = requests
    if estimates and len(requests):  # every worker's times on the master's clock (the steps' clock)
        requests = correct_frame(requests, estimates, time_col="t_send_ns", ns_cols=ROW_NS_COLS, ms_cols=ROW_MS_COLS)
    requests.to_parquet(run_dir / "requests.parquet", index=False)
    steps.to_parquet(run_dir / "steps.parquet", index=False)
    server_stats.to_parquet(run_dir / "server_stats.parquet", index=False)
    harness.to_parquet(run_dir / "harness.parquet", index=False)
    loop_lag.to_parquet(run_dir / "loop_lag.parquet", index=False)
    overload = overload_section(requests, steps, server_stats, rate_per_user=ld.rate_per_user,
                                settle_s=ld.settle, slo_p99_ms=ld.slo_p99 * 1e3, ramp_steps=ld.steps,
                                server_counters=external is None)
    # The harness is saturated when the load generator, not the server under test, ran out of CPU.
    locust = harness[harness["process"].str.startswith("locust")]
    health = read_health(records)
    health.to_parquet(run_dir / "worker_health.parquet", index=False)
    local_pids = {int(p.split(".", 1)[1]) for p in locust["process"].unique() if p.startswith("locust.")}
    locust = pd.concat([locust[["process", "cpu_pct"]], health_samples(health, local_pids, socket.gethostname())],
                       ignore_index=True)
    warnings = locust_cpu_warnings(run_dir / "logs")
    reasons = locust_cpu_reasons(locust, warnings,
                                 consequence=": the load generator, not the server, may have set the pace")
    rec = _records_section(requests, run_dir, records, ld.target)
    lag = loop_lag["lag_ms"].to_numpy(dtype=float)
    saturation: dict[str, Any] = {
        "reasons": reasons, "locust_cpu_max_pct": float(locust["cpu_pct"].max()) if len(locust) else None,
        "locust_cpu_warnings": warnings, "workers": health_summary(health),
    }
    if external is None:  # the server's own figures: an external target's are named in `unavailable` instead
        saturation[f"{ld.target}_loop_lag_ms"] = {"p99": percentile(np.sort(lag), 99) if len(lag) else None,
                                                  "max": float(lag.max()) if len(lag) else None, "n": int(len(lag))}
        saturation[f"{ld.target}_cpu_max_pct"] = (float(harness.loc[harness["process"] == "server", "cpu_pct"].max())
                                                  if (harness["process"] == "server").any() else None)
    return {
        **version_keys(Kind.LOAD), "scenario": sc.name, "seed": sc.seed,
        "target": ld.target, **status_keys(status), "changes": None, "modes": {},
        "duration_s": float(steps["t_ns"].max() - steps["t_ns"].min()) / 1e9 if len(steps) > 1 else 0.0,
        "harness_saturated": bool(reasons),
        "target_server": external.public() if external else {"external": False, "kind": ld.target},
        "unavailable": unavailable_figures(ld.target) if external else [],
        "saturation": saturation,
        "overload": overload,
        "records": rec,
        "clocks": clocks_section(estimates, ld.clock_bound, raw=raw_requests, corrected=requests,
                                 latency_col="latency_ms" if ld.target == "producer" else None,
                                 workers=[int(w) for w in rec["per_worker"]] if "wire" in rec else ()),
    }
