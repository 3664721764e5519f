"""The delivery timeline figure: webhook delivery attempts per second and the producer's delivery backlog, with
the receiver's outages shaded and the producer's crashes marked. Drawn from deliveries.parquet and events.parquet
as recorded; the only processing is counting attempts into 1 s bins.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from reports.fmt import fmt_policy, get, is_webhook, number
from reports.loss import crashes, down_intervals, faults_injected

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from reports.rundir import RunData

__all__ = ["draw_delivery_timeline"]

MAX_FACETS = 3  # more webhook modes than this are drawn as one aggregate panel
WIDTH_IN, PANEL_IN, BACKLOG_IN, EXTRA_IN = 7.5, 1.55, 1.35, 1.3
STATS_GAP_S = 2.5  # stats come once a second; a longer gap (producer down) breaks the backlog line
OK, FAILED, RETRY, BACKLOG = "#43a047", "#e53935", "black", "#1565c0"
DOWN, CRASH, WINDOW = "#ffcc80", "#6a1b9a", "0.35"
NEEDED = ("attempt", "t_send_ns", "status")


def draw_delivery_timeline(fig: Figure, title: str, run: RunData) -> tuple[bool, str]:
    """Fill `fig` and return (True, caption), or draw nothing and return (False, why)."""
    faults, d, start_ns = run.faults, run.deliveries, run.window_start_ns
    if faults is None:
        return False, "summary.json has no faults section (a run from an older hookbench)"
    if not faults_injected(faults):
        return False, "no receiver outage or producer crash in this run, so there is no outage to follow"
    if d is None:
        return False, "the run directory has no deliveries.parquet"
    if missing := [c for c in NEEDED if c not in d.columns]:
        return False, f"deliveries.parquet lacks the columns {', '.join(missing)} (written by an older hookbench)"
    if start_ns is None:
        return False, "manifest.json has no window.start_ns to place the timeline on"
    d = d[d["t_send_ns"].notna()]
    if "mode" in d.columns:
        modes = d["mode"].astype("string").fillna("")
        d = d[modes.isin([m for m in modes.unique() if is_webhook(m)])]
    if d.empty:
        return False, "no webhook delivery was attempted"

    t = (d["t_send_ns"].to_numpy(dtype="int64") - start_ns) / 1e9
    window_end = _seconds(get(run.manifest, "window", "end_ns"), start_ns)
    lo = math.floor(min(t.min(), 0.0))
    hi = math.ceil(max(t.max(), window_end if window_end is not None else 0.0)) + 1
    edges = np.arange(lo, hi + 1, dtype=float)
    panels = _panels(run, d)
    backlog = _backlog(run.events, start_ns, lo, hi)

    heights = [PANEL_IN] * len(panels) + ([BACKLOG_IN] if backlog is not None else [])
    fig.set_size_inches(WIDTH_IN, sum(heights) + EXTRA_IN)
    axes = fig.subplots(len(heights), 1, sharex=True, squeeze=False, height_ratios=heights)[:, 0]
    fig.suptitle(title)
    top = max(_attempts(ax, rows, (rows["t_send_ns"].to_numpy(dtype="int64") - start_ns) / 1e9, edges, label)
              for ax, (label, rows) in zip(axes, panels))
    for ax in axes[:len(panels)]:  # one scale for every mode, so their panels compare at a glance
        ax.set_ylim(0, max(1, top) * 1.15)
    if backlog is not None:
        ax = axes[-1]
        ax.plot(*backlog, color=BACKLOG, linewidth=1.5)
        ax.set_ylabel("backlog\n(pending)")
        ax.set_ylim(bottom=0)
        ax.set_title("producer's delivery backlog, all webhook modes", loc="left", fontsize=9)
    for ax in axes:
        _mark_faults(ax, faults, start_ns, window_end)
        ax.grid(True, axis="y", alpha=0.35)
    axes[-1].set_xlim(lo, hi)
    axes[-1].set_xlabel("seconds since the window start")
    fig.legend(handles=_legend(faults, backlog is not None), loc="outside lower center", ncols=4, fontsize=8,
               frameon=False)
    return True, _caption(len(panels), backlog is not None)


def _panels(run: RunData, d: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(label, rows) per webhook mode in summary order when there are few, else one panel for all of them."""
    if "mode" not in d.columns:
        return [("all webhook deliveries", d)]
    modes = d["mode"].astype(str)
    present = set(modes)
    order = [m for m in run.modes if m in present] + sorted(present - set(run.modes))
    if len(order) > MAX_FACETS:
        return [(f"all {len(order)} webhook modes together", d)]
    return [(_mode_label(run, m), d[modes == m]) for m in order]


def _mode_label(run: RunData, mode: str) -> str:
    policy = get(run.faults, "modes", mode, "policy")
    return f"{mode}: {fmt_policy(policy, mode)}" if policy is not None else mode


