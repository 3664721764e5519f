"""Turn values read from result files into display text; null, NaN and non-numbers show as a dash."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from bench.modes import MODE_KINDS, find_kind, is_push
from reports.document import Cell, Failure

__all__ = ["DASH", "number", "get", "obj", "fmt_count", "fmt_num", "fmt_short", "fmt_pct", "fmt_text",
           "fmt_counted", "fmt_policy", "count_failed_if_positive", "is_webhook"]

DASH = "–"  # en dash: the contract's rendering of null


def number(value: Any) -> float | None:
    """`value` as a finite-or-infinite float, or None for null, NaN, booleans and non-numbers."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return None if math.isnan(value) else value


def get(data: Any, *keys: str) -> Any:
    """data[k1][k2]..., or None as soon as a level is missing or not an object."""
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def obj(value: Any) -> dict[str, Any]:
    """`value` if it is a JSON object, else an empty one: a missing section shows as dashes, not an error."""
    return value if isinstance(value, dict) else {}


def fmt_count(value: Any) -> str:
    """An integer count with thousands separators (1,500)."""
    x = number(value)
    if x is None:
        return fmt_text(value)
    if math.isinf(x) or not x.is_integer():
        return fmt_num(x)
    return f"{int(x):,}"


def fmt_counted(value: Any, noun: str, verb: tuple[str, str] | None = None) -> str:
    """A count with its noun (and verb) agreeing: "1 change was", "50 changes were"."""
    one = number(value) == 1
    text = f"{fmt_count(value)} {noun if one else noun + 's'}"
    return text if verb is None else f"{text} {verb[0] if one else verb[1]}"


def count_failed_if_positive(value: Any) -> Cell:
    """A count of things that went wrong (changes lost, hostile requests processed): a Failure when above 0."""
    text = fmt_count(value)
    return Failure(text) if (number(value) or 0) > 0 else text


def fmt_num(value: Any, digits: int = 3) -> str:
    """A measurement to `digits` significant figures, never in scientific notation (0.0200, 90.1, 12,345)."""
    x = number(value)
    if x is None:
        return fmt_text(value)
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    if x == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(x)))
    decimals = max(0, digits - 1 - magnitude)
    return f"{x:,.{decimals}f}"


def fmt_short(value: Any, digits: int = 3) -> str:
    """Like fmt_num without trailing zeros, for prose (1 s, 0.1 changes/s, 0.8 ms)."""
    text = fmt_num(value, digits)
    return text.rstrip("0").rstrip(".") if number(value) is not None and "." in text else text


def fmt_pct(value: Any, decimals: int = 2) -> str:
    """A fraction as a percentage (0.0333 -> 3.33%)."""
    x = number(value)
    return fmt_text(value) if x is None else f"{100 * x:.{decimals}f}%"


def fmt_text(value: Any) -> str:
    """Any other value: null as a dash, the rest as its string."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


POLICY_WORDS = {"fire_and_forget": "fire-and-forget", "retry": "retries (in memory)",
                "outbox": "retries + durable outbox"}


def is_webhook(mode: str) -> bool:
    """Whether the producer sends `mode` its changes (webhook, webhook_ff, webhook_outbox, ...): bench.modes."""
    return is_push(mode)


def fmt_policy(policy: Any, mode: str, style: Any = None) -> str:
    """How a mode delivers or catches up, in words; a polling mode's are its kind's (found by style, else by name)."""
    if policy == "polling":
        kind = next((k for k in MODE_KINDS if k.style == style), None) if style is not None else find_kind(mode)
        return kind.policy_words if kind is not None and kind.policy_words else "polling"
    words = POLICY_WORDS.get(policy) if isinstance(policy, str) else None
    kind = find_kind(mode)  # a push kind that also catches up its own way says so (webhook + reconcile)
    extra = f" + {kind.policy_words}" if kind is not None and kind.is_push and kind.policy_words else ""
    return (words or fmt_text(policy)) + extra


def wasted_interval(mode: dict[str, Any]) -> tuple[float, float] | None:
    """The 95% interval of a mode's wasted fraction as (low, high), when summary.json has one."""
    ci = mode.get("wasted_fraction_ci95")
    if not isinstance(ci, (list, tuple)) or len(ci) != 2:
        return None
    lo, hi = number(ci[0]), number(ci[1])
    return None if lo is None or hi is None else (lo, hi)


def fmt_started_at(value: Any) -> str:
    """An ISO time from manifest.json as 'YYYY-MM-DD HH:MM:SS+00:00'; anything else as text."""
    if not isinstance(value, str):
        return fmt_text(value)
    try:
        return datetime.fromisoformat(value).isoformat(sep=" ", timespec="seconds")
    except ValueError:
        return value
