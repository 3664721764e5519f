"""What a load run's Locust workers sent over Locust's messaging (scenarios/_wire.py): the `records` section's
per-worker verdict (rows read, received, declared; which worker lost rows) and the workers' own health samples
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


def records_section(rows: pd.DataFrame, *, files: int, locust_requests: int | None,
                    wire: dict[str, Any] | None, stem: str | None = None) -> dict[str, Any]:
    """`rows`: the per-request rows read (a `worker` column), of record stem `stem` (None: the only one a worker
    sends). `wire`: wire.json's `workers` as the master wrote them (None: no worker sent anything over the wire,
    as in a single-process run). A worker's `received` and `declared` are its `stem` rows' (every stem's when
    None); a worker lost rows when any stem's declared total exceeds what arrived of it.

    complete: every request Locust counted has its row, and no worker lost rows.
    """
    per_worker: dict[str, int] = {}
    if len(rows) and "worker" in rows.columns:
        counts = rows["worker"].fillna(-1).astype("int64").value_counts().sort_index()
        per_worker = {str(k): int(v) for k, v in counts.items()}
    total = int(len(rows))
    out: dict[str, Any] = {"rows": total, "files": files, "per_worker": per_worker, "locust_requests": locust_requests}
    lost: list[dict[str, Any]] = []
    if wire is not None:
        workers: dict[str, Any] = {}
        for w, info in sorted(wire.items(), key=lambda kv: int(kv[0])):
            received_map, declared_map = info.get("received") or {}, info.get("declared")
            received = int(received_map.get(stem, 0)) if stem else sum(received_map.values())
            declared = None if declared_map is None else (
                int(declared_map.get(stem, 0)) if stem else sum(declared_map.values()))
            short = {k: (int(n), int(received_map.get(k, 0))) for k, n in (declared_map or {}).items()
                     if int(n) > int(received_map.get(k, 0))}  # stem: (declared, received)
            entry = {"pid": info.get("pid"), "host": info.get("host"), "received": received, "declared": declared,
                     "read": per_worker.get(w, 0), "batches": info.get("batches"),
                     "missing_batches": len(info.get("missing_batches") or []),
                     "wire_bytes": info.get("wire_bytes"), "raw_bytes": info.get("raw_bytes")}
            workers[w] = entry
            if declared is None:
                lost.append({"worker": int(w), "reason": f"{_worker_name(w, info)} sent no final totals: its last "
                                                         "rows may not have arrived", "received": received})
            elif short or entry["missing_batches"]:
                d = sum(n for n, _ in short.values()) if short else sum(declared_map.values())
                r = sum(n for _, n in short.values()) if short else sum(received_map.values())
                lost.append({"worker": int(w), "declared": declared, "received": received, "stems": sorted(short),
                             "reason": f"{_worker_name(w, info)} declared {d} rows, {r} arrived "
                                       f"({entry['missing_batches']} batch(es) missing)"})
        raw = sum(int(e["raw_bytes"] or 0) for e in workers.values())
        sent = sum(int(e["wire_bytes"] or 0) for e in workers.values())
        out["wire"] = {"workers": workers, "compression": round(raw / sent, 2) if sent else None}
    out["lost"] = lost
    if lost:
        out["complete"] = False
    elif locust_requests is not None:
        out["complete"] = total >= locust_requests
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
