"""bench.signing: Standard Webhooks vectors, the reference package in both directions, tampering, clock tolerance.

The first part tests `Signer` (the one-secret form the servers use); the second the three schemes
behind `make_scheme`: vectors, rotation, the replay window, statuses, configuration errors.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import pickle
import re
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import standardwebhooks.webhooks as swh
from standardwebhooks import Webhook

from bench.protocol import H_ID, H_SIGNATURE, H_TIMESTAMP
from bench.signing import SCHEMES, Scheme, SignatureError, Signer, make_scheme, new_secret, new_secret_for

VECTORS_DIR = Path(__file__).resolve().parents[2] / "shared" / "vectors"
SW_FILE = VECTORS_DIR / "standardwebhooks.json"
GH_FILE = VECTORS_DIR / "github.json"
NO_VECTORS = f"{SW_FILE} not found: the shared test vectors live beside the repository, not in a clone of it"
NO_GH_VECTORS = f"{GH_FILE} not found: the shared test vectors live beside the repository, not in a clone of it"

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_ch42"
BODY = '{"type":"resource.changed","data":{"change_id":"ch42"}}'
B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _load_vectors(path: Path = SW_FILE) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


SW = _load_vectors()
GH = _load_vectors(GH_FILE)


def _v1_vector_params() -> list[Any]:
    if SW is None:
        return [pytest.param(None, id="no-vectors", marks=pytest.mark.skip(reason=NO_VECTORS))]
    return [pytest.param(v, id=v["name"].split(" (")[0])
            for v in SW["vectors"] if v.get("expected_signature", "").startswith("v1,")]


def _negative(name_prefix: str) -> dict[str, Any]:
    if SW is None:
        pytest.skip(NO_VECTORS)
    (vec,) = [v for v in SW["negative_vectors"] if v["name"].startswith(name_prefix)]
    return vec


@pytest.fixture
def clock_at(monkeypatch: pytest.MonkeyPatch):
    """Freeze the verifier's idea of "now" (the package reads datetime.now) at a given unix time."""

    def freeze(ts: int) -> None:
        class Frozen(datetime):
            @classmethod
            def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
                return datetime.fromtimestamp(ts, tz=tz)

        monkeypatch.setattr(swh, "datetime", Frozen)

    return freeze


def fresh_headers(signer: Signer, msg_id: str = MSG_ID, body: str = BODY, ts: int | None = None) -> dict[str, str]:
    """Headers signed now (or at `ts`), so the clock check passes and the signature is what gets judged."""
    return signer.headers(msg_id, body, int(time.time()) if ts is None else ts)


def rejection(signer: Signer, body: bytes, headers: dict[str, str]) -> str:
    """The SignatureError reason; fails the test if verification passes or raises anything else."""
    with pytest.raises(SignatureError) as info:
        signer.verify(body, headers)
    assert type(info.value) is SignatureError
    return str(info.value)


# --- published vectors ----------------------------------------------------------------------------

@pytest.mark.skipif(SW is None, reason=NO_VECTORS)
def test_vector_file_has_v1_vectors() -> None:
    # Guards the parametrised test below against silently running on nothing.
    assert sum(v.get("expected_signature", "").startswith("v1,") for v in SW["vectors"]) >= 2


@pytest.mark.parametrize("vec", _v1_vector_params())
def test_v1_vector_reproduced(vec: dict[str, Any], clock_at) -> None:
    signer = Signer(vec["secret"])
    headers = signer.headers(vec["msg_id"], vec["payload"], vec["timestamp"])
    assert headers == {H_ID: vec["msg_id"], H_TIMESTAMP: str(vec["timestamp"]),
                       H_SIGNATURE: vec["expected_signature"]}
    # And the published signature verifies when "now" is the vector's own time.
    clock_at(vec["timestamp"])
    signer.verify(vec["payload"].encode(), headers)


def test_one_char_off_vector_rejected_as_mismatch(clock_at) -> None:
    vec = _negative("one-char-off")
    signer = Signer(vec["secret"])
    good = signer.headers(vec["msg_id"], vec["payload"], vec["timestamp"])
    bad = {**good, H_SIGNATURE: vec["signature_header"]}
    assert bad != good
    clock_at(vec["timestamp"])  # without this the 2021 timestamp fails first and the signature is never compared
    signer.verify(vec["payload"].encode(), good)
    assert "No matching signature" in rejection(signer, vec["payload"].encode(), bad)


