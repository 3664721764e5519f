"""Validation of a POST /subscriptions body into what `Store.add_subscription` takes.

Every problem is a `SubscriptionError` whose message names the field, the bad value (never a secret)
and what is expected; the view answers it with 400.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import ssl
from dataclasses import dataclass
from typing import Any

from yarl import URL

from bench.config import DeliveryCfg, delivery_from_dict
from bench.errors import ScenarioError
from bench.hosts import is_local_address
from bench.protocol import SCHEMES
from bench.signing import make_scheme

from .endpoint import basic_authorization

__all__ = ["SubscriptionRequest", "SubscriptionError", "parse_subscription", "is_loopback_url", "is_local_url"]

_KEYS = {"url", "scheme", "secrets", "secret", "delivery", "basic_auth", "ca_file"}
EXAMPLE = '{"url": "http://127.0.0.1:8001/hooks", "secrets": ["whsec_..."]}'


class SubscriptionError(ValueError):
    """A POST /subscriptions body that cannot be accepted (answered with 400)."""


@dataclass(frozen=True)
class SubscriptionRequest:
    url: str
    scheme: str
    secrets: tuple[str, ...] = dataclasses.field(repr=False)
    delivery: DeliveryCfg
    basic_auth: tuple[str, str] | None = dataclasses.field(repr=False)
    ca_file: str | None


def is_loopback_url(url: str, local: bool = False) -> bool:
    """An http(s) URL without credentials whose host is loopback (with `local`: or any address of this machine,
    the address `--bind` gave the receiver)."""
    try:
        u = URL(url)
    except (ValueError, TypeError):
        return False
    if u.scheme not in ("http", "https") or u.user is not None or u.password is not None or not u.host:
        return False
    if u.host == "localhost":
        return True
    try:
        if ipaddress.ip_address(u.host).is_loopback:
            return True
    except ValueError:
        return False
    try:
        return local and is_local_address(u.host)
    except OSError:
        return False


def is_local_url(url: str) -> bool:
    """Where the producer may deliver: loopback, or an address of this machine (never another machine)."""
    return is_loopback_url(url, local=True)


def parse_subscription(data: Any, default_delivery: DeliveryCfg) -> SubscriptionRequest:
    """Check every field; `default_delivery` is used when the body has no "delivery"."""
    if not isinstance(data, dict):
        raise SubscriptionError(f"expected a JSON object such as {EXAMPLE}")
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise SubscriptionError(f"unknown field(s) {', '.join(map(repr, unknown))}; "
                                f"allowed: {', '.join(sorted(_KEYS))}")

    url = data.get("url")
    if not isinstance(url, str):
        raise SubscriptionError(f"url: expected a string such as \"http://127.0.0.1:8001/hooks\", got {url!r}")
    if not is_local_url(url):
        raise SubscriptionError(f"url={url!r}: hookbench only delivers to this machine: loopback "
                                "(http(s)://127.0.0.1, [::1] or localhost) or its own --bind address, no user info")

    raw = data.get("delivery")
    if raw is None:
        delivery = default_delivery
    else:
        try:
            delivery = delivery_from_dict(raw, "POST /subscriptions delivery")
        except ScenarioError as e:
            raise SubscriptionError(str(e)) from None

    scheme = data.get("scheme")
    if scheme is None:
        scheme = delivery.scheme
    elif scheme not in SCHEMES:
        raise SubscriptionError(f"scheme={scheme!r}: expected one of {', '.join(SCHEMES)}")
    elif raw is not None and "scheme" in raw and raw["scheme"] != scheme:
        raise SubscriptionError(f"scheme={scheme!r} but delivery.scheme={raw['scheme']!r}: give one, or the same")
    delivery = dataclasses.replace(delivery, scheme=scheme)

    secrets = _secrets(data)
    try:
        make_scheme(scheme, list(secrets))
    except ValueError as e:
        raise SubscriptionError(f"secrets: {e}") from None

    basic_auth = _basic_auth(data.get("basic_auth"))
    ca_file = _ca_file(data.get("ca_file"), URL(url).scheme)
    return SubscriptionRequest(url, scheme, secrets, delivery, basic_auth, ca_file)


def _secrets(data: dict[str, Any]) -> tuple[str, ...]:
    if "secret" in data and "secrets" in data:
        raise SubscriptionError('give "secrets" (a list, current first) or the older "secret" (one string), not both')
    if "secrets" in data:
        value = data["secrets"]
        if not isinstance(value, list) or not value or not all(isinstance(s, str) for s in value):
            raise SubscriptionError('secrets: expected a non-empty list of strings, current first, e.g. ["whsec_..."]')
        return tuple(value)
    value = data.get("secret")
    if not isinstance(value, str):
        raise SubscriptionError('a secret is required: "secrets": ["whsec_..."] (or "secret": "whsec_...")')
    return (value,)


def _basic_auth(value: Any) -> tuple[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"user", "password"} or \
            not all(isinstance(v, str) for v in value.values()):
        raise SubscriptionError('basic_auth: expected {"user": string, "password": string} or null')
    try:
        basic_authorization(value["user"], value["password"])
    except (ValueError, UnicodeEncodeError) as e:
        raise SubscriptionError(f"basic_auth: unusable ({e.__class__.__name__}): the user may not contain ':' "
                                "and both must be Latin-1 text") from None
    if not value["user"]:
        raise SubscriptionError("basic_auth: user must not be empty")
    return value["user"], value["password"]


def _ca_file(value: Any, url_scheme: str) -> str | None:
    if value is None:
        if url_scheme == "https":
            raise SubscriptionError("ca_file is required for an https url: the PEM file of the CA (or self-signed "
                                    "certificate) that signed the receiver's certificate; verification is never off")
        return None
    if not isinstance(value, str) or not value:
        raise SubscriptionError(f"ca_file: expected a path to a PEM file, got {value!r}")
    if url_scheme != "https":
        raise SubscriptionError(f"ca_file={value!r} is only used with an https url")
    if not os.path.isfile(value):
        raise SubscriptionError(f"ca_file={value!r}: no such file")
    try:
        ssl.create_default_context(cafile=value)
    except (ssl.SSLError, OSError, ValueError) as e:
        raise SubscriptionError(f"ca_file={value!r}: not a usable PEM CA file ({e.__class__.__name__})") from None
    return os.path.abspath(value)
