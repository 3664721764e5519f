"""What every signing scheme shares: the error type, the `Scheme` protocol, strict header and timestamp parsing."""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import time
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

__all__ = ["SignatureError", "Scheme", "BAD_REQUEST", "UNAUTHORIZED"]

BAD_REQUEST = 400  # a required header is missing or malformed: the request is not a signed webhook at all
UNAUTHORIZED = 401  # well-formed, but the signature does not match, is stale, or uses a secret we do not hold


class SignatureError(Exception):
    """The request's signature headers are missing, malformed, stale, or do not match.

    `reason` is short human text for logs and the response body; `status` is the HTTP status the
    receiver should answer (400 or 401, see above).
    """

    def __init__(self, reason: str, status: int = UNAUTHORIZED) -> None:
        super().__init__(reason, status)  # both in args, so the error pickles and copies whole
        self.reason = reason
        self.status = status

    def __str__(self) -> str:
        return self.reason


@runtime_checkable
class Scheme(Protocol):
    """One way to sign a webhook POST and to verify it on arrival."""

    name: str

    def sign(self, msg_id: str, body: bytes, timestamp: int) -> dict[str, str]:
        """The headers to add to the POST whose body is exactly `body`, sent at unix time `timestamp`."""
        ...

    def verify(self, body: bytes, headers: Mapping[str, str], now: float | None = None) -> str:
        """The message id to deduplicate on; raises SignatureError unless `headers` authenticate `body`."""
        ...


# --- configuration (sender and receiver set-up: ValueError, never SignatureError) --------------------

def secret_list(secrets: Sequence[str], scheme: str) -> list[str]:
    """`secrets` as a list, current first; ValueError for a lone string, an empty list or a non-string."""
    if isinstance(secrets, (str, bytes)):
        raise ValueError(f"{scheme}: secrets must be a list of secrets, current first, not one string: "
                         f"write [secret] (a bare string would make every character a secret)")
    listed = list(secrets)
    if not listed:
        raise ValueError(f"{scheme}: no secrets given: pass at least one, e.g. [new_secret_for({scheme!r})]")
    for i, s in enumerate(listed):
        if not isinstance(s, str):
            raise ValueError(f"{scheme}: secrets[{i}] is {type(s).__name__}, expected str")
    return listed


def text_key(secret: str, where: str) -> bytes:
    """An HMAC key taken as the secret's UTF-8 bytes (GitHub, Stripe); ValueError if there are none."""
    if not secret:
        raise ValueError(f"{where}: empty secret: every sender could forge it; use new_secret_for(...)")
    try:
        return secret.encode()
    except UnicodeEncodeError:
        raise ValueError(f"{where}: secret is not encodable as UTF-8 (lone surrogate?)") from None


def check_tolerance(tolerance_s: float, scheme: str, cap: float | None = None) -> float:
    """The replay window in seconds: positive and finite, and at most `cap` where the scheme fixes one."""
    if isinstance(tolerance_s, bool) or not isinstance(tolerance_s, (int, float)) \
            or not math.isfinite(tolerance_s) or tolerance_s <= 0:
        raise ValueError(f"{scheme}: tolerance_s = {tolerance_s!r}: must be a positive number of seconds, e.g. 300")
    if cap is not None and tolerance_s > cap:
        raise ValueError(
            f"{scheme}: tolerance_s = {tolerance_s!r}: at most {cap:g} s. Standard Webhooks fixes the window at "
            f"{cap:g} s (the standardwebhooks package and the other reference libraries hard-code it), so a "
            f"wider window here would accept messages every reference receiver rejects; use a value in (0, {cap:g}]")
    return float(tolerance_s)


_HEADER_SAFE = re.compile(r"[!-~]+")  # visible ASCII: nothing that could split or fold an HTTP header


def check_sign_args(msg_id: str, timestamp: int) -> None:
    """Sender-side argument checks: a bad id or time is a bug in the caller, not an attack."""
    if not isinstance(msg_id, str) or not _HEADER_SAFE.fullmatch(msg_id):
        raise ValueError(f"message id {msg_id!r}: must be 1 or more visible ASCII characters (it travels in a header)")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp < 0:
        raise ValueError(f"timestamp {timestamp!r}: must be a non-negative integer number of unix seconds")


# --- verification (request data: SignatureError, never anything else) --------------------------------

def show(text: str, limit: int = 40) -> str:
    """`text` quoted for a reason string, cut short: reasons end up in logs and response bodies."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


def read_headers(headers: Mapping[str, str], *names: str) -> list[str]:
    """The values of the (lowercase) `names`, looked up case-insensitively.

    400 if any is missing or empty (all missing ones are named), given twice under different
    spellings, or not text. Headers the scheme does not read are not looked at.
    """
    found: dict[str, str] = {}
    for key, value in headers.items():
        lower = key.lower() if isinstance(key, str) else None
        if lower not in names:
            continue
        if lower in found:
            raise SignatureError(f"header {lower} given more than once", BAD_REQUEST)
        if not isinstance(value, str):
            raise SignatureError(f"header {lower} is not text", BAD_REQUEST)
        found[lower] = value
    missing = [n for n in names if not found.get(n)]
    if missing:
        raise SignatureError(f"missing required header{'s' if len(missing) > 1 else ''}: {', '.join(missing)}",
                             BAD_REQUEST)
    return [found[n] for n in names]


_UNIX = re.compile(r"0|[1-9][0-9]{0,14}")  # the exact text str(int) gives; 15 digits is beyond year 30 million


def parse_unix(text: str, where: str) -> int:
    """An integer number of unix seconds written canonically (no sign, spaces, leading zeros, fraction)."""
    if not _UNIX.fullmatch(text):
        raise SignatureError(f"{where} must be an integer number of unix seconds, got {show(text)}", BAD_REQUEST)
    return int(text)


def check_fresh(timestamp: int, now: float | None, tolerance_s: float) -> None:
    """401 unless `timestamp` is within `tolerance_s` of `now` (default: the wall clock), in both directions."""
    now = time.time() if now is None else now
    skew = timestamp - now
    if skew < -tolerance_s:
        raise SignatureError(f"timestamp too old ({skew:+.0f} s, tolerance {tolerance_s:g} s)", UNAUTHORIZED)
    if skew > tolerance_s:
        raise SignatureError(f"timestamp too new ({skew:+.0f} s, tolerance {tolerance_s:g} s)", UNAUTHORIZED)


def hmac_hex(key: bytes, msg: bytes) -> str:
    """Lowercase hex HMAC-SHA256, the signature text of GitHub and Stripe."""
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def any_equal(expected: Sequence[str], received: Sequence[str]) -> bool:
    """Whether any received text equals any expected one, each comparison in constant time.

    Every pair is compared (no early exit), so the time taken does not say which entry matched.
    compare_digest refuses non-ASCII str, and expected signatures are ASCII, so non-ASCII never matches.
    """
    matched = False
    for got in received:
        if not got.isascii():
            continue
        for want in expected:
            matched |= hmac.compare_digest(want, got)
    return matched