def test_2021_vector_rejected_as_too_old_under_the_real_clock() -> None:
    # What a replay of a captured, correctly signed 2021 message gets today.
    vec = _negative("one-char-off")
    signer = Signer(vec["secret"])
    good = signer.headers(vec["msg_id"], vec["payload"], vec["timestamp"])
    assert "too old" in rejection(signer, vec["payload"].encode(), good)


def garbage_signatures() -> list[str]:
    values = list(_negative("garbage")["signature_header_values"]) if SW is not None else []
    # Shapes the vector file does not list but a client can send: no comma, extra comma, non-ASCII, only blanks.
    return values + ["v1", "v1,a,b", "v1,\u00e9\u00e9\u00e9\u00e9", " ", "v1,====", ","]


@pytest.mark.parametrize("sig", garbage_signatures())
def test_garbage_signature_rejected_with_signature_error(sig: str) -> None:
    signer = Signer(SECRET)
    headers = {**fresh_headers(signer), H_SIGNATURE: sig}  # fresh timestamp: the signature is what gets judged
    rejection(signer, BODY.encode(), headers)


def test_multi_signature_header_accepted_when_any_v1_matches() -> None:
    signer = Signer(SECRET)
    headers = fresh_headers(signer)
    if SW is not None:
        template, join = SW["multi_signature_case"]["header_template"], SW["multi_signature_case"]["join"]
    else:
        filler = "Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
        template, join = [f"v1,{filler}", f"v2,{filler}", "<valid v1 sig>", f"v1,{filler}"], " "
    parts = [headers[H_SIGNATURE] if p == "<valid v1 sig>" else p for p in template]
    signer.verify(BODY.encode(), {**headers, H_SIGNATURE: join.join(parts)})
    # The same header without the valid entry is refused: the acceptance above came from that entry.
    others = join.join(p for p in parts if p != headers[H_SIGNATURE])
    assert "No matching signature" in rejection(signer, BODY.encode(), {**headers, H_SIGNATURE: others})


def test_valid_signature_under_another_version_tag_is_ignored() -> None:
    signer = Signer(SECRET)
    headers = fresh_headers(signer)
    for version in ("v2", "v1a", "V1"):
        sig = version + headers[H_SIGNATURE][2:]
        assert "No matching signature" in rejection(signer, BODY.encode(), {**headers, H_SIGNATURE: sig})


# --- headers and clock ----------------------------------------------------------------------------

@pytest.mark.parametrize("ts", ["hello", "", "nan", "inf", "1e400", "0x10"])
def test_non_numeric_timestamp_rejected(ts: str) -> None:
    signer = Signer(SECRET)
    rejection(signer, BODY.encode(), {**fresh_headers(signer), H_TIMESTAMP: ts})


@pytest.mark.parametrize("missing", [H_ID, H_TIMESTAMP, H_SIGNATURE])
def test_missing_header_rejected(missing: str) -> None:
    signer = Signer(SECRET)
    headers = fresh_headers(signer)
    del headers[missing]
    assert "Missing required headers" in rejection(signer, BODY.encode(), headers)


def test_header_names_are_case_insensitive() -> None:
    signer = Signer(SECRET)
    signer.verify(BODY.encode(), {k.title(): v for k, v in fresh_headers(signer).items()})


@pytest.mark.parametrize(("offset", "reason"), [(-301, "too old"), (301, "too new")])
def test_timestamp_outside_tolerance_rejected(offset: int, reason: str) -> None:
    signer = Signer(SECRET)
    headers = fresh_headers(signer, ts=int(time.time()) + offset)  # correctly signed: only the time is wrong
    assert reason in rejection(signer, BODY.encode(), headers)


@pytest.mark.parametrize("offset", [-299, 299])
def test_timestamp_inside_tolerance_accepted(offset: int) -> None:
    signer = Signer(SECRET)
    signer.verify(BODY.encode(), fresh_headers(signer, ts=int(time.time()) + offset))


# --- the reference package, both directions ------------------------------------------------------

def test_signer_headers_accepted_by_reference_package() -> None:
    secret = new_secret()
    headers = Signer(secret).headers(MSG_ID, BODY, int(time.time()))
    assert Webhook(secret).verify(BODY.encode(), headers) == json.loads(BODY)
    with pytest.raises(swh.WebhookVerificationError):
        Webhook(new_secret()).verify(BODY.encode(), headers)


