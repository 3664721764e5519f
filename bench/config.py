"""Scenario configuration: TOML file -> validated, frozen `Scenario`.

Layering (lowest to highest): the scenario file, `--set key=value` overrides, explicit CLI flags
(the CLI turns those into overrides too). The keys are declared once, in the tables below; the
checking is `bench.schema`. Errors name the file, the key, the bad value and what was expected.

Times in `[changes]` and `[polling]` are *nominal*: they are divided by `run.time_scale` before the
processes use them (the `live_*` properties), so a run can be sped up without changing lambda*T.
`[run]`, `[webhook]`, `[receiver]` and `[faults]` times are wall-clock.

`[fleet]` (optional) describes a population of polling subscriptions no live run can reach (a million
subscriptions, a day of polls); only the virtual-time simulator (`bench.simulation.simulate`,
`bench.simulation.population`) reads it. `hookbench run` ignores it. Its times are virtual and never time-scaled.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from bench.errors import MISSING, ScenarioError
from bench.modes import (
    MODE_KINDS,
    MODE_WEBHOOK,
    default_styles,
    is_push_name,
    mode_fields,
    poll_styles,
    push_name_words,
    scenario_modes,
)
from bench.profiles import PROFILE_NAMES, profile_values
from bench.protocol import ATTACK_KINDS, ATTACK_NEEDS, LONG_WAIT_MAX_S, SCHEMES
from bench.schema import DURATION_HELP, Field, parse_duration, validate_table
from bench.traces import Trace, TraceError, load_trace

__all__ = ["Scenario", "FleetCfg", "LoadCfg", "DeliveryCfg", "ReceiverCfg", "FaultsCfg", "AttackCfg", "load_scenario",
           "scenario_from_dict", "delivery_from_dict", "receiver_from_dict", "receiver_faults_from_dict",
           "parse_duration", "POLL_STYLES", "CHANGE_PROCESSES", "POLICIES"]

POLL_STYLES = poll_styles()  # one per polling mode kind of bench.modes
CHANGE_PROCESSES = ("poisson", "constant", "bursty", "trace")
POLICIES = ("retry", "fire_and_forget", "outbox")
RATE_DISTRIBUTIONS = ("lognormal", "fixed")
FLEET_PROCESSES = ("poisson", "bursty")
MAX_TOLERANCE_S = 300.0  # the standardwebhooks package hard-codes 5 minutes

_pos = lambda x: x > 0  # noqa: E731
_nonneg = lambda x: x >= 0  # noqa: E731
_NONNEG_HELP = 'must be a duration >= 0 like "0s" or "3s"'
_fraction = lambda x: 0 <= x < 1  # noqa: E731

# --- what a scenario holds ------------------------------------------------------------------------

_DELIVERY: dict[str, Field] = {  # one webhook subscription's delivery policy ([webhook] gives defaults)
    # a provider's documented values (bench/data/delivery_profiles.toml) for the keys the scenario leaves unset
    "profile": Field("choice", None, choices=PROFILE_NAMES),
    "scheme": Field("choice", "standard", choices=SCHEMES),
    "policy": Field("choice", "retry", choices=POLICIES),
    "timeout": Field("duration", 2.0, _pos, DURATION_HELP),
    "max_attempts": Field("int", 5, lambda n: 1 <= n <= 100, "must be an integer from 1 to 100"),
    "retry_delays": Field("durations", [], None, 'must be a list of delays like ["1s", "5s", "30s"] '
                          "(empty: exponential back-off)"),
    "backoff_base": Field("duration", 0.2, _pos, DURATION_HELP),
    "backoff_factor": Field("float", 2.0, lambda x: x >= 1, "must be a number >= 1"),
    "backoff_cap": Field("duration", 10.0, _pos, DURATION_HELP),
    "jitter": Field("float", 0.2, _fraction, "must be a fraction in [0, 1)"),
    "concurrency": Field("int", 16, lambda n: 1 <= n <= 1024, "must be an integer from 1 to 1024"),
    "retry_after_cap": Field("duration", 60.0, _pos, DURATION_HELP),
    "breaker": Field("bool", True),  # hookbench's circuit breaker; a provider profile turns it off (none documents one)
    "breaker_failure_ratio": Field("float", 0.5, lambda x: 0 < x <= 1, "must be a fraction in (0, 1]"),
    "breaker_window": Field("int", 20, lambda n: 1 <= n <= 10_000, "must be an integer from 1 to 10000"),
    "breaker_open": Field("duration", 5.0, _pos, DURATION_HELP),
    "disable_after_failures": Field("int", 0, lambda n: 0 <= n <= 1_000_000,
                                    "must be an integer >= 0: consecutive failed attempts that disable the "
                                    "subscription (0 = never)"),
    "disable_after": Field("duration", 0.0, _nonneg, _NONNEG_HELP + ": continuous failure that disables the "
                           "subscription (0 = never)"),
    "delay_scale": Field("float", 1.0, lambda x: 0 < x <= 1e9,
                         "must be a number in (0, 1e9]: retry delays and disable_after are divided by it "
                         "(1 = as written)"),
}

_SCHEMA: dict[str, dict[str, Field]] = {
    "": {
        "name": Field("str", MISSING, lambda s: bool(re.fullmatch(r"[A-Za-z0-9._-]{1,64}", s)),
                      "must be 1-64 characters of letters, digits, '.', '_' or '-'"),
        "description": Field("str", ""),
        "seed": Field("int", 1, lambda n: 0 <= n < 2**63, "must be an integer in [0, 2**63)"),
    },
    "run": {
        "duration": Field("duration", MISSING, _pos, DURATION_HELP),
        "warmup": Field("duration", 3.0, _nonneg, _NONNEG_HELP),
        "drain": Field("duration", 3.0, _pos, DURATION_HELP),
        "time_scale": Field("float", 1.0, lambda x: 0 < x <= 1e6, "must be a number > 0 (1 = real time)"),
    },
    "resources": {
        "count": Field("int", MISSING, lambda n: 1 <= n <= 100_000, "must be an integer from 1 to 100000"),
    },
    "changes": {
        "process": Field("choice", "poisson", choices=CHANGE_PROCESSES),
        "rate": Field("float", None, _pos, "must be a number > 0 (mean changes per second per resource)"),
        "interval": Field("duration", None, _pos, DURATION_HELP),
        "on": Field("duration", None, _pos, DURATION_HELP + " (bursty: mean length of a burst)"),
        "off": Field("duration", None, _pos, DURATION_HELP + " (bursty: mean quiet time between bursts)"),
        "trace": Field("str", None, lambda s: bool(s.strip()), "must be the path of a CSV of Unix times"),
        "git": Field("str", None, lambda s: bool(s.strip()), "must be the path of a local git repository"),
    },
    "polling": {
        "interval": Field("duration", MISSING, _pos, DURATION_HELP),
        "styles": Field("choices", list(default_styles()), lambda v: len(v) > 0,
                        f"must be a non-empty list of distinct styles from {list(POLL_STYLES)}",
                        choices=POLL_STYLES),
        "timeout": Field("duration", 5.0, _pos, DURATION_HELP),
        **mode_fields("polling"),  # the keys of each polling mode kind (bench.modes), e.g. cursor_limit
    },
    "webhook": {
        "enabled": Field("bool", True),
        "slo": Field("duration", 5.0, _pos, DURATION_HELP + "; a delivery later than this counts as late"),
        **_DELIVERY,
        **mode_fields("webhook"),
    },
    "receiver": {
        "profile": Field("choice", "basic", choices=("basic", "secure")),
        "tolerance": Field("duration", MAX_TOLERANCE_S, lambda x: 0 < x <= MAX_TOLERANCE_S,
                           'must be a duration in (0, 300s]: the standardwebhooks package allows at most 5 min'),
        "dedup_ttl": Field("duration", 3600.0, _pos, DURATION_HELP),
        "basic_auth": Field("bool", None),
        "path_token": Field("bool", None),
        "https": Field("bool", None),
        "max_body": Field("int", 1 << 20, lambda n: 1024 <= n <= 64 << 20, "must be bytes from 1024 to 67108864"),
        "require_content_type": Field("bool", True),
    },
    "faults": {
        "receiver_down": Field("tables", [], lambda rows: all(r["end"] > r["start"] for r in rows),
                               "every window needs end > start", fields={
                                   "start": Field("duration", MISSING, _nonneg, _NONNEG_HELP + " (from window start)"),
                                   "end": Field("duration", MISSING, _pos, DURATION_HELP + " (from window start)"),
                                   "mode": Field("choice", "refuse", choices=("refuse", "503")),
                               }),
        "receiver_error_rate": Field("float", 0.0, _fraction, "must be a fraction in [0, 1)"),
        "receiver_delay": Field("duration", 0.0, _nonneg, _NONNEG_HELP),
        "receiver_delay_dist": Field("choice", "fixed", choices=("fixed", "exponential")),
        "receiver_max_concurrent": Field("int", 0, lambda n: 0 <= n <= 100_000,
                                         "must be an integer >= 0 (0 = no limit)"),
        "receiver_processing": Field("duration", 0.0, _nonneg, _NONNEG_HELP),
        "producer_crash": Field("tables", [], None, fields={
            "at": Field("duration", MISSING, _nonneg, _NONNEG_HELP + " (from window start)"),
            "down": Field("duration", 1.0, _nonneg, _NONNEG_HELP),
        }),
    },
    "load": {  # `hookbench load`: a step ramp of Locust users against one server
        "target": Field("choice", "receiver", choices=("receiver", "producer")),
        "rate_per_user": Field("float", 10.0, lambda x: 0 < x <= 10_000,
                               "must be requests per second per user in (0, 10000]"),
        "start_users": Field("int", 10, lambda n: 1 <= n <= 100_000, "must be an integer from 1 to 100000"),
        "step_users": Field("int", 10, lambda n: 1 <= n <= 100_000, "must be an integer from 1 to 100000"),
        "steps": Field("int", 5, lambda n: 1 <= n <= 100, "must be an integer from 1 to 100"),
        "step_duration": Field("duration", 15.0, lambda x: x >= 2, 'must be a duration >= 2s like "15s"'),
        "settle": Field("duration", 3.0, _nonneg, _NONNEG_HELP + " (excluded at the start of each step)"),
        "recovery": Field("bool", False),
        "slo_p99": Field("duration", 0.2, _pos, DURATION_HELP + " (p99 latency above it marks the knee)"),
        "processes": Field("int", 0, lambda n: 0 <= n <= 64, "must be an integer from 0 (one per core) to 64"),
        "ceiling_users": Field("int", 100_000, lambda n: n >= 1, "must be an integer >= 1"),
        # a worker's clock offset (measured over Locust's messaging) known no better than this: the latencies
        # that compare its clock with another are flagged (bench.analysis.clocks)
        "clock_bound": Field("duration", 0.005, _pos, DURATION_HELP + ' (e.g. "5ms")'),
    },
    "fleet": {  # optional; only the simulator reads it (virtual time, not scaled)
        "subscriptions": Field("int", 1_000_000, lambda n: 1 <= n <= 100_000_000,
                               "must be an integer from 1 to 100000000"),
        "duration": Field("duration", 86_400.0, lambda x: 0 < x <= 366 * 86_400.0,
                          'must be a virtual duration up to a year, like "1d" or "6h"'),
        "intervals": Field("durations", [60.0, 120.0, 900.0], lambda v: len(v) > 0 and all(x > 0 for x in v),
                           'must be a non-empty list of poll intervals > 0 like ["1m", "2m", "15m"]'),
        "interval_weights": Field("floats", [], lambda v: all(x >= 0 for x in v) and (not v or sum(v) > 0),
                                  "must be a list of numbers >= 0, not all 0, one per interval "
                                  "(share of subscriptions; empty: equal shares)"),
        "rate_distribution": Field("choice", "lognormal", choices=RATE_DISTRIBUTIONS),
        "rate_median": Field("float", MISSING, _pos,
                             "must be a number > 0 (median changes per second of one subscription, e.g. 1e-4)"),
        "rate_sigma": Field("float", 1.0, lambda x: 0 <= x <= 5,
                            "must be a number from 0 to 5 (sigma of log(rate) across subscriptions)"),
        "process": Field("choice", "poisson", choices=FLEET_PROCESSES),
        "on": Field("duration", None, _pos, DURATION_HELP + " (bursty: mean length of a burst)"),
        "off": Field("duration", None, _pos, DURATION_HELP + " (bursty: mean quiet time between bursts)"),
        "style": Field("choice", "cursor", choices=("cursor",)),
    },
    "attack": {
        "enabled": Field("bool", False),
        "rate": Field("float", 400.0, lambda x: 0 < x <= 100_000, "must be requests per second in (0, 100000]"),
        "kinds": Field("choices", list(ATTACK_KINDS), lambda v: len(v) > 0, choices=ATTACK_KINDS),
    },
}

# --- the frozen result ----------------------------------------------------------------------------


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
    rate: float | None  # nominal mean changes/s per resource (poisson, bursty)
    interval: float | None  # nominal seconds between changes of one resource (constant)
    on: float | None = None  # bursty: nominal mean burst length (s)
    off: float | None = None  # bursty: nominal mean quiet time between bursts (s)
    trace: str | None = None  # trace: absolute path of a CSV of Unix times (optionally with resource ids)
    git: str | None = None  # trace: absolute path of a git repository whose commit times are replayed

    def load_trace(self) -> Trace:
        """The recorded stream of a `trace` process (read once per process, then cached)."""
        assert self.process == "trace"
        return _cached_trace(self.trace, self.git)

    def rate_per_resource(self, resources: int) -> float:
        """Nominal mean changes per second per resource, whatever the process. A trace without ids is
        replayed whole by every resource; a trace with ids is shared out among the resources."""
        if self.process in ("poisson", "bursty"):
            assert self.rate is not None  # validation guarantees it
            return self.rate
        if self.process == "constant":
            assert self.interval is not None
            return 1.0 / self.interval
        tr = self.load_trace()
        return tr.mean_rate / resources if tr.ids is not None else tr.mean_rate


@lru_cache(maxsize=8)
def _cached_trace(csv: str | None, git: str | None) -> Trace:
    return load_trace(csv=csv, git=git)


class _ModeOptions:
    """A section whose mode kinds add keys (bench.modes `fields`): they are held in `options` and read as
    attributes, `polling.cursor_limit`, `webhook.reconcile_interval`."""

    _section = ""

    def __getattr__(self, name: str) -> Any:
        options = self.__dict__.get("options") or {}
        if name in options:
            return options[name]
        raise AttributeError(f"[{self._section}] has no key {name!r}")


@dataclass(frozen=True)
class PollingCfg(_ModeOptions):
    """[polling]: the keys every polling mode shares, and `options`, the keys its mode kinds declare in
    bench.modes (e.g. cursor_limit), read as attributes: `polling.cursor_limit`."""

    _section = "polling"
    interval: float  # nominal seconds
    styles: tuple[str, ...]
    timeout: float
    options: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class DeliveryCfg:
    """How the producer delivers to one subscription; `name` is its mode name in summary.json."""

    name: str
    scheme: str
    policy: str
    timeout: float
    max_attempts: int
    retry_delays: tuple[float, ...]
    backoff_base: float
    backoff_factor: float
    backoff_cap: float
    jitter: float
    concurrency: int
    retry_after_cap: float
    breaker: bool
    breaker_failure_ratio: float
    breaker_window: int
    breaker_open: float
    profile: str | None = None  # the provider profile the unset keys came from (bench.profiles)
    disable_after_failures: int = 0  # consecutive failed attempts that disable the subscription; 0: never
    disable_after: float = 0.0  # nominal seconds of continuous failure that disable it; 0: never
    delay_scale: float = 1.0  # retry delays and disable_after are divided by it (a 3-day schedule in seconds)

    @property
    def attempts(self) -> int:
        """Attempts actually allowed: fire-and-forget makes exactly one."""
        return 1 if self.policy == "fire_and_forget" else self.max_attempts

    def nominal_delay(self, attempt: int) -> float:
        """Delay after failed attempt `attempt` (1-based) before jitter: the list (its last entry repeats), or
        base*factor^(n-1) capped; divided by `delay_scale`."""
        if self.retry_delays:
            return self.retry_delays[min(attempt, len(self.retry_delays)) - 1] / self.delay_scale
        return min(self.backoff_cap, self.backoff_base * self.backoff_factor ** (attempt - 1)) / self.delay_scale

    @property
    def live_disable_after(self) -> float:
        """Seconds of continuous failure that disable the subscription (0: never), after `delay_scale`."""
        return self.disable_after / self.delay_scale

    @property
    def retry_window_s(self) -> float:
        """Longest time from the first attempt to the last (all timeouts, largest jitter)."""
        delays = sum(self.nominal_delay(n) * (1 + self.jitter) for n in range(1, self.attempts))
        return delays + self.attempts * self.timeout


@dataclass(frozen=True)
class WebhookCfg(_ModeOptions):
    """[webhook]: the delivery defaults, the subscriptions, and `options`, the keys its mode kinds declare in
    bench.modes (e.g. reconcile_interval), read as attributes: `webhook.reconcile_interval`."""

    _section = "webhook"
    enabled: bool
    slo: float
    subscriptions: tuple[DeliveryCfg, ...]
    options: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class ReceiverCfg:
    """The receiver's defences; the `secure` profile turns every one on."""

    profile: str
    tolerance: float
    dedup_ttl: float
    basic_auth: bool
    path_token: bool
    https: bool
    max_body: int
    require_content_type: bool


