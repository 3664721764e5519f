"""reports: a synthetic load run directory (`hookbench load`, claim C4) in, the overload report out."""

from __future__ import annotations

import base64
import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from test_reports import FIGURES as COMPARISON_FIGURES
from test_reports import make_run

from bench.errors import RunDirError
from reports import build_report
from reports.fmt import DASH

FIGURES = ("offered_vs_achieved", "latency_vs_offered", "errors_vs_offered", "harness_cpu")
DATA_URI = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')
S = 1_000_000_000
T0 = 1_700_000_000 * S  # the first step's start
STEP_S, SETTLE_S = 12, 3

# The receiver ramp of scenarios/overload_receiver.toml: 20 users + 40 a step, 10 requests/s each, 6 steps, then
# a recovery step back at 20 users. The receiver keeps up to 1,000/s and falls over at step 3 (1,400/s offered).
LOAD = {"target": "receiver", "rate_per_user": 10.0, "start_users": 20, "step_users": 40, "steps": 6,
        "step_duration": 12.0, "settle": 3.0, "recovery": True, "slo_p99": 0.1, "processes": 0,
        "ceiling_users": 100_000}
MANIFEST: dict[str, Any] = {
    "format_version": 1, "kind": "load",
    "scenario": {"name": "overload_receiver", "description": "webhook storm ramp against a receiver", "seed": 21,
                 "load": LOAD},
    "seed": 21, "time_scale": 1.0, "locust_processes": 2, "partial": False, "error": None,
    "versions": {"python": "3.11.7", "aiohttp": "3.10.5", "locust": "2.43.0"},
    "machine": {"cpu_count": 8, "cpu_model": "Test CPU @ 3.0GHz", "platform": "Linux-6.1-x86_64"},
    "git_commit": "0123456789abcdef0123456789abcdef01234567",
    "command_line": ["hookbench", "load", "scenarios/overload_receiver.toml"],
    "locust_command": ["-m", "locust", "-f", "scenarios/storm.py,scenarios/ramp.py", "--headless",
                       "--host", "http://127.0.0.1:43121", "--hb-secret", "<secret>", "--processes", "2"],
    "started_at": "2025-01-02T03:04:05+00:00",
    "window": {"start_ns": T0 - S, "end_ns": T0 + 85 * S},
}


def _lat(p50: float | None, p99: float | None) -> dict[str, Any]:
    return {"p50": p50, "p95": p99, "p99": p99, "max": None if p99 is None else 2 * p99, "n": 900}


def _step(i: int, users: int, achieved: float, p50: float, p99: float, p99_intended: float, errors: float,
          r503: float, attempts: float, in_flight: int) -> dict[str, Any]:
    return {"step": i, "users": users, "start_ns": T0 + i * STEP_S * S, "end_ns": T0 + (i + 1) * STEP_S * S,
            "measured_s": 9.0, "offered_rps": users * 10.0, "intended_rps": users * 10.0 - 0.5,
            "achieved_rps": achieved, "latency_ms": _lat(p50, p99),
            "latency_from_intended_ms": _lat(p50, p99_intended), "error_rate": errors, "rate_429": 0.0,
            "rate_503": r503, "timeout_rate": 0.0, "retry_amplification": attempts, "backlog_end": None,
            "in_flight_end": in_flight}


STEPS = [
    _step(0, 20, 199.5, 4.1, 9.8, 11.2, 0.0, 0.0, 1.0, 1),
    _step(1, 60, 599.0, 4.3, 12.5, 14.0, 0.0, 0.0, 1.0, 2),
    _step(2, 100, 998.2, 5.0, 31.0, 38.0, 0.001, 0.001, 1.001, 5),
    _step(3, 140, 1391.5, 9.0, 180.0, 250.0, 0.125, 0.12, 1.31, 8),
    _step(4, 180, 1402.0, 15.0, 400.0, 1250.0, 0.31, 0.3, 1.9, 8),
    _step(5, 220, 1399.0, 22.0, 800.0, 3400.0, 0.42, 0.41, 2.6, 8),
    _step(6, 20, 199.0, 4.2, 20.0, 60.0, 0.0, 0.0, 1.0, 1),  # recovery
]
KNEE = {"reached": True, "step": 3, "offered_rps": 1400.0,
        "reasons": ["p99 from intended time 250 ms > SLO 100 ms", "errors 12.5% > 1%"]}
