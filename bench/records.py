"""Append-only JSON-lines record files written by every process during a run.

Kept free of pandas so servers and Locust workers import it cheaply. Lines are flushed at least every
`flush_every` seconds and on close, so an interrupted run keeps what it measured up to then.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import IO, Any

import orjson

__all__ = ["JsonlWriter", "RECORD_FILES"]

# file stem -> writer process; a process may add "-<pid>" to the stem to keep its own file.
RECORD_FILES = {
    "polls": "pollers (Locust)",
    "observations": "pollers (Locust) -- what each poll taught the poller",
    "deliveries": "producer dispatcher -- one row per attempt",
    "audit": "receiver -- one row per request, legitimate or hostile (the arrivals table)",
    "faults": "receiver -- down/up transitions of injected outages",
    "attack": "attack load (Locust) -- one row per hostile request",
    "events": "orchestrator -- crashes, restarts, and the producer's delivery counters each second",
    "harness": "orchestrator -- CPU of every child process each second",
    "marks": "producer -- counter snapshots at window start/end (written at once)",
    "loop_lag": "producer and receiver -- event-loop lag samples",
}

# orjson: the same rows as `json.dumps(row, separators=(",", ":"))` up to the spelling of the same values (UTF-8 rather
# than \u escapes, 1e-07 as 1e-7), about 5x faster: the receiver writes one audit row per request. A row orjson
# refuses (an int beyond 64 bits, a str with a lone surrogate from a hostile header...) is written by json instead.
_ORJSON_OPTIONS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS


def _line(row: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(row, option=_ORJSON_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return (json.dumps(row, separators=(",", ":")) + "\n").encode()  # ensure_ascii: always encodable


class JsonlWriter:
    """One JSON object per line; cheap to append, safe to read while being written (whole lines)."""

    def __init__(self, path: str | Path, flush_every: float = 0.5) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[bytes] | None = open(self.path, "ab", buffering=1 << 16)
        self._flush_every = flush_every
        self._last_flush = time.monotonic()
        self.rows = 0
        self._flushed_rows = 0

    def write(self, row: dict[str, Any]) -> None:
        if self._fh is None:
            return  # closed: a late callback after shutdown must not crash the process
        self._fh.write(_line(row))
        self.rows += 1
        now = time.monotonic()
        if now - self._last_flush >= self._flush_every:
            self.flush()

    def write_lines(self, data: bytes, rows: int) -> None:
        """Append `rows` whole JSON lines already encoded (a batch a Locust worker sent: scenarios/_wire.py)."""
        if self._fh is None or not data:
            return
        self._fh.write(data)
        self.rows += rows
        if time.monotonic() - self._last_flush >= self._flush_every:
            self.flush()

    def flush(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            self._last_flush = time.monotonic()
            self._flushed_rows = self.rows

    def flush_due(self) -> None:
        """Flush if rows were written since the last flush: for a timer, so rows reach the disk even when no
        later write comes to flush them."""
        if self.rows != self._flushed_rows:
            self.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None

    def __enter__(self) -> "JsonlWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
