"""The "Who lost what" section: summary.json's `faults` section as one row per mode, and the faults injected.

Values are shown as bench/analysis/loss.py wrote them; only units change (max delay in seconds, fault times relative to
the window start).
"""

from __future__ import annotations

from typing import Any

from reports.document import Block, Bullets, Cell, Para, Row, Strong, Table
from reports.fmt import (
    DASH,
    count_failed_if_positive,
    fmt_count,
    fmt_counted,
    fmt_num,
    fmt_policy,
    fmt_short,
    fmt_text,
    get,
    is_webhook,
    number,
)
from reports.rundir import RunData

__all__ = ["loss_blocks", "faults_injected", "down_intervals", "crashes"]

MAX_LOST_IDS = 10
DOWN_MODE_WORDS = {"refuse": "refusing connections", "503": "answering 503 Service Unavailable"}


def down_intervals(faults: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The receiver's outages as summary.json lists them (objects only)."""
    return [d for d in _list(get(faults, "receiver_down")) if isinstance(d, dict)]


def crashes(faults: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The producer's crashes as summary.json lists them (objects only)."""
    return [c for c in _list(get(faults, "producer_crashes")) if isinstance(c, dict)]


def faults_injected(faults: dict[str, Any] | None) -> bool:
    """True when the receiver was down or the producer crashed during the run."""
    return bool(down_intervals(faults) or crashes(faults))


def loss_blocks(run: RunData) -> list[Block]:
    """The section's blocks, or none when the run has no faults and at most one webhook mode to compare."""
    faults = run.faults
    modes = get(faults, "modes")
    if not isinstance(modes, dict) or not modes:
        return []
    modes = {name: section for name, section in modes.items() if isinstance(section, dict)}
    if not (faults_injected(faults) or sum(is_webhook(m) for m in modes) > 1):
        return []
    slo = number(get(faults, "slo_s"))
    coalesced = any(number(s.get("coalesced")) for s in modes.values())
    header = ("mode", "policy", "changes", "observed", "lost", *(("coalesced",) if coalesced else ()),
              "duplicates delivered", "duplicates processed",
              f"late (> {fmt_short(slo)} s SLO)" if slo is not None else "late (> SLO)", "max delay (s)")
    rows = tuple(Row(name, _cells(run, name, section, coalesced)) for name, section in modes.items())
    caption = ("One row per mode, against the producer's own record of the changes made in the window. Lost: "
               "never observed by the end of the drain. Duplicates processed: deliveries the receiver processed "
               "again although it had seen the change (webhook modes only). Late: observed more than the SLO "
               "after the change.")
    blocks: list[Block] = [
        Table(header, rows, caption=caption, text_columns=frozenset({0})),
        Para(_faults_text(faults, run.window_start_ns)),
    ]
    if outage := _outage_text(modes):
        blocks.append(Para(outage))
    lost_ids = tuple((name, _ids_text(s)) for name, s in modes.items()
                     if (number(s.get("lost")) or 0) > 0 and _list(s.get("lost_change_ids")))
    if lost_ids:
        blocks += [Para(Strong("Lost changes"), " (the first few change ids of each mode):"), Bullets(lost_ids)]
    return blocks


def _cells(run: RunData, name: str, section: dict[str, Any], coalesced: bool) -> tuple[Cell, ...]:
    delay = number(section.get("max_delay_ms"))
    return (
        fmt_policy(section.get("policy"), name, get(run.modes, name, "style")),
        fmt_count(section.get("changes")),
        fmt_count(section.get("observed")),
        count_failed_if_positive(section.get("lost")),
        *((fmt_count(section.get("coalesced")),) if coalesced else ()),
        fmt_count(section.get("duplicates_delivered")),
        count_failed_if_positive(section.get("duplicates_processed")),  # dedup let a change through twice
        fmt_count(section.get("late")),
        fmt_num(delay / 1e3) if delay is not None else fmt_text(section.get("max_delay_ms")),
    )


def _faults_text(faults: dict[str, Any] | None, start_ns: int | None) -> str:
    outages, crashed = down_intervals(faults), crashes(faults)
    if not outages and not crashed:
        return "No fault was injected in this run: the table compares the webhook delivery policies as they are."
    parts = []
    if outages:
        each = "; ".join(_outage(o, start_ns) for o in outages)
        times = "once" if len(outages) == 1 else f"{len(outages)} times"
        parts.append(f"The receiver was down {times} (as measured from its own records): {each}. "
                     f"{fmt_counted(get(faults, 'changes_in_outage'), 'change', ('was', 'were'))} made in the "
                     "window while it was down.")
    else:
        parts.append("The receiver was never down.")
    if crashed:
        each = "; ".join(_crash(c, start_ns) for c in crashed)
        parts.append(f"The producer crashed (kill -9) {'once' if len(crashed) == 1 else f'{len(crashed)} times'}: "
                     f"{each}.")
    return " ".join(parts)


def _outage(outage: dict[str, Any], start_ns: int | None) -> str:
    mode = outage.get("mode")
    words = DOWN_MODE_WORDS.get(mode, f"mode {fmt_text(mode)}") if isinstance(mode, str) else "mode " + DASH
    span = ""
    start, end = _offset(outage.get("start_ns"), start_ns), _offset(outage.get("end_ns"), start_ns)
    if start is not None and end is not None:
        span = f", from {fmt_short(start)} s to {fmt_short(end)} s into the window"
    return f"{fmt_short(outage.get('duration_s'))} s {words}{span}"


def _crash(crash: dict[str, Any], start_ns: int | None) -> str:
    killed = _offset(crash.get("killed_ns"), start_ns)
    text = f"killed {fmt_short(killed)} s into the window" if killed is not None else "killed"
    if number(crash.get("down_s")) is None:
        return text + ", not restarted before the run ended"
    return text + f", back {fmt_short(crash.get('down_s'))} s later"


def _offset(ns: Any, start_ns: int | None) -> float | None:
    """Seconds from the window start to `ns` (negative: during the warm-up)."""
    x = number(ns)
    return None if x is None or start_ns is None else (x - start_ns) / 1e9


def _outage_text(modes: dict[str, dict[str, Any]]) -> str:
    """Webhook modes' first attempts inside an outage and deliveries given up, when summary.json has them."""
    hooks = [m for m in modes if is_webhook(m)]
    parts = []
    for key, words in (("attempted_during_outage", "Changes whose first delivery attempt fell in an outage"),
                       ("gave_up", "Deliveries given up")):
        counts = [f"{m} {fmt_count(modes[m][key])}" for m in hooks if key in modes[m]]
        if counts:
            parts.append(f"{words}: {', '.join(counts)}.")
    return " ".join(parts)


def _ids_text(section: dict[str, Any]) -> str:
    ids = [str(i) for i in _list(section.get("lost_change_ids"))]
    lost = number(section.get("lost")) or 0
    text = ", ".join(ids[:MAX_LOST_IDS])
    return text + (f", … ({fmt_count(lost)} lost in all)" if lost > min(len(ids), MAX_LOST_IDS) else "")


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