def test_reference_package_signature_accepted_by_signer() -> None:
    secret = new_secret()
    ts = int(time.time())
    sig = Webhook(secret).sign(MSG_ID, datetime.fromtimestamp(ts, tz=timezone.utc), BODY)
    headers = {H_ID: MSG_ID, H_TIMESTAMP: str(ts), H_SIGNATURE: sig}
    Signer(secret).verify(BODY.encode(), headers)
    rejection(Signer(new_secret()), BODY.encode(), headers)


def test_new_secret_is_a_usable_standard_secret() -> None:
    a, b = new_secret(), new_secret()
    assert a != b and a.startswith("whsec_")
    assert len(base64.b64decode(a.removeprefix("whsec_"), validate=True)) == 24


# --- tampering: every single-byte change -----------------------------------------------------------

def test_any_changed_body_byte_rejected() -> None:
    signer = Signer(SECRET)
    headers = fresh_headers(signer)
    raw = BODY.encode()
    for i in range(len(raw)):
        for new in {raw[i] ^ 0x01, raw[i] ^ 0x20, 0xFF}:  # a neighbour, a case flip, invalid UTF-8
            tampered = raw[:i] + bytes([new]) + raw[i + 1:]
            assert tampered != raw
            rejection(signer, tampered, headers)


def test_any_changed_id_char_rejected() -> None:
    signer = Signer(SECRET)
    headers = fresh_headers(signer)
    msg_id = headers[H_ID]
    for i in range(len(msg_id)):
        for new in {chr(ord(msg_id[i]) ^ 0x01), ".", "_"} - {msg_id[i]}:
            tampered = msg_id[:i] + new + msg_id[i + 1:]
            assert "No matching signature" in rejection(signer, BODY.encode(), {**headers, H_ID: tampered})


def test_any_changed_timestamp_char_rejected() -> None:
    signer = Signer(SECRET)
    headers = fresh_headers(signer)
    ts = headers[H_TIMESTAMP]
    for i in range(len(ts)):
        for new in set("0123456789. +-x") - {ts[i]}:
            tampered = ts[:i] + new + ts[i + 1:]
            rejection(signer, BODY.encode(), {**headers, H_TIMESTAMP: tampered})
    # A last-digit change stays within the tolerance, so it is the signature that refuses it.
    nudged = str(int(ts) + 1)
    assert "No matching signature" in rejection(signer, BODY.encode(), {**headers, H_TIMESTAMP: nudged})


def test_any_changed_signature_char_rejected() -> None:
    # Also the 3 spellings that decode to the same digest (spare bits of the last base64 character):
    # the package alone accepts those; Signer insists on the canonical text.
    signer = Signer(SECRET)
    headers = fresh_headers(signer)
    sig = headers[H_SIGNATURE]
    for i in range(len(sig)):
        for new in set(B64_ALPHABET + "=, .") - {sig[i]}:
            tampered = sig[:i] + new + sig[i + 1:]
            rejection(signer, BODY.encode(), {**headers, H_SIGNATURE: tampered})


def test_non_canonical_base64_signature_rejected() -> None:
    signer = Signer(SECRET)
    headers = fresh_headers(signer)
    sig = headers[H_SIGNATURE]
    last = B64_ALPHABET.index(sig[-2])  # sig ends with "<c>=" for a 32-byte digest
    other = B64_ALPHABET[last ^ 0x01]  # flips a spare bit only
    rejection(signer, BODY.encode(), {**headers, H_SIGNATURE: sig[:-2] + other + "="})


@pytest.mark.parametrize("spelling", ["0{ts}", "{ts}.9", " {ts}", "{ts}e0"])
def test_timestamp_must_be_the_exact_signed_text(spelling: str) -> None:
    signer = Signer(SECRET)
    headers = fresh_headers(signer)
    respelled = spelling.format(ts=headers[H_TIMESTAMP])
    rejection(signer, BODY.encode(), {**headers, H_TIMESTAMP: respelled})


# --- secrets ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("secret", ["", "whsec_", "whsec_====", "whsec_a"])
def test_unusable_secret_raises_value_error_with_help(secret: str) -> None:
    with pytest.raises(ValueError) as info:
        Signer(secret)
    message = str(info.value)
    assert "whsec_" in message and "base64" in message and "new_secret()" in message


