"""`hookbench load --target-url`: checking the URL and secret, the refused flag combinations, the unreachable
target, the senders' retry schedule, the served receiver's capacity, and the report's "unavailable" list."""

from __future__ import annotations

import copy
import json
import socket
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from test_report_overload import MANIFEST, STEPS, T0, _section, _summary, make_load_run

from bench.analysis.overload import overload_section
from bench.cli import main
from bench.config import load_scenario
from bench.errors import RunError, ScenarioError
from bench.orchestration.load import sender_policy
from bench.orchestration.target import SECRET_ENV, parse_target, preflight, unavailable_figures
from bench.orchestration.wiring import storm_policy_argv
from bench.signing import new_secret_for
from reports import build_report

SECRET = new_secret_for("standard")
RECEIVER, PRODUCER = "scenarios/overload_receiver.toml", "scenarios/overload_producer.toml"


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, read, closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the URL and the secret -----------------------------------------------------------------------

def test_a_receiver_url_splits_into_host_and_endpoint_path() -> None:
    t = parse_target("http://127.0.0.1:9000/hooks/webhook?token=abc", "receiver", "standard", None,
                     {SECRET_ENV: SECRET})
    assert (t.base, t.path, t.host, t.port) == ("http://127.0.0.1:9000", "/hooks/webhook?token=abc", "127.0.0.1", 9000)
    assert t.secret == SECRET and t.secret_from == f"${SECRET_ENV}"
    public = t.public()  # what the manifest and summary record: no secret, no query (it may hold a token)
    assert public == {"external": True, "kind": "receiver",
                      "url": "http://127.0.0.1:9000/hooks/webhook?<query redacted>",
                      "secret": f"<redacted> (from ${SECRET_ENV})"}
    assert SECRET not in json.dumps(public) and "abc" not in json.dumps(public)


def test_a_producer_url_is_a_base_its_prefix_kept_and_defaults_to_the_scheme_port() -> None:
    t = parse_target("https://api.example.test/v1/", "producer", "standard", None, {SECRET_ENV: SECRET})
    assert (t.base, t.path, t.port, t.secret) == ("https://api.example.test/v1", "", 443, None)


def test_the_flag_wins_over_the_environment() -> None:
    other = new_secret_for("standard")
    t = parse_target("http://127.0.0.1:9000/hooks", "receiver", "standard", other, {SECRET_ENV: SECRET})
    assert (t.secret, t.secret_from) == (other, "--target-secret")


@pytest.mark.parametrize("url,kind,expected", [
    ("ftp://127.0.0.1/hooks", "receiver", "http:// or https://"),
    ("127.0.0.1:9000/hooks", "receiver", "http:// or https://"),
    ("http:///hooks", "receiver", "with a host"),
    ("http://127.0.0.1:99999/hooks", "receiver", "is not a URL"),
    ("http://127.0.0.1:9000/hooks#x", "receiver", "#fragment"),
    ("http://127.0.0.1:9000/api?x=1", "producer", "without a query"),
])
def test_bad_urls_are_refused_naming_the_flag(url: str, kind: str, expected: str) -> None:
    with pytest.raises(ScenarioError) as e:
        parse_target(url, kind, "standard", SECRET, {})
    assert e.value.key == "--target-url" and expected in e.value.expected


def test_credentials_in_the_url_are_refused_and_never_shown() -> None:
    with pytest.raises(ScenarioError) as e:
        parse_target("http://alice:hunter2@127.0.0.1:9000/hooks", "receiver", "standard", SECRET, {})
    assert "credentials" in str(e.value) and "hunter2" not in str(e.value) and "alice" not in str(e.value)


def test_a_receiver_needs_a_secret_that_suits_the_scheme() -> None:
    with pytest.raises(ScenarioError) as e:
        parse_target("http://127.0.0.1:9000/hooks", "receiver", "standard", None, {})
    assert e.value.key == "--target-secret" and SECRET_ENV in e.value.expected
    with pytest.raises(ScenarioError) as e:
        parse_target("http://127.0.0.1:9000/hooks", "receiver", "standard", None, {SECRET_ENV: "not a secret"})
    assert e.value.key == f"${SECRET_ENV}" and "not a standard secret" in e.value.expected
    assert "not a secret" not in str(e.value)  # redacted, even when wrong


