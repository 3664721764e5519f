"""Parameter sweeps (`hookbench sweep`): one scenario run at every point of a grid of overrides (any scenario key,
a mode kind's keys included), then the per-run summaries gathered into sweep.json / sweep.parquet with the
crossover of every consumer-driven mode against every push mode (claim C5: the cursor poller's).

Each point is an ordinary run directory inside the sweep directory; nothing here measures anything. The only
numbers computed are the crossover's (`bench.analysis.crossover`); everything else is copied from each point's
summary.json.
"""

from __future__ import annotations

import itertools
import os
import shlex
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pandas as pd

from bench.analysis.crossover import crossover
from bench.config import load_scenario
from bench.errors import HookbenchError, ScenarioError
from bench.manifest import collect_metadata
from bench.modes import MODE_KINDS, find_kind
from bench.orchestration.runner import run_scenario
from bench.orchestration.session import new_run_dir
from bench.results import Kind, RunStatus, Summary, status_keys, version_keys, write_sweep

if TYPE_CHECKING:
    from bench.config import Scenario

__all__ = ["SWEEP_PARQUET", "SweepPoint", "parse_grid", "plan_sweep", "run_sweep"]

SWEEP_PARQUET = "sweep.parquet"
# What each point keeps of a mode's summary (design.md section 4 names); latency_ms and model only in part.
_MODE_KEYS = ("kind", "style", "requests_per_change", "bytes_per_change", "cpu_s_per_change", "wasted_fraction",
              "observed", "lost", "held_connections")
_MODEL_KEYS = ("requests_per_change", "lambda_T")
_GRID_HELP = "must look like key=v1,v2,..., e.g. changes.rate=0.01,0.1,1"
_NO_GRID = "a sweep needs at least one --grid key=v1,v2,..., e.g. --grid changes.rate=0.01,0.1,1"

Grid = list[tuple[str, list[str]]]


# --- the grid ------------------------------------------------------------------------------------

def _split_values(raw: str) -> list[str] | None:
    """Split on commas outside [], {} and quotes, so TOML lists stay whole: styles=["cursor"],["cursor","etag"].
    None when a bracket or quote is left open."""
    out, cur, depth, quote = [], [], 0, ""
    for ch in raw:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    out.append("".join(cur).strip())
    return None if quote or depth else out


def parse_grid(items: list[str]) -> Grid:
    """`["changes.rate=0.01,0.1,1"]` -> `[("changes.rate", ["0.01", "0.1", "1"])]`.

    Only the syntax is checked here (ScenarioError on a bad item); `plan_sweep` validates the values.
    """
    if not items:
        raise ScenarioError("--grid", "(none)", [], _NO_GRID)
    grid: Grid = []
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(c.isspace() for c in key):
            raise ScenarioError("--grid", "(syntax)", item, _GRID_HELP)
        values = _split_values(raw)
        if values is None:
            raise ScenarioError("--grid", key, raw, "has an unclosed bracket or quote; " + _GRID_HELP)
        if not raw.strip() or any(v == "" for v in values):
            raise ScenarioError("--grid", key, raw, "has an empty value (nothing after '=', two commas in a row "
                                "or a trailing comma); " + _GRID_HELP)
        seen = {v for i, v in enumerate(values) if v in values[:i]}
        if seen:
            raise ScenarioError("--grid", key, raw, f"lists {', '.join(sorted(seen))} more than once; "
                                "give each value once")
        if key in (k for k, _ in grid):
            raise ScenarioError("--grid", key, item, "is given twice; give each key once, with all its values")
        grid.append((key, values))
    return grid


@dataclass(frozen=True)
class SweepPoint:
    """One point of the grid: its overrides (in grid order) and the scenario they resolve to."""

    index: int  # 1-based
    overrides: tuple[tuple[str, str], ...]
    scenario: Scenario

    @property
    def sets(self) -> list[str]:
        """The point's overrides as `key=value` items."""
        return [f"{k}={v}" for k, v in self.overrides]

    @property
    def label(self) -> str:
        return " ".join(self.sets)


def plan_sweep(scenario_path: Path, grid: Grid, extra_overrides: list[str] | tuple[str, ...] = ()) -> list[SweepPoint]:
    """Every point of the grid's cartesian product, each loaded and validated: a bad value fails here, before
    anything runs. `extra_overrides` apply to every point; a key may not be both swept and set."""
    if not grid:
        raise ScenarioError("--grid", "(none)", [], _NO_GRID)
    keys = [k for k, _ in grid]
    for item in extra_overrides:
        key = item.partition("=")[0].strip()
        if key in keys:
            raise ScenarioError("--set", key, item, f"is also swept by --grid {key}=...; drop one of the two")
    load_scenario(scenario_path, list(extra_overrides))  # a mistake outside the grid is reported as itself
    combos = list(itertools.product(*[[(k, v) for v in values] for k, values in grid]))
    points = []
    for i, combo in enumerate(combos, 1):
        point_sets = [f"{k}={v}" for k, v in combo]
        try:
            scenario = load_scenario(scenario_path, [*extra_overrides, *point_sets])
        except ScenarioError as e:
            swept = any(e.key == k or e.key.startswith(k + ".") or e.key.startswith(k + "[") for k in keys)
            source = "--grid" + e.source[len("--set"):] if swept and e.source.startswith("--set") else e.source
            raise ScenarioError(source, e.key, e.value,
                                f"{e.expected} (grid point {i}/{len(combos)}: {' '.join(point_sets)})") from None
        points.append(SweepPoint(i, tuple(combo), scenario))
    for key, values in grid:
        _check_mode_key(key, values, points)
    return points


