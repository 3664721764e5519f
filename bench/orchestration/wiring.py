"""How a scenario becomes processes: the receiver's config file, subscriptions, and each child's command line.

Pure functions of the scenario and what the orchestrator learned at run time (ports, files). Secrets,
Basic Auth credentials and path tokens are drawn fresh for each run (never from the seed): they are
credentials, not workload.
"""

from __future__ import annotations

import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.config import DeliveryCfg, Scenario
from bench.hosts import DEFAULT_BIND
from bench.modes import HYBRID, kind_of, mode_fields, option_flag
from bench.protocol import PATH_HOOKS
from bench.signing import new_secret_for

__all__ = ["Endpoint", "make_endpoints", "receiver_config", "subscription_body", "poller_argv", "attack_argv",
           "producer_argv", "receiver_argv", "storm_policy_argv", "SENDER_RULES_NOT_RUN"]


@dataclass(frozen=True)
class Endpoint:
    """One webhook subscription as both sides see it."""

    name: str  # the mode name, e.g. webhook, webhook_ff
    token: str  # secret path component when receiver.path_token is on
    scheme: str
    secret: str
    user: str | None
    password: str | None

    def path(self, scenario: Scenario) -> str:
        return f"{PATH_HOOKS}/{self.token if scenario.receiver.path_token else self.name}"


def make_endpoints(scenario: Scenario) -> list[Endpoint]:
    basic = scenario.receiver.basic_auth
    return [Endpoint(name=d.name, token=secrets.token_hex(16), scheme=d.scheme, secret=new_secret_for(d.scheme),
                     user=f"hb-{d.name}" if basic else None, password=secrets.token_urlsafe(18) if basic else None)
            for d in scenario.webhook.subscriptions]


def receiver_config(scenario: Scenario, endpoints: list[Endpoint], tls_dir: Path,
                    producer: str | None = None) -> dict[str, Any]:
    """The JSON the receiver process reads with --config. `producer`: the producer's base URL, where the receiver
    fetches what thin events name (required when a subscription is of the thin kind)."""
    s = scenario.to_dict()
    faults = {k: v for k, v in s["faults"].items() if k.startswith("receiver_")}
    return {
        "producer": producer,
        "receiver": s["receiver"],
        "faults": faults,
        "endpoints": [{"name": e.name, "token": e.token, "scheme": e.scheme, "secrets": [e.secret],
                       "basic_auth": {"user": e.user, "password": e.password} if e.user else None}
                      for e in endpoints],
        "tls_dir": str(tls_dir),
        "seed": scenario.seed,
        "inspect_last": 200,
    }


def subscription_body(scenario: Scenario, endpoint: Endpoint, receiver_base: str,
                      ca_file: Path | None) -> dict[str, Any]:
    """The JSON of POST /subscriptions that points the producer at one receiver endpoint."""
    delivery = next(d for d in scenario.to_dict()["webhook"]["subscriptions"] if d["name"] == endpoint.name)
    return {
        "url": receiver_base + endpoint.path(scenario),
        "scheme": endpoint.scheme,
        "secrets": [endpoint.secret],
        "delivery": delivery,
        "basic_auth": {"user": endpoint.user, "password": endpoint.password} if endpoint.user else None,
        "ca_file": str(ca_file) if ca_file else None,
    }


def producer_argv(scenario_json: Path, db: Path, records: Path, port: int, generation: int,
                  bind: str = DEFAULT_BIND, hold_changes: bool = False) -> list[str]:
    """The producer process. `hold_changes`: it makes no change until told to (POST /control/changes
    {"running": true}), so that a run can attach every consumer first."""
    return [sys.executable, "-m", "servers.producer", "--scenario-json", str(scenario_json), "--db", str(db),
            "--records", str(records), "--port", str(port), "--generation", str(generation), "--bind", bind,
            *(["--hold-changes"] if hold_changes else [])]


def receiver_argv(config: Path, records: Path, port: int = 0, bind: str = DEFAULT_BIND) -> list[str]:
    """The receiver process, configured by the file `receiver_config` wrote (it holds the endpoints' secrets)."""
    return [sys.executable, "-m", "servers.receiver", "--config", str(config), "--records", str(records),
            "--port", str(port), "--bind", bind]


