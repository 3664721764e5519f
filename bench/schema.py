"""The validation machinery behind scenario files: typed fields, durations, and one table check.

`bench.config` declares *what* a scenario holds with `Field`s; this module checks a TOML table against
such a declaration and words every error the same way (source, key, bad value, what was expected).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable

from bench.errors import MISSING, ScenarioError

__all__ = ["Field", "parse_duration", "validate_table", "DURATION_HELP"]

_DURATION_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(us|ms|s|m|h|d)?\s*$")
_UNIT_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
DURATION_HELP = 'must be a positive duration like "500ms", "2s" or "1m" (a bare number means seconds)'


def parse_duration(value: object) -> float:
    """Seconds from `"250ms"`, `"2s"`, `"1.5m"`, `"1h"`, `"1d"`, `"10us"` or a number of seconds. Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not a duration")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        m = _DURATION_RE.match(value)
        if not m:
            raise ValueError(f"cannot read {value!r} as a duration")
        seconds = float(m.group(1)) * _UNIT_S[m.group(2)]
    else:
        raise ValueError(f"{type(value).__name__} is not a duration")
    if not math.isfinite(seconds):
        raise ValueError("not finite")
    return seconds


def duration_text(seconds: float) -> str:
    """Seconds in the largest unit that keeps the number readable: 45 s, 12.5 min, 27.6 h, 3 d (days from 2 d)."""
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size * (2 if unit == "d" else 1):
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


@dataclass(frozen=True)
class Field:
    """One key: its kind, default (MISSING = required), a constraint and the words for a bad value.

    Kinds: duration, float, int, str, bool, choice (one of `choices`), choices (a list of distinct
    `choices`), durations (a list of durations), floats (a list of numbers), tables (a list of tables
    checked against `fields`).
    """

    kind: str
    default: Any = MISSING
    check: Callable[[Any], bool] | None = None
    expected: str = ""
    choices: tuple[str, ...] = ()
    fields: dict[str, "Field"] | None = None

    def words(self) -> str:
        if self.expected:
            return self.expected
        if self.kind == "choice":
            return f"must be one of {', '.join(self.choices)}"
        if self.kind == "choices":
            return f"must be a list of distinct values from {list(self.choices)}"
        return _KIND_WORDS[self.kind]


_KIND_WORDS = {
    "duration": DURATION_HELP, "float": "must be a number", "int": "must be an integer",
    "str": "must be a string", "bool": "must be true or false",
    "durations": 'must be a list of durations like ["1s", "5s", "30s"]', "tables": "must be a list of tables",
    "floats": "must be a list of numbers",
}


def _coerce(f: Field, value: Any) -> Any:
    """`value` as `f.kind`, or ValueError (the caller words the message)."""
    kind = f.kind
    if kind == "duration":
        return parse_duration(value)
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError
        return float(value)
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError
        return value
    if kind in ("str", "choice"):
        if not isinstance(value, str) or (kind == "choice" and value not in f.choices):
            raise ValueError
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError
        return value
    if kind == "choices":
        if not isinstance(value, list) or not all(isinstance(s, str) and s in f.choices for s in value) \
                or len(set(value)) != len(value):
            raise ValueError
        return tuple(value)
    if kind == "durations":
        if not isinstance(value, list):
            raise ValueError
        out = tuple(parse_duration(v) for v in value)
        if any(d < 0 for d in out):
            raise ValueError
        return out
    if kind == "floats":
        if not isinstance(value, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                  and math.isfinite(v) for v in value):
            raise ValueError
        return tuple(float(v) for v in value)
    raise AssertionError(kind)


def validate_table(table: Any, fields: dict[str, Field], prefix: str, source: Callable[[str], str],
                   extra_allowed: set[str] = frozenset()) -> dict[str, Any]:  # type: ignore[assignment]
    """Check one table against its fields; return the values (defaults filled in).

    `prefix` names the table in messages ("webhook", "faults.receiver_down[1]"); `source(key)` tells
    where a key's value came from (the file, or a --set override). Keys in `extra_allowed` pass through
    unchecked (the caller validates them, e.g. sub-tables).
    """
    def where(key: str) -> str:
        return f"{prefix}.{key}" if prefix else key

    if not isinstance(table, dict):
        raise ScenarioError(source(prefix), prefix or "(top level)", table, "must be a table")
    for key in table:
        if key not in fields and key not in extra_allowed:
            allowed = ", ".join(sorted(set(fields) | set(extra_allowed)))
            raise ScenarioError(source(where(key)), where(key), table[key], f"unknown key; allowed here: {allowed}")
    out: dict[str, Any] = {}
    for key, f in fields.items():
        if key not in table or table[key] is None:
            if f.default is MISSING:
                raise ScenarioError(source(where(key)), where(key), MISSING, "is required; " + f.words())
            out[key] = tuple(f.default) if isinstance(f.default, list) else f.default
            continue
        if f.kind == "tables":
            rows = table[key]
            if not isinstance(rows, list):
                raise ScenarioError(source(where(key)), where(key), rows, f.words())
            assert f.fields is not None
            out[key] = tuple(validate_table(row, f.fields, f"{where(key)}[{i}]", source)
                             for i, row in enumerate(rows))
            if f.check is not None and not f.check(out[key]):
                raise ScenarioError(source(where(key)), where(key), rows, f.expected)
            continue
        try:
            v = _coerce(f, table[key])
        except ValueError:
            raise ScenarioError(source(where(key)), where(key), table[key], f.words()) from None
        if f.check is not None and not f.check(v):
            raise ScenarioError(source(where(key)), where(key), table[key], f.words())
        out[key] = v
    return out