@pytest.mark.parametrize("secret", ["not-a-secret!!", "whsec_not base64 at all!"])
def test_junk_secret_raises_value_error(secret: str) -> None:
    with pytest.raises(ValueError):
        Signer(secret)


# --- Signer: what the scheme work added ----------------------------------------------------------------

def test_signer_errors_carry_a_status() -> None:
    signer = Signer(SECRET)
    headers = fresh_headers(signer)
    del headers[H_ID]
    with pytest.raises(SignatureError) as info:
        signer.verify(BODY.encode(), headers)
    assert info.value.status == 400 and info.value.reason == str(info.value) == "Missing required headers"
    with pytest.raises(SignatureError) as info:
        Signer(new_secret()).verify(BODY.encode(), fresh_headers(signer))
    assert info.value.status == 401


def test_signer_rejects_a_timestamp_too_long_for_int() -> None:
    # int() refuses more than 4300 digits with a ValueError; that used to escape verify().
    signer = Signer(SECRET)
    assert "integer" in rejection(signer, BODY.encode(), {**fresh_headers(signer), H_TIMESTAMP: "1" * 5000})


def test_signature_error_keeps_reason_and_status_through_pickle() -> None:
    e = pickle.loads(pickle.dumps(SignatureError("timestamp too old (-612 s, tolerance 300 s)", 401)))
    assert (e.reason, e.status, str(e)) == ("timestamp too old (-612 s, tolerance 300 s)", 401, e.reason)


# === the three schemes behind make_scheme ============================================================

NOW = 1_700_000_000
EVENT_ID = "evt_ch42"
EVENT = b'{"id":"evt_ch42","type":"resource.changed","data":{"change_id":"ch42"}}'
FIXED_SECRETS = {"standard": SECRET, "github": "It's a Secret to Everybody", "stripe": "whsec_test_5f3a"}
REQUIRED = {"standard": [H_ID, H_TIMESTAMP, H_SIGNATURE], "github": ["X-Hub-Signature-256", "X-GitHub-Delivery"],
            "stripe": ["Stripe-Signature"]}
TIMED = ["standard", "stripe"]  # the schemes that sign a timestamp


def expected_id(name: str) -> str:
    return EVENT_ID if name == "stripe" else MSG_ID  # Stripe deduplicates on the event's own id


def refusal(scheme: Scheme, body: bytes, headers: dict[str, str], now: float | None = NOW) -> SignatureError:
    """The SignatureError; fails the test if verification passes or raises anything else."""
    with pytest.raises(SignatureError) as info:
        scheme.verify(body, headers, now=now)
    assert type(info.value) is SignatureError and info.value.status in (400, 401)
    return info.value


