"""Scenario configuration: TOML file -> validated, frozen `Scenario`.

Layering (lowest to highest): the scenario file, `--set key=value` overrides, explicit CLI flags
(the CLI turns those into overrides too). Every value is validated in this one module; errors name
the file, the key, the bad value and what was expected (`ScenarioError`).

Times in `[changes]` and `[polling]` are *nominal*: they are divided by `run.time_scale` before the
processes use them (the `live_*` properties), so a run can be sped up without changing lambda*T.
`[run]` durations and `[webhook]` timings are wall-clock.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import MISSING, ScenarioError

__all__ = ["Scenario", "load_scenario", "scenario_from_dict", "parse_duration", "POLL_STYLES", "CHANGE_PROCESSES"]

POLL_STYLES = ("cursor", "etag")
CHANGE_PROCESSES = ("poisson", "constant")

_DURATION_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(us|ms|s|m|h)?\s*$")
_UNIT_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_DURATION_HELP = 'must be a positive duration like "500ms", "2s" or "1m" (a bare number means seconds)'


def parse_duration(value: object) -> float:
    """Seconds from `"250ms"`, `"2s"`, `"1.5m"`, `"1h"`, `"10us"` or a number of seconds. Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not a duration")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        m = _DURATION_RE.match(value)
        if not m:
            raise ValueError(f"cannot read {value!r} as a duration")
        seconds = float(m.group(1)) * _UNIT_S[m.group(2)]
    else:
        raise ValueError(f"{type(value).__name__} is not a duration")
    if not math.isfinite(seconds):
        raise ValueError("not finite")
    return seconds


# --- the schema: one table says every key, its kind, default and constraint -----------------------

@dataclass(frozen=True)
class _Field:
    kind: str  # "duration" | "float" | "int" | "str" | "bool" | "styles"
    default: Any = MISSING  # MISSING = required
    check: Callable[[Any], bool] | None = None
    expected: str = ""


def _pos(x: float) -> bool:
    return x > 0


def _nonneg(x: float) -> bool:
    return x >= 0


_SCHEMA: dict[str, dict[str, _Field]] = {
    "": {
        "name": _Field("str", MISSING, lambda s: bool(re.fullmatch(r"[A-Za-z0-9._-]{1,64}", s)),
                       "must be 1-64 characters of letters, digits, '.', '_' or '-'"),
        "description": _Field("str", ""),
        "seed": _Field("int", 1, lambda n: 0 <= n < 2**63, "must be an integer in [0, 2**63)"),
    },
    "run": {
        "duration": _Field("duration", MISSING, _pos, _DURATION_HELP),
        "warmup": _Field("duration", 3.0, _nonneg, 'must be a duration >= 0 like "0s" or "3s"'),
        "drain": _Field("duration", 3.0, _pos, _DURATION_HELP),
        "time_scale": _Field("float", 1.0, lambda x: 0 < x <= 1e6, "must be a number > 0 (1 = real time)"),
    },
    "resources": {
        "count": _Field("int", MISSING, lambda n: 1 <= n <= 100_000, "must be an integer from 1 to 100000"),
    },
    "changes": {
        "process": _Field("str", "poisson", lambda s: s in CHANGE_PROCESSES,
                          f"must be one of {', '.join(CHANGE_PROCESSES)}"),
        "rate": _Field("float", None, _pos, "must be a number > 0 (changes per second per resource)"),
        "interval": _Field("duration", None, _pos, _DURATION_HELP),
    },
    "polling": {
        "interval": _Field("duration", MISSING, _pos, _DURATION_HELP),
        "styles": _Field("styles", list(POLL_STYLES), lambda v: len(v) > 0 and len(set(v)) == len(v),
                         f"must be a non-empty list of distinct styles from {list(POLL_STYLES)}"),
        "cursor_limit": _Field("int", 100, lambda n: 1 <= n <= 10_000, "must be an integer from 1 to 10000"),
        "timeout": _Field("duration", 5.0, _pos, _DURATION_HELP),
    },
    "webhook": {
        "enabled": _Field("bool", True),
        "timeout": _Field("duration", 2.0, _pos, _DURATION_HELP),
        "max_attempts": _Field("int", 5, lambda n: 1 <= n <= 100, "must be an integer from 1 to 100"),
        "backoff_base": _Field("duration", 0.2, _pos, _DURATION_HELP),
        "backoff_factor": _Field("float", 2.0, lambda x: x >= 1, "must be a number >= 1"),
        "backoff_cap": _Field("duration", 10.0, _pos, _DURATION_HELP),
        "jitter": _Field("float", 0.2, lambda x: 0 <= x < 1, "must be a fraction in [0, 1)"),
        "concurrency": _Field("int", 16, lambda n: 1 <= n <= 1024, "must be an integer from 1 to 1024"),
    },
}


