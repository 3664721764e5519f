"""GitHub-style signing: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from bench.protocol import EVENT_TYPE
from bench.signing._base import (
    BAD_REQUEST,
    SignatureError,
    any_equal,
    check_sign_args,
    check_tolerance,
    hmac_hex,
    read_headers,
    secret_list,
    show,
    text_key,
)

__all__ = ["GitHubScheme", "H_HUB_SIGNATURE", "H_DELIVERY", "H_EVENT"]

H_HUB_SIGNATURE = "X-Hub-Signature-256"
H_DELIVERY = "X-GitHub-Delivery"
H_EVENT = "X-GitHub-Event"
_CANONICAL = re.compile(r"sha256=[0-9a-f]{64}")


class GitHubScheme:
    """GitHub webhooks (docs.github.com, "Validating webhook deliveries").

    The HMAC key is the secret's UTF-8 bytes and the message is the raw body, nothing else: the
    scheme has no timestamp, so there is no replay window (`tolerance_s` is accepted and unused).
    Replay protection is dedup on X-GitHub-Delivery only, and that header is not signed either: a
    captured body and signature replayed under a fresh delivery id verify. Only one signature header
    exists, so the sender signs with secrets[0]; the receiver accepts any of its secrets (rotation is
    receiver-side). Only the canonical text is accepted: the `sha256=` prefix and lowercase hex.
    """

    name = "github"

    def __init__(self, secrets: Sequence[str], *, tolerance_s: float = 300.0) -> None:
        self.tolerance_s = check_tolerance(tolerance_s, self.name)
        self._keys = [text_key(s, f"{self.name}: secrets[{i}]") for i, s in enumerate(secret_list(secrets, self.name))]

    def __repr__(self) -> str:
        return f"GitHubScheme(<{len(self._keys)} secret(s)>)"

    def sign(self, msg_id: str, body: bytes, timestamp: int) -> dict[str, str]:
        """The signature (current secret only), the delivery id and the event name; `timestamp` is not sent."""
        check_sign_args(msg_id, timestamp)
        return {H_HUB_SIGNATURE: "sha256=" + hmac_hex(self._keys[0], body), H_DELIVERY: msg_id, H_EVENT: EVENT_TYPE}

    def verify(self, body: bytes, headers: Mapping[str, str], now: float | None = None) -> str:
        """The X-GitHub-Delivery id, once the body's signature matches some secret (`now` is unused)."""
        signature, delivery = read_headers(headers, H_HUB_SIGNATURE.lower(), H_DELIVERY.lower())
        if not _CANONICAL.fullmatch(signature):
            raise SignatureError(f"{H_HUB_SIGNATURE} must be 'sha256=' and 64 lowercase hex digits, "
                                 f"got {show(signature)}", BAD_REQUEST)
        if not any_equal(["sha256=" + hmac_hex(key, body) for key in self._keys], [signature]):
            raise SignatureError(f"{H_HUB_SIGNATURE} does not match the body under any of {len(self._keys)} secret(s)")
        return delivery
