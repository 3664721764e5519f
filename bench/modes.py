"""The mode registry: every way of observing changes that hookbench measures, declared once.

A *mode* is one observer in a run (a name in summary.json's `modes`: `polling`, `polling_etag`, `webhook`,
`webhook_outbox`, ...). Each mode belongs to one `ModeKind`, which says how it observes (pull, push or stream),
which scenario section and keys configure it, which producer route its cost is charged to, its analytic
model, its label and colour in reports, and whether the virtual-time simulator supports it. Analysis,
loss, simulation, sweeps, the reproduction readings, the producer and the reports look a mode up here
(`kind_of`) instead of testing its name. A new mode that reuses an observation path is one entry in
`MODE_KINDS` plus its server route and its Locust user (docs/architecture.md lists the files).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Callable

from bench.adaptive import SHRINK_RULES, adaptive_model
from bench.model import poll_model, stream_model
from bench.protocol import LONG_WAIT_MAX_S, change_event
from bench.schema import DURATION_HELP, Field

if TYPE_CHECKING:
    from bench.config import Scenario

__all__ = ["Observation", "ModeKind", "Workload", "MODE_KINDS", "kind_of", "find_kind", "scenario_modes",
           "poll_styles", "mode_fields", "style_mode", "is_pull", "is_push", "is_stream", "CURSOR", "ETAG", "LONG",
           "ADAPTIVE", "SSE", "WEBHOOK", "HYBRID", "THIN", "MODE_CURSOR", "MODE_ETAG", "MODE_LONG", "MODE_ADAPTIVE",
           "MODE_SSE", "MODE_WEBHOOK", "MODE_HYBRID", "MODE_THIN", "MODELLED_PROCESSES", "model_for", "option_flag",
           "push_name_words", "is_push_name", "route_default_modes", "default_styles"]


class Observation(str, Enum):
    """How a mode learns of a change."""

    PULL = "pull"  # the consumer asks (polls); each request is empty or useful
    PUSH = "push"  # the producer sends each change (a delivery attempt per change, retries included)
    STREAM = "stream"  # one held connection carries the changes


MODELLED_PROCESSES = ("poisson", "constant")  # change processes with a closed-form poll model


@dataclass(frozen=True)
class Workload:
    """What a mode's analytic model needs, in the time base of the run being modelled (live or nominal)."""

    process: str  # one of MODELLED_PROCESSES: other streams are modelled as Poisson at the same mean rate
    rate: float  # mean changes per second of one resource
    interval: float  # poll interval, seconds
    resources: int
    options: Mapping[str, Any] = field(default_factory=dict)  # the kind's keys (bench.modes fields), same time base
    seed: int = 0  # the scenario's: a model that simulates draws from it


@dataclass(frozen=True)
class Formulas:
    """The model's formulas as reports print them (None where the mode has no such model)."""

    wasted: Callable[[str], str] | None = None  # change process -> formula of the wasted fraction
    latency: Callable[[str], str] | None = None  # change process -> formula of the mean detection latency
    requests_per_change: str | None = None  # in the sweep's notation (R resources, lambda, T)


@dataclass(frozen=True)
class ModeKind:
    """One kind of mode. Its instances are the mode names matching `pattern`."""

    name: str  # the registry key
    pattern: str  # full-match regular expression of the mode names of this kind
    default_name: str  # the name of its (first) mode in a scenario
    observes: Observation
    summary_kind: str  # summary.json's `kind` of its modes (design.md section 4): "polling" | "webhook" | "stream"
    section: str  # the scenario section that configures it
    style: str | None  # its value in polling.styles (pull kinds enabled by style), else None
    fields: dict[str, Field]  # the keys it adds to its section (besides the section's shared keys)
    charged_route: str | None  # the producer route (aiohttp route name) whose requests are charged to it;
    #                            None: push kinds, charged per delivery attempt under the subscription's name
    users_per_run: Callable[[int], int] | None  # Locust users one of its modes needs for R resources
    locust_user: str | None  # the Locust user class in scenarios/pollers.py (None: no Locust user)
    model: Callable[[Workload], dict[str, Any]] | None  # analytic predictions (labelled as model in reports)
    formulas: Formulas
    label: str  # what reports call it
    policy_words: str | None  # how it catches up, in the loss table (push kinds: the subscription's policy)
    colour: str  # its colour in figures (further modes of one kind get the next free palette colour)
    coalesces: bool  # state polling: changes overwritten before a poll saw them are coalesced, not lost
    simulated: bool  # whether bench.simulation.simulate reproduces it in virtual time
    by_default: bool = False  # a pull/stream kind run when a scenario does not list polling.styles
    # Long polling: the [polling] key of how long the producer holds a request that finds nothing. Its model's
    # interval T is that wait; the round trip its latency adds is measured on the requests that timed out (their
    # round trip less the wait), as the round trip of its other requests is mostly time spent waiting.
    wait_key: str | None = None
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_regex", re.compile(self.pattern))

    def matches(self, mode: str) -> bool:
        return self._regex.fullmatch(mode) is not None

    def names(self, scenario: Scenario) -> list[str]:
        """The modes of this kind a scenario runs, in their stable order."""
        if self.style is not None:
            return [self.default_name] if self.style in scenario.polling.styles else []
        if self.section == "webhook":  # a subscription's name says its kind (webhook..., hybrid..., thin...)
            subs = scenario.webhook.subscriptions if scenario.webhook.enabled else ()
            return [d.name for d in subs if self.matches(d.name)]
        raise NotImplementedError(f"mode kind {self.name!r}: no rule for the modes of section [{self.section}]")

    @property
    def is_pull(self) -> bool:
        return self.observes is Observation.PULL

    @property
    def is_push(self) -> bool:
        return self.observes is Observation.PUSH

    @property
    def is_stream(self) -> bool:
        return self.observes is Observation.STREAM


