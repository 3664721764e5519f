"""Network namespaces for tests that span "hosts" on one machine (imported as `netns`).

`Hosts(n)` makes n namespaces with a unique prefix (`hb<pid>x<random>-a`, `-b`, ...): host A holds a bridge with
10.213.<k>.1/24, every other host a veth pair into that bridge with .2, .3, ...; loopback is up everywhere. The
subnet is picked from the pid and checked against every address and route of this machine's own namespace, so
no traffic can leave these namespaces. `start(i, argv)` runs a process inside host i (`ip netns exec`) in its own
session and returns the Popen; `close()` stops those processes by their pid (their process groups, which only they
and their children are in) and deletes the namespaces, which deletes their veths. `hosts(n)` is the context manager
a fixture uses: cleanup also on failure or Ctrl-C. `skip_reason()` says why namespaces cannot be made here, and
`hosts_or_skip(n)` skips the calling test with it. A test process killed with SIGKILL cannot clean up: each new
`Hosts` first deletes the empty namespaces of this prefix whose creating pid is gone (`reap_stale`).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
from contextlib import contextmanager
from typing import Iterator, Sequence

__all__ = ["Hosts", "hosts", "hosts_or_skip", "skip_reason", "reap_stale", "NetnsUnavailable"]

SUBNET_BASE = (10, 213)  # 10.213.<k>.0/24, k from the pid: unlikely to clash, and checked
STOP_GRACE_S = 10.0


class NetnsUnavailable(RuntimeError):
    """Namespaces cannot be made here (not root, no `ip`, or the kernel refused): a test skips with the message."""


def skip_reason() -> str | None:
    """Why namespaces cannot be made on this machine, or None."""
    if os.name != "posix" or not hasattr(os, "geteuid"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs as root)"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def _host_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network this machine's own namespace has an address in or a route to (the default route aside)."""
    nets: list[ipaddress.IPv4Network] = []
    for entry in json.loads(_ip("-j", "-4", "addr", "show").stdout or "[]"):
        for a in entry.get("addr_info", []):
            nets.append(ipaddress.IPv4Network(f"{a['local']}/{a['prefixlen']}", strict=False))
    for r in json.loads(_ip("-j", "-4", "route", "show", "table", "all").stdout or "[]"):
        dst = r.get("dst", "")
        if dst and dst != "default":
            try:
                nets.append(ipaddress.IPv4Network(dst if "/" in dst else f"{dst}/32", strict=False))
            except ValueError:
                continue
    return nets


