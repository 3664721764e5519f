"""Webhook signing and verification: three schemes behind one interface.

The dispatcher signs the exact bytes it sends; the receiver verifies the exact bytes it received.

- ``standard``: Standard Webhooks via the ``standardwebhooks`` package (``webhook-id``,
  ``webhook-timestamp``, ``webhook-signature: v1,<base64>``); id and time are signed.
- ``github``: ``X-Hub-Signature-256: sha256=<hex>`` over the body alone; no timestamp, and the
  ``X-GitHub-Delivery`` id is unsigned, so replay protection is dedup on that id only.
- ``stripe``: ``Stripe-Signature: t=<unix>,v1=<hex>`` over ``"<t>." + body``; the id is the body's ``"id"``.

``make_scheme(name, secrets)`` builds one: ``secrets[0]`` is the current secret, later ones are older
secrets still accepted during a rotation (standard and stripe also sign with every one). ``verify()``
returns the message id to deduplicate on, or raises ``SignatureError`` whose ``status`` is what to
answer: 400 when a required header is missing or malformed, 401 when the signature does not match,
is stale or uses an unknown secret. Request data never raises anything else. Parsing is strict:
only the canonical text of a signature or timestamp is accepted (see each scheme's docstring).
``Signer`` and ``new_secret()`` are the one-secret Standard Webhooks form the servers use.
"""

from __future__ import annotations

from collections.abc import Sequence
from secrets import token_hex

from ._base import Scheme, SignatureError
from .github import GitHubScheme
from .standard import Signer, StandardScheme, new_secret
from .stripe import StripeScheme

__all__ = ["SCHEMES", "Scheme", "SignatureError", "make_scheme", "new_secret_for",
           "StandardScheme", "GitHubScheme", "StripeScheme", "Signer", "new_secret"]

SCHEMES = ("standard", "github", "stripe")
_CLASSES: dict[str, type[StandardScheme] | type[GitHubScheme] | type[StripeScheme]] = {
    "standard": StandardScheme, "github": GitHubScheme, "stripe": StripeScheme}


def _known(name: str) -> str:
    if name not in SCHEMES:
        raise ValueError(f"unknown signing scheme {name!r}: expected one of {', '.join(SCHEMES)}")
    return name


def make_scheme(name: str, secrets: Sequence[str], *, tolerance_s: float = 300.0) -> Scheme:
    """The scheme `name` with `secrets` (current first) and a replay window of `tolerance_s` seconds.

    ValueError, naming the problem, for an unknown name, no secrets, an unusable secret, or a window
    that is not positive (or above 300 s for standard, where the specification fixes it).
    """
    return _CLASSES[_known(name)](secrets, tolerance_s=tolerance_s)


def new_secret_for(scheme: str) -> str:
    """A fresh random secret in the scheme's usual form."""
    if _known(scheme) == "standard":
        return new_secret()
    if scheme == "stripe":
        return "whsec_" + token_hex(24)  # Stripe's look; used as text, never base64-decoded
    # hex, not urlsafe base64: a secret that begins with '-' is read as an option on every command line
    # it is passed on (the receiver's --secret, the storm's --hb-secret)
    return token_hex(32)
