"""The `hookbench` command line: the composition root, the one module that wires bench, servers and reports.

Turns HookbenchError into a one-line message and its exit code (2 for bad input); never a traceback
for a user's mistake.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from bench import __version__
from bench.config import load_scenario
from bench.errors import HookbenchError, RunDirError, RunError, ScenarioError
from bench.hosts import DEFAULT_BIND, check_bind, exposure_warning, url_host
from bench.results import Kind, RunStatus, Summary, read_summary

if TYPE_CHECKING:
    from bench.orchestration.distributed import MasterOptions

__all__ = ["main"]

REPO = Path(__file__).resolve().parent.parent
LOCUST_MASTER_PORT = 5557  # Locust's own default, on both sides


def _scenarios_dir() -> Path:
    import scenarios  # a package of data files and the locustfile; importing it does not import locust

    return Path(scenarios.__file__).resolve().parent


def _overrides(args: argparse.Namespace) -> list[str]:
    out = list(args.set or [])
    if getattr(args, "duration", None) is not None:
        out.append(f"run.duration={args.duration}")
    if getattr(args, "seed", None) is not None:
        out.append(f"seed={args.seed}")
    return out


def _warn_exposure(bind: str, what: str, workers: bool = True) -> None:
    if (warning := exposure_warning(bind, what, workers)) is not None:
        print(f"hookbench: {warning}", file=sys.stderr, flush=True)


def cmd_run(args: argparse.Namespace) -> int:
    from bench.orchestration.distributed import run_workers
    from bench.orchestration.runner import run_scenario
    from bench.orchestration.session import new_run_dir
    from reports import build_report

    _check_distributed_flags(args, "run")
    bind = check_bind(args.bind) if args.bind is not None else DEFAULT_BIND
    path = Path(args.scenario) if args.scenario else _scenarios_dir() / "default.toml"
    scenario = load_scenario(path, _overrides(args))
    if args.worker:  # the pollers only; everything else (options included) comes from the master
        return run_workers(str(_scenarios_dir() / "pollers.py"), **_worker_kwargs(args),
                           what=f"the pollers of {scenario.name}")
    master = _master_options(args)
    _warn_exposure(bind, "the producer and the receiver" + (" and the Locust master" if master else ""),
                   workers=master is not None)
    run_dir = new_run_dir(Path(args.out or "runs"), scenario.name)
    print(f"hookbench run: scenario {scenario.name} ({path}), seed {scenario.seed} -> {run_dir}")
    result = run_scenario(scenario, run_dir, _scenarios_dir(), repo=REPO, bind=bind, master=master)
    paths = build_report(run_dir)
    s = result.summary
    print(f"\n{s.value('changes')} changes in a {s.value('duration_s'):.1f} s window"
          + ("  [PARTIAL]" if result.partial else "") + ("  [HARNESS SATURATED]" if s.harness_saturated else ""))
    for reason in s.saturation_reasons:
        print(f"  warning: {reason}")
    print(f"{'mode':14} {'requests':>9} {'wasted':>8} {'model':>8} {'req/chg':>8} {'lost':>5} "
          f"{'p50 ms':>8} {'p99 ms':>8}")
    for mode, m in s.modes.items():
        print(f"{mode:14} {m.requests:>9} {_f(m.wasted_fraction, '.3f'):>8} "
              f"{_f(m.model.get('wasted_fraction'), '.3f'):>8} {_f(m.requests_per_change, '.2f'):>8} "
              f"{m.lost:>5} {_f(m.latency_ms.p50, '.1f'):>8} {_f(m.latency_ms.p99, '.1f'):>8}")
    _print_faults(s)
    _print_security(s)
    if s.section("records"):  # pollers on Locust workers (--master)
        _print_records(s)
    print(f"\nreport: {paths['html']}\n        {paths['md']}")
    return _exit_code(result.status, result.error, "the run")


def _print_records(s: Summary) -> None:
    """The records check: rows against Locust's count, and every worker named for rows missing, rows in surplus or
    an end-of-run exchange with the master that did not complete."""
    rec = s.section("records") or {}
    per_worker = ", ".join(f"worker {w}: {n}" for w, n in (rec.get("per_worker") or {}).items())
    print(f"records: {rec.get('rows')} requests in {rec.get('files')} file(s) ({per_worker or 'none'}); "
          f"Locust counted {_f(rec.get('locust_requests'), 'd')}")
    if rec.get("complete") is False:
        print("  warning: RECORDS NOT COMPLETE: the figures may miss requests or count some twice")
    for key, label in (("lost", "missing"), ("surplus", "surplus"), ("unacknowledged", "end of run")):
        for entry in rec.get(key) or []:
            print(f"  {label}: {entry.get('reason')}")


def _exit_code(status: RunStatus, error: str | None, what: str) -> int:
    """0 for a complete run, 130 for an interrupted one (as a shell reports Ctrl-C), 1 for one that failed."""
    if status is RunStatus.PARTIAL:
        print(f"hookbench: {what} failed: {error}", file=sys.stderr)
        return 1
    return 130 if status is RunStatus.INTERRUPTED else 0


def _print_faults(s: Summary) -> None:
    from reports.fmt import fmt_policy

    f = s.faults or {}
    if not (f.get("receiver_down") or f.get("producer_crashes")):
        return
    outages = ", ".join(f"{o['duration_s']:.1f} s ({o['mode']})" for o in f["receiver_down"]) or "none"
    print(f"\nfaults: receiver down {outages}; producer crashes {len(f['producer_crashes'])}; "
          f"{f['changes_in_outage']} changes made during outages")
    print(f"{'mode':16} {'policy':40} {'lost':>5} {'dup dlv':>8} {'dup proc':>8} {'late':>5} {'max delay ms':>13}")
    for mode, m in f["modes"].items():  # the policy in the registry's words, as the report says it
        print(f"{mode:16} {fmt_policy(m['policy'], mode):40.40} {m['lost']:>5} {m['duplicates_delivered']:>8} "
              f"{_f(m['duplicates_processed'], 'd'):>8} {m['late']:>5} {_f(m['max_delay_ms'], '.0f'):>13}")


def _print_security(s: Summary) -> None:
    sec = s.security or {}
    foreign = sec.get("foreign") or {}
    if foreign.get("accepted") or foreign.get("duplicates"):
        print(f"\nforeign senders (not hookbench's change events; no mode's observations): {foreign['accepted']} "
              f"events accepted, {foreign['duplicates']} duplicates")
    if not sec.get("hostile_sent"):
        return
    legit = sec["legit"]
    print(f"\nsecurity: {sec['hostile_sent']} hostile requests, {sec['hostile_as_expected']} answered as a defended "
          f"receiver must, {sec['hostile_accepted']} processed; receiver 5xx: {sec['receiver_5xx']}; "
          f"legitimate deliveries answered 2xx: {legit['answered_2xx']}/{legit['sent']}; "
          f"audit log complete: {sec['audit']['complete']}")


def _f(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _check_distributed_flags(args: argparse.Namespace, command: str) -> None:
    """Reject combinations of --master / --worker flags that cannot work, naming the flag and the fix."""
    def bad(flag: str, value: object, expected: str) -> ScenarioError:
        return ScenarioError(f"hookbench {command}", flag, value, expected)

    master_only = (("--expect-workers", args.expect_workers), ("--master-bind-port", args.master_bind_port),
                   ("--expect-workers-max-wait", args.expect_workers_max_wait))
    worker_only = (("--master-host", args.master_host), ("--master-port", args.master_port),
                   ("--records-dir", args.records_dir))
    if args.master and args.worker:
        raise bad("--worker", True, "cannot be combined with --master: run the master and each worker as separate "
                                    f"`hookbench {command}` commands")
    if not args.master:
        for flag, value in master_only:
            if value is not None:
                raise bad(flag, value, "only applies with --master")
    if not args.worker:
        for flag, value in worker_only:
            if value is not None:
                raise bad(flag, value, "only applies with --worker (the master listens on --bind, default "
                                       "127.0.0.1, and --master-bind-port)")
    if command == "load":
        _check_load_target_flags(args, bad)
    elif args.processes is not None and not args.worker:
        raise bad("--processes", args.processes, "only applies with --worker (pollers in N processes on that machine); "
                                                 "a run's own pollers are one Locust process")
    if args.worker:
        if not args.master_host:
            raise bad("--master-host", None, "--worker needs the master's address, e.g. --master-host 127.0.0.1")
        for flag, value in (("--duration", args.duration), ("--out", args.out), ("--set", args.set),
                            ("--bind", args.bind), ("--seed", getattr(args, "seed", None))):
            if value is not None:
                raise bad(flag, value, f"does not apply with --worker: the master runs the {command}, writes the run "
                                       "directory and sends its options to the workers")
    for flag, value, low, high in (("--expect-workers", args.expect_workers, 1, 1000),
                                   ("--master-bind-port", args.master_bind_port, 1, 65535),
                                   ("--master-port", args.master_port, 1, 65535),
                                   ("--expect-workers-max-wait", args.expect_workers_max_wait, 1, 86400),
                                   ("--processes", getattr(args, "processes", None), 1, 1000)):
        if value is not None and not low <= value <= high:
            raise bad(flag, value, f"must be an integer from {low} to {high}")


def _master_options(args: argparse.Namespace) -> MasterOptions | None:
    """`--master` and its flags (checked by _check_distributed_flags), with their defaults; None without it."""
    from bench.orchestration.distributed import MasterOptions

    if not args.master:
        return None
    return MasterOptions(expect_workers=args.expect_workers or 1, bind_port=args.master_bind_port or LOCUST_MASTER_PORT,
                         max_wait_s=args.expect_workers_max_wait or 60)


def _worker_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """What `--worker` and its flags give run_workers, with their defaults."""
    return {"master_host": args.master_host, "master_port": args.master_port or LOCUST_MASTER_PORT,
            "processes": args.processes or 1, "repo": REPO,
            "records_dir": Path(args.records_dir) if args.records_dir else None}


def _check_load_target_flags(args: argparse.Namespace, bad: Callable[[str, object, str], ScenarioError]) -> None:
    """`hookbench load`'s own flags against --master / --worker."""
    if args.target_secret is not None and args.target_url is None:
        raise bad("--target-secret", "<redacted>", "only applies with --target-url (the built-in receiver draws a "
                                                   "fresh secret for each run)")
    if args.worker and args.target_url is not None:
        raise bad("--target-url", args.target_url, "does not apply with --worker: give it to the master (`hookbench "
                                                   "load SCENARIO --master --target-url URL`), which sends it to the "
                                                   "workers")
    if args.master and args.processes is not None:
        raise bad("--processes", args.processes, "cannot be combined with --master: the master runs no users; give "
                                                 "--processes to each `hookbench load --worker` instead")


