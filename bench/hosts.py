"""Bind addresses (`--bind HOST`): check that HOST is an IP address of this machine, write it into URLs (IPv6
bracketed), and say what leaves the machine when it is not loopback. Used by the CLI, the orchestrators and the
servers (which refuse any other address)."""

from __future__ import annotations

import errno
import ipaddress
import socket

from bench.errors import ScenarioError

__all__ = ["DEFAULT_BIND", "LOOPBACK_NAMES", "check_bind", "is_loopback", "is_local_address", "url_host",
           "exposure_warning"]

DEFAULT_BIND = "127.0.0.1"
LOOPBACK_NAMES = ("127.0.0.1", "::1", "localhost")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_local_address(host: str) -> bool:
    """Whether `host` (an IP literal, or localhost) is an address of this machine (of this network namespace).

    Tested the way a server will use it: binding a socket to (host, 0). EADDRNOTAVAIL means the address is
    assigned to no interface here.
    """
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if ip.is_unspecified or ip.is_multicast:
        return False
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((str(ip), 0))
    except OSError as e:
        if e.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT, errno.EINVAL):
            return False
        raise
    return True


def check_bind(host: str, flag: str = "--bind", source: str = "command line") -> str:
    """`host` as servers bind it (an IP address, compressed form; localhost -> 127.0.0.1), or ScenarioError (exit 2)
    naming the flag and what was expected."""
    if host == "localhost":
        return DEFAULT_BIND
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        raise ScenarioError(source, flag, host, "must be an IP address of this machine, e.g. 127.0.0.1, ::1 or "
                                                "the address of one of its interfaces (`ip -br addr`); "
                                                "not a host name") from None
    if ip.is_unspecified:
        raise ScenarioError(source, flag, host, "must be one address of this machine, not the wildcard: the "
                                                "workers and the servers are handed URLs with this address")
    if ip.is_multicast:
        raise ScenarioError(source, flag, host, "must be a unicast address of this machine")
    try:
        local = is_local_address(str(ip))
    except OSError as e:
        raise ScenarioError(source, flag, host, f"cannot be checked: binding it failed ({e.strerror or e})") from None
    if not local:
        raise ScenarioError(source, flag, host, "is not an address of this machine (no interface has it; "
                                                "`ip -br addr` lists them)")
    return str(ip)


def url_host(host: str) -> str:
    """The host as a URL writes it: an IPv6 literal in brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def exposure_warning(host: str, what: str, workers: bool = True) -> str | None:
    """The warning for a bind address other than loopback (None for loopback). `workers`: Locust workers elsewhere
    get the run's secrets with their options (a load master)."""
    if is_loopback(host):
        return None
    sent = ("The signing secrets and Basic Auth credentials travel to the Locust workers with their options, and "
            "every request" if workers else "Every request, its signature and any Basic Auth credentials included,")
    return (f"warning: {what} will listen on {host}, reachable from the network. {sent} crosses the network "
            "unencrypted unless the receiver serves HTTPS. Use an isolated network.")
