"""Claim entries (bench.analysis.claims) as document blocks: the verdict table, one claim's section, its measured
figures.

Shared by the claims page (reports/claims.py) and the Zapier reproduction's report (reports/reproduce.py). The
entries are shown as bench.analysis.claims wrote them; the verdicts are its, never re-decided here.
"""

from __future__ import annotations

from typing import Any

from reports.document import Block, Bullets, CodeBlock, Para, Row, Strong, Table, Verdict
from reports.fmt import DASH, fmt_num, fmt_text, number

__all__ = ["verdict_table", "claim_blocks", "measured_items"]


def verdict_table(claims: dict[str, dict[str, Any]]) -> Table:
    """One row per claim: the claim, its verdict, the measured figures in a sentence, conditions, rule."""
    rows = tuple(Row(f"{fmt_text(c.get('id'))}: {fmt_text(c.get('claim'))}", (
        Verdict(str(c.get("verdict"))), fmt_text(c.get("verdict_text")), fmt_text(c.get("conditions") or None),
        fmt_text(c.get("rule") or None))) for c in claims.values() if isinstance(c, dict))
    return Table(("claim", "verdict", "measured", "conditions", "rule"), rows, numeric=False,
                 caption="Verdicts as bench.analysis.claims decided them from the measured (or simulated) figures, "
                         "by the rule shown. “holds only when” names the conditions under which the claim is true.")


def claim_blocks(c: dict[str, Any], run_links: list[Block]) -> list[Block]:
    """One claim's section body (the caller writes its heading): source, verdict, measured figures, conditions,
    rule, the runs it rests on (`run_links`), and for a claim not run, why and the command that runs it."""
    blocks: list[Block] = [
        Para(Strong("Source: "), fmt_text(c.get("source"))),
        Para(Strong("Verdict: "), Verdict(str(c.get("verdict"))), " " + fmt_text(c.get("verdict_text"))),
    ]
    if c.get("verdict") == "not run":
        blocks += [Para("Not run: " + fmt_text(c.get("verdict_text")) + ". The command that reproduces it:"),
                   CodeBlock(fmt_text(c.get("command")))]
        return blocks
    if items := measured_items(c.get("measured") or {}):
        label = "Model prediction (not measured):" if c.get("model") else "Measured:"
        blocks += [Para(Strong(label)), Bullets(tuple(items))]
    blocks += [Para(Strong("Conditions: "), fmt_text(c.get("conditions") or None)),
               Para(Strong("Rule: "), fmt_text(c.get("rule") or None)),
               Para(Strong("Command: "), fmt_text(c.get("command"))), *run_links]
    return blocks


def measured_items(measured: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """The `measured` object flattened to (key path, value) lines: nested objects as a.b, a list of objects one
    line per element, numbers to 4 significant figures, the key names as written (they carry the units)."""
    items: list[tuple[str, str]] = []
    for key, value in measured.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            items += measured_items(value, name + ".")
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            items += [(f"{name}[{i}]", ", ".join(f"{k} {_value(v)}" for k, v in row.items()))
                      for i, row in enumerate(value)]
        else:
            items.append((name, _value(value)))
    return items


def _value(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_value(v)}" for k, v in value.items()) or DASH
    if number(value) is not None and not isinstance(value, int):
        return fmt_num(value, 4)
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else fmt_text(value)
