"""The result files: summary.json (of a run, load run, simulation, reproduction, claims page or load comparison),
sweep.json and manifest.json. Their kinds, format versions and run status, the one reader and writer of versioned
JSON, and the typed views readers use (`Summary`, `ModeResult`, `Sweep`). docs/results-format.md describes the files.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any

from bench.errors import FormatVersionError, RunDirError

__all__ = [
    "Kind", "RunStatus", "FORMAT_VERSION", "MANIFEST_FORMAT_VERSION", "SUMMARY", "MANIFEST", "SWEEP",
    "version_keys", "manifest_keys", "status_keys", "write_json", "write_summary", "write_manifest", "write_sweep",
    "read_json", "read_summary", "read_manifest", "read_sweep", "Latency", "ModeResult", "Summary", "Sweep",
    "crossover_by_mode",
]

SUMMARY, MANIFEST, SWEEP = "summary.json", "manifest.json", "sweep.json"


class Kind(StrEnum):
    """What a result file describes: its `kind` key (summary.json, sweep.json; manifest.json repeats it)."""

    RUN = "run"  # `hookbench run`; summary.json files written before `kind` was added have none
    LOAD = "load"  # `hookbench load`
    SIMULATED = "simulated"  # `hookbench simulate`
    SWEEP = "sweep"  # `hookbench sweep` (sweep.json; files written before `kind` was added have none)
    REPRODUCTION = "reproduction"  # `hookbench reproduce zapier`
    CLAIMS = "claims"  # `hookbench reproduce all`
    LOAD_COMPARISON = "load_comparison"  # `hookbench report RUN_DIR RUN_DIR ...`
    OUTAGE = "outage"  # `hookbench outage`: the outage model (virtual time, a model prediction)


# The format_version each kind is written with, and the versions this hookbench reads (older ones would be
# converted on load; there are none yet).
FORMAT_VERSION: Mapping[Kind, int] = MappingProxyType({kind: 1 for kind in Kind})
MANIFEST_FORMAT_VERSION = 1
_READS: Mapping[Kind, frozenset[int]] = MappingProxyType({kind: frozenset({v}) for kind, v in FORMAT_VERSION.items()})
_MANIFEST_READS = frozenset({MANIFEST_FORMAT_VERSION})

# What each kind of directory is, for messages naming what was expected.
_WRITTEN_BY = {
    Kind.RUN: "a run directory written by `hookbench run`",
    Kind.LOAD: "a load run directory written by `hookbench load`",
    Kind.SIMULATED: "a simulated run directory written by `hookbench simulate`",
    Kind.SWEEP: "a sweep directory written by `hookbench sweep`",
    Kind.REPRODUCTION: "a reproduction directory written by `hookbench reproduce zapier`",
    Kind.CLAIMS: "the claims file written by `hookbench reproduce all`",
    Kind.LOAD_COMPARISON: "a comparison directory written by `hookbench report RUN_DIR RUN_DIR ...`",
    Kind.OUTAGE: "an outage model directory written by `hookbench outage`",
}


class RunStatus(StrEnum):
    """How a run (or a sweep, a reproduction) ended: the `status` key beside `partial`."""

    COMPLETE = "complete"  # ran to its planned end
    PARTIAL = "partial"  # stopped early by a failure (a child died, a part failed); what was recorded is analysed
    INTERRUPTED = "interrupted"  # stopped by Ctrl-C or SIGTERM; what was recorded is analysed

    @property
    def partial(self) -> bool:
        """The `partial` key of the files: every status but complete."""
        return self is not RunStatus.COMPLETE

    @classmethod
    def of(cls, doc: Mapping[str, Any]) -> RunStatus:
        """The status of a result file: its `status`, or for files written before it existed (or whose `partial`
        was changed since), from `partial` and `error` ("interrupted")."""
        try:
            status = cls(doc.get("status"))
        except ValueError:
            status = None
        if status is not None and ("partial" not in doc or bool(doc["partial"]) == status.partial):
            return status
        if doc.get("partial") and doc.get("error") == cls.INTERRUPTED.value:
            return cls.INTERRUPTED
        return cls.PARTIAL if doc.get("partial") else cls.COMPLETE


# --- writing -------------------------------------------------------------------------------------

def version_keys(kind: Kind) -> dict[str, Any]:
    """The keys a result file of `kind` starts with: `format_version` and `kind`."""
    return {"format_version": FORMAT_VERSION[kind], "kind": kind.value}


def manifest_keys(kind: Kind) -> dict[str, Any]:
    """The keys a manifest.json starts with: MANIFEST_FORMAT_VERSION and the `kind` of its directory."""
    return {"format_version": MANIFEST_FORMAT_VERSION, "kind": kind.value}


def status_keys(status: RunStatus) -> dict[str, Any]:
    """`partial` (kept for older readers) and `status`."""
    return {"partial": status.partial, "status": status.value}


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write `data` as strict JSON (NaN and infinities as null), atomically: a reader never sees half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    text = json.dumps(_finite(data), indent=2, sort_keys=False, default=_default, allow_nan=False)
    tmp.write_text(text + "\n", encoding="utf-8")
    tmp.replace(path)


def write_summary(directory: Path, doc: Mapping[str, Any]) -> Path:
    """`directory`/summary.json; `doc` must carry a known `kind` and its `format_version` (see `version_keys`)."""
    return _write_versioned(Path(directory) / SUMMARY, doc)


def write_sweep(directory: Path, doc: Mapping[str, Any]) -> Path:
    """`directory`/sweep.json (kind "sweep")."""
    return _write_versioned(Path(directory) / SWEEP, doc, Kind.SWEEP)


def write_manifest(directory: Path, doc: Mapping[str, Any]) -> Path:
    """`directory`/manifest.json; `doc` starts with `manifest_keys`."""
    if doc.get("format_version") != MANIFEST_FORMAT_VERSION:
        raise ValueError(f"a manifest is written with format_version {MANIFEST_FORMAT_VERSION}, "
                         f"not {doc.get('format_version')!r}")
    path = Path(directory) / MANIFEST
    write_json(path, doc)
    return path


def _write_versioned(path: Path, doc: Mapping[str, Any], kind: Kind | None = None) -> Path:
    try:
        found = Kind(doc.get("kind"))
    except ValueError:
        raise ValueError(f"{path.name}: kind {doc.get('kind')!r} is not one of {[k.value for k in Kind]}") from None
    if (kind is not None and found is not kind) or doc.get("format_version") != FORMAT_VERSION[found]:
        raise ValueError(f"{path.name}: kind {found.value!r} with format_version {doc.get('format_version')!r}: "
                         f"expected {kind or found} with format_version {FORMAT_VERSION[found]}")
    write_json(path, doc)
    return path


def _finite(o: Any) -> Any:
    """NaN and infinities become null: strict JSON readers (browsers, jq) reject them."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, Mapping):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