@dataclass(frozen=True)
class DownWindow:
    start: float  # seconds after the window starts
    end: float
    mode: str  # "refuse": connection refused; "503": answers 503


@dataclass(frozen=True)
class Crash:
    at: float  # seconds after the window starts
    down: float  # seconds before the producer is restarted on the same store


@dataclass(frozen=True)
class FaultsCfg:
    receiver_down: tuple[DownWindow, ...]
    receiver_error_rate: float
    receiver_delay: float
    receiver_delay_dist: str
    receiver_max_concurrent: int
    receiver_processing: float
    producer_crash: tuple[Crash, ...]


@dataclass(frozen=True)
class AttackCfg:
    enabled: bool
    rate: float
    kinds: tuple[str, ...]


@dataclass(frozen=True)
class LoadCfg:
    """A step ramp: users start_users, +step_users per step, `steps` steps (then one back at start_users
    when `recovery`), each step_duration long; every user offers rate_per_user requests per second."""

    target: str
    rate_per_user: float
    start_users: int
    step_users: int
    steps: int
    step_duration: float
    settle: float
    recovery: bool
    slo_p99: float
    processes: int
    ceiling_users: int
    clock_bound: float = 0.005  # seconds: a worker clock offset's uncertainty above it flags cross-clock latencies

    def users(self, step: int) -> int:
        """Users in step `step` (0-based); the recovery step returns to start_users."""
        if step >= self.steps:
            return self.start_users
        return min(self.ceiling_users, self.start_users + step * self.step_users)

    @property
    def total_steps(self) -> int:
        return self.steps + (1 if self.recovery else 0)


