"""Read a run directory and check it is one we can report on: a comparison run (`hookbench run`: manifest.json,
summary.json, detections.parquet; deliveries.parquet and events.parquet when present), a simulated run
(`hookbench simulate`, summary.json `kind` "simulated": the same files, detections in virtual seconds, no
deliveries or events) or a load run (`hookbench load`: manifest.json, summary.json; steps.parquet and harness.parquet
when present).

Nothing here computes statistics: the files are taken as the analysis wrote them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from bench.errors import RunDirError
from bench.results import Kind, RunStatus, Summary, read_manifest, read_summary

__all__ = ["DETECTION_COLUMNS", "SIM_DETECTION_COLUMNS", "DELIVERY_COLUMNS", "EVENT_COLUMNS", "STEP_COLUMNS",
           "HARNESS_COLUMNS", "RunData", "LoadRunData", "load_run", "read_run"]

DETECTIONS = "detections.parquet"
DETECTION_COLUMNS = ("mode", "change_id", "resource_id", "t_change_ns", "t_obs_ns", "latency_ms")
# A simulated run has no clock and no producer ids: changes are numbered, times are virtual seconds.
SIM_DETECTION_COLUMNS = ("mode", "change_seq", "resource_id", "t_change_s", "t_obs_s", "latency_ms")
# Optional raw tables (older runs lack them, or some of their columns): only the columns the figures use are read.
DELIVERIES = "deliveries.parquet"
DELIVERY_COLUMNS = ("mode", "attempt", "t_send_ns", "status")
EVENTS = "events.parquet"
EVENT_COLUMNS = ("t_ns", "source", "event", "pending")
# A load run's optional raw tables. requests.parquet (one row per request, millions in a long ramp) is not read:
# the report draws the per-step values the analysis wrote into summary.json.
STEPS = "steps.parquet"
STEP_COLUMNS = ("t_ns", "step", "users")
HARNESS = "harness.parquet"
HARNESS_COLUMNS = ("t_ns", "process", "cpu_pct")


@dataclass(frozen=True)
class _RunDir:
    """What every run directory read from disk has: `result` is summary.json typed (bench.results.Summary)."""

    run_dir: Path
    manifest: dict[str, Any]
    result: Summary

    @property
    def summary(self) -> dict[str, Any]:
        """summary.json as written, for the display code that still reads it as a dict."""
        return self.result.raw

    @property
    def status(self) -> RunStatus:
        return self.result.status

    @property
    def partial(self) -> bool:
        return self.result.partial or bool(self.manifest.get("partial"))


@dataclass(frozen=True)
class RunData(_RunDir):
    """One run directory (live or simulated) as read from disk."""

    detections: pd.DataFrame
    deliveries: pd.DataFrame | None = None  # None: the run directory has no deliveries.parquet
    events: pd.DataFrame | None = None  # None: no events.parquet

    @property
    def modes(self) -> dict[str, dict[str, Any]]:
        """Mode name -> that mode's summary section as written, in the order the summary lists them (the typed
        sections are `result.modes`)."""
        return {name: m.raw for name, m in self.result.modes.items()}

    @property
    def faults(self) -> dict[str, Any] | None:
        """summary.json's `faults` section, or None when the summary has none (older runs)."""
        return self.result.faults

    @property
    def security(self) -> dict[str, Any] | None:
        """summary.json's `security` section, or None when the summary has none (older runs)."""
        return self.result.security

    @property
    def window_start_ns(self) -> int | None:
        """When the measured window started (manifest.json window.start_ns), the zero of the timeline."""
        window = self.manifest.get("window")
        start = window.get("start_ns") if isinstance(window, dict) else None
        return start if type(start) is int else None

    @property
    def simulated(self) -> bool:
        """A `hookbench simulate` run: virtual time, no servers (summary.json `kind` "simulated")."""
        return self.result.kind is Kind.SIMULATED

    @property
    def change_process(self) -> str | None:
        """The change process ("poisson", "constant", ...): it decides which analytic model applies."""
        workload, scenario = self.result.workload, self.manifest.get("scenario")
        process = workload.get("process") if workload is not None else None
        if process is None and isinstance(scenario, dict) and isinstance(scenario.get("changes"), dict):
            process = scenario["changes"].get("process")
        return process if isinstance(process, str) else None