NO_KNEE = {"reached": False, "step": None, "offered_rps": None, "ceiling_rps": 2200.0,
           "reasons": ["not reached, ceiling 2200/s"]}
SUMMARY: dict[str, Any] = {
    "format_version": 1, "kind": "load", "scenario": "overload_receiver", "seed": 21, "target": "receiver",
    "partial": False, "changes": None, "modes": {}, "duration_s": 84.0, "harness_saturated": False,
    "saturation": {"reasons": [], "locust_cpu_max_pct": 63.0, "locust_cpu_warnings": 0,
                   "receiver_loop_lag_ms": {"p99": 3.5, "max": 12.0, "n": 80}, "receiver_cpu_max_pct": 99.0},
    "overload": {"steps": STEPS, "knee": KNEE, "recovery_s": 4.0,
                 "recovery_note": "p99 back within 1.5x of the first step's (16.5 ms)", "slo_p99_ms": 100.0},
}
SATURATION_REASONS = ["locust.102 CPU above 90% in 31 one-second samples: the load generator, not the server, "
                      "may have set the pace", "Locust warned 4 times that its CPU passed 90%"]


def _summary(saturated: bool = False, knee: dict[str, Any] = KNEE, recovery: bool = True,
             **overload: Any) -> dict[str, Any]:
    summary = copy.deepcopy(SUMMARY)
    if saturated:
        summary["harness_saturated"] = True
        summary["saturation"].update(reasons=SATURATION_REASONS, locust_cpu_max_pct=99.5, locust_cpu_warnings=4)
    summary["overload"]["knee"] = copy.deepcopy(knee)
    if not recovery:
        summary["overload"].update(steps=summary["overload"]["steps"][:-1], recovery_s=None,
                                   recovery_note="no recovery step in the scenario")
    summary["overload"].update(overload)
    return summary


def _manifest(recovery: bool = True) -> dict[str, Any]:
    manifest = copy.deepcopy(MANIFEST)
    manifest["scenario"]["load"]["recovery"] = recovery
    return manifest


