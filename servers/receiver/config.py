"""The receiver's frozen set-up (defences, fault model, endpoints) and loading it from the orchestrator's JSON file.

Every error is a `ScenarioError` naming the file, the key, the bad value and what was expected.
"""

from __future__ import annotations

import json
import re
import secrets as _secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.config import FaultsCfg, ReceiverCfg, receiver_faults_from_dict, receiver_from_dict
from bench.errors import MISSING, ScenarioError
from bench.hosts import is_local_address
from bench.modes import THIN, find_kind
from bench.protocol import SCHEMES
from bench.schema import Field, validate_table
from bench.signing import make_scheme

__all__ = ["ReceiverSetup", "Endpoint", "BasicAuth", "load_setup", "setup_from_dict", "simple_setup",
           "new_token", "DEFAULT_INSPECT_LAST"]

DEFAULT_INSPECT_LAST = 200
_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{16,128}")


@dataclass(frozen=True)
class BasicAuth:
    user: str
    password: str

    def __repr__(self) -> str:  # never print a password by accident
        return f"BasicAuth(user={self.user!r}, password=<redacted>)"


@dataclass(frozen=True)
class Endpoint:
    """One webhook endpoint: the URL key (name or secret token), its signing scheme and secrets."""

    name: str
    scheme: str
    secrets: tuple[str, ...]  # current first; any one verifies (rotation)
    token: str | None = None  # required when receiver.path_token is on
    basic_auth: BasicAuth | None = None  # required when receiver.basic_auth is on

    def __repr__(self) -> str:
        return (f"Endpoint(name={self.name!r}, scheme={self.scheme!r}, secrets=<{len(self.secrets)}>, "
                f"token={'<redacted>' if self.token else None}, basic_auth={self.basic_auth!r})")


@dataclass(frozen=True)
class ReceiverSetup:
    """Everything one receiver process needs: its defences, its fault model, its endpoints."""

    receiver: ReceiverCfg
    faults: FaultsCfg
    endpoints: tuple[Endpoint, ...]
    tls_dir: Path | None = None
    seed: int = 1
    inspect_last: int = DEFAULT_INSPECT_LAST
    producer: str | None = None  # the producer's API base (http://127.0.0.1:PORT): where thin events are fetched

    def fetches(self, ep: Endpoint) -> bool:
        """Whether `ep` receives thin events (its name says its kind): the receiver fetches what they name."""
        return find_kind(ep.name) is THIN

    def url_key(self, ep: Endpoint) -> str:
        """The path segment after /hooks/ that reaches `ep`."""
        if self.receiver.path_token:
            assert ep.token is not None  # validation guarantees it
            return ep.token
        return ep.name

    def secret_values(self) -> list[str]:
        """Every secret string in the set-up (signing secrets, tokens, passwords), for redaction."""
        out: list[str] = []
        for ep in self.endpoints:
            out.extend(ep.secrets)
            if ep.token:
                out.append(ep.token)
            if ep.basic_auth is not None:
                out.append(ep.basic_auth.password)
        return [s for s in out if s]


def new_token() -> str:
    """A fresh path token: 32 hex characters (128 bits)."""
    return _secrets.token_hex(16)


_TABLES = ("receiver", "faults", "endpoints")  # checked on their own below
_LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


def _local_host(host: str | None) -> bool:
    """Loopback, or an address of this machine (the producer bound with --bind): never another machine."""
    if host is None:
        return False
    if host in _LOOPBACK_HOSTS:
        return True
    try:
        return is_local_address(host)
    except OSError:
        return False


