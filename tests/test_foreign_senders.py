"""Any sender's webhook: deliveries signed by senders written independently of bench.signing (the standardwebhooks
package's `Webhook.sign`, and HMAC written here for GitHub and Stripe) with random JSON bodies, against a real
`hookbench serve receiver` per scheme; a thin endpoint does not fetch for them; the analysis keeps them out of
every mode and counts them in summary.json's security.foreign."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import aiohttp
import pandas as pd
import pytest
from standardwebhooks.webhooks import Webhook
from support import changes_db, read_jsonl, start_server, stop_server, wait_until, write_jsonl
from test_producer import async_test
from test_thin import SECRET as THIN_SECRET
from test_thin import _serving, _setup, _stub_producer

from bench.analysis.summary import Window, summarize
from bench.analysis.tables import load_records
from bench.config import load_scenario
from bench.protocol import change_event, encode_event, encode_thin_event, msg_id_for
from servers.receiver import create_app as create_receiver
from servers.receiver.app import RECEIVER

REPO = Path(__file__).resolve().parents[1]
SEED = 20261205
BODIES = 12  # random bodies per scheme

# --- the independent senders: nothing from bench.signing ----------------------------------------------------

Signer = Callable[[str, bytes, int], dict[str, str]]  # (id, body, unix time) -> headers; id "" = send none


def _hex_hmac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def standard_sender(secret: str) -> Signer:
    """The standardwebhooks package signs; the headers are the spec's three."""
    wh = Webhook(secret)

    def sign(msg_id: str, body: bytes, ts: int) -> dict[str, str]:
        signature = wh.sign(msg_id, datetime.fromtimestamp(ts, tz=timezone.utc), body)
        return {"webhook-timestamp": str(ts), "webhook-signature": signature,
                **({"webhook-id": msg_id} if msg_id else {})}

    return sign


def github_sender(secret: str) -> Signer:
    """X-Hub-Signature-256: sha256=hex(HMAC-SHA256(secret, body)); the id is X-GitHub-Delivery (not signed)."""

    def sign(msg_id: str, body: bytes, ts: int) -> dict[str, str]:
        return {"X-Hub-Signature-256": "sha256=" + _hex_hmac(secret, body), "X-GitHub-Event": "push",
                **({"X-GitHub-Delivery": msg_id} if msg_id else {})}

    return sign


def stripe_sender(secret: str) -> Signer:
    """Stripe-Signature: t=TS,v1=hex(HMAC-SHA256(secret, "TS." + body)); the id is the body's own "id"."""

    def sign(msg_id: str, body: bytes, ts: int) -> dict[str, str]:
        return {"Stripe-Signature": f"t={ts},v1={_hex_hmac(secret, f'{ts}.'.encode() + body)}"}

    return sign


SENDERS: dict[str, tuple[str, Callable[[str], Signer]]] = {
    "standard": ("whsec_" + base64.b64encode(bytes(range(7, 31))).decode(), standard_sender),
    "github": ("a GitHub webhook secret, typed by a person", github_sender),
    "stripe": ("whsec_0123456789abcdef0123456789abcdef", stripe_sender),
}


def test_the_hand_written_github_signer_matches_githubs_published_vector() -> None:
    # docs.github.com, "Validating webhook deliveries", "Testing the webhook payload validation"
    headers = github_sender("It's a Secret to Everybody")("d1", b"Hello, World!", 0)
    assert headers["X-Hub-Signature-256"] == \
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


# --- random JSON -----------------------------------------------------------------------------------------

_ALPHABET = "abcXYZ019 _-\"\\/\n\t\u00e9\u00df\u4e2d\u6587\u0416\U0001f600\U0001d11e\u2028\u0000"


def _text(rng: random.Random) -> str:
    return "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, 12)))