def stripe_v1(secret: str, t: int | str, body: bytes) -> str:
    """Stripe's v1, computed here independently of bench.signing."""
    return hmac.new(secret.encode("utf-8"), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


@pytest.mark.parametrize("name", SCHEMES)
def test_scheme_round_trip_and_protocol(name: str) -> None:
    scheme = make_scheme(name, [FIXED_SECRETS[name]])
    assert isinstance(scheme, Scheme) and scheme.name == name
    assert scheme.verify(EVENT, scheme.sign(MSG_ID, EVENT, NOW), now=NOW) == expected_id(name)
    assert FIXED_SECRETS[name] not in repr(scheme)


# --- vectors ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("vec", _v1_vector_params())
def test_standard_scheme_reproduces_v1_vector(vec: dict[str, Any]) -> None:
    scheme = make_scheme("standard", [vec["secret"]])
    body = vec["payload"].encode()
    headers = scheme.sign(vec["msg_id"], body, vec["timestamp"])
    assert headers == {H_ID: vec["msg_id"], H_TIMESTAMP: str(vec["timestamp"]), H_SIGNATURE: vec["expected_signature"]}
    # `now` replaces the package's wall clock: no patching needed, and the real clock would say "too old".
    assert scheme.verify(body, headers, now=vec["timestamp"]) == vec["msg_id"]
    assert "too old" in refusal(scheme, body, headers, now=None).reason


def test_standard_scheme_rejects_one_char_off_vector() -> None:
    vec = _negative("one-char-off")
    headers = {H_ID: vec["msg_id"], H_TIMESTAMP: str(vec["timestamp"]), H_SIGNATURE: vec["signature_header"]}
    error = refusal(make_scheme("standard", [vec["secret"]]), vec["payload"].encode(), headers, now=vec["timestamp"])
    assert error.status == 401 and "no v1 signature matches" in error.reason


def test_standard_scheme_accepts_the_published_multi_signature_header() -> None:
    if SW is None:
        pytest.skip(NO_VECTORS)
    vec = SW["vectors"][0]
    header = SW["multi_signature_case"]["concrete_example_at_ts_1614265330"]
    assert vec["timestamp"] == 1614265330
    headers = {H_ID: vec["msg_id"], H_TIMESTAMP: str(vec["timestamp"]), H_SIGNATURE: header}
    scheme = make_scheme("standard", [vec["secret"]])
    assert scheme.verify(vec["payload"].encode(), headers, now=vec["timestamp"]) == vec["msg_id"]
    without = " ".join(e for e in header.split(" ") if e != vec["expected_signature"])
    error = refusal(scheme, vec["payload"].encode(), {**headers, H_SIGNATURE: without}, now=vec["timestamp"])
    assert error.status == 401


def _github_vector_params() -> list[Any]:
    if GH is None:
        return [pytest.param(None, id="no-vectors", marks=pytest.mark.skip(reason=NO_GH_VECTORS))]
    return [pytest.param(v, id=v["name"]) for v in GH["vectors"]]


@pytest.mark.parametrize("vec", _github_vector_params())
def test_github_scheme_reproduces_vector(vec: dict[str, Any]) -> None:
    scheme = make_scheme("github", [vec["secret"]])
    body = vec["payload"].encode()
    headers = scheme.sign("72d3162e-cc78-11e3-81ab-4c9367dc0958", body, NOW)
    assert headers == {"X-Hub-Signature-256": vec["expected_header"],
                       "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
                       "X-GitHub-Event": "resource.changed"}
    assert vec["expected_header"] == "sha256=" + vec["expected_hex"]
    assert scheme.verify(body, headers) == "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    # Only the canonical text: the same digest in uppercase hex, or without the prefix, is refused.
    for respelled in ("sha256=" + vec["expected_hex"].upper(), vec["expected_hex"], "SHA256=" + vec["expected_hex"]):
        assert refusal(scheme, body, {**headers, "X-Hub-Signature-256": respelled}).status == 400
    assert refusal(scheme, body + b" ", headers).status == 401


def test_github_legacy_sha1_header_alone_is_not_enough() -> None:
    scheme = make_scheme("github", [FIXED_SECRETS["github"]])
    sha1 = "sha1=" + hmac.new(FIXED_SECRETS["github"].encode(), EVENT, hashlib.sha1).hexdigest()
    headers = {"X-Hub-Signature": sha1, "X-GitHub-Delivery": MSG_ID}
    error = refusal(scheme, EVENT, headers)
    assert error.status == 400 and "x-hub-signature-256" in error.reason


def test_github_has_no_replay_window_and_an_unsigned_delivery_id() -> None:
    # What the docstring warns about: a captured request verifies a year later, under any delivery id.
    scheme = make_scheme("github", [FIXED_SECRETS["github"]])
    captured = scheme.sign(MSG_ID, EVENT, NOW)
    assert scheme.verify(EVENT, captured, now=NOW + 365 * 86400) == MSG_ID
    assert scheme.verify(EVENT, {**captured, "X-GitHub-Delivery": "replayed-1"}) == "replayed-1"


# --- Stripe: independent computation and header structure -------------------------------------------

def test_stripe_signature_is_hmac_of_t_dot_body_keyed_by_the_secret_text() -> None:
    secret = FIXED_SECRETS["stripe"]
    headers = make_scheme("stripe", [secret]).sign(MSG_ID, EVENT, NOW)
    assert headers == {"Stripe-Signature": f"t={NOW},v1={stripe_v1(secret, NOW, EVENT)}"}
    # The key is the secret's text, "whsec_" included, not base64-decoded as in Standard Webhooks.
    decoded = base64.b64decode(secret.removeprefix("whsec_") + "==")
    assert stripe_v1(secret, NOW, EVENT) != hmac.new(decoded, f"{NOW}.".encode() + EVENT, hashlib.sha256).hexdigest()


SIG = stripe_v1(FIXED_SECRETS["stripe"], NOW, EVENT)
OTHER = stripe_v1("whsec_someone_else", NOW, EVENT)


@pytest.mark.parametrize("header", [
    "t={t},v1={sig}", "v1={sig},t={t}", "t={t},v0={other},v1={sig}", "t={t},v1={other},v1={sig}",
    "t={t},v1={sig},scheme=v9", "t={t},v0=not-hex,v1={sig}",
])
def test_stripe_header_accepted(header: str) -> None:
    scheme = make_scheme("stripe", [FIXED_SECRETS["stripe"]])
    value = header.format(t=NOW, sig=SIG, other=OTHER)
    assert scheme.verify(EVENT, {"Stripe-Signature": value}, now=NOW) == EVENT_ID


@pytest.mark.parametrize(("header", "status"), [
    ("v1={sig}", 400), ("t={t},t={t},v1={sig}", 400), ("t={t}", 400), ("t={t},v0={sig}", 400),
    ("t=0{t},v1={sig}", 400), ("t={t}.0,v1={sig}", 400), ("t= {t},v1={sig}", 400), ("t=+{t},v1={sig}", 400),
    ("t={t}, v1={sig}", 400), ("t={t},v1={SIG}", 400), ("t={t},v1={sig},", 400), ("t={t},,v1={sig}", 400),
    ("t={t},v1", 400), ("t={t},v1=", 400), ("t={t},=x,v1={sig}", 400), ("t={t},v1={sig}0", 400),
    ("t={t},v1={sig};", 400), ("t=1{t},v1={sig}", 401), ("t={t},v1={other}", 401),
])
def test_stripe_header_rejected(header: str, status: int) -> None:
    scheme = make_scheme("stripe", [FIXED_SECRETS["stripe"]])
    value = header.format(t=NOW, sig=SIG, SIG=SIG.upper(), other=OTHER)
    assert refusal(scheme, EVENT, {"Stripe-Signature": value}).status == status


@pytest.mark.parametrize("body", [b'{"type":"x"}', b'{"id":42}', b'{"id":""}', b"[1]", b"not json", b'"id"'])
def test_stripe_signed_body_without_an_id_is_a_bad_request(body: bytes) -> None:
    scheme = make_scheme("stripe", [FIXED_SECRETS["stripe"]])
    error = refusal(scheme, body, scheme.sign(MSG_ID, body, NOW))
    assert error.status == 400 and "id" in error.reason


# --- rotation ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", TIMED)
def test_rotation_sender_signs_with_every_secret(name: str) -> None:
    new, old, unknown = (new_secret_for(name) for _ in range(3))
    headers = make_scheme(name, [new, old]).sign(MSG_ID, EVENT, NOW)
    # signatures, not substrings: a base64 signature holds "v1" by chance (~1% each), so count the "v1," / "v1="
    # that start a part (parts are separated by spaces in Standard Webhooks, by commas in Stripe's header)
    assert sum(len(re.findall(r"(?:^|[ ,])v1[,=]", v)) for v in headers.values()) == 2, headers
    for receiver in ([old], [new], [new, old], [old, new]):
        assert make_scheme(name, receiver).verify(EVENT, headers, now=NOW) == expected_id(name)
    assert refusal(make_scheme(name, [unknown]), EVENT, headers).status == 401


def test_rotation_github_sender_has_one_header_so_receiver_holds_both() -> None:
    new, old, unknown = (new_secret_for("github") for _ in range(3))
    headers = make_scheme("github", [new, old]).sign(MSG_ID, EVENT, NOW)
    assert headers == make_scheme("github", [new]).sign(MSG_ID, EVENT, NOW)  # secrets[0] only
    receiver = make_scheme("github", [new, old])
    for sender in ([new], [old], [new, old]):
        assert receiver.verify(EVENT, make_scheme("github", sender).sign(MSG_ID, EVENT, NOW)) == MSG_ID
    assert refusal(make_scheme("github", [old]), EVENT, headers).status == 401  # unlike standard and stripe
    assert refusal(make_scheme("github", [unknown]), EVENT, headers).status == 401


# --- replay window ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", TIMED)
@pytest.mark.parametrize("tolerance", [300, 30])
def test_timestamp_window_both_directions(name: str, tolerance: int) -> None:
    scheme = make_scheme(name, [FIXED_SECRETS[name]], tolerance_s=tolerance)
    for skew, word in ((-(tolerance + 1), "too old"), (tolerance + 1, "too new")):
        error = refusal(scheme, EVENT, scheme.sign(MSG_ID, EVENT, NOW + skew))
        assert error.status == 401 and word in error.reason
        assert f"({skew:+d} s, tolerance {tolerance} s)" in error.reason
    for skew in (-(tolerance - 1), tolerance - 1, -tolerance, tolerance, 0):
        assert scheme.verify(EVENT, scheme.sign(MSG_ID, EVENT, NOW + skew), now=NOW) == expected_id(name)


@pytest.mark.parametrize("name", TIMED)
def test_window_uses_the_wall_clock_by_default(name: str) -> None:
    scheme = make_scheme(name, [FIXED_SECRETS[name]])
    wall = int(time.time())
    assert scheme.verify(EVENT, scheme.sign(MSG_ID, EVENT, wall)) == expected_id(name)
    assert "too old" in refusal(scheme, EVENT, scheme.sign(MSG_ID, EVENT, wall - 400), now=None).reason


def test_standard_window_above_300_s_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="300") as info:
        make_scheme("standard", [SECRET], tolerance_s=301)
    assert "reference" in str(info.value)
    stripe = make_scheme("stripe", [FIXED_SECRETS["stripe"]], tolerance_s=3600)  # no specification cap there
    assert stripe.tolerance_s == 3600  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", SCHEMES)
