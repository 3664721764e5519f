"""Locust attack load: hostile requests against the webhook receiver, interleaved with real deliveries.

Each request tests exactly one defence: the attacker is given every credential (secret, Basic Auth,
path token) except the one its kind gets wrong, so a 2xx means that one defence failed. Replays are
verbatim copies of deliveries the producer really made and the receiver acknowledged: the attacker
reads the producer's delivery records (--hb-captured, its deliveries.jsonl: what a tap on the wire
sees) for the ids answered 2xx at the endpoint it aims at, and rebuilds those bodies from the public
change feed. A change that was never delivered (made before the subscription existed, or still in
flight) is never "replayed": its first copy would rightly be processed. Every request carries the
`x-hookbench-attack: <kind>` label, which the receiver records in its audit log and never uses to decide.

Run by `hookbench run` when a scenario has `[attack] enabled = true`; on its own:

    locust -f scenarios/attack.py --headless -u 4 -r 4 -t 30s --host http://127.0.0.1:RECEIVER \\
        --hb-producer http://127.0.0.1:PRODUCER --hb-captured PRODUCER_RECORDS/deliveries.jsonl \\
        --hb-endpoint webhook --hb-path /hooks/webhook --hb-secret whsec_... --hb-rate 400 --hb-records /tmp/rec
    python scenarios/attack.py     # lists the --hb-* options: `locust --help` cannot (it skips the locustfile)
"""

from __future__ import annotations

import argparse
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

