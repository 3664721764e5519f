"""Suite-wide rules: a test that starts a server or Locust process must be marked `integration`.

`make check` runs the tests without that marker (lint plus everything that starts no server process) as the fast
inner loop; this guard keeps the split honest. It refuses, in an unmarked test, to start a child process that runs
one of our servers, Locust, or a hookbench command that starts them, and names the marker to add.
"""

from __future__ import annotations

import subprocess
from typing import Any, Iterator, Sequence

import pytest

# hookbench commands that start servers or Locust; the others (simulate, outage, report, ...) run in-process math
SERVER_COMMANDS = {"serve", "run", "load", "sweep", "reproduce"}


def starts_a_server(argv: Sequence[str] | str) -> bool:
    """Whether a child with this command line runs one of our servers, Locust, or a command that starts them."""
    args = argv.split() if isinstance(argv, str) else [str(a) for a in argv]
    for i, arg in enumerate(args):
        program = arg.rsplit("/", 1)[-1] if i == 0 else None
        if program == "locust":
            return True
        if program == "hookbench":
            return bool(SERVER_COMMANDS & set(args[1:2]))
        if arg == "-m" and i + 1 < len(args):
            module = args[i + 1]
            if module.split(".")[0] == "servers" or module == "locust" or module.startswith("bench.perf"):
                return True
            if module == "bench.cli":
                return bool(SERVER_COMMANDS & set(args[i + 2:i + 3]))
    return False


@pytest.fixture(autouse=True)
def _servers_need_the_integration_marker(request: pytest.FixtureRequest,
                                         monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if request.node.get_closest_marker("integration") is not None:
        yield
        return
    real_init = subprocess.Popen.__init__

    def guarded_init(self: subprocess.Popen[Any], args: Any, *a: Any, **kw: Any) -> None:
        if starts_a_server(args):
            raise AssertionError(f"{request.node.nodeid} starts a server or Locust process ({args!r}): mark it "
                                 "@pytest.mark.integration (make check runs only the tests without that marker)")
        real_init(self, args, *a, **kw)

    monkeypatch.setattr(subprocess.Popen, "__init__", guarded_init)
    yield