# --- the models ----------------------------------------------------------------------------------------


def _poll(state: bool, per_feed: bool) -> Callable[[Workload], dict[str, Any]]:
    """Fixed-interval polling: a cursor feed sees every resource's changes (targets = R), a state poll one
    resource's latest version (targets = 1, `state`)."""

    def model(w: Workload) -> dict[str, Any]:
        return poll_model(w.process, w.rate, w.interval, w.resources if per_feed else 1, state=state)

    return model


def _long_poll(w: Workload) -> dict[str, Any]:
    """Long polling on the feed (`w.interval` = the wait W; a model, labelled so in reports). Changes reach the
    feed at L = R*lambda per second; a request that finds nothing is held min(X, W), X the time to the next
    change. Poisson: X ~ Exp(L), so a fraction e^(-L*W) of requests time out empty and each of the others brings
    the one change that woke it: requests per change = 1/(1 - e^(-L*W)). Latency: the answer's way back, about
    one round trip d, which the caller adds (measured); a change that comes while no request is held waits for
    the next one too, at most d more, which the model neglects with every other term in L*d (d << 1/L, W).
    Constant: with R independent uniform phases, no change within W with probability max(0, 1 - W/I)^R."""
    feed = w.rate * w.resources
    lw = feed * w.interval
    if w.process == "poisson":
        p_empty = math.exp(-lw)
    elif w.process == "constant":
        p_empty = max(0.0, 1.0 - w.interval * w.rate) ** w.resources
    else:
        raise ValueError(f"no model for change process {w.process!r}")
    useful = 1.0 - p_empty
    return {"wasted_fraction": p_empty, "latency_mean_ms": 0.0,
            "requests_per_change": 1.0 / useful if useful > 0 else None,
            "changes_per_useful_poll": 1.0, "lambda_T": lw}


def _one_delivery(_w: Workload) -> dict[str, Any]:
    return {"requests_per_change": 1.0, "note": "one delivery per change when every first attempt succeeds"}


def _delivery_and_fetch(_w: Workload) -> dict[str, Any]:
    return {"requests_per_change": 2.0,
            "note": "model: one delivery and one fetch per change when every first attempt succeeds; "
                    "latency = delivery + the fetch's round trip (both measured, no closed form)"}


def _reconcile(w: Workload) -> dict[str, Any]:
    """Webhook + reconciliation poll, `w.interval` being the reconcile interval T_rec (not polling.interval).

    Every change is delivered once and the consumer also reads the whole feed every T_rec: 1 + 1/(R·λ·T_rec)
    requests per change. A request is useful when it brings some change first, so when every first delivery
    succeeds the reconcile polls are the waste: 1/(1 + R·λ·T_rec). A change the push path misses is seen by the
    next reconcile poll: with the schedule's phase uniform, T_rec/2 after the change on average (+ round trip),
    whatever the change process; this assumes the poll path is up (the consumer's poller survives the outage)."""
    lt = w.rate * w.resources * w.interval  # changes per reconcile poll
    return {"requests_per_change": 1.0 + 1.0 / lt, "reconcile_polls_per_change": 1.0 / lt,
            "wasted_fraction": 1.0 / (1.0 + lt), "changes_per_reconcile_poll": lt,
            "reconcile_latency_mean_ms": w.interval / 2.0 * 1e3}