def free_subnet() -> ipaddress.IPv4Network:
    """A 10.213.k.0/24 that overlaps no address or route of this machine (k from the pid, then onwards)."""
    used = _host_networks()
    start = os.getpid() % 250
    for step in range(250):
        net = ipaddress.IPv4Network(f"{SUBNET_BASE[0]}.{SUBNET_BASE[1]}.{(start + step) % 250 + 1}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net
    raise NetnsUnavailable("no free 10.213.x.0/24 subnet on this machine")


OURS = re.compile(r"^hb(\d+)x[0-9a-f]{4}-[a-z]$")  # Hosts' names: the creating test process's pid is in them


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_stale() -> tuple[list[str], list[str]]:
    """Delete the namespaces Hosts made in a test process that is gone (killed before its cleanup ran), when no
    process is left in them. Returns (deleted, kept: still holding processes, listed with their pids; those are
    left alone, as they may not be ours to end)."""
    deleted, kept = [], []
    for name in _ip("netns", "list", check=False).stdout.split():
        m = OURS.match(name)
        if m is None or _alive(int(m.group(1))):
            continue
        pids = _ip("netns", "pids", name, check=False).stdout.split()
        if pids:
            kept.append(f"{name} (pids {' '.join(pids)})")
        elif _ip("netns", "del", name, check=False).returncode == 0:
            deleted.append(name)
    return deleted, kept


class Hosts:
    """n network namespaces on one bridge: index 0 is host A (the bridge's own address .1), then B (.2), C (.3)..."""

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError("at least one namespace")
        if (why := skip_reason()) is not None:
            raise NetnsUnavailable(why)
        self.reaped, self.stale = reap_stale()
        self.prefix = f"hb{os.getpid()}x{secrets.token_hex(2)}"
        self.names = [f"{self.prefix}-{chr(ord('a') + i)}" for i in range(n)]
        self.subnet = free_subnet()
        hosts = list(self.subnet.hosts())
        self.addresses = [str(hosts[i]) for i in range(n)]
        self.procs: list[subprocess.Popen[str]] = []
        self._made: list[str] = []
        try:
            self._build()
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
            self.close()
            detail = getattr(e, "stderr", None) or str(e)
            raise NetnsUnavailable(f"could not create network namespaces: {detail.strip()}") from None

    def _build(self) -> None:
        plen = str(self.subnet.prefixlen)
        for name in self.names:
            _ip("netns", "add", name)
            self._made.append(name)
            _ip("-n", name, "link", "set", "lo", "up")
        a = self.names[0]
        _ip("-n", a, "link", "add", "br0", "type", "bridge")
        _ip("-n", a, "addr", "add", f"{self.addresses[0]}/{plen}", "dev", "br0")
        _ip("-n", a, "link", "set", "br0", "up")
        for i, name in enumerate(self.names[1:], start=1):
            # created inside A (names are per namespace, so parallel runs cannot collide), the peer moved to host i
            _ip("-n", a, "link", "add", f"veth{i}", "type", "veth", "peer", "name", "eth0", "netns", name)
            _ip("-n", a, "link", "set", f"veth{i}", "master", "br0")
            _ip("-n", a, "link", "set", f"veth{i}", "up")
            _ip("-n", name, "addr", "add", f"{self.addresses[i]}/{plen}", "dev", "eth0")
            _ip("-n", name, "link", "set", "eth0", "up")

    def exec_argv(self, index: int, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.names[index], *argv]

    def run(self, index: int, argv: Sequence[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run a short command inside host `index` and wait for it."""
        return subprocess.run(self.exec_argv(index, argv), capture_output=True, text=True, timeout=timeout)

    def start(self, index: int, argv: Sequence[str], **popen: object) -> subprocess.Popen[str]:
        """Start `argv` inside host `index`, in its own session; `close()` stops it. Returns the Popen."""
        kw: dict[str, object] = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
        kw.update(popen)
        proc: subprocess.Popen[str] = subprocess.Popen(self.exec_argv(index, argv), start_new_session=True,
                                                       **kw)  # type: ignore[call-overload]
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[str]) -> None:
        """SIGTERM the process's own group (it and its children: it was started in a new session), SIGKILL after
        STOP_GRACE_S."""
        if proc.poll() is None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=STOP_GRACE_S)
                    break
                except subprocess.TimeoutExpired:
                    continue
        try:  # whatever is left in its group (a child that outlived it)
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.communicate(timeout=STOP_GRACE_S)
        except (subprocess.TimeoutExpired, ValueError):
            pass

    def close(self) -> list[str]:
        """Stop every process started here, delete every namespace made; returns the errors (also raised nowhere:
        cleanup runs every step)."""
        errors: list[str] = []
        for proc in self.procs:
            try:
                self.stop(proc)
            except OSError as e:
                errors.append(f"stopping pid {proc.pid}: {e}")
        for name in reversed(self._made):
            res = _ip("netns", "del", name, check=False)
            if res.returncode != 0:
                errors.append(f"ip netns del {name}: {res.stderr.strip()}")
        self._made.clear()
        return errors

    def exists(self) -> list[str]:
        """The namespaces of this prefix that still exist (for the test of the cleanup)."""
        listed = _ip("netns", "list", check=False).stdout.split()
        return [n for n in listed if n.startswith(self.prefix)]


def hosts_or_skip(n: int) -> Hosts:
    """n namespaces, or the calling test skipped with the reason they cannot be made here. The caller closes them."""
    import pytest

    if (why := skip_reason()) is not None:
        pytest.skip(why)
    try:
        return Hosts(n)
    except NetnsUnavailable as e:
        pytest.skip(str(e))


@contextmanager
def hosts(n: int) -> Iterator[Hosts]:
    """n namespaces for the body; stopped and deleted afterwards, whatever happened in it."""
    h = Hosts(n)
    try:
        yield h
    finally:
        errors = h.close()
        if errors:
            raise RuntimeError("network namespace cleanup: " + "; ".join(errors))
