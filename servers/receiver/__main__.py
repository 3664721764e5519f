"""Run the receiver as its own process: `--config FILE` (the orchestrator) or `--secret ...` (a person, one endpoint).
`main(argv)` is also what `hookbench serve receiver` calls."""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.errors import MISSING, ScenarioError
from bench.hosts import DEFAULT_BIND, check_bind, exposure_warning
from bench.protocol import PATH_HEALTH, PATH_HOOKS, PATH_INSPECT, SCHEMES
from bench.schema import parse_duration

from ..common import serve
from .app import create_app
from .config import BasicAuth, ReceiverSetup, load_setup, simple_setup
from .tls import CERT_FILE, server_context

__all__ = ["main"]

USAGE = """\
The orchestrator:  python -m servers.receiver --config FILE --records DIR --port 0
A person:          python -m servers.receiver --port 8090 --secret whsec_... [--scheme standard|github|stripe]
                   [--secure] [--basic-auth user:pass] [--path-token TOKEN] [--https [--tls-dir DIR]] [--records DIR]
                   [--scenario FILE [--set KEY=VALUE ...]] [--max-concurrent N] [--processing DURATION]
                   [--bind HOST]   (an IP address of this machine; default 127.0.0.1)
--scenario serves with that scenario's receiver model, as `hookbench run|load` would start it: [faults]
receiver_max_concurrent, receiver_processing, receiver_error_rate, receiver_delay(_dist) (not receiver_down: its
windows count from the orchestrator's /control/start), [receiver] tolerance, dedup_ttl, max_body,
require_content_type, and (unless --scheme) the first subscription's signing scheme. --max-concurrent and
--processing override the capacity.
It prints `HOOKBENCH-READY port=N` on stdout once it listens, and where to send webhooks on stderr.
"""
_SIMPLE_ONLY = ("secret", "scheme", "secure", "basic_auth", "path_token", "https", "tls_dir", "scenario", "set",
                "max_concurrent", "processing")
# what --scenario takes from a scenario: the receiver model of `hookbench run|load`, less what needs the orchestrator
_SCENARIO_FAULTS = ("receiver_error_rate", "receiver_delay", "receiver_delay_dist", "receiver_max_concurrent",
                    "receiver_processing")
_SCENARIO_RECEIVER = ("tolerance", "dedup_ttl", "max_body", "require_content_type")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m servers.receiver", description=USAGE,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="JSON set-up written by the orchestrator (receiver, faults, endpoints...)")
    ap.add_argument("--secret", action="append",
                    help="signing secret of the one endpoint (repeat for a rotation: current first)")
    ap.add_argument("--scheme", choices=SCHEMES, default=None, help="signing scheme (default: standard)")
    ap.add_argument("--secure", action="store_true", default=None,
                    help="every defence on (Basic Auth, secret path token, HTTPS); missing credentials are generated")
    ap.add_argument("--basic-auth", metavar="USER:PASS", help="require HTTP Basic Auth with these credentials")
    ap.add_argument("--path-token", metavar="TOKEN", help="serve the endpoint at /hooks/TOKEN only")
    ap.add_argument("--https", action="store_true", default=None, help="serve HTTPS with a fresh self-signed cert")
    ap.add_argument("--tls-dir", help="where to write cert.pem and key.pem (default: a new temporary directory)")
    ap.add_argument("--scenario", help="serve with this scenario's receiver model (capacity, processing time, errors, "
                                       "delay, defences' limits, scheme): the receiver `hookbench load` would start")
    ap.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a key of --scenario")
    ap.add_argument("--max-concurrent", type=int, metavar="N",
                    help="requests in processing at once; beyond them 503 + Retry-After (0: no limit; default: the "
                         "scenario's faults.receiver_max_concurrent, else 0)")
    ap.add_argument("--processing", metavar="DURATION",
                    help='work per accepted request while it holds its slot, e.g. "4ms" (default: the scenario\'s '
                         "faults.receiver_processing, else 0)")
    ap.add_argument("--records", default=None, help="directory for record files (audit.jsonl, faults.jsonl...)")
    ap.add_argument("--bind", "--host", dest="host", default=DEFAULT_BIND, metavar="HOST",
                    help="address to listen on: an IP address of this machine (default: 127.0.0.1); anything not "
                         "loopback is reachable from the network")
    ap.add_argument("--port", type=int, default=0, help="port (0: any free port; the ready line says which)")
    return ap


def _setup(args: argparse.Namespace) -> tuple[ReceiverSetup, bool]:
    """The set-up from --config or from the simple flags; True if it came from the simple flags."""
    if args.config:
        given = [f"--{k.replace('_', '-')}" for k in _SIMPLE_ONLY if getattr(args, k) is not None]
        if given:
            raise ScenarioError("command line", given[0], "(given)",
                                "cannot be combined with --config (the config file holds the endpoints)")
        return load_setup(args.config), False
    if not args.secret:
        raise ScenarioError("command line", "--secret", MISSING,
                            "is required (or --config FILE): e.g. --secret whsec_<base64> for the standard scheme")
    basic = None
    if args.basic_auth is not None:
        user, sep, password = args.basic_auth.partition(":")
        if not (user and sep and password):
            raise ScenarioError("command line", "--basic-auth", args.basic_auth, "must look like user:password")
        basic = BasicAuth(user, password)
    faults, limits, scheme = _receiver_model(args)
    https = bool(args.https) or bool(args.secure)
    tls_dir = Path(args.tls_dir) if args.tls_dir else (
        Path(tempfile.mkdtemp(prefix="hookbench-tls-")) if https else None)
    return simple_setup(list(args.secret), scheme=args.scheme or scheme, secure=bool(args.secure),
                        basic_auth=basic, path_token=args.path_token, https=bool(args.https), tls_dir=tls_dir,
                        source="command line", faults=faults, limits=limits), True