@pytest.mark.parametrize("tolerance", [0, -1, float("nan"), float("inf"), True, "300"])
def test_unusable_window_rejected(name: str, tolerance: Any) -> None:
    with pytest.raises(ValueError, match="tolerance_s"):
        make_scheme(name, [FIXED_SECRETS[name]], tolerance_s=tolerance)


# --- statuses, header lookup ------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "header"), [(n, h) for n in SCHEMES for h in REQUIRED[n]])
def test_missing_or_empty_header_is_a_bad_request(name: str, header: str) -> None:
    scheme = make_scheme(name, [FIXED_SECRETS[name]])
    headers = scheme.sign(MSG_ID, EVENT, NOW)
    for broken in ({k: v for k, v in headers.items() if k != header}, {**headers, header: ""}):
        error = refusal(scheme, EVENT, broken)
        assert error.status == 400 and "missing" in error.reason and header.lower() in error.reason


@pytest.mark.parametrize("name", SCHEMES)
def test_wrong_secret_is_unauthorized(name: str) -> None:
    headers = make_scheme(name, [new_secret_for(name)]).sign(MSG_ID, EVENT, NOW)
    assert refusal(make_scheme(name, [new_secret_for(name)]), EVENT, headers).status == 401


@pytest.mark.parametrize("name", SCHEMES)
def test_scheme_header_names_are_case_insensitive(name: str) -> None:
    scheme = make_scheme(name, [FIXED_SECRETS[name]])
    headers = scheme.sign(MSG_ID, EVENT, NOW)
    for spell in (str.upper, str.lower, str.title):
        assert scheme.verify(EVENT, {spell(k): v for k, v in headers.items()}, now=NOW) == expected_id(name)


