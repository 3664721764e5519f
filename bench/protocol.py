"""The wire protocol shared by the producer, the receiver, the pollers and the orchestrator.

Paths, header names and the JSON shape of a change live here so that every process
agrees on them without importing one another. Mode names and what they mean are `bench.modes`.
"""

from __future__ import annotations

import json
from typing import Any, TypedDict
from urllib.parse import quote

__all__ = [
    "SCHEMES", "ATTACK_KINDS", "LONG_WAIT_MAX_S",
    "ATTACK_NEEDS", "ChangeEvent", "change_event", "encode_event", "encode_thin_event", "event_path", "etag_for",
    "msg_id_for", "READY_PREFIX",
]

# Webhook signing schemes (bench.signing implements them).
SCHEMES = ("standard", "github", "stripe")

# Hostile request kinds of the attack load, and the receiver defence a kind needs switched on.
ATTACK_KINDS = ("forged_signature", "wrong_secret", "replayed_timestamp", "replayed_id", "tampered_body",
                "oversized", "malformed_json", "wrong_content_type", "missing_headers", "wrong_basic_auth",
                "wrong_path_token")
ATTACK_NEEDS = {"wrong_basic_auth": "basic_auth", "wrong_path_token": "path_token"}

# Routes: every path the producer and the receiver serve is declared here (tests/test_protocol_routes.py checks).
# Both servers
PATH_HEALTH = "/health"
PATH_STATS = "/stats"
# Producer
PATH_RESOURCE = "/resources/{id}"
# ?after=SEQ&limit=N[&wait=S]. wait (long polling): a plain number of seconds in (0, LONG_WAIT_MAX_S], e.g. wait=30
# or wait=0.25 (not "30s"). With nothing past `after`, the answer is held until a change is committed, S seconds
# pass, or the producer stops; then it is what the same poll without wait answers (an empty page on timeout).
PATH_CHANGES = "/changes"
PATH_STREAM = "/changes/stream"  # Server-Sent Events: id = seq, Last-Event-ID resumes, heartbeat comments
PATH_EVENT = "/events/{change_id}"  # a thin event's fetch: the change it names
PATH_SUBSCRIPTIONS = "/subscriptions"
PATH_SUBSCRIPTION = "/subscriptions/{id}"
PATH_CONTROL_MARK = "/control/mark"  # POST {"name": "..."}: snapshot counters (window start/end)
# POST {"running": false}: stop the change generator; {"apply": N}: make N changes at once (1..1000, off schedule)
PATH_CONTROL_CHANGES = "/control/changes"

# Receiver: /hooks/<endpoint name, or its secret token when receiver.path_token is on>[/<forced status>]
PATH_HOOKS = "/hooks"
PATH_RECEIVER_START = "/control/start"  # POST {"t0_ns": N}: the window starts; fault windows count from here
PATH_INSPECT = "/inspect"  # the inspector page
PATH_INSPECT_JSON = "/inspect.json"
# Every other path, /hooks... included, goes through the webhook pipeline: a hostile request to any path is audited
PATH_RECEIVER_ANY = "/{tail:.*}"
ATTACK_LABEL_HEADER = "x-hookbench-attack"  # set by the attack load, kept in the audit log, never used to decide
LONG_WAIT_MAX_S = 300.0  # the longest `wait` of a long poll the producer accepts
# Set by hookbench's own consumers on producer requests: the mode the producer charges the request to (a
# measurement label, never a decision; not counted in the request's bytes). Without it a route's first kind pays.
MODE_LABEL_HEADER = "x-hookbench-mode"
# Sent by the producer on GET /changes while loaded (polling.advise_interval): seconds before the next poll.
# An adaptive poller waits at least that long after the answer (as it does for Retry-After on a 429/503).
POLL_INTERVAL_HEADER = "X-Poll-Interval"

# Standard Webhooks headers
H_ID = "webhook-id"
H_TIMESTAMP = "webhook-timestamp"
H_SIGNATURE = "webhook-signature"

EVENT_TYPE = "resource.changed"

# A server process prints this line on stdout once it listens: "HOOKBENCH-READY port=12345"
READY_PREFIX = "HOOKBENCH-READY"


class ChangeEvent(TypedDict):
    change_id: str
    resource_id: int
    seq: int
    version: int
    t_change_ns: int


def change_event(change_id: str, resource_id: int, seq: int, version: int, t_change_ns: int) -> ChangeEvent:
    return {"change_id": change_id, "resource_id": resource_id, "seq": seq, "version": version,
            "t_change_ns": t_change_ns}


def encode_event(change: ChangeEvent) -> str:
    """The exact JSON text POSTed for one change (what the signature covers).

    `id` is the message id (as in webhook-id), so schemes whose headers carry no id (Stripe style)
    can still be deduplicated.
    """
    body: dict[str, Any] = {"id": msg_id_for(change["change_id"]), "type": EVENT_TYPE, "data": change}
    return json.dumps(body, separators=(",", ":"))


def event_path(change_id: str) -> str:
    """The path (PATH_EVENT) at which the producer serves one change: what a thin event points to."""
    return PATH_EVENT.replace("{change_id}", quote(change_id, safe=""))


def encode_thin_event(change: ChangeEvent) -> str:
    """The JSON POSTed to a thin subscription: ids and a pointer, none of the change's state.

    After Stripe's thin events, which carry the id of the object that changed and the relative URL to fetch it
    from, and leave the fetch to the consumer (https://docs.stripe.com/event-destinations#benefits-of-thin-events).
    Like Stripe's `related_object.url`, `url` is a path on the producer's API: the consumer resolves it against
    the API base it was configured with, never against a host the body names. `data.change_id` is where every
    event body keeps it, so the receiver's checks and dedup treat thin and full events alike.
    """
    data = {"change_id": change["change_id"], "resource_id": change["resource_id"],
            "url": event_path(change["change_id"])}
    body: dict[str, Any] = {"id": msg_id_for(change["change_id"]), "type": EVENT_TYPE, "data": data}
    return json.dumps(body, separators=(",", ":"))


def etag_for(resource_id: int, version: int) -> str:
    return f'"r{resource_id}-v{version}"'


def msg_id_for(change_id: str) -> str:
    """webhook-id of a change: stable across retries, so the receiver can deduplicate."""
    return f"msg_{change_id}"