def _tables(n_steps: int, saturated: bool) -> dict[str, pd.DataFrame]:
    """The raw tables of such a run: step boundaries, one CPU sample a second per process, a few requests."""
    steps = pd.DataFrame({"t_ns": [T0 + i * STEP_S * S for i in range(n_steps + 1)],
                          "step": [*range(n_steps), -1], "users": [s["users"] for s in STEPS[:n_steps]] + [0]})
    rows = []
    for sec in range(-1, n_steps * STEP_S + 1):
        step = min(max(sec, 0) // STEP_S, n_steps - 1)
        load = min(1.0, (STEPS[step]["users"]) / 140)
        rows += [{"t_ns": T0 + sec * S, "process": "server", "cpu_pct": 99.0 * load},
                 {"t_ns": T0 + sec * S, "process": "locust", "cpu_pct": 3.0},
                 {"t_ns": T0 + sec * S, "process": "locust.101",
                  "cpu_pct": (45.0 if saturated else 30.0) * load + 10},
                 {"t_ns": T0 + sec * S, "process": "locust.102",
                  "cpu_pct": (99.5 if saturated and step >= 2 else 60.0 * load)}]
    requests = pd.DataFrame({"t_intended_ns": [T0, T0 + S], "t_send_ns": [T0, T0 + S],
                             "t_recv_ns": [T0 + 5, T0 + S + 5], "status": [204, 503], "error": [None, None],
                             "attempt": [1, 1], "msg_id": ["m1", "m2"]})
    return {"steps": steps, "harness": pd.DataFrame(rows), "requests": requests,
            "server_stats": pd.DataFrame({"t_ns": [T0], "server": ["receiver"], "in_flight": [1], "pending": [None],
                                          "requests": [10], "shed_503": [0]}),
            "loop_lag": pd.DataFrame({"server": ["receiver"], "t_ns": [T0], "lag_ms": [0.4], "cpu_s": [0.1]})}


def make_load_run(root: Path, summary: dict[str, Any] | None = None, manifest: dict[str, Any] | None = None,
                  tables: tuple[str, ...] = ("steps", "harness", "requests", "server_stats", "loop_lag")) -> Path:
    summary = summary or _summary()
    run_dir = root / "load-run"
    run_dir.mkdir()
    (run_dir / "manifest.json").write_text(json.dumps(manifest or MANIFEST), encoding="utf-8")
    (run_dir / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    if tables:
        for name, table in _tables(len(summary["overload"]["steps"]), summary["harness_saturated"]).items():
            if name in tables:
                table.to_parquet(run_dir / f"{name}.parquet", index=False)
    return run_dir


def _md_row(md: str, label: str) -> list[str]:
    """The cells after the label of the Markdown table row whose first cell is `label`."""
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == label:
            return cells[1:]
    raise AssertionError(f"no table row {label!r} in report.md")


def _section(md: str, heading: str) -> str:
    start = md.index(f"## {heading}\n")
    end = md.find("\n## ", start + 1)
    return md[start:end if end != -1 else len(md)]


def _read(out: dict[str, Any]) -> tuple[str, str]:
    return out["md"].read_text(encoding="utf-8"), out["html"].read_text(encoding="utf-8")


# --- the report's files ------------------------------------------------------------------------------

def test_load_run_writes_the_overload_report_with_four_figures(tmp_path: Path) -> None:
    run_dir = make_load_run(tmp_path)
    out = build_report(run_dir)
    md, page = _read(out)

    assert md.startswith("# hookbench load report: overload_receiver\n")
    assert "<title>hookbench load report: overload_receiver</title>" in page
    assert [p.name for p in out["figures"]] == [f"{name}.png" for name in FIGURES]
    for path in out["figures"]:
        assert path.parent == run_dir / "figures"
        assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        assert f"](figures/{path.name})" in md
    for heading in ("What was measured", "Harness check", "Steps", "The knee", "Recovery", "Figures", "Reproduce",
                    "Environment", "Definitions"):
        assert f"\n## {heading}\n" in md
    assert "Detection latency" not in md  # nothing of the comparison report


def test_html_is_self_contained_with_every_figure_embedded(tmp_path: Path) -> None:
    out = build_report(make_load_run(tmp_path))
    page = out["html"].read_text(encoding="utf-8")

    assert 'src="http' not in page and "href=" not in page
    assert "<link" not in page and "<script" not in page
    embedded = DATA_URI.findall(page)
    assert sorted(base64.b64decode(data) for data in embedded) == sorted(p.read_bytes() for p in out["figures"])
    assert len(embedded) == len(FIGURES)


def test_what_was_measured_names_the_ramp_and_the_locust_processes(tmp_path: Path) -> None:
    md, _ = _read(build_report(make_load_run(tmp_path)))
    text = _section(md, "What was measured")

    assert "Target: the receiver. Locust storm senders POSTed signed webhook deliveries at the receiver" in text
    assert "rose by 40 a step from 20 over 6 steps (20, 60, 100, 140, 180, 220 users)" in text
    assert "each user offering 10 requests/s, so 200 to 2,200 requests/s were offered" in text
    assert "Each step lasted 12 s; its first 3 s (settle) are excluded from every statistic" in text
    assert "one recovery step went back to 20 users; it is not part of the ramp" in text
    assert "Locust ran as 2 processes. The ramp lasted 84 s. Seed 21." in text


# --- the steps table, the knee, recovery --------------------------------------------------------------

def test_steps_table_has_a_row_per_step_the_knee_highlighted_and_recovery_labelled(tmp_path: Path) -> None:
    out = build_report(make_load_run(tmp_path))
    md, page = _read(out)

    assert _md_row(md, "step") == ["users", "offered (/s)", "achieved (/s)", "p50 (ms)", "p99 (ms)",
                                   "p99 from intended (ms)", "errors", "429", "503", "timeouts",
                                   "attempts per delivery", "backlog / in flight at end"]
    assert _md_row(md, "0") == ["20", "200", "199.5", "4.10", "9.80", "11.2", "0.00%", "0.00%", "0.00%", "0.00%",
                                "1.00", "– / 1"]
    assert _md_row(md, "2")[2:4] == ["998.2", "5.00"] and _md_row(md, "2")[6] == "0.10%"
    # the knee: every cell of its row stands out
    assert _md_row(md, "3 (knee)") == ["**140**", "**1,400**", "**1,392**", "**9.00**", "**180**", "**250**",
                                       "**12.50%**", "**0.00%**", "**12.00%**", "**0.00%**", "**1.31**", "**– / 8**"]
    assert _md_row(md, "6 (recovery)")[:3] == ["20", "200", "199"]
    assert page.count('<td class="fail">') == len(_md_row(md, "3 (knee)"))
    assert '<th scope="row">3 (knee)</th>' in page and '<th scope="row">6 (recovery)</th>' in page
    rows = [line for line in _section(md, "Steps").splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + len(STEPS)


def test_knee_reached_in_words(tmp_path: Path) -> None:
    md, _ = _read(build_report(make_load_run(tmp_path)))
    text = _section(md, "The knee")

    assert ("**Knee:** step 3 (140 users), at 1,400 requests/s offered: the first step of the ramp where the "
            "receiver fell behind or missed its SLO (p99 from the intended time ≤ 100 ms).") in text
    assert "- p99 from intended time 250 ms \\> SLO 100 ms\n- errors 12.5% \\> 1%" in text  # > escaped
    assert "harness's knee" not in text


def test_knee_not_reached_gives_the_ceiling_and_highlights_no_row(tmp_path: Path) -> None:
    out = build_report(make_load_run(tmp_path, _summary(knee=NO_KNEE)))
    md, page = _read(out)

    assert "**Knee:** not reached, ceiling 2,200/s: every step of the ramp, up to 2,200 requests/s offered" in md
    assert _md_row(md, "3")[:2] == ["140", "1,400"]
    assert "(knee)" not in md and 'class="fail"' not in page
    assert md.count(" Knee not reached, ceiling 2,200/s.*") == 3  # the caption of each figure over offered rate


def test_recovery_in_words(tmp_path: Path) -> None:
    md, _ = _read(build_report(make_load_run(tmp_path)))

    assert ("**Recovery:** 4 s into the recovery step: p99 back within 1.5x of the first step's (16.5 ms)."
            in _section(md, "Recovery"))


def test_recovery_that_never_came_says_so(tmp_path: Path) -> None:
    note = "p99 never came back within 1.5x of the first step's (16.5 ms) in the step"
    md, _ = _read(build_report(make_load_run(tmp_path, _summary(recovery_s=None, recovery_note=note))))

    assert f"**Recovery:** not recovered within the recovery step: {note}." in md
    assert _md_row(md, "6 (recovery)")[0] == "20"


def test_without_a_recovery_step_every_step_is_the_ramp(tmp_path: Path) -> None:
    summary = _summary(recovery=False)
    out = build_report(make_load_run(tmp_path, summary, _manifest(recovery=False)))
    md, _ = _read(out)

    assert "(recovery)" not in md and "recovery step went back" not in md
    assert "**Recovery:** no recovery step in the scenario" in md
    assert _md_row(md, "5")[:2] == ["220", "2,200"]
    assert [p.name for p in out["figures"]] == [f"{name}.png" for name in FIGURES]


def test_an_interrupted_run_has_no_recovery_step_and_says_how_many_steps_were_measured(tmp_path: Path) -> None:
    summary = _summary(steps=copy.deepcopy(STEPS[:4]), recovery_s=None, recovery_note="fewer than two steps")
    summary["partial"] = True
    out = build_report(make_load_run(tmp_path, summary))
    md, page = _read(out)

    assert "over 6 steps, of which 4 were measured (20, 60, 100, 140 users)" in md
    assert "(recovery)" not in md and _md_row(md, "3 (knee)")[0] == "**140**"
    assert '<div class="notice caution">' in page and "Partial run: interrupted before its planned end" in md


def test_recovery_step_is_recognised_without_the_manifest_flag(tmp_path: Path) -> None:
    manifest = _manifest()
    del manifest["scenario"]["load"]
    md, _ = _read(build_report(make_load_run(tmp_path, manifest=manifest)))

    assert _md_row(md, "6 (recovery)")[0] == "20"
    assert "Target: the receiver." in md  # from summary.json when the scenario is not in the manifest


# --- harness check -------------------------------------------------------------------------------------

@pytest.mark.parametrize("saturated", [True, False])
def test_red_box_iff_the_load_generator_was_saturated(tmp_path: Path, saturated: bool) -> None:
    out = build_report(make_load_run(tmp_path, _summary(saturated=saturated)))
    md, page = _read(out)
    harness = _section(md, "Harness check")

    assert ('<div class="notice warning" role="alert">' in page) is saturated
    assert ("the knee below is the harness's, not the receiver's" in md) is saturated
    assert ("Locust, the load generator, not the receiver under test, ran out of CPU" in md) is saturated
    for reason in SATURATION_REASONS:
        assert (f"> - {reason}" in harness) is saturated
    if saturated:
        assert "**Harness check:** saturated (see the warning above): Locust CPU max 99.5%" in harness
        assert "4 Locust CPU warnings" in harness
        assert "this is the harness's knee, not the receiver's" in _section(md, "The knee")
    else:
        assert ("**Harness check:** not saturated: Locust CPU max 63%; receiver CPU max 99%; receiver event-loop "
                "lag p99 3.5 ms, max 12 ms (80 samples). CPU is in % of one core.") in harness
        assert "notice" not in page.split("<body>")[1]


def test_unrecorded_saturation_says_so(tmp_path: Path) -> None:
    summary = _summary()
    summary["harness_saturated"] = None
    summary["saturation"] = None
    md, page = _read(build_report(make_load_run(tmp_path, summary)))

    assert "**Harness check:** saturation was not recorded: Locust CPU max –." in md
    assert 'class="notice' not in page


def test_workers_health_lost_rows_and_uncertain_clocks_are_shown(tmp_path: Path) -> None:
    summary = _summary()
    summary["saturation"]["workers"] = {"0": {"samples": 12, "cpu_max_pct": 44.6, "cpu_mean_pct": 26.2,
                                              "lag_max_ms": 123.0}}
    summary["records"] = {"rows": 8, "lost": [{"worker": 1, "declared": 10, "received": 8,
                                               "reason": "worker 1 (pid 12 on b) declared 10 rows, 8 arrived"}]}
    summary["clocks"] = {"bound_ms": 5.0, "flagged": [1], "workers": {}}
    md, page = _read(build_report(make_load_run(tmp_path, summary)))
    harness = _section(md, "Harness check")
    assert "Locust worker 0 (its own report) CPU max 44.6%, greenlet lag max 123 ms" in harness
    assert "a Locust worker's rows are missing" in harness
    assert "worker 1 (pid 12 on b) declared 10 rows, 8 arrived" in harness
    assert "known to no better than the bound of 5 ms" in harness and "Locust worker 1" in harness
    assert page.count('<div class="notice warning" role="alert">') == 2


# --- figures: missing data, nulls ---------------------------------------------------------------------

def test_missing_optional_tables_skip_the_cpu_figure_with_a_note(tmp_path: Path) -> None:
    run_dir = make_load_run(tmp_path)
    build_report(run_dir)  # first with the tables: the stale CPU figure must then go away
    for name in ("steps", "harness", "requests", "server_stats", "loop_lag"):
        (run_dir / f"{name}.parquet").unlink()
    out = build_report(run_dir)
    md, page = _read(out)

    assert [p.name for p in out["figures"]] == [f"{name}.png" for name in FIGURES[:3]]
    assert not (run_dir / "figures" / "harness_cpu.png").exists()
    assert "**Figure skipped:** the run directory has no harness.parquet (CPU samples)." in md
    assert len(DATA_URI.findall(page)) == 3


@pytest.mark.parametrize("tables, source", [(("steps", "harness"), "steps.parquet"), (("harness",), "summary.json")])
def test_cpu_figure_takes_step_boundaries_from_steps_parquet_else_the_summary(
        tmp_path: Path, tables: tuple[str, ...], source: str) -> None:
    out = build_report(make_load_run(tmp_path, tables=tables))
    md, _ = _read(out)

    assert "harness_cpu.png" in [p.name for p in out["figures"]]
    assert f"Vertical lines: step boundaries (from {source}), step numbers at the top" in md


def test_harness_table_without_its_columns_is_skipped_with_a_note(tmp_path: Path) -> None:
    run_dir = make_load_run(tmp_path, tables=("steps",))
    pd.DataFrame({"t_ns": [T0], "process": ["server"]}).to_parquet(run_dir / "harness.parquet", index=False)
    md, _ = _read(build_report(run_dir))

    assert "**Figure skipped:** harness.parquet lacks the columns cpu_pct." in md


def test_null_values_render_as_a_dash_and_all_null_latency_skips_its_figure(tmp_path: Path) -> None:
    steps = copy.deepcopy(STEPS)
    for step in steps:
        step["latency_ms"] = _lat(None, None)
        step["latency_from_intended_ms"] = _lat(None, None)
    steps[1].update(achieved_rps=None, error_rate=None, retry_amplification=None, in_flight_end=None)
    out = build_report(make_load_run(tmp_path, _summary(steps=steps)))
    md, _ = _read(out)

    assert _md_row(md, "1") == ["60", "600", DASH, DASH, DASH, DASH, DASH, "0.00%", "0.00%", "0.00%", DASH,
                                f"{DASH} / {DASH}"]
    assert "**Figure skipped:** summary.json has no step with a latency above 0 ms." in md
    assert "latency_vs_offered.png" not in [p.name for p in out["figures"]]


def test_no_measured_step(tmp_path: Path) -> None:
    summary = _summary(steps=[], knee={"reached": False, "step": None, "offered_rps": None, "ceiling_rps": None,
                                       "reasons": ["no steps measured"]}, recovery_s=None,
                       recovery_note="fewer than two steps were measured")
    summary["partial"] = True
    out = build_report(make_load_run(tmp_path, summary, tables=()))
    md, _ = _read(out)

    assert "summary.json lists no measured step" in md
    assert "**Knee:** not reached: no steps measured." in md
    assert "Partial run: interrupted before its planned end" in md
    assert out["figures"] == []


def test_producer_target_shows_its_backlog(tmp_path: Path) -> None:
    summary = _summary(knee=NO_KNEE)
    summary["target"] = "producer"
    summary["saturation"] = {"reasons": [], "locust_cpu_max_pct": 40.0, "locust_cpu_warnings": 0,
                             "producer_loop_lag_ms": {"p99": 2.0, "max": 5.0, "n": 84}, "producer_cpu_max_pct": 75.0}
    summary["overload"]["steps"][2]["backlog_end"] = 12
    manifest = _manifest()
    manifest["scenario"]["load"]["target"] = "producer"
    md, _ = _read(build_report(make_load_run(tmp_path, summary, manifest)))

    assert "Target: the producer. A Locust polling fleet polled the producer" in md
    assert _md_row(md, "2")[-1] == "12 / 5"
    assert "producer CPU max 75%; producer event-loop lag p99 2 ms, max 5 ms (84 samples)" in md


def test_reproduce_shows_both_commands(tmp_path: Path) -> None:
    md, _ = _read(build_report(make_load_run(tmp_path)))
    text = _section(md, "Reproduce")

    assert "```\nhookbench load scenarios/overload_receiver.toml\n```" in text
    assert ("```\npython -m locust -f scenarios/storm.py,scenarios/ramp.py --headless --host "
            "http://127.0.0.1:43121 --hb-secret '<secret>' --processes 2\n```") in text


# --- errors, and the comparison report is untouched ---------------------------------------------------

@pytest.mark.parametrize("overload", [None, [], {"knee": {}}])
def test_load_summary_without_overload_steps_is_refused(tmp_path: Path, overload: Any) -> None:
    summary = _summary()
    if overload is None:
        del summary["overload"]
    else:
        summary["overload"] = overload
    run_dir = make_load_run(tmp_path, summary, tables=())

    with pytest.raises(RunDirError, match=re.escape(str(run_dir / "summary.json")) + ".*overload"):
        build_report(run_dir)


def test_a_comparison_run_still_gets_the_comparison_report(tmp_path: Path) -> None:
    out = build_report(make_run(tmp_path))
    md = out["md"].read_text(encoding="utf-8")

    assert md.startswith("# hookbench report: default\n")
    assert sorted(p.name for p in out["figures"]) == sorted(f"{name}.png" for name in COMPARISON_FIGURES)
    assert "## Results" in md and "## The knee" not in md


def test_load_report_imports_neither_locust_nor_pyplot(tmp_path: Path) -> None:
    run_dir = make_load_run(tmp_path)
    code = (
        "import sys; from pathlib import Path; from reports import build_report; "
        f"build_report(Path({str(run_dir)!r})); "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'servers', 'scenarios', 'locust', 'gevent'}"
        " or m == 'matplotlib.pyplot'); print(bad); sys.exit(1 if bad else 0)"
    )
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_recorded_error_without_interruption_is_a_caution(tmp_path: Path) -> None:
    manifest = _manifest()
    manifest["error"] = "Locust did not finish the ramp within 174 s"
    md, page = _read(build_report(make_load_run(tmp_path, manifest=manifest)))

    assert "> **The run recorded an error**" in md and "> - recorded error: Locust did not finish the ramp" in md
    assert '<div class="notice caution">' in page and 'class="notice warning"' not in page
