"""The "Security under attack" section: summary.json's `security` section as one row per attack kind, then the
checks a secure receiver must pass (nothing hostile processed, no 5xx, every real delivery accepted, audit complete).

Counts are shown as bench/analysis/security.py wrote them; the totals row only adds them up.
"""

from __future__ import annotations

from typing import Any

from reports.document import Block, Cell, Failure, Notice, Para, Row, Strong, Table
from reports.fmt import DASH, count_failed_if_positive, fmt_count, fmt_counted, fmt_pct, fmt_text, get, number, obj

__all__ = ["security_blocks"]

EXPLANATION = (
    "Each hostile request breaks exactly one rule (its kind names the rule: a forged signature, a stale "
    "timestamp, a tampered body, …), so a receiver with every defence on must answer it with the status that "
    "rule's check gives, and must not process it. A verbatim replay of a real delivery (replayed_id) cannot be "
    "told apart from a sender's retry: it is expected to get the duplicate answer, 2xx, without being processed "
    "again. Processed counts the hostile requests the receiver's audit log records as accepted as new: each one "
    "is a defence that failed."
)


def security_blocks(section: dict[str, Any] | None, receiver_down: bool = False) -> list[Block]:
    """The section's blocks, or none when no attack load ran; `receiver_down`: the run also had receiver outages."""
    attacked = section is not None and (section.get("attack_enabled") is True
                                        or (number(section.get("hostile_sent")) or 0) > 0)
    if section is None or not attacked:
        return []
    kinds = {k: v for k, v in obj(section.get("kinds")).items() if isinstance(v, dict)}
    blocks: list[Block] = [Para(EXPLANATION)]
    failures = _failures(section, receiver_down)
    if failures:
        blocks.append(Notice("warning", "Security check failed", "The receiver did not hold under attack:",
                             tuple(failures)))
    if kinds:
        header = ("attack kind", "sent", "expected answer", "answered as expected", "other answers",
                  "processed", "deduplicated")
        rows = tuple(Row(kind, _kind_cells(k)) for kind, k in kinds.items()) + (_totals(section, kinds),)
        blocks.append(Table(header, rows, text_columns=frozenset({3}), caption=(
            "Sent and answers from the attacker's own records; processed and deduplicated from the receiver's "
            "audit log. Other answers: status×count; no answer: the connection failed or timed out.")))
    else:
        blocks.append(Para("The attack load was on, but no hostile request was recorded."))
    blocks.append(Table(("check", "result"), _checks(section), numeric=False))
    if not failures:
        verdict = ("no hostile request was processed, the receiver answered no 5xx and every legitimate delivery "
                   "was answered 2xx.")
        sent, as_expected = number(section.get("hostile_sent")), number(section.get("hostile_as_expected"))
        if sent is not None and as_expected is not None and as_expected < sent:
            verdict += (f" {fmt_counted(sent - as_expected, 'hostile request')} got another answer than "
                        "expected (see other answers); none was processed.")
        blocks.append(Para(Strong("Verdict: "), verdict))
    return blocks


def _kind_cells(kind: dict[str, Any]) -> tuple[Cell, ...]:
    expected = kind.get("expected_status")
    return (
        fmt_count(kind.get("sent")),
        fmt_text(expected),
        fmt_count(kind.get("as_expected")),
        _others(_statuses(kind), expected),
        count_failed_if_positive(kind.get("accepted")),
        fmt_count(kind.get("deduplicated")),
    )


def _totals(section: dict[str, Any], kinds: dict[str, dict[str, Any]]) -> Row:
    others: dict[str, int] = {}
    for kind in kinds.values():
        expected = str(kind.get("expected_status"))
        for status, count in _statuses(kind).items():
            if status != expected:
                others[status] = others.get(status, 0) + count
    return Row("all hostile requests", (
        fmt_count(section.get("hostile_sent")),
        "",
        fmt_count(section.get("hostile_as_expected")),
        _others(others, None),
        count_failed_if_positive(section.get("hostile_accepted")),
        fmt_count(sum(number(k.get("deduplicated")) or 0 for k in kinds.values())),
    ))


def _statuses(kind: dict[str, Any]) -> dict[str, int]:
    return {str(s): int(c) for s, c in obj(kind.get("statuses")).items() if (number(c) or 0) > 0}


def _others(statuses: dict[str, int], expected: Any) -> str:
    """Answers other than the expected one, most frequent first: "200×3, 500×1"."""
    rest = sorted(((s, c) for s, c in statuses.items() if s != str(expected)), key=lambda sc: (-sc[1], sc[0]))
    return ", ".join(f"{'no answer' if s == '0' else s}×{c:,}" for s, c in rest) or DASH


def _checks(section: dict[str, Any]) -> tuple[Row, ...]:
    legit, audit = obj(section.get("legit")), obj(section.get("audit"))
    fraction = number(legit.get("accepted_fraction"))
    answered = f"{fmt_count(legit.get('answered_2xx'))} of {fmt_count(legit.get('sent'))}"
    answered += f" ({fmt_pct(fraction)})" if fraction is not None else ""
    five = section.get("receiver_5xx")
    complete = audit.get("complete")
    counts = (f"{fmt_count(audit.get('rows'))} rows: {fmt_count(audit.get('hostile_rows'))} hostile, "
              f"{fmt_count(audit.get('legit_rows'))} legitimate")
    if (number(audit.get("foreign_rows")) or 0) > 0:  # another sender's events: neither hostile nor ours
        counts += f", {fmt_count(audit.get('foreign_rows'))} from foreign senders"
    audit_text = f"{fmt_text(complete) if isinstance(complete, bool) else DASH} ({counts})"
    return (
        Row("hostile requests processed", (count_failed_if_positive(section.get("hostile_accepted")),)),
        Row("legitimate deliveries answered 2xx", (Failure(answered) if _legit_failed(section) else answered,)),
        Row("receiver 5xx answers", (count_failed_if_positive(five),)),
        Row("audit log complete", (Failure(audit_text) if complete is False else audit_text,)),
    )


def _failures(section: dict[str, Any], receiver_down: bool) -> list[str]:
    out = []
    accepted = number(section.get("hostile_accepted")) or 0
    if accepted > 0:
        kinds = [k for k, v in obj(section.get("kinds")).items() if (number(get(v, "accepted")) or 0) > 0]
        out.append(f"{fmt_counted(accepted, 'hostile request', ('was', 'were'))} processed as new "
                   f"({', '.join(kinds) or DASH}).")
    if (number(section.get("receiver_5xx")) or 0) > 0:
        out.append(f"The receiver answered {fmt_counted(section.get('receiver_5xx'), 'request')} with a 5xx error.")
    if _legit_failed(section):
        legit = obj(section.get("legit"))
        text = (f"Only {fmt_pct(legit.get('accepted_fraction'))} of legitimate deliveries were answered 2xx "
                f"({fmt_count(legit.get('answered_2xx'))} of {fmt_count(legit.get('sent'))}).")
        if receiver_down:  # the attack did not necessarily cause it: the outage refused deliveries too
            text += " The receiver was also down for part of this run, which fails deliveries by itself."
        out.append(text)
    if get(section, "audit", "complete") is False:
        out.append("The audit log misses requests that were answered.")
    return out


def _legit_failed(section: dict[str, Any]) -> bool:
    fraction = number(get(section, "legit", "accepted_fraction"))
    return fraction is not None and fraction < 1
