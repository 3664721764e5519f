"""Standard Webhooks signing and verification (https://www.standardwebhooks.com), via the `standardwebhooks` package.

The dispatcher signs the exact bytes it sends; the receiver verifies the exact bytes it received.
Every malformed-header case the package does not turn into its own exception (ValueError,
binascii.Error, UnicodeDecodeError...) becomes a `SignatureError` with a reason, never a crash.
"""

from __future__ import annotations

import base64
import binascii
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


class Signer:
    """Signs and verifies with one secret."""

    def __init__(self, secret: str) -> None:
        try:
            self._wh = Webhook(secret)
        except Exception as e:  # EmptyWebhookSecretError, binascii.Error...
            raise ValueError(f"invalid webhook secret ({e.__class__.__name__}: {e}); "
                             "expected 'whsec_' followed by base64, e.g. from `new_secret()`") from None

    def headers(self, msg_id: str, body: str, timestamp: int) -> dict[str, str]:
        """The three Standard Webhooks headers for sending `body` (exact text) at unix time `timestamp`."""
        ts = datetime.fromtimestamp(timestamp, tz=timezone.utc)
        return {H_ID: msg_id, H_TIMESTAMP: str(timestamp), H_SIGNATURE: self._wh.sign(msg_id, ts, body)}

    def verify(self, body: bytes, headers: dict[str, str]) -> None:
        """Raise SignatureError with a reason unless `headers` carry a valid, fresh signature of `body`."""
        try:
            self._wh.verify(body, headers, json_parse=False)
        except WebhookVerificationError as e:
            raise SignatureError(str(e)) from None
        except (ValueError, binascii.Error, UnicodeDecodeError) as e:
            raise SignatureError(f"malformed signature headers ({e.__class__.__name__})") from None