def _adaptive(w: Workload) -> dict[str, Any]:
    """The adaptive poller of the whole feed: the policy's stationary chain (Poisson) or its seeded simulation."""
    return adaptive_model(w.options, w.process, w.rate, w.resources, w.seed)


def _adaptive_wasted(process: str) -> str:
    return ("Σ π_k·e^(-R·λ·I_k), π the stationary law of the interval steps k (Markov chain)" if process == "poisson"
            else "simulated: the policy replayed in virtual time on the change process (seeded by the scenario)")


def _adaptive_latency(process: str) -> str:
    return ("Σ π_k·I_k² / (2·Σ π_k·I_k)" if process == "poisson"
            else "simulated: mean time from a change to the poll that returns it")


SSE_HEARTBEAT_BYTES = 11  # ": hb\n\n" in a chunk of its own: "6\r\n" + 6 bytes + "\r\n"


def sse_event_bytes(resources: int, seq: int = 100) -> int:
    """Bytes on the wire of one change streamed alone (servers/producer/stream.py): "id: SEQ", "data: JSON", the
    blank line and the chunk framing; for a 3-digit seq by default (each further digit adds 2 bytes)."""
    data = json.dumps(change_event(f"ch{seq}", resources - 1, seq, 1, 1_800_000_000_000_000_000), separators=(",", ":"))
    body = len(f"id: {seq}\ndata: {data}\n\n")
    return body + len(f"{body:x}") + 4


def _stream(w: Workload) -> dict[str, Any]:
    """SSE: every change of the R resources on one held connection, a heartbeat per sse_heartbeat of silence."""
    heartbeat = w.options.get("sse_heartbeat", SSE.fields["sse_heartbeat"].default)
    m: dict[str, Any] = stream_model(w.rate * w.resources, heartbeat, sse_event_bytes(w.resources),
                                     SSE_HEARTBEAT_BYTES)
    m["note"] = ("analytic: no poll wait (latency = one-way delivery, not modelled); bytes per change = one event "
                 "(3-digit seq) + heartbeats 1/(e^(R*lambda*H) - 1) per change"
                 + ("" if w.process == "poisson" else f"; the {w.process} changes of R resources taken as Poisson"))
    return m


def _wasted(targets: str) -> Callable[[str], str]:
    return lambda process: "e^(-lambda*T)" if process == "poisson" else f"max(0, 1 - T/I)^{targets}"


def _state_latency(process: str) -> str:
    return ("1/lambda - T*e^(-lambda*T)/(1-e^(-lambda*T)) (last change of an interval)" if process == "poisson"
            else "T/2")


# --- the registry ---------------------------------------------------------------------------------------

CURSOR = ModeKind(
    name="cursor", pattern="polling", default_name="polling", observes=Observation.PULL, summary_kind="polling",
    section="polling", style="cursor",
    fields={"cursor_limit": Field("int", 100, lambda n: 1 <= n <= 10_000, "must be an integer from 1 to 10000")},
    charged_route="changes", users_per_run=lambda _r: 1, locust_user="CursorPoller", model=_poll(False, True),
    formulas=Formulas(_wasted("targets"), lambda _p: "T/2", "1/(R·λ·T)"),
    label="cursor polling", policy_words="cursor polling catch-up", colour="#1f77b4", coalesces=False,
    simulated=True, by_default=True)

ETAG = ModeKind(
    name="etag", pattern="polling_etag", default_name="polling_etag", observes=Observation.PULL,
    summary_kind="polling", section="polling", style="etag", fields={}, charged_route="resource",
    users_per_run=lambda r: r, locust_user="EtagPoller", model=_poll(True, False),
    formulas=Formulas(_wasted("targets"), _state_latency, "1/(λ·T)"),
    label="state polling (ETag)", policy_words="state polling", colour="#ff7f0e", coalesces=True, simulated=True,
    by_default=True)

LONG = ModeKind(
    name="long", pattern="polling_long", default_name="polling_long", observes=Observation.PULL,
    summary_kind="polling", section="polling", style="long",
    fields={"long_wait": Field("duration", 30.0, lambda x: 0 < x <= LONG_WAIT_MAX_S,
                               f"must be a duration in (0, {LONG_WAIT_MAX_S:g}s], "
                               'e.g. "30s": how long the producer holds a poll that finds nothing')},
    charged_route="changes", users_per_run=lambda _r: 1, locust_user="LongPoller", model=_long_poll,
    formulas=Formulas(lambda p: "e^(-R*lambda*W)" if p == "poisson" else "max(0, 1 - W/I)^R",
                      lambda _p: "0 at the producer (answered when the change comes)",
                      "1/(1 - e^(-R·λ·W))"),
    label="long polling", policy_words="long-poll catch-up", colour="#d62728",
    coalesces=False, simulated=False, wait_key="long_wait")

