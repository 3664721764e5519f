"""What a distributed run's Locust workers sent the master, as report blocks: rows lost on the way or in
surplus, an end-of-run exchange that did not complete, clocks known too loosely (both report kinds), and for a
`hookbench run` with remote pollers the per-worker table."""

from __future__ import annotations

from typing import Any

from reports.document import Block, Notice, Para, Row, Table
from reports.fmt import fmt_count, fmt_short, obj

__all__ = ["workers_warnings", "remote_pollers_blocks"]


def workers_warnings(summary: dict[str, Any], what: str = "step") -> list[Block]:
    """Notices when something is wrong: a worker's rows are missing or in surplus, a worker's end-of-run exchange
    with the master did not complete, a worker's clock offset is too uncertain.
    `what`: what a badly placed time falls in the wrong one of (a ramp's step, a run's window)."""
    rec, clocks = obj(summary.get("records")), obj(summary.get("clocks"))
    blocks: list[Block] = []

    def reasons(key: str) -> tuple[str, ...]:
        entries = rec.get(key)
        return tuple(str(obj(x).get("reason")) for x in entries) if isinstance(entries, list) else ()

    if lost := reasons("lost"):
        blocks.append(Notice("warning", "Warning: a Locust worker's rows are missing",
                             "The figures below lack some requests: the rows that reached the master are fewer "
                             "than a worker's final totals or than Locust's count of its requests.", lost))
    if surplus := reasons("surplus"):
        blocks.append(Notice("warning", "Warning: more rows than requests",
                             "The figures below may count some requests twice or hold rows that are not this run's: "
                             "the rows outnumber a worker's final totals or Locust's count of its requests.",
                             surplus))
    if unacknowledged := reasons("unacknowledged"):
        blocks.append(Notice("warning", "Warning: a Locust worker's end-of-run exchange with the master did not "
                                        "complete",
                             "At the end of the run the master asks each worker for its last rows, the worker "
                             "answers with its totals and the master acknowledges them. For these workers that "
                             "exchange did not complete, as the master saw it:", unacknowledged))
    flagged = clocks.get("flagged")
    if isinstance(flagged, list) and flagged:
        blocks.append(Notice("warning", "Warning: a worker's clock offset is uncertain",
                             f"These workers' clock offsets are known to no better than the bound of "
                             f"{fmt_short(clocks.get('bound_ms'))} ms: the times they recorded may fall in the wrong "
                             f"{what} by up to their uncertainty.",
                             tuple(f"Locust worker {w}" for w in flagged)))
    return blocks


def remote_pollers_blocks(summary: dict[str, Any], manifest: dict[str, Any]) -> list[Block]:
    """A run whose pollers ran on Locust workers: per worker its host, rows, CPU and clock offset; nothing for a
    run whose pollers ran here."""
    rec = obj(summary.get("records"))
    if not rec:
        return []
    wire = obj(obj(rec.get("wire")).get("workers"))
    clocks = obj(obj(summary.get("clocks")).get("workers"))
    health = obj(obj(summary.get("saturation")).get("workers"))
    master = obj(manifest.get("locust_master"))
    rows = []
    for w in sorted(set(wire) | set(clocks) | set(health), key=int):
        info, clock, h = obj(wire.get(w)), obj(clocks.get(w)), obj(health.get(w))
        start, lat = obj(clock.get("start")), obj(clock.get("latency_ms"))
        offset = (f"{fmt_short(start.get('offset_ms'))} ± {fmt_short(start.get('uncertainty_ms'))}"
                  if start else "not measured")
        rows.append(Row(f"worker {w}", (
            f"{info.get('host') or '?'} (pid {info.get('pid') or '?'})", fmt_count(info.get("read")),
            fmt_count(info.get("declared")), fmt_count(info.get("locust_requests")), fmt_short(h.get("cpu_max_pct")),
            offset,
            "yes" if clock.get("applied") else "no",
            fmt_short(obj(lat.get("raw")).get("p50")), fmt_short(obj(lat.get("corrected")).get("p50")))))
    complete = rec.get("complete")
    verdict = ("every request Locust counted has its row, and no row is in surplus" if complete is True else
               "INCOMPLETE: see the warning above" if complete is False else "not checked")
    intro = Para(f"The pollers ran on {fmt_count(len(rows))} Locust worker(s) connected to the master at "
                 f"{master.get('bind') or '?'}; the producer and the receiver ran on the master's machine. Poll "
                 f"rows: {fmt_count(rec.get('rows'))}, Locust counted {fmt_count(rec.get('locust_requests'))} "
                 f"requests: {verdict}. Each worker's times were moved to the master's clock by its measured offset "
                 "when the offset exceeded its uncertainty; latency p50 is shown before and after.")
    table = Table(("worker", "host", "poll rows", "rows declared", "requests Locust counted", "CPU max (%)",
                   "clock offset (ms)", "applied",
                   "latency p50 raw (ms)", "latency p50 corrected (ms)"), tuple(rows))
    return [intro, table]