def _receiver_model(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any], str]:
    """(the [faults] receiver_* keys, the [receiver] limits, the scheme) of --scenario with the capacity flags."""
    faults: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    scheme = "standard"
    if args.set and not args.scenario:
        raise ScenarioError("command line", "--set", args.set, "only applies with --scenario FILE")
    if args.scenario:
        from bench.config import load_scenario

        sc = load_scenario(args.scenario, list(args.set or []))
        d = sc.to_dict()
        faults = {k: d["faults"][k] for k in _SCENARIO_FAULTS}
        limits = {k: d["receiver"][k] for k in _SCENARIO_RECEIVER}
        scheme = sc.webhook.subscriptions[0].scheme
        if sc.faults.receiver_down:
            print("receiver: the scenario's faults.receiver_down windows are not served: they count from the "
                  "orchestrator's POST /control/start", file=sys.stderr)
    if args.max_concurrent is not None:
        if args.max_concurrent < 0:
            raise ScenarioError("command line", "--max-concurrent", args.max_concurrent,
                                "must be an integer >= 0 (0 = no limit)")
        faults["receiver_max_concurrent"] = args.max_concurrent
    if args.processing is not None:
        try:
            processing = parse_duration(args.processing)
        except ValueError:
            processing = -1.0
        if not processing >= 0:
            raise ScenarioError("command line", "--processing", args.processing,
                                'must be a duration >= 0 like "4ms" or "0s"')
        faults["receiver_processing"] = processing
    return faults, limits, scheme


def _announce(setup: ReceiverSetup, host: str, port: int, show_secrets: bool) -> None:
    scheme = "https" if setup.receiver.https else "http"
    shown_host = f"[{host}]" if ":" in host else host
    base = f"{scheme}://{shown_host}:{port}"
    lines = [f"receiver: listening on {base} (inspector {base}{PATH_INSPECT}, health {base}{PATH_HEALTH}); "
             "Ctrl-C stops it"]
    f = setup.faults
    if f.receiver_max_concurrent or f.receiver_processing or f.receiver_error_rate or f.receiver_delay:
        cap = f"{f.receiver_max_concurrent} in processing at once" if f.receiver_max_concurrent else "no limit"
        lines.append(f"receiver: capacity {cap} (503 + Retry-After beyond), {f.receiver_processing * 1e3:g} ms of "
                     f"work each; error rate {f.receiver_error_rate:g}, delay {f.receiver_delay * 1e3:g} ms "
                     f"({f.receiver_delay_dist})")
    for ep in setup.endpoints:
        key = setup.url_key(ep) if show_secrets or not setup.receiver.path_token else "<token>"
        lines.append(f"receiver: endpoint {ep.name} ({ep.scheme}): POST {base}{PATH_HOOKS}/{key}")
        if len(setup.endpoints) == 1 and not setup.receiver.path_token:
            lines.append(f"receiver: endpoint {ep.name} also answers at {base}{PATH_HOOKS}")
        if ep.basic_auth is not None and setup.receiver.basic_auth:
            password = ep.basic_auth.password if show_secrets else "<redacted>"
            lines.append(f"receiver: endpoint {ep.name} Basic Auth user {ep.basic_auth.user!r} password {password!r}")
    if setup.receiver.https and setup.tls_dir is not None:
        lines.append(f"receiver: TLS certificate {setup.tls_dir / CERT_FILE} (trust only this file)")
    print("\n".join(lines), file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s receiver %(levelname)s %(message)s")
    try:
        args.host = check_bind(args.host)
        setup, simple = _setup(args)
        app = create_app(setup, records_dir=args.records)
        ctx = None
        if setup.receiver.https:
            assert setup.tls_dir is not None  # validated
            # cert.pem and key.pem are written before the ready line; the bind address is one of its names
            ctx = server_context(setup.tls_dir, hosts=(args.host,))
    except ScenarioError as e:
        print(f"receiver: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"receiver: cannot write the TLS certificate: {e}", file=sys.stderr)
        return 2
    if (warning := exposure_warning(args.host, "the receiver", workers=False)) is not None:
        print(f"receiver: {warning}", file=sys.stderr, flush=True)
    try:
        serve(app, args.host, args.port, ssl_context=ctx,
              on_ready=lambda port: _announce(setup, args.host, port, show_secrets=simple))
    except OSError as e:  # e.g. the port is taken
        print(f"receiver: cannot listen on {args.host}:{args.port}: {e.strerror or e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