def _loopback_base(url: str) -> bool:
    """An http(s) base URL of a loopback host with a port and no path, query or credentials: the receiver's
    fetches never leave the machine, whatever a (signed) body says."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    return (parts.scheme in ("http", "https") and _local_host(parts.hostname) and port is not None
            and parts.path in ("", "/") and not parts.query and not parts.fragment and parts.username is None)

_TOP: dict[str, Field] = {
    "tls_dir": Field("str", None),
    "seed": Field("int", 1, lambda n: 0 <= n < 2**63, "must be an integer in [0, 2**63)"),
    "inspect_last": Field("int", DEFAULT_INSPECT_LAST, lambda n: 0 <= n <= 100_000,
                          "must be an integer from 0 to 100000 (0 = keep none)"),
    "producer": Field("str", None, _loopback_base,
                      "must be the producer's base URL on this machine, e.g. http://127.0.0.1:8080 (no path)"),
}
_ENDPOINT: dict[str, Field] = {
    "name": Field("str", MISSING, lambda s: bool(_NAME_RE.fullmatch(s)),
                  "must be 1-64 characters of letters, digits, '.', '_' or '-'"),
    "scheme": Field("choice", "standard", choices=SCHEMES),
    "token": Field("str", None, lambda s: bool(_TOKEN_RE.fullmatch(s)),
                   "must be 16-128 characters of letters, digits, '_' or '-' (e.g. 32 hex characters)"),
}
_BASIC: dict[str, Field] = {
    "user": Field("str", MISSING, lambda s: bool(s) and ":" not in s and s.isprintable(),
                  "must be a non-empty printable string without ':'"),
    "password": Field("str", MISSING, lambda s: bool(s) and s.isprintable(), "must be a non-empty printable string"),
}


def setup_from_dict(data: Any, source: str) -> ReceiverSetup:
    """Validate plain data (the orchestrator's JSON) into a ReceiverSetup; ScenarioError naming the bad key."""
    src = lambda _key: source  # noqa: E731
    if not isinstance(data, dict):
        raise ScenarioError(source, "(top level)", data, "must be a JSON object with receiver, faults, endpoints")
    rest = validate_table({k: v for k, v in data.items() if k not in _TABLES}, _TOP, "", src,
                          extra_allowed=set(_TABLES))

    receiver = receiver_from_dict(data.get("receiver", {}), source)
    faults = receiver_faults_from_dict(data.get("faults", {}), source)

    rows = data.get("endpoints", MISSING)
    if not isinstance(rows, list) or not rows:
        raise ScenarioError(source, "endpoints", rows, "must be a non-empty list of endpoint objects "
                            '({"name": ..., "scheme": ..., "secrets": [...], "token": ..., "basic_auth": {...}})')
    endpoints = tuple(_endpoint(row, f"endpoints[{i}]", receiver, source) for i, row in enumerate(rows))
    for attr, what in (("name", "names"), ("token", "tokens")):
        values = [getattr(ep, attr) for ep in endpoints if getattr(ep, attr) is not None]
        if len(set(values)) != len(values):
            shown = values if attr == "name" else "<redacted>"
            raise ScenarioError(source, f"endpoints[*].{attr}", shown, f"endpoint {what} must be distinct")

    tls_dir = Path(rest["tls_dir"]) if rest["tls_dir"] else None
    if receiver.https and tls_dir is None:
        raise ScenarioError(source, "tls_dir", MISSING,
                            "is required when receiver.https is on: the directory to write cert.pem and key.pem to")
    thin = [ep.name for ep in endpoints if find_kind(ep.name) is THIN]
    if thin and rest["producer"] is None:
        raise ScenarioError(source, "producer", MISSING,
                            f"is required by thin endpoint {thin[0]!r}: the producer's base URL to fetch the changes "
                            "its events name, e.g. http://127.0.0.1:8080")
    return ReceiverSetup(receiver=receiver, faults=faults, endpoints=endpoints, tls_dir=tls_dir,
                         seed=rest["seed"], inspect_last=rest["inspect_last"],
                         producer=None if rest["producer"] is None else rest["producer"].rstrip("/"))


def _endpoint(row: Any, where: str, receiver: ReceiverCfg, source: str) -> Endpoint:
    src = lambda _key: source  # noqa: E731
    v = validate_table(row, _ENDPOINT, where, src, extra_allowed={"secrets", "basic_auth"})
    secrets = row.get("secrets")
    if not isinstance(secrets, list) or not secrets or not all(isinstance(s, str) and s for s in secrets):
        raise ScenarioError(source, f"{where}.secrets", "<redacted>" if secrets else secrets,
                            "must be a non-empty list of secret strings, current first")
    try:
        make_scheme(v["scheme"], secrets, tolerance_s=receiver.tolerance)
    except ValueError as e:
        raise ScenarioError(source, f"{where}.secrets", "<redacted>", f"unusable for scheme {v['scheme']!r}: {e}") \
            from None
    basic: BasicAuth | None = None
    if row.get("basic_auth") is not None:
        b = validate_table(row["basic_auth"], _BASIC, f"{where}.basic_auth", src)
        basic = BasicAuth(b["user"], b["password"])
    if receiver.basic_auth and basic is None:
        raise ScenarioError(source, f"{where}.basic_auth", MISSING,
                            'is required when receiver.basic_auth is on: {"user": ..., "password": ...}')
    if receiver.path_token and v["token"] is None:
        raise ScenarioError(source, f"{where}.token", MISSING,
                            "is required when receiver.path_token is on: e.g. 32 random hex characters")
    return Endpoint(name=v["name"], scheme=v["scheme"], secrets=tuple(secrets), token=v["token"], basic_auth=basic)


def load_setup(path: str | Path) -> ReceiverSetup:
    """Read and validate the receiver's JSON config file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(str(p), "(file)", str(p), "file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ScenarioError(str(p), "(file)", str(p), f"cannot be read as a UTF-8 text file ({e.__class__.__name__})") \
            from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ScenarioError(str(p), "(syntax)", str(e), "must be valid JSON") from None
    return setup_from_dict(data, str(p))


def simple_setup(secrets: list[str], *, scheme: str = "standard", secure: bool = False,
                 basic_auth: BasicAuth | None = None, path_token: str | None = None, https: bool = False,
                 tls_dir: Path | None = None, source: str = "command line", faults: dict[str, Any] | None = None,
                 limits: dict[str, Any] | None = None) -> ReceiverSetup:
    """A one-endpoint set-up named "webhook" (the simple command line); ScenarioError if a value is unusable.

    `secure` turns every defence on; credentials and a token it needs but was not given are generated.
    `faults`: receiver_* keys of [faults] (the capacity model); `limits`: [receiver] keys other than the defences'
    switches (tolerance, dedup_ttl, max_body, require_content_type).
    """
    flags: dict[str, Any] = {**(limits or {}), "profile": "secure" if secure else "basic"}
    if basic_auth is not None:
        flags["basic_auth"] = True
    if path_token is not None:
        flags["path_token"] = True
    if https:
        flags["https"] = True
    receiver = receiver_from_dict(flags, source)
    if receiver.basic_auth and basic_auth is None:
        basic_auth = BasicAuth("hookbench", _secrets.token_urlsafe(12))
    if receiver.path_token and path_token is None:
        path_token = new_token()
    endpoint: dict[str, Any] = {"name": "webhook", "scheme": scheme, "secrets": list(secrets), "token": path_token}
    if basic_auth is not None:
        endpoint["basic_auth"] = {"user": basic_auth.user, "password": basic_auth.password}
    data: dict[str, Any] = {"receiver": flags, "faults": dict(faults or {}), "endpoints": [endpoint]}
    if tls_dir is not None:
        data["tls_dir"] = str(tls_dir)
    try:
        return setup_from_dict(data, source)
    except ScenarioError as e:  # name the flag the person typed, not the config key it became
        flag = next((f for suffix, f in _FLAGS.items() if e.key.endswith(suffix)), e.key)
        raise ScenarioError(source, flag, e.value, e.expected) from None


_FLAGS = {".secrets": "--secret", ".token": "--path-token", ".user": "--basic-auth", ".password": "--basic-auth",
          "tls_dir": "--tls-dir"}
