"""Raw records -> typed pandas tables -> Parquet, and back.

Every table has a fixed schema, also when empty, so analysis never guesses columns. The ground truth
of changes is read from the producer's SQLite change log, not from anything an observer reported.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd

from bench.modes import THIN, find_kind
from bench.protocol import ATTACK_LABEL_HEADER

__all__ = ["Tables", "SCHEMAS", "typed", "read_jsonl", "load_records", "write_parquet", "read_parquet", "read_marks",
           "is_foreign"]

I64, F64, STR, BOOL, NI64, NBOOL = "int64", "float64", "string", "bool", "Int64", "boolean"

SCHEMAS: dict[str, dict[str, str]] = {
    "changes": {"change_id": STR, "resource_id": I64, "seq": I64, "version": I64, "t_change_ns": I64},
    # interval_s: the interval an adaptive poller's policy chose before this poll; advice_s: the wait the
    # producer's answer asked for (X-Poll-Interval, or Retry-After on a 429/503); both null for other pollers
    # worker: the Locust worker that timed the row (its clock; null or 0 in a local run)
    "polls": {"mode": STR, "user": I64, "worker": NI64, "resource_id": NI64, "t_intended_ns": I64, "t_send_ns": I64,
              "t_recv_ns": I64, "status": I64, "empty": BOOL, "n_new": I64, "bytes": I64, "error": STR,
              "followup": BOOL, "initial": BOOL, "interval_s": F64, "advice_s": F64},
    # via: "push" (a delivery brought it) or "pull" (a push mode's own poll did: a hybrid's reconciliation);
    # null: the mode's only way (a poller's rows, or older runs)
    "observations": {"mode": STR, "user": I64, "worker": NI64, "change_id": STR, "t_obs_ns": I64, "via": STR},
    "deliveries": {"mode": STR, "msg_id": STR, "change_id": STR, "subscription_id": STR, "attempt": I64,
                   "t_send_ns": I64, "t_done_ns": I64, "status": I64, "latency_ms": F64, "bytes_out": I64,
                   "bytes_in": I64, "error": STR, "retry_after_s": F64, "outcome": STR},
    # the receiver's audit log: one row per request, legitimate or hostile; foreign: a verified JSON body that is
    # not a hookbench change event (a foreign sender's), false for our own events, null when never classified
    "arrivals": {"t_ns": I64, "t_obs_ns": NI64, "endpoint": STR, "remote": STR, "method": STR, "path": STR,
                 "msg_id": STR, "change_id": STR, "foreign": NBOOL, "status": NI64, "verdict": STR, "reason": STR,
                 "latency_ms": F64, "attack": STR},
    "attacks": {"kind": STR, "t_send_ns": I64, "t_recv_ns": I64, "status": I64, "expected_status": I64,
                "bytes": I64},
    # what happened to the processes: fault transitions, crashes, and the producer's delivery counters
    # held: a mode's requests held open at the producer (long polls, streams), sampled once a second
    "events": {"t_ns": I64, "source": STR, "event": STR, "mode": STR, "changes": NI64, "attempts": NI64,
               "ok": NI64, "failed": NI64, "pending": NI64, "held": NI64},
    "loop_lag": {"server": STR, "t_ns": I64, "lag_ms": F64, "cpu_s": F64},
    # every child's CPU once a second, with its resident memory and open file descriptors
    "harness": {"t_ns": I64, "process": STR, "cpu_pct": F64, "rss_bytes": NI64, "fds": NI64},
}


@dataclass
class Tables:
    changes: pd.DataFrame
    polls: pd.DataFrame
    observations: pd.DataFrame
    deliveries: pd.DataFrame
    arrivals: pd.DataFrame
    attacks: pd.DataFrame
    events: pd.DataFrame
    loop_lag: pd.DataFrame
    harness: pd.DataFrame

    @classmethod
    def from_frames(cls, **frames: pd.DataFrame | list[dict[str, Any]] | None) -> "Tables":
        """Build from DataFrames or lists of row dicts; missing tables are empty; dtypes are enforced."""
        return cls(**{f.name: typed(f.name, frames.get(f.name)) for f in fields(cls)})


def typed(name: str, data: pd.DataFrame | list[dict[str, Any]] | None) -> pd.DataFrame:
    """`data` with exactly the columns and dtypes of SCHEMAS[name] (absent columns filled with nulls)."""
    schema = SCHEMAS[name]
    df = data.copy() if isinstance(data, pd.DataFrame) else pd.DataFrame.from_records(data or [])
    for column in schema:
        if column not in df.columns:
            df[column] = None
    return df[list(schema)].astype(schema).reset_index(drop=True)


def read_jsonl(paths: list[Path]) -> list[dict[str, Any]]:
    """Every complete row of the JSON-lines files `paths`, file by file in name order."""
    rows: list[dict[str, Any]] = []
    for p in sorted(paths):
        with open(p, encoding="utf-8") as fh:
            for line in fh:
                if line.endswith("\n"):  # a torn last line (process killed mid-write) is skipped
                    rows.append(json.loads(line))
    return rows


def _read_changes(db: Path) -> list[dict[str, Any]]:
    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        cur = con.execute("SELECT change_id, resource_id, seq, version, t_change_ns FROM changes ORDER BY seq")
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r)) for r in cur]
    finally:
        con.close()


def _audit_rows(paths: list[Path]) -> list[dict[str, Any]]:
    rows = read_jsonl(paths)
    for row in rows:  # the attack label is one of the audit's selected headers
        headers = row.pop("headers", None) or {}
        row["attack"] = headers.get(ATTACK_LABEL_HEADER)
    return rows


def is_foreign(arrivals: pd.DataFrame) -> pd.Series:
    """Which arrivals were a foreign sender's events (never observations, losses or legitimate deliveries)."""
    return arrivals["foreign"].fillna(False).astype(bool)


