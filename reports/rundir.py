"""Read a run directory and check it is one we can report on: a comparison run (`hookbench run`: manifest.json,
summary.json, detections.parquet; deliveries.parquet and events.parquet when present), a simulated run
(`hookbench simulate`, summary.json `kind` "simulated": the same files, detections in virtual seconds, no
deliveries or events) or a load run (`hookbench load`: manifest.json, summary.json; steps.parquet and harness.parquet
when present).

Nothing here computes statistics: the files are taken as the analysis wrote them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from bench.errors import FormatVersionError, RunDirError

__all__ = ["KNOWN_FORMAT_VERSIONS", "DETECTION_COLUMNS", "SIM_DETECTION_COLUMNS", "DELIVERY_COLUMNS", "EVENT_COLUMNS",
           "STEP_COLUMNS", "HARNESS_COLUMNS", "RunData", "LoadRunData", "load_run", "read_run"]

KNOWN_FORMAT_VERSIONS = frozenset({1})
MANIFEST = "manifest.json"
SUMMARY = "summary.json"
DETECTIONS = "detections.parquet"
DETECTION_COLUMNS = ("mode", "change_id", "resource_id", "t_change_ns", "t_obs_ns", "latency_ms")
# A simulated run has no clock and no producer ids: changes are numbered, times are virtual seconds.
SIM_DETECTION_COLUMNS = ("mode", "change_seq", "resource_id", "t_change_s", "t_obs_s", "latency_ms")
SIMULATED = "simulated"
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
class RunData:
    """One run directory as read from disk."""

    run_dir: Path
    manifest: dict[str, Any]
    summary: dict[str, Any]
    detections: pd.DataFrame
    deliveries: pd.DataFrame | None = None  # None: the run directory has no deliveries.parquet
    events: pd.DataFrame | None = None  # None: no events.parquet

    @property
    def modes(self) -> dict[str, dict[str, Any]]:
        """Mode name -> that mode's summary section, in the order the summary lists them."""
        return self.summary["modes"]

    @property
    def faults(self) -> dict[str, Any] | None:
        """summary.json's `faults` section, or None when the summary has none (older runs)."""
        section = self.summary.get("faults")
        return section if isinstance(section, dict) else None

    @property
    def security(self) -> dict[str, Any] | None:
        """summary.json's `security` section, or None when the summary has none (older runs)."""
        section = self.summary.get("security")
        return section if isinstance(section, dict) else None

    @property
    def window_start_ns(self) -> int | None:
        """When the measured window started (manifest.json window.start_ns), the zero of the timeline."""
        window = self.manifest.get("window")
        start = window.get("start_ns") if isinstance(window, dict) else None
        return start if type(start) is int else None

    @property
    def partial(self) -> bool:
        return bool(self.summary.get("partial") or self.manifest.get("partial"))

    @property
    def simulated(self) -> bool:
        """A `hookbench simulate` run: virtual time, no servers (summary.json `kind` "simulated")."""
        return self.summary.get("kind") == SIMULATED

    @property
    def change_process(self) -> str | None:
        """The change process ("poisson", "constant", ...): it decides which analytic model applies."""
        workload, scenario = self.summary.get("workload"), self.manifest.get("scenario")
        process = workload.get("process") if isinstance(workload, dict) else None
        if process is None and isinstance(scenario, dict) and isinstance(scenario.get("changes"), dict):
            process = scenario["changes"].get("process")
        return process if isinstance(process, str) else None


@dataclass(frozen=True)
class LoadRunData:
    """One load run directory (`hookbench load`, summary.json `kind` "load") as read from disk."""

    run_dir: Path
    manifest: dict[str, Any]
    summary: dict[str, Any]
    steps: pd.DataFrame | None = None  # None: no steps.parquet (the ramp's step boundaries)
    harness: pd.DataFrame | None = None  # None: no harness.parquet (CPU % of each process, once a second)

    @property
    def overload(self) -> dict[str, Any]:
        """summary.json's `overload` section (checked to be an object when the run was read)."""
        return self.summary["overload"]

    @property
    def partial(self) -> bool:
        return bool(self.summary.get("partial") or self.manifest.get("partial"))