ADAPTIVE = ModeKind(
    name="adaptive", pattern="polling_adaptive", default_name="polling_adaptive", observes=Observation.PULL,
    summary_kind="polling", section="polling", style="adaptive",
    fields={"adaptive_min": Field("duration", 0.5, lambda x: x > 0, DURATION_HELP + " (shortest interval, the "
                                  "first one; <= polling.adaptive_max)"),
            "adaptive_max": Field("duration", 8.0, lambda x: x > 0, DURATION_HELP + " (longest interval)"),
            "adaptive_factor": Field("float", 2.0, lambda x: 1 < x <= 100,
                                     "must be a number in (1, 100]: the interval's growth after an empty poll"),
            "adaptive_shrink": Field("choice", "reset", lambda s: s in SHRINK_RULES,
                                     f"must be one of {', '.join(SHRINK_RULES)}: after a useful poll, back to the "
                                     "shortest interval (reset) or one step down (divide)", choices=SHRINK_RULES),
            "advise_interval": Field("duration", 0.0, lambda x: x >= 0, 'must be a duration >= 0 like "0s" or '
                                     '"2s": the X-Poll-Interval the producer sends on GET /changes while loaded '
                                     "(0: never, the default)"),
            "advise_above": Field("float", 0.0, lambda x: 0 <= x <= 1e6, "must be a number in [0, 1e6]: polls per "
                                  "second (nominal) on GET /changes over the last second above which the producer "
                                  "is loaded (0: always, while advise_interval > 0)")},
    charged_route="changes", users_per_run=lambda _r: 1, locust_user="AdaptivePoller", model=_adaptive,
    formulas=Formulas(_adaptive_wasted, _adaptive_latency, "1/(R·λ·E[I]), E[I] = Σ π_k·I_k"),
    label="adaptive polling", policy_words="adaptive polling catch-up", colour="#8c564b", coalesces=False,
    simulated=True)

SSE = ModeKind(
    name="sse", pattern="polling_sse", default_name="polling_sse", observes=Observation.STREAM,
    summary_kind="stream", section="polling", style="sse",
    fields={"sse_heartbeat": Field("duration", 5.0, lambda x: 0 < x <= 300, "must be a duration in (0, 300s], "
                                   'e.g. "15s": a comment line the producer sends on an idle stream')},
    charged_route="stream", users_per_run=lambda _r: 1, locust_user="SseListener", model=_stream,
    formulas=Formulas(requests_per_change="1 connection per run"), label="server-sent events",
    policy_words="SSE resume (Last-Event-ID)", colour="#9467bd", coalesces=False, simulated=False)

WEBHOOK = ModeKind(
    name="webhook", pattern=r"webhook[A-Za-z0-9_]{0,40}", default_name="webhook", observes=Observation.PUSH,
    summary_kind="webhook", section="webhook", style=None, fields={}, charged_route=None, users_per_run=None,
    locust_user=None, model=_one_delivery, formulas=Formulas(requests_per_change="1 per change"),
    label="webhook", policy_words=None, colour="#2ca02c", coalesces=False, simulated=True)

HYBRID = ModeKind(
    name="hybrid", pattern=r"hybrid[A-Za-z0-9_]{0,40}", default_name="hybrid", observes=Observation.PUSH,
    summary_kind="webhook", section="webhook", style=None,
    fields={"reconcile_interval": Field("duration", 10.0, lambda x: x > 0,
                                        DURATION_HELP + " (the hybrid subscriptions' reconciliation poll)")},
    charged_route=None, users_per_run=lambda _r: 1, locust_user="ReconcilePoller", model=_reconcile,
    formulas=Formulas(requests_per_change="1 + 1/(R·λ·T_rec)"), label="webhook + reconcile",
    policy_words="reconciliation poll", colour="#e377c2", coalesces=False, simulated=False)

THIN = ModeKind(
    name="thin", pattern=r"thin[A-Za-z0-9_]{0,40}", default_name="thin", observes=Observation.PUSH,
    summary_kind="webhook", section="webhook", style=None, fields={}, charged_route="event", users_per_run=None,
    locust_user=None, model=_delivery_and_fetch,
    formulas=Formulas(requests_per_change="2 per change (1 delivery + 1 fetch)"), label="thin event + fetch",
    policy_words=None, colour="#7f7f7f", coalesces=False, simulated=False)