def _default(o: object) -> object:
    if hasattr(o, "item"):  # numpy scalars
        return o.item()  # type: ignore[attr-defined]
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# --- reading -------------------------------------------------------------------------------------

def read_json(path: Path, versions: Collection[int], *, missing: str | None = None) -> dict[str, Any]:
    """The JSON object in `path`, whose `format_version` must be one of `versions`.

    RunDirError when the file is missing (`missing` says what was expected), damaged or not an object;
    FormatVersionError for any other format_version. NaN is read as null.
    """
    data = _load(Path(path), missing)
    _check_version(Path(path), data, versions)
    return data


def _load(path: Path, missing: str | None) -> dict[str, Any]:
    if not path.is_file():
        expected = missing or (f"a run directory needs {path.name}; is this a directory written by `hookbench run` "
                               "or `hookbench load`?")
        raise RunDirError(f"{path}: missing: {expected}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_parse_constant)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunDirError(f"{path}: cannot be read as JSON ({exc}); the file is damaged or not a result file") \
            from exc
    if not isinstance(data, dict):
        raise RunDirError(f"{path}: top level is {type(data).__name__}: expected a JSON object")
    return data


def _check_version(path: Path, data: Mapping[str, Any], versions: Collection[int]) -> None:
    version = data.get("format_version")
    # bool is an int subclass: `true` must not pass for version 1.
    if type(version) is not int or version not in versions:
        shown = "(missing)" if "format_version" not in data else repr(version)
        known = ", ".join(str(v) for v in sorted(versions))
        raise FormatVersionError(
            f"{path}: format_version = {shown}: this hookbench reads format_version {known};"
            " use the hookbench version that wrote the run, or re-run the analysis"
        )


def _parse_constant(name: str) -> float | None:
    value = float(name)
    return None if math.isnan(value) else value


def _expected(kinds: Collection[Kind]) -> str:
    return " or ".join(_WRITTEN_BY[k] for k in kinds)


def _read_kind(path: Path, default: Kind, expect: Kind | Collection[Kind] | None) -> tuple[Kind, dict[str, Any]]:
    """The file at `path`, read and checked in this order: JSON object, a kind this hookbench knows (`default`
    when it names none), its format_version, one of `expect` (any when None)."""
    kinds = None if expect is None else (expect,) if isinstance(expect, Kind) else tuple(expect)
    missing = None
    if kinds is not None and Kind.RUN not in kinds:  # a run's: _load's own words
        missing = f"expected {_expected(kinds)}"
    doc = _load(path, missing)
    raw = doc.get("kind", default.value)
    shown = "(missing)" if "kind" not in doc else repr(raw)
    try:
        kind = Kind(raw)
    except ValueError:
        raise RunDirError(f"{path}: kind = {shown}: not a kind this hookbench reads "
                          f"({', '.join(k.value for k in Kind)})") from None
    _check_version(path, doc, _READS[kind])
    if kinds is not None and kind not in kinds:
        raise RunDirError(f"{path}: kind = {shown}: expected {_expected(kinds)}")
    return kind, doc


def read_manifest(directory: Path, *, required: bool = True) -> dict[str, Any]:
    """`directory`/manifest.json ({} when it is absent and not `required`)."""
    path = Path(directory) / MANIFEST
    if not required and not path.is_file():
        return {}
    return read_json(path, _MANIFEST_READS)


def read_summary(directory: Path, *, expect: Kind | Collection[Kind] | None = None) -> Summary:
    """`directory`/summary.json as a `Summary`, checked: its kind is one of `expect` (any when None), its
    format_version one this hookbench reads, and what its kind's readers need is there (modes of a run, the
    steps of a load run). RunDirError (or FormatVersionError) names the file and what was expected."""
    path = Path(directory) / SUMMARY
    kind, doc = _read_kind(path, Kind.RUN, expect)
    _check(path, kind, doc)
    return Summary.from_dict(doc, kind=kind)


def read_sweep(directory: Path) -> Sweep:
    """`directory`/sweep.json as a `Sweep`; RunDirError if there is none, FormatVersionError for an unknown
    version."""
    path = Path(directory) / SWEEP
    if not path.is_file():
        raise RunDirError(f"{directory}: no {SWEEP}: expected {_WRITTEN_BY[Kind.SWEEP]}")
    _, doc = _read_kind(path, Kind.SWEEP, Kind.SWEEP)
    return Sweep.from_dict(doc)


def _check(path: Path, kind: Kind, doc: Mapping[str, Any]) -> None:
    """What the readers of `kind` rely on, so that a damaged file is refused with a message, not a traceback."""
    if kind in (Kind.RUN, Kind.SIMULATED):
        modes = doc.get("modes")
        if not isinstance(modes, dict) or not all(isinstance(m, dict) for m in modes.values()):
            found = "(missing)" if modes is None else f"a {type(modes).__name__}"
            raise RunDirError(f"{path}: modes = {found}: expected an object of mode name -> object of results;"
                              " re-run the analysis to rewrite summary.json")
    elif kind is Kind.LOAD:
        overload = doc.get("overload")
        if not isinstance(overload, dict) or not isinstance(overload.get("steps"), list):
            if overload is None:
                found = "(missing)"
            elif isinstance(overload, dict):
                found = "an object without a list of steps"
            else:
                found = f"a {type(overload).__name__}"
            raise RunDirError(f"{path}: overload = {found}: a load run's summary needs an object with a list of steps;"
                              " re-run the analysis to rewrite summary.json")
    elif kind is Kind.OUTAGE and not isinstance(doc.get("profiles"), dict):
        raise RunDirError(f"{path}: profiles = {type(doc.get('profiles')).__name__}: expected an object of profile "
                          f"-> findings ({_WRITTEN_BY[kind]})")
    elif kind is Kind.CLAIMS and not isinstance(doc.get("claims"), dict):
        raise RunDirError(f"{path}: claims = {type(doc.get('claims')).__name__}: expected {_WRITTEN_BY[kind]}")


# --- typed views ---------------------------------------------------------------------------------

def _number(value: Any) -> Any:
    """A number as written (int or float), else None: a damaged value shows as missing."""
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _section(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


@dataclass(frozen=True)
class Latency:
    """A mode's `latency_ms`: nearest-rank percentiles over its detections, in ms (null when none)."""

    mean: float | None = None
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    max: float | None = None
    n: int | None = None
    note: str | None = None  # why there are none (e.g. not simulated)

    @classmethod
    def from_dict(cls, data: Any) -> Latency:
        d = data if isinstance(data, Mapping) else {}
        note = d.get("note")
        return cls(*(_number(d.get(k)) for k in ("mean", "p50", "p90", "p99", "max", "n")),
                   note=note if isinstance(note, str) else None)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mean": self.mean, "p50": self.p50, "p90": self.p90, "p99": self.p99, "max": self.max,
                               "n": self.n}
        return out | ({"note": self.note} if self.note is not None else {})


# The per-mode keys of design.md section 4; every other key of a mode's section is in ModeResult.extra.
_MODE_KEYS = ("kind", "requests", "empty_requests", "wasted_fraction", "observed", "lost", "duplicates", "coalesced",
              "requests_per_change", "bytes_per_change", "cpu_s_per_change", "latency_ms", "model")


@dataclass(frozen=True)
class ModeResult:
    """One mode's section of summary.json (`modes.<name>`). Numbers are as written, None when absent or not a
    number; `extra` holds the mode-specific keys (style, errors, retries, rtt_ms_p50, wasted_fraction_ci95, ...)."""

    name: str
    kind: str | None
    requests: int | None
    empty_requests: int | None
    wasted_fraction: float | None
    observed: int | None
    lost: int | None
    duplicates: int | None
    coalesced: int | None
    requests_per_change: float | None
    bytes_per_change: float | None
    cpu_s_per_change: float | None
    latency_ms: Latency
    model: Mapping[str, Any]
    extra: Mapping[str, Any]
    raw: dict[str, Any] = field(repr=False, compare=False)  # the section as written

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any]) -> ModeResult:
        kind, model = data.get("kind"), data.get("model")
        numbers = {k: _number(data.get(k)) for k in _MODE_KEYS if k not in ("kind", "latency_ms", "model")}
        return cls(name=name, kind=kind if isinstance(kind, str) else None, **numbers,
                   latency_ms=Latency.from_dict(data.get("latency_ms")),
                   model=dict(model) if isinstance(model, Mapping) else {},
                   extra={k: v for k, v in data.items() if k not in _MODE_KEYS}, raw=dict(data))

    def to_dict(self) -> dict[str, Any]:
        """The section as written."""
        return dict(self.raw)


