"""Scenario validation: each kind of bad input gives its own specific message and exit code 2, via the CLI."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bench.cli import main
from bench.config import load_scenario, parse_duration
from bench.errors import ScenarioError

REPO = Path(__file__).resolve().parents[1]

GOOD = """\
name = "t"
seed = 7
[run]
duration = "10s"
[resources]
count = 3
[changes]
process = "poisson"
rate = 0.5
[polling]
interval = "250ms"
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "s.toml"
    p.write_text(textwrap.dedent(text))
    return p


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def test_good_scenario_loads_with_defaults(tmp_path: Path) -> None:
    sc = load_scenario(write(tmp_path, GOOD))
    assert sc.run.duration == 10.0 and sc.run.warmup == 3.0 and sc.run.time_scale == 1.0
    assert sc.polling.interval == 0.25 and sc.polling.styles == ("cursor", "etag")
    assert sc.modes == ("polling", "polling_etag", "webhook")
    assert sc.live_change_rate == 0.5


def test_overrides_apply_and_are_validated(tmp_path: Path) -> None:
    sc = load_scenario(write(tmp_path, GOOD), ["polling.interval=2s", 'polling.styles=["etag"]',
                                               "run.time_scale=4", "webhook.enabled=false", "seed=9"])
    assert sc.polling.interval == 2.0 and sc.polling.styles == ("etag",) and sc.seed == 9
    assert sc.live_poll_interval == 0.5 and sc.live_change_rate == 2.0
    assert sc.modes == ("polling_etag",)


def test_default_scenario_is_valid() -> None:
    sc = load_scenario(REPO / "scenarios" / "default.toml")
    assert sc.name == "default" and set(sc.modes) == {"polling", "polling_etag", "webhook"}


def test_resolved_scenario_round_trips(tmp_path: Path) -> None:
    from bench.config import scenario_from_dict

    sc = load_scenario(write(tmp_path, GOOD))
    again = scenario_from_dict(sc.to_dict(), "manifest")
    assert again.to_dict() == sc.to_dict()


@pytest.mark.parametrize("value,seconds", [("500ms", 0.5), ("2s", 2.0), ("1.5m", 90.0), ("1h", 3600.0),
                                           ("250us", 0.00025), (3, 3.0), ("0.1", 0.1)])