def cmd_load(args: argparse.Namespace) -> int:
    import os

    from bench.orchestration.load import run_load, run_workers
    from bench.orchestration.session import new_run_dir
    from bench.orchestration.target import parse_target, preflight
    from reports import build_report

    _check_distributed_flags(args, "load")
    bind = check_bind(args.bind) if args.bind is not None else DEFAULT_BIND
    path = Path(args.scenario)
    scenario = load_scenario(path, list(args.set or []))
    if args.worker:
        return run_workers(scenario, _scenarios_dir(), **_worker_kwargs(args))
    if args.duration is not None:  # the whole ramp: spread over its steps
        if args.duration <= 0:
            raise ScenarioError("--duration", "--duration", args.duration, "must be a positive number of seconds")
        per_step = args.duration / scenario.load.total_steps
        scenario = load_scenario(path, list(args.set or []) + [f"load.step_duration={per_step!r}"])
    master = _master_options(args)
    external = None
    if args.target_url is not None:  # checked, then probed once, before anything is started or written
        external = parse_target(args.target_url, scenario.load.target, scenario.webhook.subscriptions[0].scheme,
                                args.target_secret, os.environ)
        print(f"hookbench load: --target-url {external.shown}: {preflight(external)}")
    _warn_exposure(bind, "the Locust master" if external else
                   f"the {scenario.load.target}" + (" and the Locust master" if master else ""))
    run_dir = new_run_dir(Path(args.out or "runs"), scenario.name + ("-external" if external else ""))
    target = f"external {scenario.load.target} {external.shown}" if external else scenario.load.target
    print(f"hookbench load: scenario {scenario.name} ({path}), target {target} -> {run_dir}")
    result = run_load(scenario, run_dir, _scenarios_dir(), repo=REPO, processes=args.processes, master=master,
                      external=external, bind=bind)
    paths = build_report(run_dir)
    o = result.summary.overload or {}
    print(f"\n{'step':>4} {'users':>6} {'offered/s':>10} {'achieved/s':>11} {'p99 ms':>8} {'p99 from intended':>18} "
          f"{'errors':>7} {'attempts/delivery':>18}")
    for st in o["steps"]:
        print(f"{st['step']:>4} {st['users']:>6} {st['offered_rps']:>10.0f} {st['achieved_rps']:>11.0f} "
              f"{_f(st['latency_ms']['p99'], '.1f'):>8} {_f(st['latency_from_intended_ms']['p99'], '.1f'):>18} "
              f"{_f(st['error_rate'], '.1%'):>7} {_f(st['retry_amplification'], '.2f'):>18}")
    knee = o["knee"]
    print(f"knee: step {knee['step']} at {knee['offered_rps']:.0f}/s offered: {'; '.join(knee['reasons'])}"
          if knee["reached"] else f"knee: {'; '.join(knee['reasons'])}")
    if o.get("recovery_s") is not None or o.get("recovery_note"):
        print(f"recovery: {_f(o.get('recovery_s'), '.0f')} s ({o.get('recovery_note')})")
    for reason in result.summary.saturation_reasons:
        print(f"  warning: HARNESS SATURATED: {reason}")
    unavailable = result.summary.value("unavailable") or []
    if unavailable:
        print(f"unavailable (external target, not measured): {'; '.join(u['figure'] for u in unavailable)}")
    _print_records(result.summary)
    print(f"\nreport: {paths['html']}\n        {paths['md']}")
    return _exit_code(result.status, result.error, "the load run")


