"""The suite's own rule (tests/conftest.py): which child processes make a test an integration test."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import starts_a_server


@pytest.mark.parametrize("argv,expected", [
    ([sys.executable, "-m", "servers.producer", "--port", "0"], True),
    ([sys.executable, "-m", "servers.receiver"], True),
    ([sys.executable, "-m", "locust", "-f", "scenarios/fleet.py"], True),
    (["/usr/bin/locust", "-f", "x.py"], True),
    ([sys.executable, "-m", "bench.cli", "run", "scenarios/default.toml"], True),
    ([sys.executable, "-m", "bench.perf", "held"], True),
    (".venv/bin/hookbench load scenarios/x.toml", True),
    ([sys.executable, "-m", "bench.cli", "simulate"], False),
    (["hookbench", "outage"], False),
    (["git", "log", "--format=%ct"], False),
    ([sys.executable, "scenarios/storm.py"], False),  # prints the locustfile's options; Locust is not started
])
def test_which_children_start_a_server(argv: list[str] | str, expected: bool) -> None:
    assert starts_a_server(argv) is expected


def test_an_unmarked_test_cannot_start_one() -> None:
    with pytest.raises(AssertionError, match="mark it @pytest.mark.integration"):
        subprocess.Popen([sys.executable, "-m", "servers.producer", "--help"])
