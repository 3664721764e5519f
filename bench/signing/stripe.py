"""Stripe-style signing: `Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

from bench.signing._base import (
    BAD_REQUEST,
    SignatureError,
    any_equal,
    check_fresh,
    check_sign_args,
    check_tolerance,
    hmac_hex,
    parse_unix,
    read_headers,
    secret_list,
    show,
    text_key,
)

__all__ = ["StripeScheme", "H_STRIPE_SIGNATURE"]

H_STRIPE_SIGNATURE = "Stripe-Signature"
_HEX64 = re.compile(r"[0-9a-f]{64}")


class StripeScheme:
    """Stripe webhooks (docs.stripe.com, "Verify webhook signatures manually").

    The HMAC key is the secret string's UTF-8 bytes, `whsec_` prefix included and nothing
    base64-decoded (unlike Standard Webhooks). The header is parsed strictly: comma-separated `k=v`
    items, exactly one `t` (canonical integer), at least one `v1` (64 lowercase hex digits); other keys
    (`v0`, test-mode signatures...) are ignored. The timestamp must be within `tolerance_s` of `now`
    both ways (Stripe's own libraries only check the old side). With several secrets the sender writes
    one `v1` per secret. The message id is the event's own top-level `"id"` in the body, so `msg_id`
    is not sent.
    """

    name = "stripe"

    def __init__(self, secrets: Sequence[str], *, tolerance_s: float = 300.0) -> None:
        self.tolerance_s = check_tolerance(tolerance_s, self.name)
        self._keys = [text_key(s, f"{self.name}: secrets[{i}]") for i, s in enumerate(secret_list(secrets, self.name))]

    def __repr__(self) -> str:
        return f"StripeScheme(<{len(self._keys)} secret(s)>, tolerance_s={self.tolerance_s:g})"

    def sign(self, msg_id: str, body: bytes, timestamp: int) -> dict[str, str]:
        """Stripe-Signature with one `v1` per secret; the body must carry its own "id" (not checked here)."""
        check_sign_args(msg_id, timestamp)
        signed = f"{timestamp}.".encode() + body
        return {H_STRIPE_SIGNATURE: ",".join([f"t={timestamp}"] + [f"v1={hmac_hex(k, signed)}" for k in self._keys])}

    def verify(self, body: bytes, headers: Mapping[str, str], now: float | None = None) -> str:
        """The body's "id", once some v1 matches some secret and `t` is within the window."""
        (header,) = read_headers(headers, H_STRIPE_SIGNATURE.lower())
        t_texts: list[str] = []
        received: list[str] = []
        for item in header.split(","):
            key, eq, value = item.partition("=")
            if not (key and eq and value):
                raise SignatureError(f"{H_STRIPE_SIGNATURE} item {show(item)} is not 'key=value'", BAD_REQUEST)
            if key == "t":
                t_texts.append(value)
            elif key == "v1":
                if not _HEX64.fullmatch(value):
                    raise SignatureError(f"{H_STRIPE_SIGNATURE} v1 must be 64 lowercase hex digits, got {show(value)}",
                                         BAD_REQUEST)
                received.append(value)
        if len(t_texts) != 1:
            raise SignatureError(f"{H_STRIPE_SIGNATURE} needs exactly one t=, found {len(t_texts)}", BAD_REQUEST)
        if not received:
            raise SignatureError(f"{H_STRIPE_SIGNATURE} has no v1= signature", BAD_REQUEST)
        timestamp = parse_unix(t_texts[0], f"{H_STRIPE_SIGNATURE} t")
        check_fresh(timestamp, now, self.tolerance_s)
        signed = t_texts[0].encode() + b"." + body
        if not any_equal([hmac_hex(k, signed) for k in self._keys], received):
            raise SignatureError(f"no v1 signature matches ({len(received)} v1 entries, {len(self._keys)} secrets)")
        return _event_id(body)


def _event_id(body: bytes) -> str:
    """The top-level "id" of an authentic body; 400 if there is none to deduplicate on."""
    try:
        event = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise SignatureError("body is signed but is not JSON, so it has no event id", BAD_REQUEST) from None
    event_id = event.get("id") if isinstance(event, dict) else None
    if not isinstance(event_id, str) or not event_id:
        raise SignatureError('body is signed but has no top-level "id" string to deduplicate on', BAD_REQUEST)
    return event_id