import gevent
import gevent.lock
from locust import FastHttpUser, constant_throughput, events, task
from locust.env import Environment

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench`, `scenarios` importable from any cwd
from bench.protocol import (  # noqa: E402
    ATTACK_KINDS,
    ATTACK_LABEL_HEADER,
    PATH_CHANGES,
    PATH_HOOKS,
    change_event,
    encode_event,
    msg_id_for,
)
from bench.signing import make_scheme, new_secret_for  # noqa: E402
from scenarios._locust_common import (  # noqa: E402
    Option,
    RecordFile,
    add_options,
    checked_values,
    fail_at_init,
    is_worker,
    option_values,
    print_help,
)
from scenarios._wire import attach  # noqa: E402

log = logging.getLogger("hookbench.attack")

# What a receiver with every defence on must answer. A verbatim replay inside the tolerance is
# indistinguishable from a sender's retry, so it gets the duplicate answer (2xx, not processed again).
EXPECTED_STATUS = {
    "forged_signature": 401, "wrong_secret": 401, "replayed_timestamp": 401, "replayed_id": 200,
    "tampered_body": 401, "oversized": 413, "malformed_json": 400, "wrong_content_type": 415,
    "missing_headers": 400, "wrong_basic_auth": 401, "wrong_path_token": 404,
}
REPLAY_AGE_S = 600  # replayed_timestamp: a capture this old is outside any tolerance (<= 300 s)

OPTIONS: dict[str, Option] = {
    "--hb-producer": (str, "", "Producer base URL (replayed bodies are rebuilt from its change feed)"),
    "--hb-captured": (str, "", "The producer's deliveries.jsonl (hookbench serve producer --records DIR writes "
                               "DIR/deliveries.jsonl): only deliveries acknowledged 2xx are replayed"),
    "--hb-endpoint": (str, "", "The subscription name whose deliveries are replayed (empty: any)"),
    "--hb-path": (str, PATH_HOOKS, f"Receiver endpoint path, e.g. {PATH_HOOKS}/<token>"),
    "--hb-scheme": (str, "standard", "Signing scheme: standard, github, stripe"),
    "--hb-secret": (str, "", "The endpoint's secret (the attacker is an insider)"),
    "--hb-basic-auth": (str, "", "user:password of the endpoint, if any"),
    "--hb-max-body": (int, 1 << 20, "Receiver body limit in bytes"),
    "--hb-rate": (float, 400.0, "Hostile requests per second, all users"),
    "--hb-kinds": (str, ",".join(ATTACK_KINDS), "Comma list of attack kinds"),
    "--hb-records": (str, "", "Directory for attack-<pid>.jsonl (empty: none)"),
}


def _kinds(text: str) -> list[str]:
    return [k for k in text.split(",") if k]


RULES = [
    ("--hb-kinds", lambda s: bool(_kinds(s)) and set(_kinds(s)) <= set(ATTACK_KINDS),
     f"a non-empty comma list of {', '.join(ATTACK_KINDS)}"),
    ("--hb-secret", bool, "the endpoint's secret (required)"),
]
# Checked across options: a replay needs both the feed and the delivery records.
REPLAY_NEEDS = ("--hb-producer", "--hb-captured")

CFG = argparse.Namespace(**option_values(None, OPTIONS), kinds=list(ATTACK_KINDS))
_rows = RecordFile("attack")


CAPTURE_REFRESH_S = 1.0  # how often the delivery records and the feed are read again
CAPTURE_KEEP = 200  # replays cycle over the newest acknowledged deliveries


class _Shared:
    """Per-process state: acknowledged deliveries to replay, and how far the records and the feed were read."""

    captured: list[dict[str, Any]] = []
    captured_at = float("-inf")
    acked: set[str] = set()  # change ids the receiver answered 2xx, not yet found in the feed
    records_offset = 0  # bytes of --hb-captured read so far (whole lines only)
    feed_after = 0  # the feed's seq read so far
    lock = gevent.lock.BoundedSemaphore()


def _configure(opts: Any) -> list[str]:
    """Check the --hb-* options; if valid, apply them to CFG. Returns the errors."""
    values, errors = checked_values(opts, OPTIONS, RULES)
    if not errors and "replayed_id" in _kinds(values["hb_kinds"]):
        errors += [f"{flag}: required for the replayed_id kind (a replay copies a delivery the producer made and "
                   f"the receiver acknowledged)" for flag in REPLAY_NEEDS if not values[flag[2:].replace("-", "_")]]
    if errors:
        return errors
    vars(CFG).update(values, kinds=_kinds(values["hb_kinds"]))
    _rows.directory = values["hb_records"]
    return []


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    add_options(parser, OPTIONS, secret=("--hb-secret",))


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    if errors := attach(environment, _rows):  # on a Locust worker the rows go to the master (scenarios/_wire.py)
        fail_at_init("attack", errors)
    if is_worker(environment):
        return  # a worker runs with the master's options (--hb-secret included), sent with the first spawn
    if errors := _configure(environment.parsed_options):
        fail_at_init("attack", errors)


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_: Any) -> None:
    # Re-applied here: the web UI and the master may have changed the options since init.
    if errors := _configure(environment.parsed_options):
        log.error("attack: not starting: %s", "; ".join(errors))
        if environment.runner is not None:
            gevent.spawn(environment.runner.stop)  # start() goes on spawning after this event: stop after it


@events.quitting.add_listener
@events.test_stop.add_listener
def _close_rows(**_: Any) -> None:
    _rows.close()  # a row written after this reopens the file: nothing is lost


def _acknowledged(path: str, endpoint: str) -> None:
    """Add to _Shared.acked the change ids of the deliveries newly recorded in `path` as answered 2xx."""
    try:
        with open(path, "rb") as fh:
            fh.seek(_Shared.records_offset)
            data = fh.read()
    except FileNotFoundError:
        return  # the producer has recorded no delivery yet
    end = data.rfind(b"\n") + 1  # a line still being written is read next time, whole
    _Shared.records_offset += end
    for line in data[:end].splitlines():
        try:
            row = json.loads(line)
            if 200 <= row["status"] < 300 and (not endpoint or row["mode"] == endpoint):
                _Shared.acked.add(row["change_id"])
        except (ValueError, KeyError, TypeError):
            continue  # a torn line of a killed producer (it appends after it)


def _captured() -> list[dict[str, Any]]:
    """The newest acknowledged deliveries as the change events they carried, refreshed every CAPTURE_REFRESH_S.
    One user refreshes at a time; the others wait for it rather than skip their turn with nothing to replay."""
    with _Shared.lock:
        if time.monotonic() - _Shared.captured_at >= CAPTURE_REFRESH_S:
            _refresh()
            _Shared.captured_at = time.monotonic()
    return _Shared.captured


def _refresh() -> None:
    try:
        _acknowledged(CFG.hb_captured, CFG.hb_endpoint)
        while _Shared.acked:  # the feed in pages, from where the last read stopped
            req = urllib.request.Request(f"{CFG.hb_producer}{PATH_CHANGES}?after={_Shared.feed_after}&limit=1000",
                                         headers={ATTACK_LABEL_HEADER: "capture"})  # not the consumer's polling
            with urllib.request.urlopen(req, timeout=2) as r:
                changes = json.loads(r.read())["changes"]
            if not changes:
                break
            _Shared.feed_after = changes[-1]["seq"]
            for c in changes:
                if c["change_id"] in _Shared.acked:
                    _Shared.acked.discard(c["change_id"])
                    _Shared.captured.append(c)
        del _Shared.captured[:-CAPTURE_KEEP]
    except (OSError, ValueError, KeyError) as e:
        log.warning("cannot read the delivery records or the change feed: %s", e)


class Attacker(FastHttpUser):
    """Sends the configured kinds in turn, at --hb-rate / users requests per second."""

    insecure = True  # an attacker does not care whose certificate it is

    def wait_time(self) -> float:
        return self._pace(self)

    def on_start(self) -> None:
        users = getattr(self.environment.parsed_options, "num_users", None)
        self._pace = constant_throughput(CFG.hb_rate / max(1, users or 1))
        self.scheme = make_scheme(CFG.hb_scheme, [CFG.hb_secret])
        self.other = make_scheme(CFG.hb_scheme, [new_secret_for(CFG.hb_scheme)])
        self.turn = itertools.cycle(CFG.kinds)
        self.serial = itertools.count()
        user, _, password = CFG.hb_basic_auth.partition(":")
        self.auth = ("Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()) if user else None

    def _event(self) -> tuple[str, bytes]:
        n = next(self.serial)
        change = change_event(f"atk{os.getpid()}-{id(self)}-{n}", 0, 0, 1, time.time_ns())
        return msg_id_for(change["change_id"]), encode_event(change).encode()

    def _request(self, kind: str) -> tuple[str, bytes, dict[str, str]] | None:
        """(path, body, headers) of one hostile request of `kind`."""
        path, now = CFG.hb_path, int(time.time())
        msg_id, body = self._event()
        headers = {"content-type": "application/json"}
        if self.auth:
            headers["authorization"] = self.auth
        if kind == "replayed_id":
            captured = _captured()
            if not captured:
                return None  # nothing delivered and acknowledged yet to replay
            c = captured[next(self.serial) % len(captured)]
            body = encode_event(change_event(c["change_id"], c["resource_id"], c["seq"], c["version"],
                                             c["t_change_ns"])).encode()
            msg_id = msg_id_for(c["change_id"])
            return path, body, {**headers, **self.scheme.sign(msg_id, body, now)}
        if kind == "oversized":
            body = body[:-1] + b',"pad":"' + b"x" * (CFG.hb_max_body + 1024) + b'"}'
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
            return f"{PATH_HOOKS}/{os.urandom(16).hex()}", body, signed
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
        _rows.write({"kind": kind, "t_send_ns": t_send, "t_recv_ns": time.time_ns(), "status": status,
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


if __name__ == "__main__":  # `locust --help` never imports the locustfile (Locust issue #2917): list them here
    print_help("scenarios/attack.py", __doc__ or "", OPTIONS)