@dataclass(frozen=True)
class FleetCfg:
    """A simulated population of polling subscriptions (virtual time). Each subscription is one feed
    (cursor style, like a Zapier trigger) with its own change rate, drawn from `rate_distribution`
    (lognormal: median `rate_median`, sigma `rate_sigma` of log(rate); fixed: every one at `rate_median`),
    and its own poll interval: `intervals` shared out by `interval_weights`."""

    subscriptions: int
    duration: float  # virtual seconds
    intervals: tuple[float, ...]
    interval_weights: tuple[float, ...]  # one per interval, normalised to sum 1
    rate_distribution: str
    rate_median: float
    rate_sigma: float
    process: str
    on: float | None
    off: float | None
    style: str


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
    receiver: ReceiverCfg
    faults: FaultsCfg
    attack: AttackCfg
    load: LoadCfg
    fleet: FleetCfg | None = None  # only the simulator reads it
    source: str = "<dict>"

    # live (time-scaled) values: what the processes actually use
    @property
    def live_poll_interval(self) -> float:
        return self.polling.interval / self.run.time_scale

    @property
    def live_change_rate(self) -> float:
        """Live mean changes per second per resource."""
        return self.changes.rate_per_resource(self.resources.count) * self.run.time_scale

    @property
    def modes(self) -> tuple[str, ...]:
        """Mode names as they appear in summary.json, in a stable order."""
        return scenario_modes(self)

    def to_dict(self) -> dict[str, Any]:
        """The resolved scenario as plain data (durations in seconds); `scenario_from_dict` reads it back."""
        d = _plain(dataclasses.asdict(self))
        d.pop("source")
        d["polling"].update(d["polling"].pop("options"))  # as written in a scenario file
        d["webhook"].update(d["webhook"].pop("options"))
        return d


