"""The `hookbench` command line: the composition root, the one module that wires bench, servers and reports.

Turns HookbenchError into a one-line message and its exit code (2 for bad input); never a traceback
for a user's mistake.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from .config import load_scenario
from .errors import HookbenchError, RunError, ScenarioError

__all__ = ["main"]

REPO = Path(__file__).resolve().parent.parent


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


def cmd_run(args: argparse.Namespace) -> int:
    from reports import build_report

    from .runner import new_run_dir, run_scenario

    path = Path(args.scenario) if args.scenario else _scenarios_dir() / "default.toml"
    scenario = load_scenario(path, _overrides(args))
    run_dir = new_run_dir(Path(args.out), scenario.name)
    print(f"hookbench run: scenario {scenario.name} ({path}), seed {scenario.seed} -> {run_dir}")
    result = run_scenario(scenario, run_dir, _scenarios_dir() / "pollers.py", repo=REPO)
    paths = build_report(run_dir)
    s = result.summary
    print(f"\n{s['changes']} changes in a {s['duration_s']:.1f} s window"
          + ("  [PARTIAL]" if result.partial else "") + ("  [HARNESS SATURATED]" if s["harness_saturated"] else ""))
    for reason in s["saturation"]["reasons"]:
        print(f"  warning: {reason}")
    print(f"{'mode':14} {'requests':>9} {'wasted':>8} {'model':>8} {'req/chg':>8} {'lost':>5} "
          f"{'p50 ms':>8} {'p99 ms':>8}")
    for mode, m in s["modes"].items():
        lat = m["latency_ms"]
        print(f"{mode:14} {m['requests']:>9} {_f(m['wasted_fraction'], '.3f'):>8} "
              f"{_f(m['model'].get('wasted_fraction'), '.3f'):>8} {_f(m['requests_per_change'], '.2f'):>8} "
              f"{m['lost']:>5} {_f(lat['p50'], '.1f'):>8} {_f(lat['p99'], '.1f'):>8}")
    print(f"\nreport: {paths['html']}\n        {paths['md']}")
    if result.error and result.error != "interrupted":
        print(f"hookbench: the run failed: {result.error}", file=sys.stderr)
        return 1
    return 130 if result.partial else 0


def _f(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def cmd_report(args: argparse.Namespace) -> int:
    from reports import build_report

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise ScenarioError(str(run_dir), "RUN_DIR", str(run_dir), "must be a run directory written by `hookbench run`")
    paths = build_report(run_dir)
    print(f"report: {paths['html']}\n        {paths['md']}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        return _serve(args)
    except OSError as e:  # e.g. the port is taken
        raise RunError(f"cannot serve {args.server} on 127.0.0.1:{args.port}: {e.strerror or e}") from None


def _serve(args: argparse.Namespace) -> int:
    from servers.common import serve

    if args.server == "producer":
        from servers.producer import create_app as producer_app

        path = Path(args.scenario) if args.scenario else _scenarios_dir() / "default.toml"
        scenario = load_scenario(path, _overrides(args))
        db = Path(args.db) if args.db else Path(f"hookbench-producer-{scenario.name}.db")
        print(f"producer: scenario {scenario.name}, {scenario.resources.count} resources, store {db}; "
              f"Ctrl-C stops it", file=sys.stderr)
        serve(producer_app(scenario, db_path=db, records_dir=args.records), "127.0.0.1", args.port)
        return 0
    from servers.receiver import create_app as receiver_app

    if not args.secret:
        raise ScenarioError("--secret", "--secret", None, "is required for the receiver: 'whsec_' + base64")
    try:
        app = receiver_app(args.secret, records_dir=args.records)
    except ValueError as e:
        raise ScenarioError("--secret", "--secret", args.secret, str(e)) from None
    serve(app, "127.0.0.1", args.port)
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="hookbench", description="Polling vs webhooks, measured.")
    ap.add_argument("--version", action="version", version=f"hookbench {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a comparison scenario and write a report")
    run.add_argument("scenario", nargs="?", help="scenario TOML (default: scenarios/default.toml)")
    run.add_argument("--duration", type=float, help="measured window in seconds (overrides run.duration)")
    run.add_argument("--out", default="runs", help="parent directory of the run directory (default: runs)")
    run.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a scenario key, e.g. polling.interval=2s")
    run.add_argument("--seed", type=int, help="random seed (overrides seed)")
    run.set_defaults(func=cmd_run)

    rep = sub.add_parser("report", help="rebuild report.md / report.html from a run directory")
    rep.add_argument("run_dir")
    rep.set_defaults(func=cmd_report)

    srv = sub.add_parser("serve", help="run one server alone on 127.0.0.1 (e.g. for plain `locust -f`)")
    srv.add_argument("server", choices=["producer", "receiver"])
    srv.add_argument("--port", type=int, default=8080)
    srv.add_argument("--scenario", help="producer: scenario TOML (default: scenarios/default.toml)")
    srv.add_argument("--set", action="append", metavar="KEY=VALUE", help="producer: override a scenario key")
    srv.add_argument("--db", help="producer: SQLite file (default: hookbench-producer-<scenario>.db)")
    srv.add_argument("--secret", help="receiver: Standard Webhooks secret 'whsec_...'")
    srv.add_argument("--records", help="directory to write record files to (default: none)")
    srv.set_defaults(func=cmd_serve)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except HookbenchError as e:
        print(f"hookbench: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("hookbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