def _coerce(kind: str, value: Any) -> Any:
    """Return the value as `kind`, or raise ValueError (the caller words the message)."""
    if kind == "duration":
        return parse_duration(value)
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError
        return float(value)
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise ValueError
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError
        return value
    if kind == "styles":
        if not isinstance(value, list) or not all(isinstance(s, str) and s in POLL_STYLES for s in value):
            raise ValueError
        return tuple(value)
    raise AssertionError(kind)


_KIND_WORDS = {
    "duration": _DURATION_HELP, "float": "must be a number", "int": "must be an integer",
    "str": "must be a string", "bool": "must be true or false",
    "styles": f"must be a list of styles from {list(POLL_STYLES)}",
}


# --- the frozen result ---------------------------------------------------------------------------

@dataclass(frozen=True)
class RunCfg:
    duration: float
    warmup: float
    drain: float
    time_scale: float


@dataclass(frozen=True)
class ResourcesCfg:
    count: int


@dataclass(frozen=True)
class ChangesCfg:
    process: str
    rate: float | None  # nominal changes/s per resource (poisson)
    interval: float | None  # nominal seconds between changes of one resource (constant)

    @property
    def mean_rate(self) -> float:
        """Nominal mean changes per second per resource, whatever the process."""
        if self.process == "poisson":
            assert self.rate is not None  # validation guarantees it
            return self.rate
        assert self.interval is not None
        return 1.0 / self.interval


@dataclass(frozen=True)
class PollingCfg:
    interval: float  # nominal seconds
    styles: tuple[str, ...]
    cursor_limit: int
    timeout: float


@dataclass(frozen=True)
class WebhookCfg:
    enabled: bool
    timeout: float
    max_attempts: int
    backoff_base: float
    backoff_factor: float
    backoff_cap: float
    jitter: float
    concurrency: int


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    seed: int
    run: RunCfg
    resources: ResourcesCfg
    changes: ChangesCfg
    polling: PollingCfg
    webhook: WebhookCfg
    source: str = "<dict>"

    # live (time-scaled) values: what the processes actually use
    @property
    def live_poll_interval(self) -> float:
        return self.polling.interval / self.run.time_scale

    @property
    def live_change_rate(self) -> float:
        """Live mean changes per second per resource."""
        return self.changes.mean_rate * self.run.time_scale

    @property
    def modes(self) -> tuple[str, ...]:
        """Mode names as they appear in summary.json, in a stable order."""
        out = []
        if "cursor" in self.polling.styles:
            out.append("polling")
        if "etag" in self.polling.styles:
            out.append("polling_etag")
        if self.webhook.enabled:
            out.append("webhook")
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        """The resolved scenario as plain data (durations in seconds); `scenario_from_dict` reads it back."""
        d = dataclasses.asdict(self)
        d.pop("source")
        d["polling"]["styles"] = list(d["polling"]["styles"])
        return d


# --- loading -------------------------------------------------------------------------------------

def _set_dotted(data: dict[str, Any], dotted: str, value: Any, source: str) -> None:
    parts = dotted.split(".")
    if len(parts) > 2 or not all(parts):
        raise ScenarioError(source, dotted, value, "keys are 'name' or 'section.name', e.g. polling.interval")
    if len(parts) == 1:
        data[parts[0]] = value
    else:
        section = data.setdefault(parts[0], {})
        if not isinstance(section, dict):
            raise ScenarioError(source, parts[0], section, "must be a table")
        section[parts[1]] = value