def read_run(run_dir: Path) -> RunData | LoadRunData:
    """Read and check `run_dir`, a load run when its summary.json says `"kind": "load"`, else a comparison run
    (live or simulated); raise RunDirError (or FormatVersionError) naming the file at fault."""
    run_dir = _run_dir(run_dir)
    manifest, summary = _read_json(run_dir / MANIFEST), _read_json(run_dir / SUMMARY)
    if summary.get("kind") != "load":
        return _comparison_run(run_dir, manifest, summary)
    overload = summary.get("overload")
    steps = overload.get("steps") if isinstance(overload, dict) else None
    if not isinstance(steps, list):
        if overload is None:
            found = "(missing)"
        elif isinstance(overload, dict):
            found = "an object without a list of steps"
        else:
            found = f"a {type(overload).__name__}"
        raise RunDirError(
            f"{run_dir / SUMMARY}: overload = {found}: a load run's summary needs an object with a list of steps;"
            " re-run the analysis to rewrite summary.json"
        )
    return LoadRunData(run_dir, manifest, summary, _read_optional(run_dir / STEPS, STEP_COLUMNS),
                       _read_optional(run_dir / HARNESS, HARNESS_COLUMNS))


def load_run(run_dir: Path) -> RunData:
    """Read and check the comparison run `run_dir`; raise RunDirError (or FormatVersionError) naming the file at
    fault."""
    run_dir = _run_dir(run_dir)
    return _comparison_run(run_dir, _read_json(run_dir / MANIFEST), _read_json(run_dir / SUMMARY))


def _run_dir(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: not a directory: expected a run directory written by `hookbench run`"
                          " or `hookbench load`")
    return run_dir


def _comparison_run(run_dir: Path, manifest: dict[str, Any], summary: dict[str, Any]) -> RunData:
    modes = summary.get("modes")
    if not isinstance(modes, dict) or not all(isinstance(m, dict) for m in modes.values()):
        found = "(missing)" if modes is None else f"a {type(modes).__name__}"
        raise RunDirError(
            f"{run_dir / SUMMARY}: modes = {found}: expected an object of mode name -> object of results;"
            " re-run the analysis to rewrite summary.json"
        )
    if summary.get("kind") == SIMULATED:
        # the simulator writes no detections table when no polling mode observed anything
        path = run_dir / DETECTIONS
        detections = (_read_detections(path, SIM_DETECTION_COLUMNS) if path.is_file()
                      else pd.DataFrame({c: pd.Series(dtype="float64") for c in SIM_DETECTION_COLUMNS}))
    else:
        detections = _read_detections(run_dir / DETECTIONS, DETECTION_COLUMNS)
    return RunData(run_dir, manifest, summary, detections,
                   _read_optional(run_dir / DELIVERIES, DELIVERY_COLUMNS),
                   _read_optional(run_dir / EVENTS, EVENT_COLUMNS))


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise RunDirError(f"{path}: missing: a run directory needs {path.name}; "
                          "is this a directory written by `hookbench run` or `hookbench load`?")
    try:
        # json accepts NaN/Infinity; NaN is treated as null from here on.
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_parse_constant)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = f"cannot be read as JSON ({exc}); the file is damaged or not a result file"
        raise RunDirError(f"{path}: {reason}") from exc
    if not isinstance(data, dict):
        raise RunDirError(f"{path}: top level is {type(data).__name__}: expected a JSON object")
    version = data.get("format_version")
    # bool is an int subclass: `true` must not pass for version 1.
    if type(version) is not int or version not in KNOWN_FORMAT_VERSIONS:
        shown = "(missing)" if "format_version" not in data else repr(version)
        known = ", ".join(str(v) for v in sorted(KNOWN_FORMAT_VERSIONS))
        raise FormatVersionError(
            f"{path}: format_version = {shown}: this hookbench reads format_version {known};"
            " use the hookbench version that wrote the run, or re-run the analysis"
        )
    return data


def _parse_constant(name: str) -> float | None:
    value = float(name)
    return None if math.isnan(value) else value


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