def _value(rng: random.Random, depth: int) -> Any:
    roll = rng.random() if depth < 4 else rng.random() * 0.6
    if roll < 0.15:
        return _text(rng)
    if roll < 0.3:
        return rng.choice([0, -1, 2**53 + 1, -(2**63), rng.randint(-10**9, 10**9)])
    if roll < 0.4:
        return rng.choice([0.5, -1e-300, 1.7976931348623157e308, rng.uniform(-1e6, 1e6)])
    if roll < 0.6:
        return rng.choice([True, False, None])
    if roll < 0.8:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {_text(rng): _value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def random_body(rng: random.Random, *, with_id: str | None) -> bytes:
    """A JSON text: an object (the usual event; with a top-level "id" when `with_id`), or now and then any value."""
    if with_id is None and rng.random() < 0.25:
        value = _value(rng, 1)
    else:
        value = {_text(rng): _value(rng, 1) for _ in range(rng.randint(0, 5))}
        if with_id is not None:
            value["id"] = with_id
    return json.dumps(value, ensure_ascii=rng.random() < 0.5).encode()


# --- a real receiver per scheme --------------------------------------------------------------------------

def post(base: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    req = urllib.request.Request(base + "/hooks", data=body, method="POST",
                                 headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def get(base: str, path: str) -> str:
    with urllib.request.urlopen(base + path, timeout=10) as resp:
        return resp.read().decode()


@pytest.mark.integration
@pytest.mark.parametrize("scheme", sorted(SENDERS))
def test_independently_signed_deliveries_of_any_json_are_accepted(scheme: str, tmp_path: Path) -> None:
    secret, make_sender = SENDERS[scheme]
    sign = make_sender(secret)
    rng = random.Random(f"{SEED}-{scheme}")
    records = tmp_path / "records"
    proc, port = start_server(["serve", "receiver", "--port", "0", "--scheme", scheme, "--secret", secret,
                               "--records", str(records)])
    base = f"http://127.0.0.1:{port}"
    try:
        now = int(time.time())
        sent: list[tuple[str, bytes, dict[str, str]]] = []
        for i in range(BODIES):
            msg_id = f"evt_{scheme}_{i}_{rng.getrandbits(32):08x}"
            body = random_body(rng, with_id=msg_id if scheme == "stripe" else None)
            sent.append((msg_id, body, sign(msg_id, body, now)))
        answers = [post(base, body, headers) for _, body, headers in sent]
        assert [status for status, _ in answers] == [204] * BODIES, answers

        _, dup_body, dup_headers = sent[0]
        assert post(base, dup_body, dup_headers) == (200, "duplicate: already processed")  # as our own duplicates

        # hookbench's own change event through the same sender: accepted, and not foreign
        own = encode_event(change_event("own1", 1, 1, 1, time.time_ns())).encode()
        assert post(base, own, sign(msg_id_for("own1"), own, now))[0] == 204

        body = random_body(rng, with_id="evt_bad" if scheme == "stripe" else None)
        # the signature's last four characters changed: still well-formed, no longer matching
        bad = {k: v[:-4] + ("1111" if v.endswith("0000") else "0000") if "signature" in k.lower() else v
               for k, v in sign("evt_bad", body, now).items()}
        assert post(base, body, bad)[0] == 401

        not_json = b'{"id": "evt_nj", "half": '
        status, reason = post(base, not_json, sign("evt_nj", not_json, now))
        assert status == 400 and "not JSON" in reason

        no_id = json.dumps({"object": "event", "data": {"n": 1}}).encode()
        status, reason = post(base, no_id, sign("", no_id, now))
        id_named = {"standard": "webhook-id", "github": "x-github-delivery", "stripe": '"id"'}[scheme]
        assert status == 400 and id_named in reason.lower() and "dedup" in reason, reason

        if scheme != "stripe":  # a foreign event needs no particular shape: a bare JSON value will do
            bare = b"[1, \"two\", {\"3\": null}]"
            assert post(base, bare, sign("evt_bare", bare, now))[0] == 204

        stats = json.loads(get(base, "/stats"))
        inspect = json.loads(get(base, "/inspect.json"))
        page = get(base, "/inspect")
    finally:
        stop_server(proc)

    foreign_ok = BODIES + (scheme != "stripe")
    assert (stats["foreign_accepted"], stats["foreign_duplicate"]) == (foreign_ok, 1)
    assert (stats["accepted"], stats["duplicate"]) == (foreign_ok + 1, 1)  # + our own event
    assert stats["rejected"] == {"400": 2, "401": 1}
    rows = read_jsonl(records / "audit.jsonl")
    by_id = {r["msg_id"]: r for r in rows if r["verdict"] == "accepted"}
    for msg_id, _, _ in sent:
        assert (by_id[msg_id]["foreign"], by_id[msg_id]["change_id"], by_id[msg_id]["status"]) == (True, None, 204)
    assert (by_id[msg_id_for("own1")]["foreign"], by_id[msg_id_for("own1")]["change_id"]) == (False, "own1")
    assert [r["foreign"] for r in rows if r["verdict"] == "duplicate"] == [True]
    assert all(r["foreign"] is None for r in rows if r["verdict"] == "rejected")  # stopped before the body's shape
    assert sum(1 for r in inspect["requests"] if r["foreign"]) == foreign_ok + 1
    assert page.count("(foreign)") == foreign_ok + 1


# --- a thin endpoint fetches only hookbench's own events -------------------------------------------------

@async_test
async def test_a_thin_endpoint_does_not_fetch_for_a_foreign_event(tmp_path: Path) -> None:
    ch = change_event("ch7", 3, 7, 1, time.time_ns())
    sign = standard_sender(THIN_SECRET)
    async with _stub_producer([200], dict(ch)) as (pbase, labels):
        receiver = create_receiver(_setup(pbase), records_dir=tmp_path)  # endpoint "thin", secret THIN_SECRET
        now = int(time.time())
        async with _serving(receiver) as rbase, aiohttp.ClientSession() as http:
            foreign = json.dumps({"data": {"url": "/events/ch7", "change_id": "ch7"}, "type": "invoice.paid"})
            own = encode_thin_event(ch)
            answers = []
            for msg_id, body in (("evt_foreign", foreign), (msg_id_for("ch7"), own)):
                headers = {"Content-Type": "application/json", **sign(msg_id, body.encode(), now)}
                answers.append((await http.post(rbase + "/hooks/thin", data=body, headers=headers)).status)
            fetcher = receiver[RECEIVER].fetcher
            assert fetcher is not None
            await wait_until(lambda: fetcher.fetched == 1 and not fetcher.tasks, "the own event's fetch")
            stats = await (await http.get(rbase + "/stats")).json()
    assert answers == [204, 204]
    assert fetcher.stats()["requests"] == 1 and labels == ["thin"]  # the foreign event was never fetched
    assert (stats["accepted"], stats["foreign_accepted"]) == (2, 1)


# --- the analysis ---------------------------------------------------------------------------------------

def test_foreign_arrivals_are_counted_apart_never_observed_or_lost(tmp_path: Path) -> None:
    db = changes_db(tmp_path / "p.db", [(1, "ch1", 1_000), (2, "ch2", 2_000)])
    rec = tmp_path / "records"
    rec.mkdir()
    arrival = {"endpoint": "webhook", "status": 204, "method": "POST", "path": "/hooks/webhook"}
    rows = [
        {**arrival, "verdict": "accepted", "t_ns": 1_100, "t_obs_ns": 1_100, "change_id": "ch1", "msg_id": "msg_ch1",
         "foreign": False},
        {**arrival, "verdict": "accepted", "t_ns": 2_100, "t_obs_ns": 2_100, "change_id": "ch2", "msg_id": "msg_ch2"},
        # a foreign sender's events: two accepted, one duplicate, one shed; the last names one of our change ids
        # in a row the receiver never writes (foreign rows carry none): the flag alone keeps it out
        {**arrival, "verdict": "accepted", "t_ns": 1_500, "t_obs_ns": 1_500, "change_id": None, "msg_id": "evt_1",
         "foreign": True},
        {**arrival, "verdict": "duplicate", "status": 200, "t_ns": 1_600, "t_obs_ns": 1_600, "change_id": None,
         "msg_id": "evt_1", "foreign": True},
        {**arrival, "verdict": "error", "status": 503, "t_ns": 1_650, "t_obs_ns": 1_650, "change_id": None,
         "msg_id": "evt_3", "foreign": True},
        {**arrival, "verdict": "accepted", "t_ns": 1_700, "t_obs_ns": 1_700, "change_id": "ch2", "msg_id": "evt_2",
         "foreign": True},
    ]
    write_jsonl(rec / "audit.jsonl", rows)
    delivery = {"mode": "webhook", "subscription_id": "s", "attempt": 1, "status": 204, "outcome": "ok",
                "latency_ms": 0.1, "bytes_out": 100, "bytes_in": 50, "t_done_ns": 0}
    write_jsonl(rec / "deliveries.jsonl", [{**delivery, "change_id": c, "msg_id": f"msg_{c}", "t_send_ns": t}
                                           for c, t in (("ch1", 1_050), ("ch2", 2_050))])

    tables = load_records(rec, db)
    assert list(tables.arrivals["foreign"].astype(object)) == [False, pd.NA, True, True, True, True]
    obs = tables.observations
    assert sorted(zip(obs["mode"], obs["change_id"], obs["t_obs_ns"])) == [("webhook", "ch1", 1_100),
                                                                           ("webhook", "ch2", 2_100)]
    sc = load_scenario(REPO / "scenarios" / "default.toml", ['webhook.subscriptions=[{name="webhook"}]'])
    s = summarize(tables, Window(0, 10_000, 20_000), sc.to_dict(), {}, modes=["webhook"])
    mode = s["modes"]["webhook"]
    assert (mode["observed"], mode["lost"], mode["duplicates"]) == (2, 0, 0)
    assert mode["latency_ms"]["max"] == pytest.approx(100 / 1e6)  # ch2's own arrival, not the foreign one
    assert s["faults"]["modes"]["webhook"]["duplicates_processed"] == 0
    sec = s["security"]
    assert sec["foreign"] == {"accepted": 2, "duplicates": 1, "endpoints": {"webhook": {"accepted": 2,
                                                                                        "duplicates": 1}}}
    assert sec["legit"] == {"sent": 2, "answered_2xx": 2, "accepted_fraction": 1.0}
    assert sec["audit"] == {"rows": 6, "hostile_rows": 0, "legit_rows": 2, "foreign_rows": 4, "complete": True}