def _parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise ScenarioError("--set", item, item, "must look like key=value, e.g. polling.interval=2s")
    key, raw = item.split("=", 1)
    key, raw = key.strip(), raw.strip()
    try:  # a TOML value (number, bool, list, quoted string) ...
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:  # ... or else a bare string such as 2s or poisson
        value = raw
    return key, value


def scenario_from_dict(data: dict[str, Any], source: str, overrides: list[str] | tuple[str, ...] = ()) -> Scenario:
    """Validate plain data (+ overrides) into a Scenario. Raises ScenarioError naming source and key."""
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    overridden: set[str] = set()
    for item in overrides:
        key, value = _parse_override(item)
        section = key.split(".")[0] if "." in key else ""
        name = key.split(".")[-1]
        if section not in _SCHEMA or name not in _SCHEMA[section]:
            raise ScenarioError("--set", key, value, f"unknown key; known keys: {', '.join(_all_keys())}")
        _set_dotted(data, key, value, "--set")
        overridden.add(key)

    def where_from(key: str) -> str:
        return f"--set (over {source})" if key in overridden else source

    values: dict[str, dict[str, Any]] = {}
    for section, fields in _SCHEMA.items():
        table = data if section == "" else data.get(section, {})
        if not isinstance(table, dict):
            raise ScenarioError(source, section, table, "must be a table like [" + section + "]")
        allowed = set(fields) | (set(_SCHEMA) - {""} if section == "" else set())
        for key in table:
            if key not in allowed:
                where = f"{section}.{key}" if section else key
                hint = ", ".join(sorted(fields)) if section else ", ".join(sorted(allowed))
                raise ScenarioError(source, where, table[key], f"unknown key; allowed here: {hint}")
        out: dict[str, Any] = {}
        for key, f in fields.items():
            where = f"{section}.{key}" if section else key
            if key not in table or table[key] is None:
                if f.default is MISSING:
                    raise ScenarioError(source, where, MISSING, "is required; " + (f.expected or _KIND_WORDS[f.kind]))
                out[key] = tuple(f.default) if isinstance(f.default, list) else f.default
                continue
            try:
                v = _coerce(f.kind, table[key])
            except ValueError:
                raise ScenarioError(where_from(where), where, table[key], f.expected or _KIND_WORDS[f.kind]) from None
            if f.check is not None and not f.check(v):
                raise ScenarioError(where_from(where), where, table[key], f.expected or _KIND_WORDS[f.kind])
            out[key] = v
        values[section] = out

    ch = values["changes"]
    if ch["process"] == "poisson" and ch["rate"] is None:
        raise ScenarioError(source, "changes.rate", MISSING, 'is required when changes.process = "poisson" '
                            "(changes per second per resource, e.g. 0.1)")
    if ch["process"] == "constant" and ch["interval"] is None:
        raise ScenarioError(source, "changes.interval", MISSING, 'is required when changes.process = "constant" '
                            '(e.g. "10s")')
    wh = values["webhook"]
    if wh["backoff_cap"] < wh["backoff_base"]:
        raise ScenarioError(where_from("webhook.backoff_cap"), "webhook.backoff_cap", wh["backoff_cap"], "must be >= webhook.backoff_base")

    top = values[""]
    return Scenario(
        name=top["name"], description=top["description"], seed=top["seed"],
        run=RunCfg(**values["run"]), resources=ResourcesCfg(**values["resources"]),
        changes=ChangesCfg(**ch), polling=PollingCfg(**values["polling"]), webhook=WebhookCfg(**wh),
        source=source,
    )


def _all_keys() -> list[str]:
    return [f"{s}.{k}" if s else k for s, fields in _SCHEMA.items() for k in fields]


def load_scenario(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Scenario:
    """Read and validate a scenario TOML file, then apply `key=value` overrides."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(str(p), "(file)", str(p), "file not found; pass a scenario .toml, e.g. scenarios/default.toml") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
        raise ScenarioError(str(p), "(file)", str(p), f"cannot be read as a UTF-8 text file ({e.__class__.__name__})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(str(p), "(syntax)", str(e), "must be valid TOML") from None
    return scenario_from_dict(data, str(p), overrides)
