"""bench.signing: Standard Webhooks vectors, the reference package in both directions, tampering, clock tolerance."""

from __future__ import annotations

import base64
import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import standardwebhooks.webhooks as swh
from standardwebhooks import Webhook

from bench.protocol import H_ID, H_SIGNATURE, H_TIMESTAMP
from bench.signing import SignatureError, Signer, new_secret

VECTORS_DIR = Path(__file__).resolve().parents[2] / "shared" / "vectors"
SW_FILE = VECTORS_DIR / "standardwebhooks.json"
NO_VECTORS = f"{SW_FILE} not found: the shared test vectors live beside the repository, not in a clone of it"

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_ch42"
BODY = '{"type":"resource.changed","data":{"change_id":"ch42"}}'
B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _load_vectors() -> dict[str, Any] | None:
    try:
        return json.loads(SW_FILE.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


SW = _load_vectors()


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
