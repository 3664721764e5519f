"""Typed errors of hookbench. The library raises these; only the CLI turns them into messages and exit codes."""

from __future__ import annotations

__all__ = ["HookbenchError", "ScenarioError", "RunError", "RunDirError", "FormatVersionError"]


class HookbenchError(Exception):
    """Base of every error a user can cause or fix; the CLI prints it without a traceback."""

    exit_code = 1


class ScenarioError(HookbenchError):
    """A scenario file or an override holds a value that is not allowed.

    The message names the file, the key, the bad value and what was expected.
    """

    exit_code = 2

    def __init__(self, source: str, key: str, value: object, expected: str) -> None:
        self.source, self.key, self.value, self.expected = source, key, value, expected
        shown = "(missing)" if value is _MISSING else repr(value)
        super().__init__(f"{source}: {key} = {shown}: {expected}")


class RunError(HookbenchError):
    """A run could not be carried out (a child process failed to start, crashed, or never answered)."""

    exit_code = 1


class RunDirError(HookbenchError):
    """A run directory is missing, incomplete, or not a hookbench run directory."""

    exit_code = 2


class FormatVersionError(RunDirError):
    """A result file has a format_version this hookbench does not know."""


class _Missing:
    def __repr__(self) -> str:
        return "(missing)"


_MISSING = _Missing()
MISSING = _MISSING
