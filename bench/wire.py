"""What travels between a Locust worker and its master besides Locust's own traffic: record batches (numbered,
zlib-compressed JSON lines), the NTP-style clock arithmetic, and the test hook that skews a worker's clock.

Pure Python with no gevent and no Locust, so the codec and the arithmetic are unit-tested on their own; the Locust
wiring (messages, greenlets, files) is scenarios/_wire.py, the analysis of what arrived bench/analysis/clocks.py.
"""

from __future__ import annotations

import os
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterable

import orjson

__all__ = ["CLOCK_FILE", "HEALTH_FILE", "WIRE_FILE", "LOCAL_COPY_ENV",
           "BATCH_ROWS", "BATCH_SECONDS", "SKEW_ENV", "Batch", "Batcher", "encode_rows", "decode_rows",
           "clock_skew_ns", "skewed", "ntp_sample", "best_sample", "WireError"]

BATCH_ROWS = 1000  # a batch leaves when it holds this many rows ...
BATCH_SECONDS = 0.5  # ... or when its oldest row is this old
COMPRESS_MIN = 512  # bytes: below this zlib's header costs more than it saves
SKEW_ENV = "HOOKBENCH_CLOCK_SKEW_NS"  # test hook: nanoseconds added to every wall-clock time a worker reports
LOCAL_COPY_ENV = "HOOKBENCH_WORKER_RECORDS"  # a worker also keeps its own copy of the rows it sends, in this dir
# what a Locust master writes of its workers into its records directory (scenarios/_wire.py); read by
# bench.orchestration.load
CLOCK_FILE, HEALTH_FILE, WIRE_FILE = "clock.jsonl", "worker_health.jsonl", "wire.json"


class WireError(ValueError):
    """A batch that cannot be decoded (wrong checksum of rows, bad compression, not JSON lines)."""


def encode_rows(rows: Iterable[dict[str, Any]]) -> tuple[bytes, bool, int]:
    """(payload, compressed, raw length): the rows as JSON lines, zlib-compressed when that makes them smaller."""
    raw = b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS) for r in rows)
    if len(raw) >= COMPRESS_MIN:
        packed = zlib.compress(raw, 1)  # level 1: a worker's CPU is the load generator's; most of the gain anyway
        if len(packed) < len(raw):
            return packed, True, len(raw)
    return raw, False, len(raw)


def decode_rows(payload: bytes, compressed: bool, expected_rows: int | None = None) -> bytes:
    """The JSON lines of a batch (as written to a .jsonl file); WireError if they are not `expected_rows` lines."""
    try:
        raw = zlib.decompress(payload) if compressed else bytes(payload)
    except zlib.error as exc:
        raise WireError(f"batch does not decompress: {exc}") from None
    if raw and not raw.endswith(b"\n"):
        raise WireError("batch does not end with a newline: not whole JSON lines")
    lines = raw.count(b"\n")
    if expected_rows is not None and lines != expected_rows:
        raise WireError(f"batch holds {lines} lines, its header says {expected_rows}")
    return raw


