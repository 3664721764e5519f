"""`--bind HOST`: which addresses are accepted (bench/hosts.py), how URLs write them, the warning, the CLI's exit 2
before anything starts, the servers' own check, the command lines the orchestrators build, and a worker's own
copy of its rows (`--records-dir`, passed to it as bench.wire.LOCAL_COPY_ENV)."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from support import REPO

from bench.cli import main
from bench.errors import ScenarioError
from bench.hosts import DEFAULT_BIND, check_bind, exposure_warning, is_local_address, is_loopback, url_host
from bench.orchestration.distributed import MasterOptions
from bench.orchestration.load import _locust_argv
from bench.orchestration.wiring import producer_argv, receiver_argv

SCENARIO = "scenarios/overload_receiver.toml"
# TEST-NET-3 (RFC 5737): documentation only, never assigned to an interface here
NOT_HERE = "203.0.113.77"


@pytest.mark.parametrize(("host", "expected"), [("127.0.0.1", "127.0.0.1"), ("::1", "::1"), ("[::1]", "::1"),
                                                 ("localhost", "127.0.0.1"), ("127.0.0.2", "127.0.0.2")])
def test_addresses_of_this_machine_are_accepted(host: str, expected: str) -> None:
    assert check_bind(host) == expected


@pytest.mark.parametrize(("host", "message"), [
    ("example.com", "must be an IP address of this machine"),
    ("10.0.0.256", "must be an IP address of this machine"),
    ("", "must be an IP address of this machine"),
    ("0.0.0.0", "not the wildcard"),
    ("::", "not the wildcard"),
    ("224.0.0.1", "unicast"),
    (NOT_HERE, "is not an address of this machine"),
])
def test_bad_bind_addresses_name_the_flag(host: str, message: str) -> None:
    with pytest.raises(ScenarioError) as e:
        check_bind(host, "--bind")
    assert e.value.exit_code == 2 and "--bind" in str(e.value) and message in str(e.value)


def test_local_and_loopback() -> None:
    assert is_local_address("127.0.0.1") and not is_local_address(NOT_HERE) and not is_local_address("0.0.0.0")
    assert is_loopback("::1") and is_loopback("localhost") and not is_loopback(NOT_HERE)


def test_url_host_brackets_ipv6() -> None:
    assert url_host("::1") == "[::1]" and url_host("fd00::5") == "[fd00::5]" and url_host("10.1.2.3") == "10.1.2.3"
    assert url_host("[::1]") == "[::1]"


def test_warning_only_off_loopback() -> None:
    assert exposure_warning("127.0.0.1", "the producer") is None and exposure_warning("::1", "x") is None
    text = exposure_warning("10.213.0.1", "the receiver and the Locust master")
    assert text is not None and "10.213.0.1" in text and "secrets" in text and "Basic Auth" in text
    assert "workers" in text and "unencrypted" in text
    alone = exposure_warning("10.213.0.1", "the receiver", workers=False)
    assert alone is not None and "Basic Auth" in alone and "unencrypted" in alone and "workers" not in alone


@pytest.mark.parametrize("argv", [
    ["run", "--bind", NOT_HERE],
    ["load", SCENARIO, "--bind", "0.0.0.0"],
    ["load", SCENARIO, "--master", "--bind", "not-an-address"],
    ["serve", "producer", "--bind", NOT_HERE, "--port", "0"],
    ["serve", "receiver", "--bind", NOT_HERE, "--secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
])
def test_cli_refuses_a_bad_bind_before_anything_starts(argv: list[str], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    assert main([*argv, *(["--out", str(tmp_path)] if argv[0] in ("run", "load") else [])]) == 2
    err = capsys.readouterr().err
    assert "--bind" in err and "Traceback" not in err, err
    assert not list(tmp_path.iterdir())  # no run directory


@pytest.mark.parametrize(("argv", "message"), [
    (["--worker", "--master-host", "h", "--bind", "127.0.0.1"], "--bind = '127.0.0.1': does not apply with --worker"),
    (["--records-dir", "x"], "--records-dir = 'x': only applies with --worker (the master listens on --bind"),
])
def test_load_bind_and_records_dir_flags(argv: list[str], message: str, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    assert main(["load", SCENARIO, *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.integration  # starts a server process (make check skips it)
def test_servers_refuse_an_address_not_of_this_machine(tmp_path: Path) -> None:
    for module, extra in (("servers.receiver", ["--secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]),
                          ("servers.producer", ["--scenario-json", str(tmp_path / "none.json"), "--db",
                                                str(tmp_path / "p.db")])):
        res = subprocess.run([sys.executable, "-m", module, "--bind", NOT_HERE, "--port", "0", *extra], cwd=REPO,
                             capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
        assert res.returncode == 2, res.stderr
        assert "--bind" in res.stderr and "is not an address of this machine" in res.stderr and "Traceback" not in \
            res.stderr


def test_orchestrators_pass_the_bind_address(tmp_path: Path) -> None:
    from bench.config import load_scenario

    assert producer_argv(tmp_path / "s.json", tmp_path / "p.db", tmp_path, 0, 0)[-2:] == ["--bind", DEFAULT_BIND]
    assert receiver_argv(tmp_path / "r.json", tmp_path, bind="::1")[-2:] == ["--bind", "::1"]
    sc = load_scenario(REPO / SCENARIO)
    argv = _locust_argv(sc, REPO / "scenarios", tmp_path, "http://[::1]:9000", 0, "/hooks/webhook",
                        MasterOptions(expect_workers=2, bind_port=5557, max_wait_s=10), bind="::1")
    assert argv[argv.index("--master-bind-host") + 1] == "::1" and argv[argv.index("--host") + 1] == \
        "http://[::1]:9000"


def test_receiver_certificate_names_the_bind_address(tmp_path: Path) -> None:
    from servers.receiver.tls import CERT_FILE, write_self_signed

    write_self_signed(tmp_path, hosts=("10.213.7.1", "127.0.0.1", "fd00::7"))
    cert = x509.load_pem_x509_certificate((tmp_path / CERT_FILE).read_bytes())
    ips = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.IPAddress)
    assert sorted(map(str, ips)) == sorted(["127.0.0.1", "::1", "10.213.7.1", "fd00::7"])
    assert all(isinstance(ip, (ipaddress.IPv4Address, ipaddress.IPv6Address)) for ip in ips)


def test_worker_records_dir_is_the_wire_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`hookbench load --worker --records-dir DIR` hands DIR to its Locust worker as bench.wire.LOCAL_COPY_ENV."""
    from bench.orchestration import distributed, load
    from bench.wire import LOCAL_COPY_ENV

    seen: dict[str, object] = {}

    class FakePopen:
        def __init__(self, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
            seen.update(argv=argv, env=env)

        def wait(self) -> int:
            return 0

    from bench.config import load_scenario

    monkeypatch.setattr(distributed.subprocess, "Popen", FakePopen)
    assert load.run_workers(load_scenario(REPO / SCENARIO), REPO / "scenarios", master_host="::1", master_port=5557,
                            processes=1, repo=REPO, records_dir=tmp_path / "copy", log=lambda _: None) == 0
    env, argv = seen["env"], seen["argv"]
    assert isinstance(env, dict) and env[LOCAL_COPY_ENV] == str((tmp_path / "copy").resolve())
    assert (tmp_path / "copy").is_dir()
    assert isinstance(argv, list) and argv[argv.index("--master-host") + 1] == "::1"
