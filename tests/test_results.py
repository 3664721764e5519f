"""bench.results: the one reader and writer of result files, their kinds, versions and run status, and the typed
views, on files shaped like the ones hookbench writes today and wrote before `status` and `kind` existed."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from bench.errors import FormatVersionError, RunDirError
from bench.results import (
    FORMAT_VERSION,
    Kind,
    RunStatus,
    Summary,
    Sweep,
    manifest_keys,
    read_manifest,
    read_summary,
    read_sweep,
    status_keys,
    version_keys,
    write_manifest,
    write_summary,
    write_sweep,
)

LATENCY = {"mean": 500.2, "p50": 480.0, "p90": 900.1, "p99": 990.0, "max": 1001.0, "n": 150}
POLLING = {"kind": "polling", "style": "cursor", "requests": 30, "empty_requests": 1, "wasted_fraction": 0.0333,
           "wasted_fraction_ci95": [0.0059, 0.1667], "errors": 0, "observed": 150, "lost": 0, "duplicates": 0,
           "coalesced": 0, "requests_per_change": 0.2, "bytes_per_change": 90.1, "cpu_s_per_change": 2e-5,
           "latency_ms": LATENCY, "model": {"wasted_fraction": 0.0067, "lambda_T": 5.0}, "rtt_ms_p50": 1.5}
# A run's summary.json as hookbench wrote it before `kind` and `status`: every run directory made so far.
OLD_RUN = {"format_version": 1, "scenario": "default", "duration_s": 30.0, "seed": 42, "changes": 150,
           "harness_saturated": False, "partial": False, "time_scale": 1.0,
           "saturation": {"reasons": ["locust CPU above 90%"]}, "workload": {"process": "poisson"},
           "modes": {"polling": POLLING, "webhook": {"kind": "webhook", "requests": 151, "retries": 1,
                                                     "latency_ms": {**LATENCY, "p50": 2.0}, "model": {}}},
           "faults": None, "security": None}


def _write(directory: Path, name: str, doc: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(json.dumps(doc), encoding="utf-8")
    return directory


def test_an_old_run_summary_reads_as_a_complete_run_with_typed_modes(tmp_path: Path) -> None:
    s = read_summary(_write(tmp_path, "summary.json", OLD_RUN))
    assert (s.kind, s.format_version, s.status, s.scenario, s.partial) == (Kind.RUN, 1, RunStatus.COMPLETE,
                                                                            "default", False)
    assert list(s.modes) == ["polling", "webhook"]
    poll, hook = s.modes["polling"], s.modes["webhook"]
    assert (poll.name, poll.kind, poll.requests, poll.empty_requests, poll.wasted_fraction) == \
        ("polling", "polling", 30, 1, 0.0333)
    assert poll.latency_ms.p50 == 480.0 and poll.latency_ms.n == 150 and poll.latency_ms.to_dict() == LATENCY
    assert poll.model == {"wasted_fraction": 0.0067, "lambda_T": 5.0}
    assert poll.extra == {"style": "cursor", "wasted_fraction_ci95": [0.0059, 0.1667], "errors": 0,
                          "rtt_ms_p50": 1.5}
    assert poll.to_dict() == POLLING
    # keys a mode lacks are None, never an error
    assert hook.wasted_fraction is None and hook.coalesced is None and hook.extra == {"retries": 1}
    assert hook.latency_ms.p50 == 2.0
    assert s.value("changes") == 150 and s.saturation_reasons == ["locust CPU above 90%"]
    assert s.workload == {"process": "poisson"} and s.faults is None and s.harness_saturated is False
    assert s.to_dict() == OLD_RUN


@pytest.mark.parametrize("doc,status", [
    ({"partial": False}, RunStatus.COMPLETE),
    ({"partial": True}, RunStatus.PARTIAL),
    ({"partial": True, "error": "interrupted"}, RunStatus.INTERRUPTED),  # an old sweep.json or manifest.json
    ({"partial": True, "status": "interrupted"}, RunStatus.INTERRUPTED),
    ({"partial": True, "status": "partial", "error": "interrupted"}, RunStatus.PARTIAL),  # status says
    ({"partial": False, "status": "complete"}, RunStatus.COMPLETE),
    ({"partial": True, "status": "complete"}, RunStatus.PARTIAL),  # partial set by hand after the run: it wins
    ({"status": "bogus"}, RunStatus.COMPLETE),
])
def test_status_of_new_and_old_files(doc: dict[str, Any], status: RunStatus) -> None:
    assert RunStatus.of(doc) is status


def test_status_and_version_keys() -> None:
    assert status_keys(RunStatus.INTERRUPTED) == {"partial": True, "status": "interrupted"}
    assert status_keys(RunStatus.COMPLETE) == {"partial": False, "status": "complete"}
    assert version_keys(Kind.LOAD) == {"format_version": FORMAT_VERSION[Kind.LOAD], "kind": "load"}
    assert manifest_keys(Kind.RUN) == {"format_version": 1, "kind": "run"}
    assert [RunStatus.PARTIAL.partial, RunStatus.INTERRUPTED.partial, RunStatus.COMPLETE.partial] == \
        [True, True, False]


def test_written_files_read_back(tmp_path: Path) -> None:
    doc = {**version_keys(Kind.RUN), **{k: v for k, v in OLD_RUN.items() if k != "format_version"},
           **status_keys(RunStatus.INTERRUPTED), "duration_s": math.nan}
    write_summary(tmp_path, doc)
    write_manifest(tmp_path, {**manifest_keys(Kind.RUN), **status_keys(RunStatus.INTERRUPTED),
                              "error": "interrupted"})
    text = (tmp_path / "summary.json").read_text()
    assert '"duration_s": null' in text and "NaN" not in text  # strict JSON
    s = read_summary(tmp_path, expect=Kind.RUN)
    assert s.status is RunStatus.INTERRUPTED and s.partial and s.value("duration_s") is None
    assert read_manifest(tmp_path)["status"] == "interrupted"


def test_writers_refuse_a_document_without_its_kind_or_version(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="kind"):
        write_summary(tmp_path, {"format_version": 1})
    with pytest.raises(ValueError, match="format_version"):
        write_summary(tmp_path, {"kind": "load", "format_version": 2})
    with pytest.raises(ValueError, match="sweep"):
        write_sweep(tmp_path, version_keys(Kind.LOAD))
    with pytest.raises(ValueError, match="format_version"):
        write_manifest(tmp_path, {"kind": "run"})
    assert not any(tmp_path.iterdir())


def test_read_summary_names_the_file_and_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match=r"summary.json: missing: a run directory needs summary.json"):
        read_summary(tmp_path)
    with pytest.raises(RunDirError, match=r"summary.json: missing: expected a reproduction directory"):
        read_summary(tmp_path, expect=Kind.REPRODUCTION)
    _write(tmp_path, "summary.json", {"format_version": 1, "kind": "load", "overload": {"steps": []}})
    with pytest.raises(RunDirError, match="kind = 'load': expected the claims file written by `hookbench reproduce"):
        read_summary(tmp_path, expect=Kind.CLAIMS)
    assert read_summary(tmp_path, expect=(Kind.LOAD, Kind.RUN)).kind is Kind.LOAD
    _write(tmp_path, "summary.json", {"format_version": 1, "kind": "banana"})
    with pytest.raises(RunDirError, match="kind = 'banana': not a kind this hookbench reads"):
        read_summary(tmp_path)
    _write(tmp_path, "summary.json", {**OLD_RUN, "modes": [1, 2]})
    with pytest.raises(RunDirError, match="modes = a list: expected an object of mode name"):
        read_summary(tmp_path)
    _write(tmp_path, "summary.json", {"format_version": 1, "kind": "load", "overload": {}})
    with pytest.raises(RunDirError, match="overload = an object without a list of steps"):
        read_summary(tmp_path)
    _write(tmp_path, "summary.json", [OLD_RUN])
    with pytest.raises(RunDirError, match="top level is list"):
        read_summary(tmp_path)


@pytest.mark.parametrize("version,shown", [(2, "2"), ("1", "'1'"), (True, "True"), (None, "None")])
def test_an_unknown_format_version_is_a_clear_error(tmp_path: Path, version: Any, shown: str) -> None:
    for name, read in (("summary.json", read_summary), ("manifest.json", read_manifest), ("sweep.json", read_sweep)):
        _write(tmp_path, name, {**OLD_RUN, "format_version": version})
        with pytest.raises(FormatVersionError, match=rf"{name}: format_version = {shown}: this hookbench reads "
                                                      "format_version 1"):
            read(tmp_path)


def test_sweeps_old_and_new(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match="no sweep.json: expected a sweep directory"):
        read_sweep(tmp_path)
    old = {"format_version": 1, "scenario": "crossover", "partial": True, "error": "interrupted",
           "points": [{"index": 1}, "junk"], "crossover": None}
    sweep = read_sweep(_write(tmp_path, "sweep.json", old))
    assert (sweep.kind, sweep.status, sweep.error, sweep.points, sweep.crossover) == \
        (Kind.SWEEP, RunStatus.INTERRUPTED, "interrupted", ({"index": 1},), None)
    write_sweep(tmp_path, {**version_keys(Kind.SWEEP), **status_keys(RunStatus.COMPLETE), "points": [],
                           "crossover": {"measured": {}}})
    assert read_sweep(tmp_path) == Sweep(1, RunStatus.COMPLETE, None, (), {"measured": {}}, raw={})


def test_from_dict_structures_what_the_analysis_returns() -> None:
    s = Summary.from_dict({"kind": "simulated", "modes": {"polling": {"requests": "many", "latency_ms": None}}})
    assert s.kind is Kind.SIMULATED and s.format_version == FORMAT_VERSION[Kind.SIMULATED]
    m = s.modes["polling"]
    assert m.requests is None and m.latency_ms.p50 is None and m.model == {}  # a damaged value reads as missing
    assert Summary.from_dict({}).modes == {} and Summary.from_dict({}).status is RunStatus.COMPLETE