def cmd_sweep(args: argparse.Namespace) -> int:
    from bench.orchestration.sweep import parse_grid, run_sweep
    from bench.results import read_sweep
    from reports.sweep import build_sweep_report

    if not args.grid:
        raise ScenarioError("--grid", "--grid", None, "at least one --grid key=v1,v2,... is required, "
                            "e.g. --grid changes.rate=0.002,0.01,0.05,0.25,1")
    grid = parse_grid(args.grid)
    sweep_dir = run_sweep(Path(args.scenario), grid, out=Path(args.out), extra_overrides=_overrides(args),
                          scenarios_dir=_scenarios_dir(), repo=REPO)
    paths = build_sweep_report(sweep_dir)
    sweep = read_sweep(sweep_dir)
    cross = sweep.crossover or {}
    others = {m: v for m, v in sweep.crossover_by_mode.items() if m != cross.get("polling_mode")}
    for consumer, series in (("polling", cross.get("measured") or {}), *others.items()):
        for metric, per_mode in series.items():
            for mode, c in per_mode.items():
                where = (f"at {c['rate_per_resource']:.3g} changes/s per resource "
                         f"(R*lambda*T = {c['R_lambda_T']:.2f})"
                         if c.get("rate_per_resource") is not None else f"none: {c.get('reason')}")
                print(f"crossover, {metric}, {consumer} vs {mode}: {where}")
    model = (cross.get("model") or {}).get("requests_per_change") or {}
    if model.get("R_lambda_T") is not None:
        print(f"model crossover, requests_per_change: R*lambda*T = {model['R_lambda_T']:.2f} "
              f"({model['rate_per_resource']:.3g} changes/s per resource)")
    print(f"\nsweep report: {paths['html']}\n              {paths['md']}")
    return 130 if sweep.status is RunStatus.INTERRUPTED else 0