def test_a_producer_takes_no_secret_flag_and_ignores_the_environment() -> None:
    with pytest.raises(ScenarioError) as e:
        parse_target("http://127.0.0.1:8080", "producer", "standard", SECRET, {})
    assert e.value.key == "--target-secret" and SECRET not in str(e.value)
    assert parse_target("http://127.0.0.1:8080", "producer", "standard", None, {SECRET_ENV: SECRET}).secret is None


# --- the command line ------------------------------------------------------------------------------

@pytest.mark.parametrize("argv,flag", [
    ([RECEIVER, "--target-secret", SECRET], "--target-secret"),
    ([RECEIVER, "--worker", "--master-host", "127.0.0.1", "--target-url", "http://127.0.0.1:9/hooks"],
     "--target-url"),
    ([RECEIVER, "--target-url", "ftp://127.0.0.1:9/hooks", "--target-secret", SECRET], "--target-url"),
    ([RECEIVER, "--target-url", "http://127.0.0.1:9/hooks"], "--target-secret"),
    ([PRODUCER, "--target-url", "http://127.0.0.1:9", "--target-secret", SECRET], "--target-secret"),
])
def test_load_refuses_bad_target_flags_with_exit_2(argv: list[str], flag: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    assert main(["load", *argv, "--out", str(tmp_path)] if "--worker" not in argv else ["load", *argv]) == 2
    err = capsys.readouterr().err
    assert flag in err and "Traceback" not in err and SECRET not in err
    assert not any(tmp_path.iterdir())  # nothing was started, nothing written


def test_an_unreachable_target_fails_before_the_ramp(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    port = _closed_port()
    monkeypatch.setenv(SECRET_ENV, SECRET)
    code = main(["load", RECEIVER, "--target-url", f"http://127.0.0.1:{port}/hooks", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and f"cannot connect to 127.0.0.1:{port}" in err and "nothing was started" in err
    assert "Traceback" not in err and not any(tmp_path.iterdir())
    with pytest.raises(RunError, match="cannot connect"):
        preflight(parse_target(f"http://127.0.0.1:{port}", "producer", "standard", None, {}))


# --- the senders run the scenario's delivery schedule ---------------------------------------------

def test_the_storm_runs_the_profiles_schedule_scaled() -> None:
    sc = load_scenario(RECEIVER, ["webhook.profile=square", "webhook.delay_scale=600", "webhook.max_attempts=5",
                                  "webhook.jitter=0.1"])
    d = sc.webhook.subscriptions[0]
    argv = storm_policy_argv(d)
    # Square: 1, 2, 4, 8 min between the first five attempts, divided by delay_scale 600 (explicit keys win)
    assert argv[argv.index("--hb-attempts") + 1] == "5"
    assert "--hb-delays=0.1,0.2,0.4,0.8" in argv
    assert argv[argv.index("--hb-jitter") + 1] == "0.1"
    assert argv[argv.index("--hb-timeout") + 1] == "2.0"  # the scenario's own timeout key wins over the profile
    policy = sender_policy(sc)
    assert policy["profile"] == "square" and policy["retry_delays_s"] == [0.1, 0.2, 0.4, 0.8]
    assert "disable_after" in policy["not_run"]


def test_fire_and_forget_senders_make_one_attempt() -> None:
    d = load_scenario(RECEIVER, ["webhook.policy=fire_and_forget"]).webhook.subscriptions[0]
    argv = storm_policy_argv(d)
    assert argv[argv.index("--hb-attempts") + 1] == "1" and "--hb-delays=" in argv


def test_the_shipped_overload_scenario_keeps_the_storms_former_schedule() -> None:
    argv = storm_policy_argv(load_scenario(RECEIVER).webhook.subscriptions[0])
    assert argv == ["--hb-attempts", "3", "--hb-delays=0.2,0.4", "--hb-jitter", "0.0", "--hb-timeout", "2.0",
                    "--hb-retry-after-cap", "5.0"]


# --- `hookbench serve receiver` with the scenario's capacity --------------------------------------

def _served_setup(*argv: str) -> Any:
    from servers.receiver.__main__ import _parser, _setup

    setup, simple = _setup(_parser().parse_args(["--secret", SECRET, *argv]))
    assert simple
    return setup


def test_serve_receiver_takes_the_scenarios_capacity_and_flags_override_it() -> None:
    f = _served_setup("--scenario", RECEIVER).faults
    assert (f.receiver_max_concurrent, f.receiver_processing) == (8, 0.004)
    f = _served_setup("--scenario", RECEIVER, "--max-concurrent", "2", "--processing", "10ms").faults
    assert (f.receiver_max_concurrent, f.receiver_processing) == (2, 0.01)
    f = _served_setup("--max-concurrent", "3").faults
    assert (f.receiver_max_concurrent, f.receiver_processing) == (3, 0.0)
    assert _served_setup("--scenario", RECEIVER, "--set", "webhook.scheme=github").endpoints[0].scheme == "github"


@pytest.mark.parametrize("argv,flag", [
    (["--processing", "soon"], "--processing"),
    (["--max-concurrent", "-1"], "--max-concurrent"),
    (["--set", "faults.receiver_processing=1ms"], "--set"),
])
def test_serve_receiver_refuses_bad_capacity_flags(argv: list[str], flag: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from servers.receiver.__main__ import main as receiver_main

    assert receiver_main(["--port", "0", "--secret", SECRET, *argv]) == 2
    err = capsys.readouterr().err
    assert flag in err and "Traceback" not in err


# --- the analysis and the report name what an external target cannot give -------------------------

def test_without_server_counters_the_steps_lack_their_keys() -> None:
    requests = pd.DataFrame({"t_intended_ns": [T0 + 2_000_000_000], "t_send_ns": [T0 + 2_000_000_000],
                             "t_recv_ns": [T0 + 2_005_000_000], "status": [204], "error": [None], "attempt": [1],
                             "msg_id": ["m1"]})
    steps = pd.DataFrame({"t_ns": [T0, T0 + 4_000_000_000], "step": [0, -1], "users": [1, 0]})
    stats = pd.DataFrame(columns=["t_ns", "server", "in_flight", "pending", "requests", "shed_503"])
    kw: dict[str, Any] = {"rate_per_user": 1.0, "settle_s": 1.0, "slo_p99_ms": 100.0, "ramp_steps": 1}
    built_in = overload_section(requests, steps, stats, **kw)["steps"][0]
    external = overload_section(requests, steps, stats, server_counters=False, **kw)["steps"][0]
    assert built_in["in_flight_end"] is None and "backlog_end" in built_in
    assert "in_flight_end" not in external and "backlog_end" not in external
    assert external["achieved_rps"] == built_in["achieved_rps"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("kind", ["receiver", "producer"])
def test_unavailable_figures_are_named_for_each_target(kind: str) -> None:
    rows = unavailable_figures(kind)
    names = [r["figure"] for r in rows]
    assert f"{kind} CPU" in names and f"{kind} event-loop lag" in names and "in flight at each step's end" in names
    assert ("delivery backlog at each step's end" in names) == (kind == "producer")
    assert all(r["key"] and r["why"] for r in rows)


def test_the_report_of_an_external_run_names_the_unavailable_figures(tmp_path: Path) -> None:
    summary = _summary()
    url = "http://127.0.0.1:9000/hooks"
    summary["target_server"] = {"external": True, "kind": "receiver", "url": url, "secret": "<redacted>"}
    summary["unavailable"] = unavailable_figures("receiver")
    for key in ("receiver_loop_lag_ms", "receiver_cpu_max_pct"):
        del summary["saturation"][key]
    summary["overload"]["steps"] = [{k: v for k, v in s.items() if k not in ("backlog_end", "in_flight_end")}
                                    for s in copy.deepcopy(STEPS)]
    manifest = copy.deepcopy(MANIFEST)
    manifest["senders"] = {"scheme": "standard", "profile": "svix", "attempts": 3, "retry_delays_s": [0.005, 0.3],
                           "jitter": 0.0, "timeout_s": 15.0, "retry_after_cap_s": 60.0}
    out = build_report(make_load_run(tmp_path, summary, manifest, tables=("steps", "harness", "requests")))
    md = out["md"].read_text(encoding="utf-8")
    section = _section(md, "Not measured: the target's own figures")
    for row in summary["unavailable"]:
        assert row["figure"] in section
    assert url in _section(md, "What was measured") and "svix profile's" in md
    assert "backlog / in flight" not in _section(md, "Steps").split("*")[0]  # no column of blanks
    harness = _section(md, "Harness check")
    assert "receiver CPU max" not in harness and "unavailable (external target" in harness


def test_the_report_of_a_built_in_run_has_no_unavailable_section(tmp_path: Path) -> None:
    md = build_report(make_load_run(tmp_path))["md"].read_text(encoding="utf-8")
    assert "Not measured" not in md and "backlog / in flight at end" in md and "receiver CPU max 99%" in md
