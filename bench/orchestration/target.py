"""`hookbench load --target-url`: the user's own receiver or producer as the load's target, no built-in server.

Checks the URL and the signing secret before anything starts (ScenarioError: exit 2), probes the target once
before the ramp (RunError naming what did not answer), says what the manifest may show of the target (never
its credentials), and names the figures only the built-in server's own counters give.
"""

from __future__ import annotations

import json
import socket
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import urlsplit

from bench.errors import MISSING, RunError, ScenarioError
from bench.protocol import PATH_CHANGES, PATH_RESOURCE
from bench.signing import make_scheme

__all__ = ["ExternalTarget", "parse_target", "preflight", "unavailable_figures", "SECRET_ENV", "PROBE_TIMEOUT_S"]

SECRET_ENV = "HOOKBENCH_TARGET_SECRET"
PROBE_TIMEOUT_S = 5.0
REDACTED = "<redacted>"


@dataclass(frozen=True)
class ExternalTarget:
    """Where the load goes: `base` is Locust's --host (scheme://host:port, and a producer's path prefix), `path`
    the receiver endpoint's path and query (the storm POSTs there; empty for a producer)."""

    kind: str  # "receiver" | "producer"
    shown: str  # the URL as the manifest and the report show it: no query (it may hold a token)
    base: str
    path: str
    host: str
    port: int
    secret: str | None = field(default=None, repr=False)
    secret_from: str | None = None  # "--target-secret" or "$HOOKBENCH_TARGET_SECRET"

    def public(self) -> dict[str, Any]:
        """What manifest.json and summary.json record of the target: the URL without credentials or query."""
        return {"external": True, "kind": self.kind, "url": self.shown,
                "secret": None if self.secret is None else f"{REDACTED} (from {self.secret_from})"}


def _shown(parts: Any) -> str:
    """scheme://host[:port]/path of a split URL: no user, no password, no query, no fragment."""
    host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname
    port = f":{parts.port}" if parts.port is not None else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def parse_target(url: str, kind: str, scheme: str, secret_flag: str | None,
                 environ: Mapping[str, str]) -> ExternalTarget:
    """Validate --target-url (and for a receiver the secret: --target-secret, else $HOOKBENCH_TARGET_SECRET).

    ScenarioError naming the flag, the value (credentials redacted) and what was expected.
    """
    def bad(value: object, expected: str, flag: str = "--target-url") -> ScenarioError:
        return ScenarioError("hookbench load", flag, value, expected)

    example = ("http://127.0.0.1:9000/hooks (your endpoint's URL)" if kind == "receiver"
               else "http://127.0.0.1:8080 (your producer's API base)")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as e:
        raise bad(url, f"is not a URL ({e}): expected e.g. {example}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise bad(url if parts.password is None else REDACTED,
                  f"must be an http:// or https:// URL with a host, e.g. {example}")
    if parts.username is not None or parts.password is not None:
        raise bad(_shown(parts), "must not carry credentials (user:password@): the storm senders send no Basic "
                                 "Auth; point them at an endpoint that checks the signature only")
    if parts.fragment:
        raise bad(_shown(parts), "must not have a #fragment (it never reaches the server)")
    port = port if port is not None else (443 if parts.scheme == "https" else 80)
    origin = _shown(parts._replace(path=""))
    if kind == "receiver":
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        base = origin
    else:
        if parts.query:
            raise bad(_shown(parts), "must be the producer's API base without a query: the fleet appends "
                                     f"{PATH_CHANGES}?after=SEQ&limit=N and {PATH_RESOURCE.format(id='ID')}")
        path, base = "", origin + parts.path.rstrip("/")
    shown = _shown(parts) + ("?<query redacted>" if parts.query else "")
    secret, secret_from = None, None
    if kind == "receiver":
        if secret_flag:
            secret, secret_from = secret_flag, "--target-secret"
        elif environ.get(SECRET_ENV):
            secret, secret_from = environ[SECRET_ENV], f"${SECRET_ENV}"
        else:
            raise bad(MISSING, f"is required with --target-url when [load] target = \"receiver\": the secret your "
                               f"endpoint verifies (scheme {scheme}). Put it in ${SECRET_ENV} to keep it out of "
                               "shell history and `ps`", flag="--target-secret")
        try:
            make_scheme(scheme, [secret])
        except ValueError as e:
            raise bad(REDACTED, f"is not a {scheme} secret ({e}); the scenario's webhook scheme is {scheme} "
                                "(webhook.scheme or its profile's)", flag=secret_from) from None
    elif secret_flag:
        raise bad(REDACTED, "applies only when [load] target = \"receiver\" (the storm signs its deliveries); a "
                            "polling fleet sends no secret", flag="--target-secret")
    return ExternalTarget(kind=kind, shown=shown, base=base, path=path, host=str(parts.hostname), port=port,
                          secret=secret, secret_from=secret_from)