def _attempts(ax: Axes, rows: pd.DataFrame, t: np.ndarray, edges: np.ndarray, label: str) -> int:
    """Draw one panel of attempts per second; return its highest bar."""
    status = pd.to_numeric(rows["status"], errors="coerce").to_numpy(dtype=float)
    ok = (status >= 200) & (status < 300)
    retry = pd.to_numeric(rows["attempt"], errors="coerce").to_numpy(dtype=float) > 1
    n_ok, _ = np.histogram(t[ok], edges)
    n_failed, _ = np.histogram(t[~ok], edges)
    n_retry, _ = np.histogram(t[retry], edges)
    ax.bar(edges[:-1], n_ok, width=1.0, align="edge", color=OK, linewidth=0)
    ax.bar(edges[:-1], n_failed, width=1.0, align="edge", bottom=n_ok, color=FAILED, linewidth=0)
    ax.stairs(n_retry, edges, color=RETRY, linewidth=1.3)
    ax.set_ylabel("attempts/s")
    ax.set_title(label, loc="left", fontsize=9)
    return int((n_ok + n_failed).max())


def _backlog(events: pd.DataFrame | None, start_ns: int, lo: float, hi: float) -> tuple[np.ndarray, ...] | None:
    """(seconds, pending) of the producer's once-a-second stats, NaN across gaps so a crash shows as a break."""
    if events is None or not {"t_ns", "source", "event", "pending"} <= set(events.columns):
        return None
    stats = events[(events["source"] == "producer") & (events["event"] == "stats") & events["t_ns"].notna()]
    x = (stats["t_ns"].to_numpy(dtype="int64") - start_ns) / 1e9
    y = pd.to_numeric(stats["pending"], errors="coerce").to_numpy(dtype=float)
    keep = np.isfinite(y) & (x >= lo) & (x <= hi)
    x, y = x[keep], y[keep]
    if x.size == 0:
        return None
    order = np.argsort(x)
    x, y = x[order], y[order]
    gaps = np.flatnonzero(np.diff(x) > STATS_GAP_S) + 1
    return np.insert(x, gaps, np.nan), np.insert(y, gaps, np.nan)


def _mark_faults(ax: Axes, faults: dict, start_ns: int, window_end: float | None) -> None:
    for outage in down_intervals(faults):
        a, b = _seconds(outage.get("start_ns"), start_ns), _seconds(outage.get("end_ns"), start_ns)
        if a is not None and b is not None:
            ax.axvspan(a, b, color=DOWN, alpha=0.55, linewidth=0, zorder=0)
    for crash in crashes(faults):
        for key, style in (("killed_ns", "--"), ("restarted_ns", ":")):
            x = _seconds(crash.get(key), start_ns)
            if x is not None:
                ax.axvline(x, color=CRASH, linestyle=style, linewidth=1.6)
    for x in (0.0, window_end):
        if x is not None:
            ax.axvline(x, color=WINDOW, linestyle="-.", linewidth=1.0)


def _legend(faults: dict, backlog: bool) -> list[Patch | Line2D]:
    handles: list[Patch | Line2D] = [
        Patch(color=OK, label="answered 2xx"),
        Patch(color=FAILED, label="failed (no answer, not 2xx)"),
        Line2D([], [], color=RETRY, linewidth=1.3, label="retries among them"),
    ]
    if backlog:
        handles.append(Line2D([], [], color=BACKLOG, linewidth=1.5, label="pending deliveries"))
    if down_intervals(faults):
        handles.append(Patch(color=DOWN, alpha=0.55, label="receiver down"))
    if crash_list := crashes(faults):
        handles.append(Line2D([], [], color=CRASH, linestyle="--", linewidth=1.6, label="producer killed"))
        if any(c.get("restarted_ns") is not None for c in crash_list):
            handles.append(Line2D([], [], color=CRASH, linestyle=":", linewidth=1.6, label="producer restarted"))
    handles.append(Line2D([], [], color=WINDOW, linestyle="-.", linewidth=1.0, label="window start, end"))
    return handles


def _caption(n_panels: int, backlog: bool) -> str:
    per = "one panel per webhook mode" if n_panels > 1 else "all webhook modes together"
    text = (f"Webhook delivery attempts per 1 s bin of send time, {per}: answered 2xx and failed (no answer or "
            "another status), stacked; the black line counts the retries among them. Shaded: the receiver was "
            "down (from its own records); violet lines: the producer was killed (dashed) and restarted (dotted).")
    if backlog:
        text += (" Bottom: the producer's delivery backlog, sampled once a second; a gap means the producer was "
                 "not answering.")
    else:
        text += " The producer's delivery backlog was not recorded (no stats in events.parquet)."
    return text


def _seconds(ns: object, start_ns: int) -> float | None:
    x = number(ns)
    return None if x is None else (x - start_ns) / 1e9