@dataclass(frozen=True)
class Summary:
    """A summary.json of any kind: its kind, format version, status and scenario, the typed `modes` (empty for kinds
    without modes), and every top-level section as written (`raw`; `section` returns one when it is an object)."""

    kind: Kind
    format_version: int
    status: RunStatus
    scenario: str | None
    modes: Mapping[str, ModeResult]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], *, kind: Kind | None = None) -> Summary:
        """Structure `doc` (what `summarize` and its siblings return, or a file's content; nothing is checked)."""
        if kind is None:
            try:
                kind = Kind(doc.get("kind", Kind.RUN.value))
            except ValueError:
                kind = Kind.RUN
        modes = doc.get("modes")
        version = doc.get("format_version")
        scenario = doc.get("scenario")
        return cls(kind=kind, format_version=version if type(version) is int else FORMAT_VERSION[kind],
                   status=RunStatus.of(doc), scenario=scenario if isinstance(scenario, str) else None,
                   modes={name: ModeResult.from_dict(name, m) for name, m in modes.items() if isinstance(m, Mapping)}
                   if isinstance(modes, Mapping) else {},
                   raw=dict(doc))

    @property
    def partial(self) -> bool:
        return self.status.partial

    def value(self, key: str, default: Any = None) -> Any:
        """A top-level value as written (changes, duration_s, seed, time_scale, target, quick, ...)."""
        return self.raw.get(key, default)

    def section(self, name: str) -> dict[str, Any] | None:
        """A top-level section when it is an object (saturation, workload, faults, security, overload, claims,
        live, population, load, latency, sensitivity, ...), else None."""
        return _section(self.raw.get(name))

    @property
    def harness_saturated(self) -> bool | None:
        value = self.raw.get("harness_saturated")
        return value if isinstance(value, bool) else None

    @property
    def saturation_reasons(self) -> list[str]:
        reasons = (self.section("saturation") or {}).get("reasons")
        return [str(r) for r in reasons] if isinstance(reasons, list) else []

    @property
    def workload(self) -> dict[str, Any] | None:
        return self.section("workload")

    @property
    def faults(self) -> dict[str, Any] | None:
        return self.section("faults")

    @property
    def security(self) -> dict[str, Any] | None:
        return self.section("security")

    @property
    def overload(self) -> dict[str, Any] | None:
        return self.section("overload")

    @property
    def claims(self) -> dict[str, Any] | None:
        """The claim entries of a reproduction or a claims page, by claim id."""
        return self.section("claims")

    def to_dict(self) -> dict[str, Any]:
        """The document as written."""
        return dict(self.raw)