@pytest.mark.parametrize("name", SCHEMES)
def test_header_given_twice_or_not_as_text_is_a_bad_request(name: str) -> None:
    scheme = make_scheme(name, [FIXED_SECRETS[name]])
    headers = scheme.sign(MSG_ID, EVENT, NOW)
    key = REQUIRED[name][0]
    assert refusal(scheme, EVENT, {**headers, key.upper(): headers[key]}).status == 400
    assert refusal(scheme, EVENT, {**headers, key: headers[key].encode()}).status == 400  # type: ignore[dict-item]


def test_standard_scheme_refuses_the_signature_shapes_signer_refuses() -> None:
    scheme = make_scheme("standard", [SECRET])
    headers = scheme.sign(MSG_ID, BODY.encode(), NOW)
    for sig in garbage_signatures() + [headers[H_SIGNATURE] + " ", "v2" + headers[H_SIGNATURE][2:]]:
        refusal(scheme, BODY.encode(), {**headers, H_SIGNATURE: sig})
    for ts in ["hello", "0" + str(NOW), f"{NOW}.0", f" {NOW}", "1" * 5000]:
        assert refusal(scheme, BODY.encode(), {**headers, H_TIMESTAMP: ts}).status == 400
    assert refusal(scheme, b"\xff" + BODY.encode(), headers).status == 401