@dataclass(frozen=True)
class LoadRunData(_RunDir):
    """One load run directory (`hookbench load`, summary.json `kind` "load") as read from disk."""

    steps: pd.DataFrame | None = None  # None: no steps.parquet (the ramp's step boundaries)
    harness: pd.DataFrame | None = None  # None: no harness.parquet (CPU % of each process, once a second)

    @property
    def overload(self) -> dict[str, Any]:
        """summary.json's `overload` section (checked to be an object with a list of steps when it was read)."""
        return self.result.overload or {}


def read_run(run_dir: Path) -> RunData | LoadRunData:
    """Read and check `run_dir`, a load run when its summary.json says `"kind": "load"`, else a comparison run
    (live or simulated); raise RunDirError (or FormatVersionError) naming the file at fault."""
    run_dir = _run_dir(run_dir)
    manifest = read_manifest(run_dir)
    summary = read_summary(run_dir, expect=(Kind.RUN, Kind.SIMULATED, Kind.LOAD))
    if summary.kind is not Kind.LOAD:
        return _comparison_run(run_dir, manifest, summary)
    return LoadRunData(run_dir, manifest, summary, _read_optional(run_dir / STEPS, STEP_COLUMNS),
                       _read_optional(run_dir / HARNESS, HARNESS_COLUMNS))


def load_run(run_dir: Path) -> RunData:
    """Read and check the comparison run `run_dir`; raise RunDirError (or FormatVersionError) naming the file at
    fault."""
    run_dir = _run_dir(run_dir)
    return _comparison_run(run_dir, read_manifest(run_dir), read_summary(run_dir, expect=(Kind.RUN, Kind.SIMULATED)))


def _run_dir(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: not a directory: expected a run directory written by `hookbench run`"
                          " or `hookbench load`")
    return run_dir


def _comparison_run(run_dir: Path, manifest: dict[str, Any], summary: Summary) -> RunData:
    if summary.kind is Kind.SIMULATED:
        # the simulator writes no detections table when no polling mode observed anything
        path = run_dir / DETECTIONS
        detections = (_read_detections(path, SIM_DETECTION_COLUMNS) if path.is_file()
                      else pd.DataFrame({c: pd.Series(dtype="float64") for c in SIM_DETECTION_COLUMNS}))
    else:
        detections = _read_detections(run_dir / DETECTIONS, DETECTION_COLUMNS)
    return RunData(run_dir, manifest, summary, detections,
                   _read_optional(run_dir / DELIVERIES, DELIVERY_COLUMNS),
                   _read_optional(run_dir / EVENTS, EVENT_COLUMNS))


def _read_detections(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    if not path.is_file():
        raise RunDirError(f"{path}: missing: a run directory needs {path.name} (it may have zero rows)")
    try:
        table = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise RunDirError(f"{path}: cannot be read as Parquet ({exc})") from exc
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise RunDirError(f"{path}: columns {missing} missing: expected columns {list(columns)}")
    return table


def _read_optional(path: Path, columns: tuple[str, ...]) -> pd.DataFrame | None:
    """The `columns` of `path` that it has (a figure needing an absent one says so), or None without the file."""
    if not path.is_file():
        return None
    try:
        present = set(pq.read_schema(path).names)
        return pd.read_parquet(path, columns=[c for c in columns if c in present])
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise RunDirError(f"{path}: cannot be read as Parquet ({exc}); the file is damaged: move it out of the"
                          " run directory to report without it") from exc
