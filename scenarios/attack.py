"""Locust attack load: hostile requests against the webhook receiver, interleaved with real deliveries.

Each request tests exactly one defence: the attacker is given every credential (secret, Basic Auth,
path token) except the one its kind gets wrong, so a 2xx means that one defence failed. Replays are
verbatim copies of deliveries the producer really made (rebuilt from its public change feed, which is
what a captured request looks like). Every request carries the `x-hookbench-attack: <kind>` label,
which the receiver records in its audit log and never uses to decide.

Run by `hookbench run` when a scenario has `[attack] enabled = true`; on its own:

    locust -f scenarios/attack.py --headless -u 4 -r 4 -t 30s --host http://127.0.0.1:RECEIVER \\
        --hb-producer http://127.0.0.1:PRODUCER --hb-path /hooks/webhook --hb-secret whsec_... \\
        --hb-rate 400 --hb-records /tmp/rec
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import os
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from locust import FastHttpUser, constant_throughput, events, task

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench` importable from any cwd
from bench.protocol import ATTACK_KINDS, ATTACK_LABEL_HEADER, change_event, encode_event, msg_id_for  # noqa: E402
from bench.records import JsonlWriter  # noqa: E402
from bench.signing import make_scheme, new_secret_for  # noqa: E402

log = logging.getLogger("hookbench.attack")

# What a receiver with every defence on must answer. A verbatim replay inside the tolerance is
# indistinguishable from a sender's retry, so it gets the duplicate answer (2xx, not processed again).
EXPECTED_STATUS = {
    "forged_signature": 401, "wrong_secret": 401, "replayed_timestamp": 401, "replayed_id": 200,
    "tampered_body": 401, "oversized": 413, "malformed_json": 400, "wrong_content_type": 415,
    "missing_headers": 400, "wrong_basic_auth": 401, "wrong_path_token": 404,
}
REPLAY_AGE_S = 600  # replayed_timestamp: a capture this old is outside any tolerance (<= 300 s)


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--hb-producer", default="", help="Producer base URL (its change feed is replayed)")
    parser.add_argument("--hb-path", default="/hooks", help="Receiver endpoint path, e.g. /hooks/<token>")
    parser.add_argument("--hb-scheme", default="standard", help="Signing scheme: standard, github, stripe")
    parser.add_argument("--hb-secret", default="", help="The endpoint's secret (the attacker is an insider)")
    parser.add_argument("--hb-basic-auth", default="", help="user:password of the endpoint, if any")
    parser.add_argument("--hb-max-body", type=int, default=1 << 20, help="Receiver body limit in bytes")
    parser.add_argument("--hb-rate", type=float, default=400.0, help="Hostile requests per second, all users")
    parser.add_argument("--hb-kinds", default=",".join(ATTACK_KINDS), help="Comma list of attack kinds")
    parser.add_argument("--hb-records", default="", help="Directory for attack-<pid>.jsonl (empty: none)")


class _Shared:
    """Per-process state: options, the record writer, and captured deliveries to replay."""

    writer: JsonlWriter | None = None
    captured: list[dict[str, Any]] = []
    captured_at = 0.0
    kinds: list[str] = list(ATTACK_KINDS)


@events.test_start.add_listener
def _start(environment: Any, **_: Any) -> None:
    o = environment.parsed_options
    kinds = [k for k in o.hb_kinds.split(",") if k]
    bad = [k for k in kinds if k not in ATTACK_KINDS]
    if bad or not o.hb_secret:
        log.error("--hb-kinds %s: unknown kinds %s (known: %s); --hb-secret is required",
                  o.hb_kinds, bad, ", ".join(ATTACK_KINDS))
        sys.exit(2)
    _Shared.kinds = kinds
    if o.hb_records:
        _Shared.writer = JsonlWriter(Path(o.hb_records) / f"attack-{os.getpid()}.jsonl")


@events.quitting.add_listener
@events.test_stop.add_listener
def _stop(**_: Any) -> None:
    if _Shared.writer is not None:
        _Shared.writer.close()
        _Shared.writer = None


def _captured(producer: str) -> list[dict[str, Any]]:
    """Recent real changes (older than 2 s, so their deliveries have arrived), refreshed every 2 s."""
    if producer and time.monotonic() - _Shared.captured_at > 2.0:
        _Shared.captured_at = time.monotonic()
        try:
            req = urllib.request.Request(f"{producer}/changes?after=0&limit=10000",
                                         headers={ATTACK_LABEL_HEADER: "capture"})  # not the consumer's polling
            with urllib.request.urlopen(req, timeout=2) as r:
                changes = json.loads(r.read())["changes"]
            cutoff = time.time_ns() - 2_000_000_000
            _Shared.captured = [c for c in changes if c["t_change_ns"] < cutoff][-200:]
        except (OSError, ValueError, KeyError) as e:
            log.warning("cannot read the producer's change feed: %s", e)
    return _Shared.captured


class Attacker(FastHttpUser):
    """Sends the configured kinds in turn, at --hb-rate / users requests per second."""

    insecure = True  # an attacker does not care whose certificate it is

    def wait_time(self) -> float:
        return self._pace(self)

    def on_start(self) -> None:
        o = self.environment.parsed_options
        self.o = o
        self._pace = constant_throughput(o.hb_rate / max(1, o.num_users or 1))
        self.scheme = make_scheme(o.hb_scheme, [o.hb_secret])
        self.other = make_scheme(o.hb_scheme, [new_secret_for(o.hb_scheme)])
        self.turn = itertools.cycle(_Shared.kinds)
        self.serial = itertools.count()
        user, _, password = o.hb_basic_auth.partition(":")
        self.auth = ("Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()) if user else None

    def _event(self) -> tuple[str, bytes]:
        n = next(self.serial)
        change = change_event(f"atk{os.getpid()}-{id(self)}-{n}", 0, 0, 1, time.time_ns())
        return msg_id_for(change["change_id"]), encode_event(change).encode()

    def _request(self, kind: str) -> tuple[str, bytes, dict[str, str]] | None:
        """(path, body, headers) of one hostile request of `kind`."""
        path, now = self.o.hb_path, int(time.time())
        msg_id, body = self._event()
        headers = {"content-type": "application/json"}
        if self.auth:
            headers["authorization"] = self.auth
        if kind == "replayed_id":
            captured = _captured(self.o.hb_producer)
            if not captured:
                return None  # nothing delivered yet to replay
            c = captured[next(self.serial) % len(captured)]
            body = encode_event(change_event(c["change_id"], c["resource_id"], c["seq"], c["version"],
                                             c["t_change_ns"])).encode()
            msg_id = msg_id_for(c["change_id"])
            return path, body, {**headers, **self.scheme.sign(msg_id, body, now)}
        if kind == "oversized":
            body = body[:-1] + b',"pad":"' + b"x" * (self.o.hb_max_body + 1024) + b'"}'
        elif kind == "malformed_json":
            body = body[: len(body) // 2]
        signed = {**headers, **self.scheme.sign(msg_id, body, now)}
        if kind == "forged_signature":
            return path, body, {**signed, **_forge(signed)}
        if kind == "wrong_secret":
            return path, body, {**headers, **self.other.sign(msg_id, body, now)}
        if kind == "replayed_timestamp":
            return path, body, {**headers, **self.scheme.sign(msg_id, body, now - REPLAY_AGE_S)}
        if kind == "tampered_body":
            return path, body.replace(b'"resource_id":0', b'"resource_id":1'), signed
        if kind == "wrong_content_type":
            return path, body, {**signed, "content-type": "text/plain"}
        if kind == "missing_headers":
            return path, body, headers
        if kind == "wrong_basic_auth":
            return path, body, {**signed, "authorization": "Basic " + base64.b64encode(b"intruder:guess").decode()}
        if kind == "wrong_path_token":
            return "/hooks/" + os.urandom(16).hex(), body, signed
        return path, body, signed  # oversized, malformed_json: correctly signed, wrong in content

    @task
    def attack(self) -> None:
        kind = next(self.turn)
        req = self._request(kind)
        if req is None:
            return
        path, body, headers = req
        headers[ATTACK_LABEL_HEADER] = kind
        t_send = time.time_ns()
        with self.client.post(path, data=body, headers=headers, name=f"attack:{kind}",
                              catch_response=True) as resp:
            status = resp.status_code or 0
            # Locust's success = the receiver gave the answer a defended receiver must give
            if status == EXPECTED_STATUS[kind]:
                resp.success()
            else:
                resp.failure(f"{kind}: got {status}, expected {EXPECTED_STATUS[kind]}")
        if _Shared.writer is not None:
            _Shared.writer.write({"kind": kind, "t_send_ns": t_send, "t_recv_ns": time.time_ns(), "status": status,
                                  "expected_status": EXPECTED_STATUS[kind], "bytes": len(body)})


def _forge(real: dict[str, str]) -> dict[str, str]:
    """The signature header of `real` with its bytes replaced by random ones of the same shape."""
    out = {}
    for k, v in real.items():
        low = k.lower()
        if low == "webhook-signature":
            out[k] = "v1," + base64.b64encode(os.urandom(32)).decode()
        elif low == "x-hub-signature-256":
            out[k] = "sha256=" + os.urandom(32).hex()
        elif low == "stripe-signature":
            t = v.split(",")[0]
            out[k] = f"{t},v1={os.urandom(32).hex()}"
    return out
