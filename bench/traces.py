"""Recorded change streams for trace replay: a CSV of Unix times (optionally with a resource id) or the
commit times of a local git repository (`git log --format=%ct`).

A `Trace` holds the event times in seconds from its first event, sorted, and the resource ids when the
source had them. Everything a user can get wrong (missing file, a line that is not a time, too few events,
a directory that is not a git repository) raises `TraceError` naming the source, the line and what was
expected. Pure apart from reading the source; no pandas.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Trace", "TraceError", "load_trace", "trace_from_csv", "trace_from_git", "write_trace_csv"]

MIN_EVENTS = 2


class TraceError(ValueError):
    """A trace source that cannot be replayed; the message names the source and what is wrong."""


@dataclass(frozen=True, eq=False)
class Trace:
    times: np.ndarray  # float64 seconds from the first event, sorted ascending, times[0] == 0
    ids: np.ndarray | None  # int64 resource index per event (0..k-1 by first appearance), or None
    source: str  # what it was read from, for the manifest and the report
    sha256: str  # of the normalised event list: two runs replayed the same trace iff these match
    start_unix: float  # Unix time of the first event

    @property
    def events(self) -> int:
        return int(self.times.size)

    @property
    def cycle(self) -> float:
        """Length of one replay cycle: the span plus one mean gap, so the wrap-around keeps the mean rate."""
        n = self.times.size
        span = float(self.times[-1])
        return span * n / (n - 1) if span > 0 else float(n)

    @property
    def distinct_ids(self) -> int:
        return 0 if self.ids is None else int(self.ids.max()) + 1

    @property
    def mean_rate(self) -> float:
        """Events per second over the replay cycle (the whole stream, all ids together)."""
        return self.times.size / self.cycle

    def burstiness(self) -> float:
        """Coefficient of variation of the gaps between events: 1 for Poisson, > 1 for bursty streams."""
        gaps = np.diff(self.times)
        mean = float(gaps.mean())
        return float(gaps.std() / mean) if mean > 0 else math.inf


def _build(unix: np.ndarray, ids: list[str] | None, source: str) -> Trace:
    if unix.size < MIN_EVENTS:
        raise TraceError(f"{source}: {unix.size} event(s); a trace needs at least {MIN_EVENTS}")
    order = np.argsort(unix, kind="stable")
    unix = unix[order]
    id_arr = None
    if ids is not None:
        index: dict[str, int] = {}
        id_arr = np.array([index.setdefault(ids[i], len(index)) for i in order.tolist()], dtype=np.int64)
    h = hashlib.sha256(unix.tobytes())
    if id_arr is not None:
        h.update(id_arr.tobytes())
    return Trace(times=unix - unix[0], ids=id_arr, source=source, sha256=h.hexdigest(), start_unix=float(unix[0]))


def trace_from_csv(path: str | Path) -> Trace:
    """One event per line: `unix_time` or `unix_time,resource_id`. Blank lines and `#` comments are skipped;
    a first line that is not a number is taken as a header. Either every line has an id or none does."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TraceError(f"{p}: file not found (a trace CSV holds one Unix time per line)") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
        raise TraceError(f"{p}: cannot be read as a UTF-8 text file ({e.__class__.__name__})") from None
    times: list[float] = []
    ids: list[str] = []
    with_ids: bool | None = None
    first = True
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        cells = [c.strip() for c in line.split(",")]
        try:
            t = float(cells[0])
        except ValueError:
            if first:
                first = False
                continue  # a header
            raise TraceError(f"{p}, line {n}: {cells[0]!r} is not a Unix time in seconds") from None
        first = False
        if not math.isfinite(t) or t < 0:
            raise TraceError(f"{p}, line {n}: {cells[0]!r} is not a Unix time >= 0")
        if len(cells) > 2:
            raise TraceError(f"{p}, line {n}: {len(cells)} columns; expected `unix_time` or `unix_time,resource_id`")
        has_id = len(cells) == 2 and cells[1] != ""
        if with_ids is None:
            with_ids = has_id
        elif has_id != with_ids:
            raise TraceError(f"{p}, line {n}: {'has' if has_id else 'lacks'} a resource id while earlier lines "
                             f"{'do not' if has_id else 'do'}; either every line has one or none does")
        times.append(t)
        if has_id:
            ids.append(cells[1])
    return _build(np.array(times, dtype=np.float64), ids if with_ids else None, str(p))


def trace_from_git(repo: str | Path) -> Trace:
    """Commit times of every commit reachable from HEAD of a local repository (`git log --format=%ct`)."""
    p = Path(repo)
    if not p.is_dir():
        raise TraceError(f"{p}: not a directory (changes.git names a local git repository)")
    git = shutil.which("git")
    if git is None:
        raise TraceError(f"{p}: the `git` command is not installed, so its history cannot be read")
    try:
        out = subprocess.run([git, "-C", str(p), "log", "--format=%ct"], capture_output=True, text=True,
                             timeout=60, check=False)
    except subprocess.TimeoutExpired:
        raise TraceError(f"{p}: `git log` took more than 60 s") from None
    if out.returncode != 0:
        why = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit status {out.returncode}"
        raise TraceError(f"{p}: `git log` failed: {why}")
    try:
        unix = np.array([float(x) for x in out.stdout.split()], dtype=np.float64)
    except ValueError:
        raise TraceError(f"{p}: `git log --format=%ct` printed something that is not a time") from None
    return _build(unix, None, f"git:{p.resolve()}")


def load_trace(csv: str | Path | None = None, git: str | Path | None = None) -> Trace:
    """Exactly one of `csv` and `git`."""
    if (csv is None) == (git is None):
        raise TraceError("a trace comes from exactly one of a CSV file and a git repository")
    return trace_from_csv(csv) if csv is not None else trace_from_git(git)  # type: ignore[arg-type]


def write_trace_csv(trace: Trace, path: str | Path) -> Path:
    """The trace as it was replayed (Unix times, ids if any): kept in the run directory for reproduction."""
    p = Path(path)
    unix = trace.times + trace.start_unix
    with open(p, "w", encoding="utf-8") as fh:
        fh.write("unix_time,resource_id\n" if trace.ids is not None else "unix_time\n")
        if trace.ids is None:
            fh.writelines(f"{t:.6f}\n" for t in unix.tolist())
        else:
            fh.writelines(f"{t:.6f},{i}\n" for t, i in zip(unix.tolist(), trace.ids.tolist()))
    return p