def _plain(o: Any) -> Any:
    if isinstance(o, dict):
        return {k: _plain(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_plain(v) for v in o]
    return o


# --- loading --------------------------------------------------------------------------------------

def _parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise ScenarioError("--set", item, item, "must look like key=value, e.g. polling.interval=2s")
    key, raw = item.split("=", 1)
    key, raw = key.strip(), raw.strip()
    try:  # a TOML value (number, bool, list, inline table, quoted string) ...
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:  # ... or else a bare string such as 2s or poisson
        value = raw
    return key, value


def _apply_override(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    section, name = (parts[0], parts[1]) if len(parts) == 2 else ("", parts[0])
    known = _SCHEMA.get(section, {}) | ({"subscriptions": None} if section == "webhook" else {})
    if len(parts) > 2 or not all(parts) or name not in known:
        keys = [f"{s}.{k}" if s else k for s, fields in _SCHEMA.items() for k in fields]
        raise ScenarioError("--set", key, value, f"unknown key; known keys: {', '.join(keys)}")
    if section:
        table = data.setdefault(section, {})
        if not isinstance(table, dict):
            raise ScenarioError("--set", section, table, "must be a table")
        table[name] = value
    else:
        data[name] = value


def scenario_from_dict(data: dict[str, Any], source: str, overrides: list[str] | tuple[str, ...] = (),
                       base_dir: Path | None = None) -> Scenario:
    """Validate plain data (+ overrides) into a Scenario. Raises ScenarioError naming source and key.
    Relative paths in the scenario (a trace) are taken from `base_dir` (the scenario file's folder)."""
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    overridden: set[str] = set()
    for item in overrides:
        key, value = _parse_override(item)
        _apply_override(data, key, value)
        overridden.add(key)

    def src(key: str) -> str:
        hit = any(key == k or key.startswith(k + ".") or key.startswith(k + "[") for k in overridden)
        return f"--set (over {source})" if hit else source

    if isinstance(data.get("webhook"), dict):
        data["webhook"] = _with_profile(data["webhook"], "webhook", src)
    sections = set(_SCHEMA) - {"", "fleet"}
    v = {"": validate_table(data, _SCHEMA[""], "", src, extra_allowed=sections | {"fleet"})}
    for section in sections:
        extra = {"subscriptions"} if section == "webhook" else set()
        v[section] = validate_table(data.get(section, {}), _SCHEMA[section], section, src, extra_allowed=extra)

    ch = _changes(v["changes"], src, base_dir)

    webhook = _webhook(data.get("webhook", {}), v["webhook"], src)
    receiver = _receiver(v["receiver"])
    for d in webhook.subscriptions:
        if receiver.dedup_ttl < d.retry_window_s:
            raise ScenarioError(src("receiver.dedup_ttl"), "receiver.dedup_ttl", receiver.dedup_ttl,
                                f"must be at least the retry window of subscription {d.name!r} "
                                f"({d.retry_window_s:.0f} s), or retried deliveries could be processed twice")
    attack = AttackCfg(**v["attack"])
    for kind in attack.kinds if attack.enabled else ():
        need = ATTACK_NEEDS.get(kind)
        if need and not getattr(receiver, need):
            raise ScenarioError(src("attack.kinds"), "attack.kinds", list(attack.kinds),
                                f"{kind!r} needs receiver.{need} = true (or receiver.profile = \"secure\")")
    if v["load"]["settle"] >= v["load"]["step_duration"]:
        raise ScenarioError(src("load.settle"), "load.settle", v["load"]["settle"],
                            "must be shorter than load.step_duration")
    if attack.enabled and not webhook.enabled:
        raise ScenarioError(src("attack.enabled"), "attack.enabled", True,
                            "needs webhook.enabled = true: the attack aims at a webhook endpoint")
    _check_adaptive(v["polling"], src)
    for kind in MODE_KINDS:  # a held poll's live wait must be one the producer accepts
        if kind.wait_key is not None and kind.style in v["polling"]["styles"]:
            wait, scale = v["polling"][kind.wait_key], v["run"]["time_scale"]
            if wait / scale > LONG_WAIT_MAX_S:
                raise ScenarioError(src(f"polling.{kind.wait_key}"), f"polling.{kind.wait_key}", wait,
                                    f"divided by run.time_scale ({scale:g}) must be at most {LONG_WAIT_MAX_S:g} s, "
                                    "the longest wait the producer holds a poll for")
    f = v["faults"]
    duration = v["run"]["duration"]
    for i, c in enumerate(f["producer_crash"]):
        if c["at"] + c["down"] >= duration:
            raise ScenarioError(src("faults.producer_crash"), f"faults.producer_crash[{i}]", c,
                                f"at + down must end inside the window (run.duration = {duration:g} s)")
    for i, w in enumerate(f["receiver_down"]):
        if w["end"] > duration:
            raise ScenarioError(src("faults.receiver_down"), f"faults.receiver_down[{i}].end", w["end"],
                                f"must be <= run.duration ({duration:g} s)")
    faults = FaultsCfg(**{**f, "receiver_down": tuple(DownWindow(**w) for w in f["receiver_down"]),
                          "producer_crash": tuple(Crash(**c) for c in f["producer_crash"])})
    top = v[""]
    return Scenario(
        name=top["name"], description=top["description"], seed=top["seed"],
        run=RunCfg(**v["run"]), resources=ResourcesCfg(**v["resources"]), changes=ChangesCfg(**ch),
        polling=_polling(v["polling"]), webhook=webhook, receiver=receiver, faults=faults, attack=attack,
        load=LoadCfg(**v["load"]), fleet=_fleet(data.get("fleet"), src), source=source,
    )


def _check_adaptive(p: dict[str, Any], src: Any) -> None:
    """The adaptive poller's interval ladder needs polling.adaptive_min <= polling.adaptive_max."""
    if p["adaptive_min"] > p["adaptive_max"]:
        # the key an override changed is the one to name; else the upper bound
        key = "polling.adaptive_min" if src("polling.adaptive_min").startswith("--set") else "polling.adaptive_max"
        raise ScenarioError(src(key), key, p[key.split(".")[1]],
                            f"must keep polling.adaptive_min ({p['adaptive_min']:g} s) <= polling.adaptive_max "
                            f"({p['adaptive_max']:g} s): the adaptive interval grows from the first to the second")


def _polling(values: dict[str, Any]) -> PollingCfg:
    shared = {f.name for f in dataclasses.fields(PollingCfg)} - {"options"}
    return PollingCfg(**{k: v for k, v in values.items() if k in shared},
                      options={k: v for k, v in values.items() if k not in shared})


def _fleet(raw: Any, src: Any) -> FleetCfg | None:
    """The optional [fleet] section (None when absent)."""
    if raw is None:
        return None
    f = validate_table(raw, _SCHEMA["fleet"], "fleet", src)
    weights = f["interval_weights"] or (1.0,) * len(f["intervals"])
    if len(weights) != len(f["intervals"]):
        raise ScenarioError(src("fleet.interval_weights"), "fleet.interval_weights", list(f["interval_weights"]),
                            f"must hold one weight per interval ({len(f['intervals'])} intervals in fleet.intervals)")
    if f["process"] == "bursty":
        for key, hint in (("on", 'mean burst length, e.g. "10m"'), ("off", 'mean quiet time, e.g. "6h"')):
            if f[key] is None:
                raise ScenarioError(src(f"fleet.{key}"), f"fleet.{key}", MISSING,
                                    f'is required when fleet.process = "bursty" ({hint})')
    total = sum(weights)
    return FleetCfg(**{**f, "interval_weights": tuple(w / total for w in weights)})


_CHANGE_NEEDS = {"poisson": (("rate", "mean changes per second per resource, e.g. 0.1"),),
                 "constant": (("interval", 'e.g. "10s"'),),
                 "bursty": (("rate", "mean changes per second per resource, bursts included, e.g. 0.1"),
                            ("on", 'mean burst length, e.g. "5s"'), ("off", 'mean quiet time, e.g. "55s"'))}


def _changes(ch: dict[str, Any], src: Any, base_dir: Path | None) -> dict[str, Any]:
    process = ch["process"]
    for key, hint in _CHANGE_NEEDS.get(process, ()):
        if ch[key] is None:
            raise ScenarioError(src(f"changes.{key}"), f"changes.{key}", MISSING,
                                f'is required when changes.process = "{process}" ({hint})')
    if process != "trace":
        return ch
    if (ch["trace"] is None) == (ch["git"] is None):
        key = "changes.trace" if ch["trace"] is not None else "changes.git"
        raise ScenarioError(src(key), "changes.trace / changes.git", ch["trace"] or ch["git"] or MISSING,
                            'changes.process = "trace" needs exactly one of trace = "times.csv" (one Unix time '
                            'per line, optionally ",resource_id") and git = "path/to/repo" (its commit times)')
    key = "trace" if ch["trace"] is not None else "git"
    path = Path(ch[key]).expanduser()
    from_file = not src(f"changes.{key}").startswith("--set")  # a --set path is the user's, from the cwd
    if not path.is_absolute() and base_dir is not None and from_file:
        path = base_dir / path
    ch[key] = str(path.resolve())
    try:
        _cached_trace(ch["trace"], ch["git"])
    except TraceError as e:
        raise ScenarioError(src(f"changes.{key}"), f"changes.{key}", ch[key], f"cannot be replayed: {e}") from None
    return ch


def _with_profile(table: dict[str, Any], where: str, src: Any) -> dict[str, Any]:
    """`table` with the delivery keys of its `profile` filled in where it sets none itself."""
    name = table.get("profile")
    if name is None:
        return table
    if not isinstance(name, str) or name not in PROFILE_NAMES:
        key = f"{where}.profile" if where else "profile"
        raise ScenarioError(src(key), key, name, "must be one of the known delivery profiles: "
                            f"{', '.join(PROFILE_NAMES)} (bench/data/delivery_profiles.toml)")
    return {**profile_values(name), **table}


def _delivery(values: dict[str, Any], name: str, where: str, src: Any) -> DeliveryCfg:
    d = DeliveryCfg(name=name, **{k: values[k] for k in _DELIVERY})
    if d.backoff_cap < d.backoff_base:
        raise ScenarioError(src(f"{where}.backoff_cap"), f"{where}.backoff_cap", d.backoff_cap,
                            f"must be >= {where}.backoff_base")
    return d


def _webhook(raw: dict[str, Any], values: dict[str, Any], src: Any) -> WebhookCfg:
    rows = raw.get("subscriptions") if isinstance(raw, dict) else None
    if rows is None:
        subs: tuple[DeliveryCfg, ...] = (_delivery(values, MODE_WEBHOOK, "webhook", src),)
    else:
        if not isinstance(rows, list) or not rows:
            raise ScenarioError(src("webhook.subscriptions"), "webhook.subscriptions", rows,
                                "must be a non-empty list of [[webhook.subscriptions]] tables")
        # each subscription inherits every delivery key it does not set from [webhook]
        fields = {k: replace(f, default=values[k]) for k, f in _DELIVERY.items()}
        fields["name"] = Field("str", MISSING, is_push_name, push_name_words())
        # a subscription's own profile replaces what it would inherit; its explicit keys win over both
        rows = [_with_profile(row, f"webhook.subscriptions[{i}]", src) if isinstance(row, dict) else row
                for i, row in enumerate(rows)]
        subs = tuple(_delivery(validate_table(row, fields, f"webhook.subscriptions[{i}]", src), row["name"],
                               f"webhook.subscriptions[{i}]", src) for i, row in enumerate(rows))
        names = [d.name for d in subs]
        if len(set(names)) != len(names):
            raise ScenarioError(src("webhook.subscriptions"), "webhook.subscriptions", names,
                                "subscription names must be distinct")
    return WebhookCfg(enabled=values["enabled"], slo=values["slo"], subscriptions=subs,
                      options={k: values[k] for k in mode_fields("webhook")})


def _receiver(values: dict[str, Any]) -> ReceiverCfg:
    secure = values["profile"] == "secure"
    for key in ("basic_auth", "path_token", "https"):
        if values[key] is None:
            values[key] = secure
    return ReceiverCfg(**values)


def delivery_from_dict(data: dict[str, Any], source: str) -> DeliveryCfg:
    """A DeliveryCfg from plain data (e.g. the JSON body of POST /subscriptions); ScenarioError if invalid."""
    fields = dict(_DELIVERY)
    fields["name"] = Field("str", MISSING, is_push_name, push_name_words())
    if isinstance(data, dict):
        data = _with_profile(data, "", lambda _k: source)
    values = validate_table(data, fields, "", lambda _k: source)
    return _delivery(values, values["name"], "", lambda _k: source)


def receiver_from_dict(data: dict[str, Any], source: str) -> ReceiverCfg:
    """A ReceiverCfg from plain data (e.g. the receiver's config file); ScenarioError if invalid."""
    return _receiver(validate_table(data, _SCHEMA["receiver"], "receiver", lambda _k: source))


def receiver_faults_from_dict(data: dict[str, Any], source: str) -> FaultsCfg:
    """The receiver_* part of [faults] from plain data (the receiver's config file); ScenarioError if invalid."""
    fields = {k: f for k, f in _SCHEMA["faults"].items() if k.startswith("receiver_")}
    f = validate_table(data, fields, "faults", lambda _k: source)
    return FaultsCfg(**{**f, "receiver_down": tuple(DownWindow(**w) for w in f["receiver_down"]),
                        "producer_crash": ()})


def load_scenario(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Scenario:
    """Read and validate a scenario TOML file, then apply `key=value` overrides."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(str(p), "(file)", str(p),
                            "file not found; pass a scenario .toml, e.g. scenarios/default.toml") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
        raise ScenarioError(str(p), "(file)", str(p),
                            f"cannot be read as a UTF-8 text file ({e.__class__.__name__})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(str(p), "(syntax)", str(e), "must be valid TOML") from None
    return scenario_from_dict(data, str(p), overrides, base_dir=p.resolve().parent)