def poller_argv(scenario: Scenario, locustfile: Path, base: str, run_dir: Path, run_time_s: float) -> list[str]:
    styles = scenario.polling.styles
    users = sum(k.users_per_run(scenario.resources.count) for k in map(kind_of, scenario.modes) if k.users_per_run)
    return [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "-u", str(users), "-r", str(users),
            "--run-time", f"{int(run_time_s)}s", "--stop-timeout", "2", "--host", base,
            "--csv", str(run_dir / "locust"), "--only-summary", "--exit-code-on-error", "0",
            "--logfile", str(run_dir / "logs" / "locust.log"),
            "--hb-interval", repr(scenario.live_poll_interval), "--hb-resources", str(scenario.resources.count),
            "--hb-styles", ",".join(styles),
            *(arg for key, value in scenario.polling.options.items() for arg in (option_flag(key), _live(key, value,
                                                                                                      scenario))),
            *_reconcile_argv(scenario),
            "--hb-seed", str(scenario.seed), "--hb-timeout", repr(scenario.polling.timeout),
            "--hb-records", str(run_dir / "records")]


def _reconcile_argv(scenario: Scenario) -> list[str]:
    """The hybrid subscriptions, each with a reconciliation poller, and their (live) interval; none: nothing."""
    hybrids = [m for m in scenario.modes if kind_of(m) is HYBRID]
    if not hybrids:
        return []
    return ["--hb-reconcile", ",".join(hybrids),
            option_flag("reconcile_interval"), repr(scenario.webhook.reconcile_interval / scenario.run.time_scale)]


def _live(key: str, value: Any, scenario: Scenario) -> str:
    """A [polling] mode key as the pollers take it: durations are nominal, so divided by run.time_scale."""
    if mode_fields("polling")[key].kind == "duration":
        return repr(value / scenario.run.time_scale)
    return str(value)


ATTACK_USERS = 4


def attack_argv(scenario: Scenario, locustfile: Path, receiver_base: str, producer_base: str, endpoint: Endpoint,
                run_dir: Path, run_time_s: float) -> list[str]:
    """The attack load aims at the first endpoint, with all of its credentials (see scenarios/attack.py)."""
    argv = [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "-u", str(ATTACK_USERS),
            "-r", str(ATTACK_USERS), "--run-time", f"{int(run_time_s)}s", "--stop-timeout", "1",
            "--host", receiver_base, "--csv", str(run_dir / "attack"), "--only-summary",
            "--exit-code-on-error", "0", "--logfile", str(run_dir / "logs" / "attack.log"),
            "--hb-producer", producer_base, "--hb-captured", str(run_dir / "records" / "deliveries.jsonl"),
            "--hb-endpoint", endpoint.name, "--hb-path", endpoint.path(scenario), "--hb-scheme", endpoint.scheme,
            f"--hb-secret={endpoint.secret}", "--hb-max-body", str(scenario.receiver.max_body),
            "--hb-rate", repr(scenario.attack.rate), "--hb-kinds", ",".join(scenario.attack.kinds),
            "--hb-records", str(run_dir / "records")]
    if endpoint.user:
        argv += ["--hb-basic-auth", f"{endpoint.user}:{endpoint.password}"]
    return argv


# Delivery keys a storm sender does not run: it is one of many senders of one storm, so a rule that stops it
# (disabling the subscription) or holds it back (a breaker, a concurrency limit) would end or cap the load.
SENDER_RULES_NOT_RUN = ("disable_after_failures", "disable_after", "breaker_failure_ratio", "breaker_window",
                        "breaker_open", "concurrency")


def storm_policy_argv(delivery: DeliveryCfg) -> list[str]:
    """The storm senders' retry options for one subscription's delivery policy (a provider profile's included):
    its attempts, the delay before each retry as the dispatcher computes it (delay_scale applied), jitter, the
    per-attempt timeout and the Retry-After cap (scenarios/storm.py)."""
    delays = [delivery.nominal_delay(n) for n in range(1, delivery.attempts)]
    return ["--hb-attempts", str(delivery.attempts), f"--hb-delays={','.join(repr(d) for d in delays)}",
            "--hb-jitter", repr(delivery.jitter), "--hb-timeout", repr(delivery.timeout),
            "--hb-retry-after-cap", repr(delivery.retry_after_cap)]