@dataclass(frozen=True)
class Sweep:
    """sweep.json: the sweep's status, its points (each point's record, as written) and the crossover section."""

    format_version: int
    status: RunStatus
    scenario: str | None
    points: tuple[dict[str, Any], ...]
    crossover: dict[str, Any] | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    kind = Kind.SWEEP

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Sweep:
        version, scenario, points = doc.get("format_version"), doc.get("scenario"), doc.get("points")
        return cls(format_version=version if type(version) is int else FORMAT_VERSION[Kind.SWEEP],
                   status=RunStatus.of(doc), scenario=scenario if isinstance(scenario, str) else None,
                   points=tuple(p for p in points if isinstance(p, dict)) if isinstance(points, list) else (),
                   crossover=_section(doc.get("crossover")), raw=dict(doc))

    @property
    def partial(self) -> bool:
        return self.status.partial

    @property
    def error(self) -> str | None:
        error = self.raw.get("error")
        return None if error is None else str(error)

    def value(self, key: str, default: Any = None) -> Any:
        """A top-level value as written (grid, points_planned, command, ...)."""
        return self.raw.get(key, default)

    @property
    def crossover_by_mode(self) -> dict[str, Any]:
        """The crossover of every consumer-driven mode, `{mode: {metric: {push mode: result}}}`
        (see `crossover_by_mode`)."""
        return crossover_by_mode(self.crossover)


def crossover_by_mode(crossover: Mapping[str, Any] | None) -> dict[str, Any]:
    """sweep.json's `crossover.by_mode`. Files written before it existed (format_version 1 too) hold only the
    cursor poller's `measured`: they read as `{polling_mode: measured}`."""
    if not isinstance(crossover, Mapping):
        return {}
    by_mode = crossover.get("by_mode")
    if isinstance(by_mode, dict):
        return {m: v for m, v in by_mode.items() if isinstance(v, dict)}
    measured = crossover.get("measured")
    mode = crossover.get("polling_mode")
    return {mode if isinstance(mode, str) else "polling": measured} if isinstance(measured, dict) and measured else {}
