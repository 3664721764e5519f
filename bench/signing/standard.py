"""Standard Webhooks (https://www.standardwebhooks.com) through the `standardwebhooks` package.

`Signer` is the one-secret form the producer and receiver use; `StandardScheme` is the same scheme
behind the `Scheme` interface, with secret rotation and a configurable window.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from bench.protocol import H_ID, H_SIGNATURE, H_TIMESTAMP
from bench.signing._base import (
    BAD_REQUEST,
    UNAUTHORIZED,
    SignatureError,
    any_equal,
    check_fresh,
    check_sign_args,
    check_tolerance,
    parse_unix,
    read_headers,
    secret_list,
    show,
)

__all__ = ["Signer", "StandardScheme", "new_secret", "MAX_TOLERANCE_S"]

MAX_TOLERANCE_S = 300.0  # hard-coded by the package and every reference library

_B64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_HELP = "expected 'whsec_' followed by standard base64 of the key bytes, e.g. from `new_secret()`"
_ENTRY = re.compile(r"([^,]+),([^,]+)")  # "<version>,<signature>"


def new_secret(nbytes: int = 24) -> str:
    """A fresh Standard Webhooks secret: 'whsec_' + base64 of random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(nbytes)).decode()


def _webhook(secret: str) -> Webhook:
    """The package's signer for `secret`, after the strict checks the package skips (ValueError)."""
    body = secret[len("whsec_"):] if secret.startswith("whsec_") else secret
    if not body or not _B64.fullmatch(body):
        raise ValueError(f"invalid webhook secret: {_HELP}")
    try:
        base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
        return Webhook(secret)
    except Exception as e:  # EmptyWebhookSecretError, binascii.Error...
        raise ValueError(f"invalid webhook secret ({e.__class__.__name__}: {e}); {_HELP}") from None


def _utc(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc)


class Signer:
    """Signs and verifies with one secret, verifying through the package (and its wall clock, 300 s).

    Stricter than the package where it is lenient: the secret must be real base64 (the package drops
    invalid characters silently), the timestamp must be an integer (the package accepts '1.9', ' 1', '1e0'),
    and the signature must be the canonical base64 text (the package compares decoded bytes, so the spare
    bits of the last character could be altered).
    """

    def __init__(self, secret: str) -> None:
        self._wh = _webhook(secret)

    def headers(self, msg_id: str, body: str, timestamp: int) -> dict[str, str]:
        """The three Standard Webhooks headers for sending `body` (exact text) at unix time `timestamp`."""
        return {H_ID: msg_id, H_TIMESTAMP: str(timestamp), H_SIGNATURE: self._wh.sign(msg_id, _utc(timestamp), body)}

    def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        """Raise SignatureError with a reason unless `headers` carry a valid, fresh signature of `body`."""
        lower = {k.lower(): v for k, v in headers.items()}
        ts = lower.get(H_TIMESTAMP)
        if ts is not None:
            parse_unix(ts, H_TIMESTAMP)  # also bounds the length: int() of 4301+ digits raises ValueError
        try:
            text = body.decode()
        except UnicodeDecodeError:
            raise SignatureError("body is not UTF-8, so it cannot have been signed as text") from None
        try:
            self._wh.verify(text, lower, json_parse=False)
        except WebhookVerificationError as e:
            malformed = str(e) in ("Missing required headers", "Invalid Signature Headers")
            raise SignatureError(str(e), BAD_REQUEST if malformed else UNAUTHORIZED) from None
        except (ValueError, binascii.Error) as e:
            raise SignatureError(f"malformed signature headers ({e.__class__.__name__})", BAD_REQUEST) from None
        assert ts is not None  # verify() passed, so the header exists
        expected = self._wh.sign(lower[H_ID], _utc(int(ts)), text)
        if expected not in lower[H_SIGNATURE].split(" "):
            raise SignatureError("signature is not canonical base64")


class StandardScheme:
    """Standard Webhooks: `webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.

    The package computes every signature. Verification does not call `Webhook.verify`: that reads the
    wall clock with a fixed 300 s window, which would make `now` and `tolerance_s` meaningless. Instead
    the timestamp is checked here against `now`, and the package's signature for each secret is compared
    in constant time with each `v1` entry, as canonical text (as `Signer` does). The tests run both
    directions against the package itself. Replay protection: the window, plus dedup on webhook-id.
    """

    name = "standard"

    def __init__(self, secrets: Sequence[str], *, tolerance_s: float = MAX_TOLERANCE_S) -> None:
        keys = secret_list(secrets, self.name)
        self.tolerance_s = check_tolerance(tolerance_s, self.name, cap=MAX_TOLERANCE_S)
        self._whs: list[Webhook] = []
        for i, secret in enumerate(keys):
            try:
                self._whs.append(_webhook(secret))
            except ValueError as e:
                raise ValueError(f"{self.name}: secrets[{i}]: {e}") from None

    def __repr__(self) -> str:
        return f"StandardScheme(<{len(self._whs)} secret(s)>, tolerance_s={self.tolerance_s:g})"

    def sign(self, msg_id: str, body: bytes, timestamp: int) -> dict[str, str]:
        """webhook-id, webhook-timestamp and a webhook-signature with one `v1` entry per secret."""
        check_sign_args(msg_id, timestamp)
        try:
            text = body.decode()
        except UnicodeDecodeError:
            raise ValueError("Standard Webhooks signs text: the body must be UTF-8") from None
        at = _utc(timestamp)
        return {H_ID: msg_id, H_TIMESTAMP: str(timestamp),
                H_SIGNATURE: " ".join(wh.sign(msg_id, at, text) for wh in self._whs)}

    def verify(self, body: bytes, headers: Mapping[str, str], now: float | None = None) -> str:
        """The webhook-id, once the signature matches some secret and the timestamp is within the window."""
        msg_id, ts_text, sig_text = read_headers(headers, H_ID, H_TIMESTAMP, H_SIGNATURE)
        timestamp = parse_unix(ts_text, H_TIMESTAMP)
        received: list[str] = []
        for entry in sig_text.split(" "):
            match = _ENTRY.fullmatch(entry)
            if not match:
                raise SignatureError(f"{H_SIGNATURE} entry {show(entry)} is not '<version>,<signature>'",
                                     BAD_REQUEST)
            if match[1] == "v1":  # other versions (v1a, v2...) are skipped, as the spec says
                received.append(entry)
        check_fresh(timestamp, now, self.tolerance_s)
        try:
            text = body.decode()
        except UnicodeDecodeError:
            raise SignatureError("body is not UTF-8, so it cannot have been signed as text") from None
        try:
            at = _utc(timestamp)
        except (OverflowError, OSError, ValueError):  # only with an absurd `now`: the window check passed
            raise SignatureError(f"{H_TIMESTAMP} is out of the platform's date range", BAD_REQUEST) from None
        try:
            expected = [wh.sign(msg_id, at, text) for wh in self._whs]
        except UnicodeEncodeError:
            raise SignatureError(f"{H_ID} is not valid text", BAD_REQUEST) from None
        if not any_equal(expected, received):
            raise SignatureError(f"no v1 signature matches ({len(received)} v1 entries, {len(expected)} secrets)")
        return msg_id