def load_records(records_dir: Path, db_path: Path) -> Tables:
    """Gather what every process recorded during a run into typed tables."""
    r = Path(records_dir)
    arrivals = typed("arrivals", _audit_rows(list(r.glob("audit*.jsonl"))))
    observations = typed("observations", read_jsonl(list(r.glob("observations*.jsonl"))))
    # A verified arrival carrying one of our changes is an observation by that endpoint's consumer; hostile
    # requests (the attack load's labelled replays) are not the sender's deliveries, nor is a foreign sender's
    # event (it has no change_id either). A thin event carries only ids: its consumer observes the change when the
    # fetch returns it (the receiver's own observations rows).
    hooked = arrivals[arrivals["verdict"].isin(["accepted", "duplicate"]) & arrivals["change_id"].notna()
                      & arrivals["attack"].isna() & arrivals["endpoint"].notna() & ~is_foreign(arrivals)]
    hooked = hooked[~hooked["endpoint"].map(lambda ep: find_kind(ep) is THIN).astype(bool)]
    webhook_obs = pd.DataFrame({"mode": hooked["endpoint"], "user": 0, "change_id": hooked["change_id"],
                                "t_obs_ns": hooked["t_obs_ns"].fillna(hooked["t_ns"]), "via": "push"})
    return Tables(
        changes=typed("changes", _read_changes(db_path)),
        polls=typed("polls", read_jsonl(list(r.glob("polls*.jsonl")))),
        observations=typed("observations", pd.concat([observations, webhook_obs], ignore_index=True)),
        deliveries=typed("deliveries", read_jsonl(list(r.glob("deliveries*.jsonl")))),
        arrivals=arrivals,
        attacks=typed("attacks", read_jsonl(list(r.glob("attack-*.jsonl")))),
        events=typed("events", read_jsonl(list(r.glob("events*.jsonl")))
                     + [{"source": "receiver", **row} for row in read_jsonl(list(r.glob("faults*.jsonl")))]),
        loop_lag=typed("loop_lag", read_jsonl(list(r.glob("loop_lag*.jsonl")))),
        harness=typed("harness", read_jsonl(list(r.glob("harness*.jsonl")))),
    )


def read_marks(records_dir: Path) -> dict[str, dict[str, Any]]:
    """Producer counter snapshots by mark name (window_start, window_end, shutdown)."""
    return {row["mark"]: row for row in read_jsonl(list(Path(records_dir).glob("marks*.jsonl")))}


def write_parquet(tables: Tables, run_dir: Path) -> list[Path]:
    out = []
    for f in fields(tables):
        path = Path(run_dir) / f"{f.name}.parquet"
        getattr(tables, f.name).to_parquet(path, index=False)
        out.append(path)
    return out


def read_parquet(run_dir: Path) -> Tables:
    frames = {}
    for f in fields(Tables):
        path = Path(run_dir) / f"{f.name}.parquet"
        frames[f.name] = pd.read_parquet(path) if path.exists() else None
    return Tables.from_frames(**frames)