def _check_mode_key(key: str, values: list[str], points: list[SweepPoint]) -> None:
    """A key that a mode kind declares (polling.long_wait, webhook.reconcile_interval, ...) configures only that
    kind's modes: sweeping it when no point runs one would run the same sweep at every value."""
    section, _, name = key.partition(".")
    kinds = [k for k in MODE_KINDS if k.section == section and name in k.fields]
    names = {k.name for k in kinds}
    if not kinds or any(getattr(find_kind(m), "name", None) in names for p in points for m in p.scenario.modes):
        return
    how = "; ".join(f'add "{k.style}" to polling.styles' if k.style is not None
                    else f"add a [[webhook.subscriptions]] whose name starts with {k.default_name!r} "
                         "(webhook.enabled = true)"
                    for k in kinds)
    what = " or ".join(f"{k.label} ({k.default_name})" for k in kinds)
    raise ScenarioError("--grid", key, ",".join(values),
                        f"configures only {what}, which no point of this sweep runs, so every point would be the "
                        f"same run: {how}, or sweep another key")


# --- running -------------------------------------------------------------------------------------

class _StopRequest:
    """SIGTERM outside a run (run_scenario handles the one during a run itself) only sets a flag: raising there
    could cut short run_scenario's cleanup of its processes, or the analysis of a run that did finish."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: object) -> None:
        self.requested = True


def run_sweep(scenario_path: Path, grid: Grid, *, out: Path, extra_overrides: list[str], scenarios_dir: Path,
              repo: Path, log: Callable[[str], None] = print) -> Path:
    """Run every grid point into `out/<UTC stamp>-sweep-<name>/`, then write sweep.json and sweep.parquet there.

    Every point is validated before the first run (ScenarioError). Ctrl-C or SIGTERM stops the sweep cleanly:
    what finished is aggregated and sweep.json says `partial`. A point whose run failed is recorded with its
    error and the sweep goes on. Returns the sweep directory.
    """
    scenario_path = Path(scenario_path)
    points = plan_sweep(scenario_path, grid, extra_overrides)
    name = points[0].scenario.name
    sweep_dir = new_run_dir(Path(out), f"sweep-{name}")
    n = len(points)
    doc: dict[str, Any] = {
        **version_keys(Kind.SWEEP), "scenario": name,
        "description": points[0].scenario.description, "scenario_source": str(scenario_path),
        "grid": [{"key": k, "values": list(v)} for k, v in grid], "extra_overrides": list(extra_overrides),
        "command": _command(scenario_path, grid, extra_overrides), **collect_metadata(repo),
        "finished_at": None, **status_keys(RunStatus.PARTIAL), "error": None, "points_planned": n, "points": [],
        "crossover": None,
    }
    log(f"hookbench sweep: {n} point{'s' if n != 1 else ''} of {scenario_path} -> {sweep_dir}")
    _write(sweep_dir, doc)
    stop = _StopRequest()
    in_main = threading.current_thread() is threading.main_thread()
    old_term = signal.signal(signal.SIGTERM, stop) if in_main else None
    current: tuple[SweepPoint, Path] | None = None
    interrupted = RunStatus.INTERRUPTED.value
    try:
        for p in points:
            if stop.requested:
                doc["error"] = interrupted
                log("\nterminated (SIGTERM): aggregating the points that finished")
                break
            log(f"point {p.index}/{n}: {p.label}")
            current = (p, new_run_dir(sweep_dir, f"p{p.index:02d}-{name}"))
            result = run_scenario(p.scenario, current[1], scenarios_dir, repo=repo, log=log)
            doc["points"].append(_point_record(p, current[1], sweep_dir, result.summary, result.partial,
                                               result.error))
            current = None
            log(_point_line(p, n, doc["points"][-1]))
            if result.status is RunStatus.INTERRUPTED:
                doc["error"] = interrupted
                break
            _write(sweep_dir, doc)
    except KeyboardInterrupt:
        doc["error"] = interrupted
        log("\ninterrupted: aggregating the points that finished")
    except BaseException as e:
        doc["error"] = f"{type(e).__name__}: {e}" if not isinstance(e, HookbenchError) else str(e)
        raise
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, old_term)
        if current is not None:  # stopped inside a run, before its summary came back
            doc["points"].append(_point_record(current[0], current[1], sweep_dir, None, True,
                                               doc["error"] or "stopped"))
        partial = len(doc["points"]) < n or any(pt["partial"] for pt in doc["points"])
        doc.update(status_keys(RunStatus.INTERRUPTED if doc["error"] == interrupted
                               else RunStatus.PARTIAL if partial or doc["error"] else RunStatus.COMPLETE))
        doc["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
        doc["crossover"] = crossover(doc["points"])
        _write(sweep_dir, doc)
        _write_parquet(sweep_dir / SWEEP_PARQUET, sweep_rows(doc))
    return sweep_dir


def _command(scenario_path: Path, grid: Grid, extra: list[str] | tuple[str, ...]) -> str:
    """The `hookbench sweep` command line equivalent to this sweep, however it was started."""
    args = ["hookbench", "sweep", str(scenario_path)]
    for k, values in grid:
        args += ["--grid", f"{k}={','.join(values)}"]
    for item in extra:
        args += ["--set", item]
    return shlex.join(args)


def _point_record(p: SweepPoint, run_dir: Path, sweep_dir: Path, summary: Summary | None, partial: bool,
                  error: str | None) -> dict[str, Any]:
    """What sweep.json keeps of one point: copied from its summary.json, nothing recomputed."""
    s = summary or Summary.from_dict({})
    workload = s.workload or {}
    modes = {}
    for mode, m in s.modes.items():
        written = m.to_dict()
        row = {k: written[k] for k in _MODE_KEYS if k in written}
        row["latency_ms"] = {"p50": m.latency_ms.p50}
        row["model"] = {k: m.model.get(k) for k in _MODEL_KEYS}
        modes[mode] = row
    return {
        "index": p.index, "overrides": dict(p.overrides), "run_dir": run_dir.relative_to(sweep_dir).as_posix(),
        "partial": partial or summary is None or s.partial, "error": error,
        "harness_saturated": s.value("harness_saturated"), "saturation_reasons": s.saturation_reasons,
        "changes": s.value("changes"), "duration_s": s.value("duration_s"), "time_scale": s.value("time_scale"),
        "workload": {k: workload.get(k) for k in ("rate_per_resource", "poll_interval_s", "resources", "process")},
        "modes": modes,
    }


def _point_line(p: SweepPoint, n: int, rec: dict[str, Any]) -> str:
    parts = [f"{mode} {_g(m.get('requests_per_change'))} req/chg" for mode, m in rec["modes"].items()]
    status = f"  [{rec['error']}]" if rec["error"] else ("  [HARNESS SATURATED]" if rec["harness_saturated"] else "")
    return f"point {p.index}/{n} done: {rec['changes']} changes; " + ", ".join(parts) + status


def _g(x: Any) -> str:
    return "-" if x is None else f"{x:.3g}"


def sweep_rows(doc: dict[str, Any]) -> pd.DataFrame:
    """sweep.parquet: one row per point x mode (a point without results has no rows; sweep.json lists it)."""
    keys = [g["key"] for g in doc["grid"]]
    rows = []
    for pt in doc["points"]:
        w = pt["workload"]
        for mode, m in pt["modes"].items():
            rows.append({
                "point": pt["index"], **{k: pt["overrides"].get(k) for k in keys}, "run_dir": pt["run_dir"],
                "partial": pt["partial"], "error": pt["error"], "harness_saturated": pt["harness_saturated"],
                "rate_per_resource": w["rate_per_resource"], "poll_interval_s": w["poll_interval_s"],
                "resources": w["resources"], "time_scale": pt["time_scale"], "changes": pt["changes"],
                "mode": mode, "kind": m.get("kind"),
                **{k: m.get(k) for k in ("requests_per_change", "bytes_per_change", "cpu_s_per_change",
                                         "wasted_fraction")},
                "latency_ms_p50": m["latency_ms"]["p50"], "observed": m.get("observed"), "lost": m.get("lost"),
                "model_requests_per_change": m["model"]["requests_per_change"],
                "model_lambda_T": m["model"]["lambda_T"],
                "held_connections_max": (m.get("held_connections") or {}).get("max"),
            })
    df = pd.DataFrame(rows)
    for col in ("rate_per_resource", "poll_interval_s", "time_scale", "requests_per_change", "bytes_per_change",
                "cpu_s_per_change", "wasted_fraction", "latency_ms_p50", "model_requests_per_change",
                "model_lambda_T", "held_connections_max"):
        if col in df:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")  # null -> NaN, never object
    return df


def _write(sweep_dir: Path, doc: dict[str, Any]) -> None:
    write_sweep(sweep_dir, doc)


def _write_parquet(path: Path, df: pd.DataFrame) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)
