"""What a load run's Locust workers sent over Locust's messaging (scenarios/_wire.py): the `records` section's
per-worker verdict (rows read, received, declared, counted by Locust; which worker lost rows, which sent more than
it should, which did not complete its end-of-run exchange with the master) and the workers' own health samples
(CPU, greenlet lag) as saturation samples beside the orchestrator's local ones."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pandas as pd

from bench.analysis.tables import read_jsonl
from bench.wire import HEALTH_FILE, WIRE_FILE

__all__ = ["records_section", "health_samples", "health_summary", "locust_requests", "read_wire", "read_health"]

HEALTH_COLUMNS = ["t_ns", "worker", "pid", "host", "cpu_pct", "lag_ms"]


def locust_requests(run_dir: Path, prefix: str = "locust") -> int | None:
    """Requests Locust counted (the Aggregated row of `<prefix>_stats.csv`: on a master, the sum of its workers'
    reports), or None."""
    try:
        with open(run_dir / f"{prefix}_stats.csv", newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                if row.get("Name") == "Aggregated":
                    return int(row["Request Count"])
    except (OSError, KeyError, ValueError):
        return None
    return None


def read_wire(records: Path) -> dict[str, Any] | None:
    """wire.json's `workers` as the master wrote them; None when no worker sent anything over the wire."""
    path = records / WIRE_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("workers") or {}
    except (OSError, ValueError):
        return {}


def read_health(records: Path) -> pd.DataFrame:
    """The workers' health samples the master wrote (worker_health.jsonl), empty with its columns when none came."""
    return pd.DataFrame(read_jsonl(list(records.glob(HEALTH_FILE))), columns=HEALTH_COLUMNS)


def _worker_name(w: str, info: dict[str, Any]) -> str:
    return f"worker {w} (pid {info.get('pid')} on {info.get('host') or '?'})"


def _stem_total(counts: dict[str, Any] | None, stem: str | None) -> int:
    counts = counts or {}
    return int(counts.get(stem, 0)) if stem else sum(int(n) for n in counts.values())


def _final_exchange(w: str, info: dict[str, Any]) -> dict[str, Any] | None:
    """The `unacknowledged` entry of a worker whose end-of-run exchange with the master did not complete, as the
    master recorded it in wire.json's `final` (scenarios/_wire.py); None when it completed or was not recorded
    (a wire.json written before `final` existed)."""
    final = info.get("final")
    if not isinstance(final, dict):
        return None
    name = _worker_name(w, info)
    received = _stem_total(info.get("received"), None)
    acked, error = final.get("acked_rows"), final.get("ack_error")
    if not final.get("done"):
        reason = (f"{name} did not answer the master's end-of-run request (hb_flush) with its final totals "
                  "(hb_done): its last rows may be missing and the master never acknowledged them"
                  if final.get("asked") else
                  f"{name} was silent when the run ended: the master did not ask it for its last rows and no final "
                  "totals (hb_done) came from it")
        return {"worker": int(w), "final_totals": False, "reason": reason}
    if error:
        return {"worker": int(w), "final_totals": True,
                "reason": f"the master could not acknowledge {name}'s final totals ({error}): the worker was not "
                          "told that its rows arrived"}
    if acked is not None and int(acked) < received:
        return {"worker": int(w), "final_totals": True,
                "reason": f"{received - int(acked)} of {name}'s rows arrived after the master's last acknowledgement "
                          f"(of {int(acked)} rows): the worker was not told that they arrived"}
    return None


