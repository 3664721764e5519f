"""Worker clocks against the master's: the offsets estimated from the exchanges the master recorded
(`records/clock.jsonl`, scenarios/_wire.py), the correction of a worker's times by its offset, and the flag when
an offset is known less well than the scenario's `[load] clock_bound`.

An exchange is t1 (master sends), t2 (worker receives), t3 (worker answers), t4 (master receives);
offset = ((t2 - t1) + (t3 - t4)) / 2 (the worker's clock minus the master's), delay = (t4 - t1) - (t3 - t2).
Per worker and phase (start, end) the minimum-delay exchange is kept; its uncertainty is delay / 2.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import pandas as pd

from bench.analysis.stats import percentile
from bench.wire import best_sample

__all__ = ["clock_estimates", "manifest_clocks", "correct_frame", "clocks_section"]

PHASES = ("start", "end")


def clock_estimates(samples: Iterable[dict[str, Any]]) -> dict[int, dict[str, dict[str, Any]]]:
    """{worker: {phase: {offset_ns, delay_ns, uncertainty_ns, samples, t_ns, pid, host}}} from clock.jsonl rows."""
    groups: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for row in samples:
        if None in (row.get("t1"), row.get("t2"), row.get("t3"), row.get("t4"), row.get("worker")):
            continue
        groups.setdefault((int(row["worker"]), str(row.get("phase"))), []).append(row)
    out: dict[int, dict[str, dict[str, Any]]] = {}
    for (worker, phase), rows in sorted(groups.items()):
        best = best_sample((int(r["t1"]), int(r["t2"]), int(r["t3"]), int(r["t4"])) for r in rows)
        if best is None:
            continue
        out.setdefault(worker, {})[phase] = {**best, "t_ns": int(np.median([int(r["t1"]) for r in rows])),
                                             "pid": rows[-1].get("pid"), "host": rows[-1].get("host")}
    return out


def _ms(ns: float) -> float:
    return round(ns / 1e6, 6)


def manifest_clocks(estimates: dict[int, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """What manifest.json says of each worker's clock: per phase its offset and uncertainty (ms)."""
    return {str(w): {"pid": next(iter(ph.values()))["pid"], "host": next(iter(ph.values()))["host"],
                     **{phase: {"offset_ms": _ms(e["offset_ns"]), "uncertainty_ms": _ms(e["uncertainty_ns"]),
                                "delay_ms": _ms(e["delay_ns"]), "samples": e["samples"]}
                        for phase, e in ph.items()}}
            for w, ph in sorted(estimates.items())}


def _offset_series(est: dict[str, dict[str, Any]], t_ns: np.ndarray) -> tuple[np.ndarray, float]:
    """The offset at each time (linear between the start and end estimates, constant outside) and the larger
    uncertainty of the two."""
    have = [est[p] for p in PHASES if p in est]
    unc = max(e["uncertainty_ns"] for e in have)
    if len(have) == 1 or have[0]["t_ns"] == have[-1]["t_ns"]:
        return np.full(len(t_ns), float(have[0]["offset_ns"])), unc
    xs = [float(have[0]["t_ns"]), float(have[-1]["t_ns"])]
    ys = [float(have[0]["offset_ns"]), float(have[-1]["offset_ns"])]
    return np.interp(t_ns.astype(float), xs, ys), unc


def applied(est: dict[str, dict[str, Any]]) -> bool:
    """An offset is applied only when it is larger than its own uncertainty in some phase: one within it cannot
    be told from zero (workers on the master's machine share its clock), and correcting by it adds only noise."""
    return any(abs(e["offset_ns"]) > e["uncertainty_ns"] for e in est.values())


def correct_frame(frame: pd.DataFrame, estimates: dict[int, dict[str, dict[str, Any]]], *, time_col: str,
                  ns_cols: tuple[str, ...], ms_cols: tuple[str, ...] = ()) -> pd.DataFrame:
    """A copy of `frame` (a `worker` column) with each worker's `ns_cols` moved to the master's clock (minus the
    offset at `time_col`) and its `ms_cols` (its clock minus the master machine's) by the same amount in ms."""
    out = frame.copy()
    if not len(out) or "worker" not in out.columns:
        return out
    workers = out["worker"].fillna(-1).astype("int64").to_numpy()
    for w, est in estimates.items():
        mask = workers == w
        if not mask.any() or not applied(est):
            continue
        offset, _ = _offset_series(est, out.loc[mask, time_col].to_numpy(dtype="int64"))
        for col in ns_cols:
            if col in out.columns:
                out.loc[mask, col] = (out.loc[mask, col].to_numpy(dtype="int64") - np.rint(offset).astype("int64"))
        for col in ms_cols:
            if col in out.columns:
                out.loc[mask, col] = out.loc[mask, col].astype(float) - offset / 1e6
    return out


def _pct(values: pd.Series) -> dict[str, float | None]:
    v = np.sort(values.dropna().to_numpy(dtype=float))
    return {"p50": percentile(v, 50) if len(v) else None, "p99": percentile(v, 99) if len(v) else None,
            "n": int(len(v))}


def clocks_section(estimates: dict[int, dict[str, dict[str, Any]]], bound_s: float, *,
                   raw: pd.DataFrame | None = None, corrected: pd.DataFrame | None = None,
                   latency_col: str | None = None, workers: Iterable[int] = ()) -> dict[str, Any]:
    """The summary's `clocks`: each worker's offsets, whether they were applied, and whether its uncertainty
    passed the bound (`flagged`: its cross-clock latencies are not to be trusted below that). With a latency
    column comparing two clocks (`latency_col`), its p50/p99 per worker before and after the correction."""
    bound_ns = bound_s * 1e9
    out: dict[str, Any] = {"bound_ms": _ms(bound_ns), "workers": {}, "flagged": [], "unmeasured": []}
    for w in sorted(set(workers) - set(estimates)):
        if w >= 0:
            out["unmeasured"].append(int(w))
    for w, est in sorted(estimates.items()):
        worst = max(e["uncertainty_ns"] for e in est.values())
        entry: dict[str, Any] = {
            **{phase: {"offset_ms": _ms(e["offset_ns"]), "uncertainty_ms": _ms(e["uncertainty_ns"])}
               for phase, e in est.items()},
            "applied": applied(est), "within_bound": worst <= bound_ns}
        if latency_col and raw is not None and corrected is not None and latency_col in raw.columns:
            mask = raw["worker"].fillna(-1).astype("int64") == w
            entry[latency_col] = {"raw": _pct(raw.loc[mask, latency_col]),
                                  "corrected": _pct(corrected.loc[mask, latency_col])}
        out["workers"][str(w)] = entry
        if worst > bound_ns:
            out["flagged"].append(int(w))
    out["note"] = ("offsets: each worker's clock minus the master's, from the minimum-delay of "
                   "its exchanges at start and end (uncertainty: half that delay); applied only when larger than "
                   "the uncertainty. A flagged worker's latencies against another clock are uncertain by more "
                   "than bound_ms.")
    return out