# the order of modes in summaries and reports
MODE_KINDS: tuple[ModeKind, ...] = (CURSOR, ETAG, LONG, ADAPTIVE, SSE, WEBHOOK, HYBRID, THIN)

MODE_CURSOR = CURSOR.default_name  # cursor feed GET /changes?after=SEQ
MODE_ETAG = ETAG.default_name  # state polling GET /resources/{id} with If-None-Match
MODE_LONG = LONG.default_name  # long polling: GET /changes?after=SEQ&wait=S, held until a change or S
MODE_ADAPTIVE = ADAPTIVE.default_name  # the cursor feed at an interval that adapts to what polls find
MODE_SSE = SSE.default_name  # one held GET /changes/stream (Server-Sent Events)
MODE_WEBHOOK = WEBHOOK.default_name  # the default subscription; others are named webhook_<something>
MODE_HYBRID = HYBRID.default_name  # webhooks plus a reconciliation poll of the cursor feed
MODE_THIN = THIN.default_name  # a webhook carrying ids only; the receiver fetches the change


def find_kind(mode: str) -> ModeKind | None:
    """The kind of mode name `mode`, or None for a name no kind claims (e.g. a run from a newer hookbench)."""
    return next((k for k in MODE_KINDS if k.matches(mode)), None)


def kind_of(mode: str) -> ModeKind:
    """The kind of mode name `mode`; KeyError naming the known patterns when none claims it."""
    kind = find_kind(mode)
    if kind is None:
        raise KeyError(f"unknown mode {mode!r}: known mode names are "
                       + ", ".join(f"{k.pattern} ({k.name})" for k in MODE_KINDS))
    return kind


def is_pull(mode: str) -> bool:
    """Whether `mode` polls (False for a name no kind claims)."""
    kind = find_kind(mode)
    return kind is not None and kind.is_pull


def is_push(mode: str) -> bool:
    """Whether the producer sends `mode` its changes (False for a name no kind claims)."""
    kind = find_kind(mode)
    return kind is not None and kind.is_push


def is_stream(mode: str) -> bool:
    """Whether `mode` holds a stream open (False for a name no kind claims)."""
    kind = find_kind(mode)
    return kind is not None and kind.is_stream


def is_push_name(name: str) -> bool:
    """Whether `name` may name a webhook subscription: some push kind claims it."""
    return any(k.is_push and k.matches(name) for k in MODE_KINDS)


def push_name_words() -> str:
    """How an error message says what a subscription's name must look like."""
    starts = " or ".join(repr(k.default_name) for k in MODE_KINDS if k.is_push)
    return (f"must start with {starts} (its kind) and continue with letters, digits or '_' "
            "(it becomes the mode name, e.g. webhook_outbox, hybrid, thin)")


def route_default_modes() -> dict[str, str]:
    """Producer route name -> the mode its requests are charged to when they carry no mode label: the first
    kind in registry order that declares the route (a labelled request is charged to its label's mode)."""
    out: dict[str, str] = {}
    for k in MODE_KINDS:
        if k.charged_route is not None:
            out.setdefault(k.charged_route, k.default_name)
    return out


def scenario_modes(scenario: Scenario) -> tuple[str, ...]:
    """Mode names a scenario runs, as they appear in summary.json, in the registry's order."""
    return tuple(name for k in MODE_KINDS for name in k.names(scenario))


def poll_styles() -> tuple[str, ...]:
    """The values polling.styles accepts: one per pull kind enabled by style."""
    return tuple(k.style for k in MODE_KINDS if k.style is not None)


def default_styles() -> tuple[str, ...]:
    """polling.styles when a scenario does not say: the kinds declared `by_default` (cursor and ETag)."""
    return tuple(k.style for k in MODE_KINDS if k.style is not None and k.by_default)


def style_mode(style: str) -> str:
    """The mode name of a polling style ("cursor" -> "polling")."""
    return next(k.default_name for k in MODE_KINDS if k.style == style)


def option_flag(key: str) -> str:
    """The Locust option that carries a mode key to the pollers (cursor_limit -> --hb-cursor-limit)."""
    return "--hb-" + key.replace("_", "-")


def mode_fields(section: str) -> dict[str, Field]:
    """The keys the kinds configured by `section` add to it."""
    out: dict[str, Field] = {}
    for k in MODE_KINDS:
        if k.section == section:
            out.update(k.fields)
    return out


def model_for(mode: str, w: Workload) -> dict[str, Any] | None:
    """The analytic model of `mode` on workload `w` (None when its kind has none). Processes without a closed
    form must be mapped to Poisson by the caller, which labels the result so."""
    model = kind_of(mode).model
    return None if model is None else model(w)