# --- the reference package, both directions ---------------------------------------------------------

def test_reference_package_signature_accepted_by_standard_scheme() -> None:
    secret, other = new_secret(), new_secret()
    sig = Webhook(secret).sign(MSG_ID, datetime.fromtimestamp(NOW, tz=timezone.utc), BODY)
    headers = {H_ID: MSG_ID, H_TIMESTAMP: str(NOW), H_SIGNATURE: sig}
    for receiver in ([secret], [other, secret]):
        assert make_scheme("standard", receiver).verify(BODY.encode(), headers, now=NOW) == MSG_ID
    assert refusal(make_scheme("standard", [other]), BODY.encode(), headers).status == 401


def test_standard_scheme_headers_accepted_by_reference_package(clock_at) -> None:
    new, old = new_secret(), new_secret()
    headers = make_scheme("standard", [new, old]).sign(MSG_ID, BODY.encode(), NOW)
    clock_at(NOW)
    for secret in (new, old):  # the package accepts any matching v1 entry
        assert Webhook(secret).verify(BODY.encode(), headers) == json.loads(BODY)
    with pytest.raises(swh.WebhookVerificationError):
        Webhook(new_secret()).verify(BODY.encode(), headers)


# --- configuration and sender errors ----------------------------------------------------------------

@pytest.mark.parametrize("name", ["", "Standard", "svix", "hmac"])
def test_unknown_scheme_name(name: str) -> None:
    with pytest.raises(ValueError, match="standard, github, stripe"):
        make_scheme(name, [SECRET])
    with pytest.raises(ValueError, match="unknown signing scheme"):
        new_secret_for(name)


@pytest.mark.parametrize("name", SCHEMES)
@pytest.mark.parametrize(("secrets", "message"), [
    ([], "no secrets"), ((), "no secrets"), ("a-lone-string", r"\[secret\]"), ([b"bytes"], r"secrets\[0\] is bytes"),
    ([""], r"secrets\[0\]"), (["whsec_okbutnot\ud800"], r"secrets\[0\]"),
])
def test_unusable_secrets_rejected(name: str, secrets: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_scheme(name, secrets)


def test_unusable_rotated_standard_secret_is_named_by_position() -> None:
    with pytest.raises(ValueError, match=r"secrets\[1\].*base64.*new_secret\(\)"):
        make_scheme("standard", [SECRET, "whsec_not base64!"])


@pytest.mark.parametrize("name", SCHEMES)
def test_sign_refuses_ids_and_times_that_cannot_be_sent(name: str) -> None:
    scheme = make_scheme(name, [FIXED_SECRETS[name]])
    for msg_id in ["", "a b", "x\r\nX-Injected: 1", "caf\u00e9"]:
        with pytest.raises(ValueError, match="message id"):
            scheme.sign(msg_id, EVENT, NOW)
    for ts in [-1, 1.5, True, str(NOW)]:
        with pytest.raises(ValueError, match="timestamp"):
            scheme.sign(MSG_ID, EVENT, ts)  # type: ignore[arg-type]


def test_standard_scheme_signs_text_only() -> None:
    with pytest.raises(ValueError, match="UTF-8"):
        make_scheme("standard", [SECRET]).sign(MSG_ID, b"\xff\xfe", NOW)


@pytest.mark.parametrize("name", SCHEMES)
def test_new_secret_for_is_fresh_and_usable(name: str) -> None:
    a, b = new_secret_for(name), new_secret_for(name)
    assert a != b and len(a) >= 32
    scheme = make_scheme(name, [a])
    assert scheme.verify(EVENT, scheme.sign(MSG_ID, EVENT, NOW), now=NOW) == expected_id(name)
    if name == "standard":
        assert len(base64.b64decode(a.removeprefix("whsec_"), validate=True)) == 24


@pytest.mark.parametrize("name", SCHEMES)
def test_new_secret_for_never_reads_as_a_command_line_option(name: str) -> None:
    # CI once failed because a GitHub secret drawn as urlsafe base64 began with '-' and the receiver's
    # argparse took it for an option; 500 draws would meet that case about eight times.
    assert not any(new_secret_for(name).startswith("-") for _ in range(500))