def cmd_report(args: argparse.Namespace) -> int:
    from bench.orchestration.session import new_run_dir
    from reports import build_comparison_report, build_report

    run_dirs = [Path(d) for d in args.run_dir]
    for run_dir in run_dirs:
        if not run_dir.is_dir():
            raise RunDirError(f"{run_dir}: not a directory: expected a run directory written by `hookbench run` or "
                              "`hookbench load`")
    if len(run_dirs) == 1:
        if args.out is not None:
            raise ScenarioError("hookbench report", "--out", args.out, "only applies when comparing two or more load "
                                "run directories; one run's report is written into its own directory")
        paths = build_report(run_dirs[0])
        print(f"report: {paths['html']}\n        {paths['md']}")
        return 0
    out = Path(args.out) if args.out else new_run_dir(Path("runs"), "compare")
    try:
        paths = build_comparison_report(run_dirs, out)
    except HookbenchError:
        if args.out is None and not any(out.iterdir()):
            out.rmdir()  # the directory made for this comparison: a refused comparison leaves nothing behind
        raise
    summary = read_summary(out, expect=Kind.LOAD_COMPARISON)
    for run in summary.value("runs") or []:
        knee = run["knee"] or {}
        where = (f"step {knee.get('step')} at {knee.get('offered_rps'):.0f} {run['unit']} offered"
                 if knee.get("reached") else "; ".join(knee.get("reasons") or ["not recorded"]))
        print(f"{run['label']}: knee {where}")
    print(f"\ncomparison report: {paths['html']}\n                   {paths['md']}")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from bench.orchestration.session import new_run_dir
    from bench.simulation.simulate import simulate_scenario, summary_lines
    from reports import build_report

    path = Path(args.scenario) if args.scenario else _scenarios_dir() / "default.toml"
    scenario = load_scenario(path, _overrides(args))
    if args.polls is not None and args.polls < 1:
        raise ScenarioError("hookbench simulate", "--polls", args.polls, "must be a whole number >= 1")
    run_dir = new_run_dir(Path(args.out), scenario.name + "-sim")
    print(f"hookbench simulate: scenario {scenario.name} ({path}), seed {scenario.seed}, virtual time -> {run_dir}")
    summary = simulate_scenario(scenario, run_dir, polls=args.polls, progress=lambda m: print(f"  {m}", flush=True))
    paths = build_report(run_dir)
    print()
    for line in summary_lines(summary):
        print(line)
    print(f"\nreport: {paths['html']}\n        {paths['md']}")
    return 0