def test_parse_duration(value: object, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["fast", "2 days", "", "-", True, [1]])
def test_parse_duration_rejects(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


# (edit applied to GOOD, expected fragments of the message)
BAD = [
    ('[polling]\ninterval = "250ms"', '[polling]\nintervall = "1s"\ninterval = "250ms"',
     ["polling.intervall = '1s'", "unknown key", "allowed here:", "interval"]),
    ("count = 3", 'count = "ten"', ["resources.count = 'ten'", "must be an integer from 1 to 100000"]),
    ('interval = "250ms"', 'interval = "-1s"', ["polling.interval = '-1s'", "must be a positive duration"]),
    ('interval = "250ms"', 'interval = "0s"', ["polling.interval = '0s'", "must be a positive duration"]),
    ('interval = "250ms"', 'interval = 0', ["polling.interval = 0", "must be a positive duration"]),
    ("count = 3", "", ["resources.count = (missing)", "is required"]),
    ("rate = 0.5", "", ["changes.rate = (missing)", 'required when changes.process = "poisson"']),
    ('process = "poisson"', 'process = "weekly"', ["changes.process = 'weekly'",
                                                   "must be one of poisson, constant, bursty, trace"]),
    ('process = "poisson"', 'process = "bursty"\non = "5s"', ["changes.off = (missing)",
                                                              'required when changes.process = "bursty"']),
    ('process = "poisson"', 'process = "trace"', ["changes.trace / changes.git = (missing)", "exactly one of"]),
    ('process = "poisson"', 'process = "trace"\ntrace = "no-such.csv"',
     ["changes.trace = ", "no-such.csv", "cannot be replayed", "file not found"]),
    ('process = "poisson"', 'process = "trace"\ntrace = "a.csv"\ngit = "."', ["exactly one of"]),
    ('process = "poisson"', 'process = "trace"\ngit = "/"', ["changes.git = '/'", "cannot be replayed", "git log"]),
    ("seed = 7", "seed = 1.5", ["seed = 1.5", "must be an integer"]),
    ("seed = 7", 'colour = "red"', ["colour = 'red'", "unknown key"]),
    ('[run]\nduration = "10s"', '[run]\nduration = "10s"\nwarmup = "-2s"', ["run.warmup = '-2s'", "duration >= 0"]),
    ('[polling]\ninterval = "250ms"', '[polling]\ninterval = "250ms"\nstyles = ["cursor", "rss"]',
     ["polling.styles = ['cursor', 'rss']", "must be a non-empty list"]),
    ('[polling]\ninterval = "250ms"', '[polling]\ninterval = "250ms"\nstyles = []', ["polling.styles = []"]),
    ('name = "t"', 'name = "has space"', ["name = 'has space'", "letters, digits"]),
    ("count = 3", "count = 3\n[webhook]\nbackoff_base = \"5s\"\nbackoff_cap = \"1s\"",
     ["webhook.backoff_cap = 1.0", "must be >= webhook.backoff_base"]),
    ('duration = "10s"', 'duration = "10s"]]', ["(syntax)", "must be valid TOML"]),
]


@pytest.mark.parametrize("old,new,fragments", BAD, ids=[b[2][0] for b in BAD])
def test_bad_scenario_exits_2_with_specific_message(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     old: str, new: str, fragments: list[str]) -> None:
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    code, err = run_cli(capsys, "run", str(path), "--out", str(tmp_path / "runs"))
    assert code == 2
    assert err.startswith(f"hookbench: {path}: ")
    for fragment in fragments:
        assert fragment in err
    assert not (tmp_path / "runs").exists()  # nothing was started


@pytest.mark.parametrize("argv,fragments", [
    (["--set", "polling.interval=0"], ["--set (over ", "polling.interval = 0", "positive duration"]),
    (["--set", "polling.colour=red"], ["--set: polling.colour = 'red'", "unknown key", "polling.interval"]),
    (["--set", "novalue"], ["--set: novalue", "must look like key=value"]),
    (["--duration", "-3"], ["run.duration = -3.0", "positive duration"]),
    (["--seed", "-1"], ["seed = -1", "must be an integer in [0, 2**63)"]),
])
def test_bad_override_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                              fragments: list[str]) -> None:
    code, err = run_cli(capsys, "run", str(write(tmp_path, GOOD)), "--out", str(tmp_path / "runs"), *argv)
    assert code == 2
    for fragment in fragments:
        assert fragment in err


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(capsys, "run", str(tmp_path / "nope.toml"))
    assert code == 2 and "nope.toml" in err and "file not found" in err


def test_report_on_a_non_run_directory_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(capsys, "report", str(tmp_path))
    assert code == 2
    assert "manifest.json" in err and "hookbench run" in err


def test_scenario_error_carries_its_parts() -> None:
    e = ScenarioError("f.toml", "polling.interval", -1, "must be positive")
    assert str(e) == "f.toml: polling.interval = -1: must be positive" and e.exit_code == 2


def test_unwritable_out_dir_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, err = run_cli(capsys, "run", str(write(tmp_path, GOOD)), "--out", str(blocker))
    assert code == 2 and str(blocker) in err and "pass a writable --out DIR" in err


@pytest.mark.parametrize("argv,starts", [
    (["outage", "--lengths", "soon"], "hookbench outage: --lengths = 'soon': "),
    (["simulate", "--polls", "0"], "hookbench simulate: --polls = 0: "),
])
def test_a_command_named_in_its_error_is_not_prefixed_twice(argv: list[str], starts: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(starts) and "hookbench: hookbench" not in err, err