def _get_json(url: str, timeout: float) -> tuple[int, Any, Mapping[str, str]]:
    """(status, JSON body or None, headers) of one GET; certificates are not verified (nor are they by Locust's
    FastHttpUser, which sends the load). OSError/URLError propagate; HTTP errors are returned."""
    ctx = ssl._create_unverified_context() if url.startswith("https:") else None
    req = urllib.request.Request(url, headers={"accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as resp:
            status, headers, raw = resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, None, e.headers
    try:
        return status, json.loads(raw), headers
    except ValueError:
        return status, None, headers


def preflight(target: ExternalTarget, timeout: float = PROBE_TIMEOUT_S) -> str:
    """Before the ramp: can the target be reached, and (a producer) does it speak the polling contract?

    Returns what answered, in words; RunError saying what failed and how to fix it. A receiver gets a TCP
    connection only (a test POST would be a delivery); a producer one GET of the feed and one of resource 0.
    """
    where = f"--target-url {target.shown}"
    try:
        with socket.create_connection((target.host, target.port), timeout=timeout):
            pass
    except OSError as e:
        raise RunError(f"{where}: cannot connect to {target.host}:{target.port} ({e.strerror or e}); nothing was "
                       "started: is your server running and listening there?") from None
    if target.kind == "receiver":
        return f"{target.host}:{target.port} accepts connections"
    feed = f"{target.base}{PATH_CHANGES}?after=0&limit=1"
    resource = f"{target.base}{PATH_RESOURCE.format(id=0)}"
    try:
        status, body, _ = _get_json(feed, timeout)
        ok = (status == 200 and isinstance(body, dict) and isinstance(body.get("changes"), list)
              and isinstance(body.get("next_after"), int) and isinstance(body.get("has_more"), bool))
        if not ok:
            raise RunError(f"{where}: GET {feed} answered {status} with "
                           f"{'a body' if body is not None else 'no JSON body'} that is not the cursor feed "
                           "({\"changes\": [...], \"next_after\": SEQ, \"has_more\": bool}): see README, \"Load "
                           "against your own endpoint\", for the contract")
        status, body, headers = _get_json(resource, timeout)
        if status != 200 or not isinstance(body, dict) or not isinstance(body.get("version"), int) \
                or not headers.get("ETag"):
            raise RunError(f"{where}: GET {resource} answered {status}"
                           f"{'' if status != 200 else ' without an ETag header or an integer version'}: the fleet "
                           "polls /resources/0 .. /resources/R-1 (R = resources.count) with If-None-Match; see "
                           "README, \"Load against your own endpoint\"")
    except (OSError, urllib.error.URLError) as e:
        raise RunError(f"{where}: no answer to a GET of the feed or of resource 0 ({getattr(e, 'reason', e)})") \
            from None
    return f"{target.base} answers the cursor feed and ETag resources"


def unavailable_figures(kind: str) -> list[dict[str, str]]:
    """The figures a load run gets only from the built-in server (its process and its GET /stats), by name:
    an external target's run records none of them."""
    why = "hookbench did not start the target, so it can neither sample its process nor read its /stats"
    rows = [
        (f"{kind} CPU", f"saturation.{kind}_cpu_max_pct"),
        (f"{kind} event-loop lag", f"saturation.{kind}_loop_lag_ms"),
        ("in flight at each step's end", "overload.steps[].in_flight_end"),
        (f"the {kind}'s /stats counters, once a second"
         + (" (requests, accepted, duplicate, rejected, shed_503 at capacity)" if kind == "receiver"
            else " (requests, in flight, deliveries pending)"), "server_stats.parquet (a file of the run directory)"),
    ]
    if kind == "producer":
        rows.insert(3, ("delivery backlog at each step's end", "overload.steps[].backlog_end"))
    return [{"figure": figure, "key": key, "why": why} for figure, key in rows]