def _comma_list(flag: str, text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    items = tuple(x.strip() for x in text.split(",") if x.strip())
    if not items:
        raise ScenarioError("hookbench outage", flag, text, "must be a non-empty comma list")
    return items


def cmd_outage(args: argparse.Namespace) -> int:
    from bench.orchestration.session import new_run_dir
    from bench.schema import parse_duration
    from bench.simulation.outage import DEFAULT_PROFILES, check_parameters, write_outage_run
    from reports import build_report
    from reports.outage import fmt_duration

    lengths = _comma_list("--lengths", args.lengths)
    seconds: tuple[float, ...] | None = None
    if lengths is not None:
        try:
            seconds = tuple(parse_duration(x) for x in lengths)
        except ValueError as e:
            raise ScenarioError("hookbench outage", "--lengths", args.lengths,
                                f"must be a comma list of durations like 30s,5m,2h,3d ({e})") from None
    profiles = tuple(p.lower() for p in _comma_list("--profiles", args.profiles) or DEFAULT_PROFILES)
    check_parameters(profiles, seconds, args.rate, args.changes, args.receiver, args.jitter)
    run_dir = new_run_dir(Path(args.out), "outage")
    print(f"hookbench outage: model prediction in virtual time (no servers) -> {run_dir}")
    s = write_outage_run(run_dir, repo=REPO, profiles=profiles, lengths=seconds, rate=args.rate, changes=args.changes,
                         seed=args.seed, receiver=args.receiver, jitter=args.jitter,
                         progress=lambda m: print(f"  {m}", flush=True))
    paths = build_report(run_dir)
    print(f"\n{'profile':10} {'loss begins at L >=':>20} {'all lost from':>14} {'disabled from':>14} "
          f"{'schedule span':>14} {'loss at longest L':>18}")
    for name, f in s["profiles"].items():
        print(f"{name:10} {fmt_duration(f['loss_from_s']) if f['loss_from_s'] is not None else 'none':>20} "
              f"{fmt_duration(f['all_lost_from_s']):>14} {fmt_duration(f['disabled_from_s']):>14} "
              f"{fmt_duration(f['nominal_span_s']):>14} {_f(f['loss_fraction_at_longest'], '.2%'):>18}")
    print(f"({s['label']}; {s['rows']} rows in {s['wall_s']:.1f} s)")
    print(f"\nreport: {paths['html']}\n        {paths['md']}")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from bench.analysis.claims import CLAIMS
    from bench.orchestration.load import run_load
    from bench.orchestration.reproduce import Interrupted, reproduce_all, reproduce_zapier
    from reports.claims import build_claims_report, build_reproduction_report

    out = Path(args.out)
    build = build_reproduction_report if args.what == "zapier" else build_claims_report
    if args.only and args.what != "all":
        raise ScenarioError("hookbench reproduce zapier", "--only", args.only,
                            "applies only to `hookbench reproduce all`")
    try:
        if args.what == "zapier":
            rdir = reproduce_zapier(out, repo=REPO, scenarios_dir=_scenarios_dir(), quick=args.quick, seed=args.seed)
        else:
            only = (tuple(c.strip().upper() for c in args.only.split(",") if c.strip())
                    if args.only is not None else None)
            unknown = [c for c in only or () if c not in CLAIMS]
            if unknown or only == ():
                raise ScenarioError("hookbench reproduce all", "--only", args.only,
                                    f"must be a comma list of claim ids from {', '.join(CLAIMS)} (unknown: "
                                    f"{', '.join(unknown) or 'none given'})")
            rdir = reproduce_all(out, repo=REPO, scenarios_dir=_scenarios_dir(), run_load=run_load, quick=args.quick,
                                 **({"only": only} if only else {}))
    except Interrupted as e:
        print(f"hookbench: interrupted; what finished is in {e}", file=sys.stderr)
        try:
            build(Path(str(e)))
        except HookbenchError:
            pass
        return 130
    paths = build(rdir)
    summary = read_summary(rdir, expect=(Kind.REPRODUCTION, Kind.CLAIMS))
    print()
    for c in (summary.claims or {}).values():
        print(f"{c['id']} {c['claim']}: {c['verdict'].upper()} -- {c['verdict_text']}")
    print(f"\nreport: {paths['html']}\n        {paths['md']}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    if args.server == "receiver":  # the receiver's own command line (python -m servers.receiver --help)
        from servers.receiver.__main__ import main as receiver_main

        return receiver_main(list(args.args))
    pa = argparse.ArgumentParser(prog="hookbench serve producer",
                                 description="Run the producer alone (e.g. for plain `locust -f`).")
    pa.add_argument("--port", type=int, default=8080, help="port (0: any free port; the ready line says which)")
    pa.add_argument("--bind", default=DEFAULT_BIND, metavar="HOST",
                    help="address to listen on: an IP address of this machine (default: 127.0.0.1); anything not "
                         "loopback is reachable from the network")
    pa.add_argument("--scenario", help="scenario TOML (default: scenarios/default.toml)")
    pa.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a scenario key")
    pa.add_argument("--db", help="SQLite file (default: hookbench-producer-<scenario>.db)")
    pa.add_argument("--records", help="directory to write record files to (default: none)")
    p = pa.parse_args(list(args.args))
    bind = check_bind(p.bind)
    from servers.common import serve
    from servers.producer import create_app as producer_app

    path = Path(p.scenario) if p.scenario else _scenarios_dir() / "default.toml"
    scenario = load_scenario(path, list(p.set or []))
    db = Path(p.db) if p.db else Path(f"hookbench-producer-{scenario.name}.db")
    print(f"producer: scenario {scenario.name}, {scenario.resources.count} resources, store {db}, on "
          f"{url_host(bind)}; Ctrl-C stops it", file=sys.stderr)
    if (warning := exposure_warning(bind, "the producer", workers=False)) is not None:
        print(f"producer: {warning}", file=sys.stderr, flush=True)
    try:
        serve(producer_app(scenario, db_path=db, records_dir=p.records), bind, p.port)
    except OSError as e:  # e.g. the port is taken
        raise RunError(f"cannot serve the producer on {url_host(bind)}:{p.port}: {e.strerror or e}") from None
    return 0


def _add_distributed_args(parser: argparse.ArgumentParser, command: str, starts: str) -> None:
    """The Locust master/worker flags of `hookbench run` and `hookbench load`."""
    dist = parser.add_argument_group(f"Locust master/worker (the workers are separate `hookbench {command} "
                                     "--worker` commands)")
    dist.add_argument("--master", action="store_true", help="run the servers and a Locust master with no users; "
                                                            f"{starts} when --expect-workers have connected")
    dist.add_argument("--expect-workers", type=int, metavar="N", help="workers the master waits for (default: 1)")
    dist.add_argument("--master-bind-port", type=int, metavar="P",
                      help=f"port of the master on the --bind address (default: {LOCUST_MASTER_PORT})")
    dist.add_argument("--expect-workers-max-wait", type=int, metavar="S",
                      help="seconds the master waits for its workers before it fails the run (default: 60)")
    dist.add_argument("--worker", action="store_true", help="run only Locust workers of the scenario's locustfile "
                                                            "(no servers, no run directory) until the master stops")
    dist.add_argument("--master-host", metavar="H", help="the master's address (required with --worker)")
    dist.add_argument("--master-port", type=int, metavar="P",
                      help=f"the master's port (default: {LOCUST_MASTER_PORT})")
    dist.add_argument("--records-dir", metavar="DIR",
                      help="with --worker: also keep a copy of the rows this worker sends to the master in DIR "
                           "(the master's run directory gets them either way)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="hookbench", description="Polling vs webhooks, measured.")
    ap.add_argument("--version", action="version", version=f"hookbench {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a comparison scenario and write a report")
    run.add_argument("scenario", nargs="?", help="scenario TOML (default: scenarios/default.toml)")
    run.add_argument("--duration", type=float, help="measured window in seconds (overrides run.duration)")
    run.add_argument("--out", help="parent directory of the run directory (default: runs)")
    run.add_argument("--set", action="append", metavar="KEY=VALUE",
                     help="override a scenario key, e.g. polling.interval=2s")
    run.add_argument("--seed", type=int, help="random seed (overrides seed)")
    run.add_argument("--bind", metavar="HOST",
                     help="address the producer and the receiver (and with --master the Locust master) listen on: "
                          "an IP address of this machine (default: 127.0.0.1)")
    _add_distributed_args(run, "run", "the run starts")
    run.add_argument("--processes", type=int, metavar="N", help="with --worker: run the pollers this machine gets in N "
                                                                "Locust processes (default: 1)")
    run.set_defaults(func=cmd_run)

    ld = sub.add_parser("load", help="step-ramp one server with Locust until it falls over (overload report)")
    ld.add_argument("scenario", help="scenario TOML with a [load] section, e.g. scenarios/overload_receiver.toml")
    ld.add_argument("--duration", type=float, help="length of the whole ramp in seconds (spread over its steps)")
    ld.add_argument("--out", help="parent directory of the run directory (default: runs)")
    ld.add_argument("--processes", type=int, help="Locust worker processes (default: load.processes, else one per "
                                                  "core; with --worker: 1)")
    ld.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a scenario key")
    ext = ld.add_argument_group("Your own server as the target (no built-in server is started)")
    ext.add_argument("--target-url", metavar="URL",
                     help="[load] target = receiver: your webhook endpoint, e.g. http://127.0.0.1:9000/hooks; "
                          "target = producer: your API base, serving /changes and /resources/{id} (README)")
    ext.add_argument("--target-secret", metavar="SECRET",
                     help="the signing secret your endpoint verifies (scheme: the scenario's webhook.scheme); "
                          "better: set $HOOKBENCH_TARGET_SECRET, which stays out of shell history and ps")
    ld.add_argument("--bind", metavar="HOST",
                    help="address the server (and with --master the Locust master) listens on, and the host of the "
                         "URLs the users get: an IP address of this machine (default: 127.0.0.1)")
    _add_distributed_args(ld, "load", "the ramp starts")
    ld.set_defaults(func=cmd_load)

    sw = sub.add_parser("sweep", help="run a scenario over a grid of values and aggregate (e.g. the crossover)")
    sw.add_argument("scenario", help="scenario TOML, e.g. scenarios/crossover.toml")
    sw.add_argument("--grid", action="append", metavar="KEY=V1,V2,...", help="a key and its values (repeatable)")
    sw.add_argument("--out", default="runs", help="parent directory of the sweep directory (default: runs)")
    sw.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a scenario key at every point")
    sw.add_argument("--duration", type=float, help="measured window of each point in seconds")
    sw.add_argument("--seed", type=int, help="random seed of every point")
    sw.set_defaults(func=cmd_sweep)

    rep = sub.add_parser("report", help="rebuild a run's report; with two or more load runs, compare them",
                         description="One RUN_DIR: rebuild its report.md / report.html / figures. Two or more load "
                                     "run directories (`hookbench load`): write a comparison report with one curve "
                                     "per run on each figure and a table of the knees.")
    rep.add_argument("run_dir", nargs="+", metavar="RUN_DIR")
    rep.add_argument("--out", metavar="DIR", help="where the comparison goes (default: runs/<UTC time>-compare)")
    rep.set_defaults(func=cmd_report)

    sim = sub.add_parser("simulate", help="run a scenario in virtual time (no servers): millions of polls in seconds",
                         description="The same scenario files as `hookbench run`, simulated in virtual time with "
                                     "numpy: exact poll outcomes for the schedule, no network, no server CPU. A "
                                     "[fleet] section simulates a population of subscriptions.")
    sim.add_argument("scenario", nargs="?", help="scenario TOML (default: scenarios/default.toml)")
    sim.add_argument("--polls", type=int, metavar="N", help="simulate at least N polls (extends the virtual window)")
    sim.add_argument("--out", default="runs", help="parent directory of the run directory (default: runs)")
    sim.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a scenario key")
    sim.add_argument("--seed", type=int, help="random seed (overrides seed)")
    sim.set_defaults(func=cmd_simulate)

    og = sub.add_parser("outage", help="model: loss and delivery delay vs receiver outage length, per provider "
                                       "profile (virtual time, seconds)",
                        description="Plays each provider profile's documented delivery schedule (retries, jitter, "
                                    "disable rules; bench/data/delivery_profiles.toml) through a receiver outage of "
                                    "length L, 1 s to 3 days, in virtual time. Writes outage.parquet, summary.json, "
                                    "manifest.json and a report with one curve per profile. A model prediction, "
                                    "not a measurement.")
    og.add_argument("--profiles", metavar="P1,P2,...", help="profiles to play (default: all of them)")
    og.add_argument("--lengths", metavar="L1,L2,...",
                    help="outage lengths, e.g. 10s,5m,2h,3d (default: 1 s to 3 days, log-spaced, plus points "
                         "around each schedule step)")
    og.add_argument("--rate", type=float, default=1 / 60,
                    help="changes per second, a Poisson process (default: 0.01667, one a minute)")
    og.add_argument("--changes", type=int, default=2000,
                    help="outage-time changes drawn per point, over as many outages as that takes (default: 2000)")
    og.add_argument("--receiver", default="refuse",
                    help="refuse (default: an attempt fails at once) or hang (it fails after the profile's timeout)")
    og.add_argument("--jitter", type=float, help="override every profile's jitter (default: hookbench's, 0.2)")
    og.add_argument("--seed", type=int, default=1, help="random seed (default: 1)")
    og.add_argument("--out", default="runs", help="parent directory of the run directory (default: runs)")
    og.set_defaults(func=cmd_outage)

    rp = sub.add_parser("reproduce", help="reproduce a claim: `zapier` (98.5%% wasted, 66x, latency) or `all`",
                        description="zapier: a live run at lambda*T = 0.0155, a simulated fleet calibrated to 30M "
                                    "polls / 460k useful, load and latency per change, sensitivity (about 1-2 min). "
                                    "all: zapier plus the overload, crossover, loss and security runs and the "
                                    "outage model (about 12 min), into one claims page.")
    rp.add_argument("what", choices=["zapier", "all"])
    rp.add_argument("--out", default="runs", help="parent directory of the reproduction (default: runs)")
    rp.add_argument("--quick", action="store_true",
                    help="small sizes, for a smoke test (the figures are not the claim's)")
    rp.add_argument("--seed", type=int, default=1, help="random seed of the live run and the simulations (default: 1)")
    rp.add_argument("--only", metavar="C1,C4,...", help="with `all`: only these claims")
    rp.set_defaults(func=cmd_reproduce)

    srv = sub.add_parser("serve", help="run one server alone, on 127.0.0.1 unless --bind (e.g. for plain "
                                       "`locust -f`)",
                         description="hookbench serve producer --help / hookbench serve receiver --help "
                                     "list each server's options (--bind HOST among them).")
    srv.add_argument("server", choices=["producer", "receiver"])
    srv.add_argument("args", nargs=argparse.REMAINDER, help="the server's own options")
    srv.set_defaults(func=cmd_serve)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except HookbenchError as e:
        message = str(e)  # an error whose source is a command ("hookbench outage: --lengths = ...") names it already
        print(message if message.startswith("hookbench ") else f"hookbench: {message}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("hookbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
