"""Standard Webhooks signing and verification (https://www.standardwebhooks.com), via the `standardwebhooks` package.

The dispatcher signs the exact bytes it sends; the receiver verifies the exact bytes it received.
Every malformed-header case the package does not turn into its own exception (ValueError,
binascii.Error, UnicodeDecodeError...) becomes a `SignatureError` with a reason, never a crash.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from datetime import datetime, timezone

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from .protocol import H_ID, H_SIGNATURE, H_TIMESTAMP

__all__ = ["Signer", "SignatureError", "new_secret"]


class SignatureError(Exception):
    """The request's signature headers are missing, malformed, stale, or do not match."""


def new_secret(nbytes: int = 24) -> str:
    """A fresh Standard Webhooks secret: 'whsec_' + base64 of random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(nbytes)).decode()


_B64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_HELP = "expected 'whsec_' followed by standard base64 of the key bytes, e.g. from `new_secret()`"


class Signer:
    """Signs and verifies with one secret.

    Stricter than the package where it is lenient: the secret must be real base64 (the package drops
    invalid characters silently), the timestamp must be an integer (the package accepts '1.9', ' 1', '1e0'),
    and the signature must be the canonical base64 text (the package compares decoded bytes, so the spare
    bits of the last character could be altered).
    """

    def __init__(self, secret: str) -> None:
        body = secret[len("whsec_"):] if secret.startswith("whsec_") else secret
        if not body or not _B64.fullmatch(body):
            raise ValueError(f"invalid webhook secret: {_HELP}")
        try:
            base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
            self._wh = Webhook(secret)
        except Exception as e:  # EmptyWebhookSecretError, binascii.Error...
            raise ValueError(f"invalid webhook secret ({e.__class__.__name__}: {e}); {_HELP}") from None

    def headers(self, msg_id: str, body: str, timestamp: int) -> dict[str, str]:
        """The three Standard Webhooks headers for sending `body` (exact text) at unix time `timestamp`."""
        ts = datetime.fromtimestamp(timestamp, tz=timezone.utc)
        return {H_ID: msg_id, H_TIMESTAMP: str(timestamp), H_SIGNATURE: self._wh.sign(msg_id, ts, body)}

    def verify(self, body: bytes, headers: dict[str, str]) -> None:
        """Raise SignatureError with a reason unless `headers` carry a valid, fresh signature of `body`."""
        lower = {k.lower(): v for k, v in headers.items()}
        ts = lower.get(H_TIMESTAMP)
        if ts is not None and not (ts.isascii() and ts.isdigit() and ts == str(int(ts))):
            raise SignatureError("webhook-timestamp must be an integer number of unix seconds")
        try:
            text = body.decode()
        except UnicodeDecodeError:
            raise SignatureError("body is not UTF-8, so it cannot have been signed as text") from None
        try:
            self._wh.verify(text, lower, json_parse=False)
        except WebhookVerificationError as e:
            raise SignatureError(str(e)) from None
        except (ValueError, binascii.Error) as e:
            raise SignatureError(f"malformed signature headers ({e.__class__.__name__})") from None
        assert ts is not None  # verify() passed, so the header exists
        expected = self._wh.sign(lower[H_ID], datetime.fromtimestamp(int(ts), tz=timezone.utc), text)
        if expected not in lower[H_SIGNATURE].split(" "):
            raise SignatureError("signature is not canonical base64")