def records_section(rows: pd.DataFrame, *, files: int, locust_requests: int | None,
                    wire: dict[str, Any] | None, stem: str | None = None) -> dict[str, Any]:
    """`rows`: the per-request rows read (a `worker` column), of record stem `stem` (None: the only one a worker
    sends). `wire`: wire.json's `workers` as the master wrote them (None: no worker sent anything over the wire,
    as in a single-process run). A worker's `received` and `declared` are its `stem` rows' (every stem's when
    None).

    Three lists name what is wrong, each entry with the worker (null when the rows cannot be told apart by
    worker) and a `reason`:
    - lost: a worker declared more rows of a stem than arrived, its batches have gaps, it sent no final totals,
      or it sent fewer rows than its Locust stats reports counted requests; with no worker to blame, fewer rows
      than Locust's count;
    - surplus: more of a worker's rows arrived than it declared, the records hold more of its rows than arrived,
      or it sent more rows than Locust counted of its requests; with no worker to blame, more rows than Locust's
      count (rows twice, or rows that are not this run's);
    - unacknowledged: a worker's end-of-run exchange with the master (hb_flush, hb_done, hb_ack) did not complete
      as the master saw it (`final_totals`: whether its final totals still came).

    complete: every request Locust counted has exactly one row (rows == locust_requests), nothing is lost or in
    surplus, and every worker's final totals came (an acknowledgement that could not be sent leaves the rows
    whole: it is named, not counted against them).
    """
    per_worker: dict[str, int] = {}
    if len(rows) and "worker" in rows.columns:
        counts = rows["worker"].fillna(-1).astype("int64").value_counts().sort_index()
        per_worker = {str(k): int(v) for k, v in counts.items()}
    total = int(len(rows))
    out: dict[str, Any] = {"rows": total, "files": files, "per_worker": per_worker, "locust_requests": locust_requests}
    lost: list[dict[str, Any]] = []
    surplus: list[dict[str, Any]] = []
    unacknowledged: list[dict[str, Any]] = []
    if wire is not None:
        workers: dict[str, Any] = {}
        for w, info in sorted(wire.items(), key=lambda kv: int(kv[0])):
            name = _worker_name(w, info)
            received_map, declared_map = info.get("received") or {}, info.get("declared")
            received = _stem_total(received_map, stem)
            declared = None if declared_map is None else _stem_total(declared_map, stem)
            read = per_worker.get(w, 0)
            counted = info.get("locust_requests")
            counted = None if counted is None else int(counted)
            short = {k: (int(n), int(received_map.get(k, 0))) for k, n in (declared_map or {}).items()
                     if int(n) > int(received_map.get(k, 0))}  # stem: (declared, received)
            extra = {k: (int((declared_map or {}).get(k, 0)), int(n)) for k, n in received_map.items()
                     if int(n) > int((declared_map or {}).get(k, 0))}  # stem: (declared, received)
            entry = {"pid": info.get("pid"), "host": info.get("host"), "received": received, "declared": declared,
                     "read": read, "locust_requests": counted, "batches": info.get("batches"),
                     "missing_batches": len(info.get("missing_batches") or []),
                     "wire_bytes": info.get("wire_bytes"), "raw_bytes": info.get("raw_bytes")}
            workers[w] = entry
            if declared is None:
                lost.append({"worker": int(w), "reason": f"{name} sent no final totals: its last "
                                                         "rows may not have arrived", "received": received})
            elif short or entry["missing_batches"]:
                d = sum(n for n, _ in short.values()) if short else sum(declared_map.values())
                r = sum(n for _, n in short.values()) if short else sum(received_map.values())
                lost.append({"worker": int(w), "declared": declared, "received": received, "stems": sorted(short),
                             "reason": f"{name} declared {d} rows, {r} arrived "
                                       f"({entry['missing_batches']} batch(es) missing)"})
            elif counted is not None and read < counted:
                lost.append({"worker": int(w), "read": read, "locust_requests": counted,
                             "reason": f"{name} sent {read} rows, Locust counted {counted} of its requests: "
                                       f"{counted - read} missing"})
            if declared_map is not None and extra:
                d, r = sum(n for n, _ in extra.values()), sum(n for _, n in extra.values())
                surplus.append({"worker": int(w), "declared": declared, "received": received, "stems": sorted(extra),
                                "extra": r - d, "reason": f"{name} declared {d} rows, {r} arrived: {r - d} extra"})
            if read > received:
                surplus.append({"worker": int(w), "read": read, "received": received, "extra": read - received,
                                "reason": f"the records hold {read} rows of {name}, {received} arrived over the "
                                          f"wire: {read - received} extra"})
            if counted is not None and read > counted:
                surplus.append({"worker": int(w), "read": read, "locust_requests": counted, "extra": read - counted,
                                "reason": f"{name} sent {read} rows, Locust counted {counted} of its requests: "
                                          f"{read - counted} extra"})
            if (final := _final_exchange(w, info)) is not None:
                unacknowledged.append(final)
        raw = sum(int(e["raw_bytes"] or 0) for e in workers.values())
        sent = sum(int(e["wire_bytes"] or 0) for e in workers.values())
        out["wire"] = {"workers": workers, "compression": round(raw / sent, 2) if sent else None}
    if locust_requests is not None and total != locust_requests:
        # Locust's aggregated count against every row: an entry of its own only when no worker is named already
        short_of = total < locust_requests
        side, n = (lost, locust_requests - total) if short_of else (surplus, total - locust_requests)
        if not side:
            side.append({"worker": None, "rows": total, "locust_requests": locust_requests,
                         "missing" if short_of else "extra": n,
                         "reason": f"{total} rows, Locust counted {locust_requests} requests: {n} "
                                   f"{'missing' if short_of else 'extra'}"})
    out["lost"], out["surplus"], out["unacknowledged"] = lost, surplus, unacknowledged
    if lost or surplus or any(not u["final_totals"] for u in unacknowledged):
        out["complete"] = False
    elif locust_requests is not None:
        out["complete"] = total == locust_requests
    else:
        out["complete"] = True if wire is not None else None  # nothing to compare with in a local run
    return out


def health_samples(health: pd.DataFrame, local_pids: set[int], host: str) -> pd.DataFrame:
    """Worker health rows as saturation samples (columns process, cpu_pct), leaving out the processes the
    orchestrator already samples itself (a `--processes` fork on this host: its pid among `local_pids`)."""
    if not len(health):
        return pd.DataFrame({"process": pd.Series(dtype=str), "cpu_pct": pd.Series(dtype=float)})
    remote = health[~(health["pid"].isin(local_pids) & (health["host"] == host))]
    names = [f"Locust worker {w} (pid {p} on {h})" for w, p, h in zip(remote["worker"], remote["pid"], remote["host"])]
    return pd.DataFrame({"process": names, "cpu_pct": remote["cpu_pct"].astype(float).to_numpy()})


def health_summary(health: pd.DataFrame) -> dict[str, Any]:
    """Per worker: samples, CPU max and mean, greenlet lag max (ms)."""
    out: dict[str, Any] = {}
    if not len(health):
        return out
    for w, g in health.groupby("worker"):
        out[str(int(w))] = {"samples": int(len(g)), "cpu_max_pct": float(g["cpu_pct"].max()),
                            "cpu_mean_pct": round(float(g["cpu_pct"].mean()), 1),
                            "lag_max_ms": float(g["lag_ms"].max())}
    return out