@dataclass
class Batch:
    """One message's worth of rows of one record stem, numbered per worker (seq 0, 1, ...)."""

    seq: int
    stem: str
    rows: int
    payload: bytes
    compressed: bool
    raw_bytes: int

    def message(self) -> dict[str, Any]:
        return {"seq": self.seq, "stem": self.stem, "rows": self.rows, "z": self.compressed, "data": self.payload,
                "raw": self.raw_bytes}

    @classmethod
    def from_message(cls, data: dict[str, Any]) -> "Batch":
        try:
            return cls(int(data["seq"]), str(data["stem"]), int(data["rows"]), bytes(data["data"]), bool(data["z"]),
                       int(data["raw"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise WireError(f"not a record batch: {exc!r}") from None


@dataclass
class Batcher:
    """Rows waiting to leave, per stem; `take` empties whatever is due (or everything) into numbered batches.

    `totals` counts every row added per stem: what the worker declares in its final "done" message.
    """

    max_rows: int = BATCH_ROWS
    max_age_s: float = BATCH_SECONDS
    seq: int = 0
    totals: dict[str, int] = field(default_factory=dict)
    _pending: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    _since: float | None = None

    def add(self, stem: str, row: dict[str, Any]) -> bool:
        """Queue a row; True when a batch is due (by size)."""
        self._pending.setdefault(stem, []).append(row)
        self.totals[stem] = self.totals.get(stem, 0) + 1
        if self._since is None:
            self._since = time.monotonic()
        return len(self._pending[stem]) >= self.max_rows

    @property
    def pending(self) -> int:
        return sum(len(v) for v in self._pending.values())

    def due(self, now: float | None = None) -> bool:
        if self._since is None:
            return False
        now = time.monotonic() if now is None else now
        return now - self._since >= self.max_age_s or any(len(v) >= self.max_rows for v in self._pending.values())

    def take(self) -> list[Batch]:
        """Every pending row as batches of at most max_rows, numbered in order."""
        out = []
        for stem, rows in self._pending.items():
            for i in range(0, len(rows), self.max_rows):
                chunk = rows[i:i + self.max_rows]
                payload, compressed, raw = encode_rows(chunk)
                out.append(Batch(self.seq, stem, len(chunk), payload, compressed, raw))
                self.seq += 1
        self._pending.clear()
        self._since = None
        return out


def clock_skew_ns(environ: dict[str, str] | None = None) -> int:
    """The injected skew (SKEW_ENV, integer nanoseconds; 0 when unset). ValueError names the variable."""
    text = (os.environ if environ is None else environ).get(SKEW_ENV, "").strip()
    if not text:
        return 0
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{SKEW_ENV} = {text!r}: must be an integer number of nanoseconds, like 250000000") from None


def skewed(row: dict[str, Any], skew_ns: int, ms_fields: tuple[str, ...] = ()) -> dict[str, Any]:
    """The row as a worker whose clock is `skew_ns` ahead would have written it: every `*_ns` time shifted, and
    each of `ms_fields` (a difference of this worker's time minus another clock's, in ms) shifted likewise."""
    if not skew_ns:
        return row
    out = dict(row)
    for key, value in row.items():
        if value is None or isinstance(value, bool):
            continue
        if key.endswith("_ns") and isinstance(value, int):
            out[key] = value + skew_ns
        elif key in ms_fields and isinstance(value, (int, float)):
            out[key] = value + skew_ns / 1e6
    return out


def ntp_sample(t1: int, t2: int, t3: int, t4: int) -> tuple[float, float]:
    """(offset, delay) in ns of one exchange: t1 master send, t2 worker receive, t3 worker send, t4 master receive.

    offset = ((t2 - t1) + (t3 - t4)) / 2 is the worker's clock minus the master's; delay = (t4 - t1) - (t3 - t2)
    the round trip without the worker's own time. The true offset lies within offset +- delay / 2.
    """
    return ((t2 - t1) + (t3 - t4)) / 2, float((t4 - t1) - (t3 - t2))


def best_sample(samples: Iterable[tuple[int, int, int, int]]) -> dict[str, float] | None:
    """The minimum-delay exchange of `samples` (t1..t4 each): offset_ns, delay_ns, uncertainty_ns (= delay / 2),
    samples; None without samples. A negative delay (clocks stepped during the exchange) is refused."""
    best: tuple[float, float] | None = None
    n = 0
    for t1, t2, t3, t4 in samples:
        offset, delay = ntp_sample(t1, t2, t3, t4)
        if delay < 0:
            continue
        n += 1
        if best is None or delay < best[1]:
            best = (offset, delay)
    if best is None:
        return None
    return {"offset_ns": best[0], "delay_ns": best[1], "uncertainty_ns": best[1] / 2, "samples": n}
