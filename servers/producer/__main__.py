"""Run the producer as its own process: `python -m servers.producer --scenario-json F --db F [--records DIR] [--port P]
[--generation N] [--hold-changes]`.

The orchestrator starts it this way; people use `hookbench serve producer` instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.config import scenario_from_dict
from bench.errors import ScenarioError
from bench.hosts import DEFAULT_BIND, check_bind

from ..common import serve
from .app import create_app


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m servers.producer", description=__doc__)
    ap.add_argument("--scenario-json", required=True, help="resolved scenario (JSON written by the orchestrator)")
    ap.add_argument("--db", required=True, help="SQLite file of the store")
    ap.add_argument("--records", default=None, help="directory for record files")
    ap.add_argument("--empty-polls", choices=("sqlite", "memory"), default="sqlite",
                    help="answer empty polls from SQLite (realistic default) or from an in-memory head of the log")
    ap.add_argument("--bind", "--host", dest="host", default=DEFAULT_BIND, metavar="HOST",
                    help="address to listen on: an IP address of this machine (default: 127.0.0.1)")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--generation", type=int, default=0,
                    help="restarts so far on this --db (0 = first start): reseeds the change schedule")
    ap.add_argument("--hold-changes", action="store_true",
                    help="make no change until POST /control/changes {\"running\": true}: the orchestrator "
                         "starts them once every consumer is attached, so every change is observable")
    args = ap.parse_args(argv)
    path = Path(args.scenario_json)
    try:
        args.host = check_bind(args.host)
        scenario = scenario_from_dict(json.loads(path.read_text()), str(path))
    except (OSError, json.JSONDecodeError, ScenarioError) as e:
        print(f"producer: {e}", file=sys.stderr)
        return 2
    if args.generation < 0:
        print(f"producer: --generation {args.generation}: must be >= 0", file=sys.stderr)
        return 2
    serve(create_app(scenario, db_path=args.db, records_dir=args.records, generation=args.generation,
                     empty_polls=args.empty_polls, start_changes=not args.hold_changes),
          args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
