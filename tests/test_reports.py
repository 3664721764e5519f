"""reports: a synthetic run directory in, report.md / report.html / figures out."""

from __future__ import annotations

import base64
import copy
import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from bench.errors import FormatVersionError, RunDirError
from reports import build_report

FIGURES = ("latency_cdf", "wasted_fraction", "requests_per_change", "frontier")
DATA_URI = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')

MANIFEST: dict[str, Any] = {
    "format_version": 1,
    "scenario": {
        "name": "default",
        "description": "Cursor and ETag polling against webhooks, 50 resources",
        "seed": 42,
        "run": {"duration": 30.0, "warmup": 5.0, "drain": 5.0, "time_scale": 1.0},
        "resources": {"count": 50},
        "changes": {"process": "poisson", "rate": 0.1, "interval": None},
        "polling": {"interval": 1.0, "styles": ["cursor", "etag"], "cursor_limit": 100, "timeout": 5.0},
        "webhook": {"enabled": True, "timeout": 5.0, "max_attempts": 5},
    },
    "seed": 42,
    "time_scale": 1.0,
    "window": {"start_ns": 1_000_000_000, "end_ns": 31_000_000_000, "grace_end_ns": 36_000_000_000,
               "warmup_s": 5.0, "duration_s": 30.0, "drain_s": 5.0},
    "partial": False,
    "versions": {"python": "3.11.7", "aiohttp": "3.10.5", "locust": "2.43.0", "pandas": "3.1.1"},
    "machine": {"cpu_count": 8, "cpu_model": "Test CPU @ 3.0GHz", "platform": "Linux-6.1-x86_64"},
    "git_commit": "0123456789abcdef0123456789abcdef01234567",
    "command_line": ["hookbench", "run", "scenarios/default.toml", "--set", "seed=42"],
    "started_at": "2025-01-02T03:04:05+00:00",
}


def _mode(kind: str, style: str | None, **values: Any) -> dict[str, Any]:
    mode: dict[str, Any] = {
        "kind": kind, "requests": 30, "empty_requests": 1, "wasted_fraction": 0.0333, "wasted_fraction_se": 0.03,
        "wasted_fraction_ci95": [0.0059, 0.1667],
        "errors": 0, "observed": 150, "lost": 0, "duplicates": 0, "coalesced": 0, "requests_per_change": 0.2,
        "bytes_per_change": 90.1, "cpu_s_per_change": 0.00002,
        "latency_ms": {"mean": 500.2, "p50": 480.0, "p90": 900.1, "p99": 990.0, "max": 1001.0, "n": 150},
        "model": {"wasted_fraction": 0.0067, "latency_mean_ms": 500.0, "requests_per_change": 0.2,
                  "lambda_T": 5.0},
    }
    if style is not None:
        mode["style"] = style
    mode.update(values)
    return mode


# 50 resources x 0.1 changes/s x 30 s = 150 changes; cursor polls once a second, ETag polls each resource.
SUMMARY: dict[str, Any] = {
    "format_version": 1, "scenario": "default", "duration_s": 30.0, "seed": 42, "changes": 150,
    "harness_saturated": False, "partial": False, "time_scale": 1.0,
    "saturation": {"reasons": [], "producer_loop_lag_ms": {"p99": 1.2, "max": 4.0},
                   "receiver_loop_lag_ms": {"p99": 0.8, "max": 2.5}, "locust_cpu_max_pct": 23.0,
                   "locust_cpu_warnings": 0},
    "workload": {"resources": 50, "process": "poisson", "rate_per_resource": 0.1, "poll_interval_s": 1.0},
    "modes": {
        "polling": _mode("polling", "cursor", model={
            "wasted_fraction": 0.0067, "latency_mean_ms": 500.0, "requests_per_change": 0.2, "lambda_T": 5.0,
            "changes_per_useful_poll": 5.03, "note": "analytic: wasted = e^(-lambda*T), latency = T/2"}),
        "polling_etag": _mode("polling", "etag", requests=1500, empty_requests=1357, wasted_fraction=0.9047,
                              wasted_fraction_se=0.0076, wasted_fraction_ci95=[0.889, 0.9186], observed=138,
                              coalesced=12, requests_per_change=10.0, bytes_per_change=2431.5,
                              cpu_s_per_change=0.0009,
                              model={"wasted_fraction": 0.9048, "latency_mean_ms": 500.0,
                                     "requests_per_change": 10.0, "lambda_T": 0.1}),
        "webhook": _mode("webhook", None, requests=151, empty_requests=0, wasted_fraction=None,
                         wasted_fraction_se=None, wasted_fraction_ci95=None,
                         requests_per_change=1.0067, bytes_per_change=412.0,
                         latency_ms={"mean": 3.1, "p50": 2.0, "p90": 5.5, "p99": 12.0, "max": 40.0, "n": 150},
                         model={"requests_per_change": 1.0}),
    },
}


def _detections(rows_per_mode: int) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    frames = []
    for mode, scale_ms in (("polling", 500.0), ("polling_etag", 500.0), ("webhook", 3.0)):
        latency = rng.exponential(scale_ms, rows_per_mode) + 0.5
        t_change = np.arange(rows_per_mode, dtype="int64") * 20_000_000 + 1_000_000_000
        frames.append(pd.DataFrame({
            "mode": mode,
            "change_id": [f"c{i}" for i in range(rows_per_mode)],
            "resource_id": (np.arange(rows_per_mode) % 50).astype("int64"),
            "t_change_ns": t_change,
            "t_obs_ns": t_change + (latency * 1e6).astype("int64"),
            "latency_ms": latency.astype("float64"),
        }))
    table = pd.concat(frames, ignore_index=True)
    return table.astype({"mode": "str", "change_id": "str", "resource_id": "int64", "t_change_ns": "int64",
                         "t_obs_ns": "int64", "latency_ms": "float64"})


def make_run(root: Path, *, summary: dict[str, Any] | None = None, manifest: dict[str, Any] | None = None,
             rows_per_mode: int = 150, deliveries: pd.DataFrame | None = None,
             events: pd.DataFrame | None = None) -> Path:
    run_dir = root / "run"
    run_dir.mkdir()
    (run_dir / "manifest.json").write_text(json.dumps(manifest or MANIFEST), encoding="utf-8")
    (run_dir / "summary.json").write_text(json.dumps(summary or SUMMARY), encoding="utf-8")
    _detections(rows_per_mode).to_parquet(run_dir / "detections.parquet", index=False)
    if deliveries is not None:
        deliveries.to_parquet(run_dir / "deliveries.parquet", index=False)
    if events is not None:
        events.to_parquet(run_dir / "events.parquet", index=False)
    return run_dir


def _summary(**changes: Any) -> dict[str, Any]:
    summary = copy.deepcopy(SUMMARY)
    summary.update(changes)
    return summary


# --- a run with faults and an attack load ---------------------------------------------------------
# The receiver refuses connections 5-15 s into the window, the producer is killed at 20 s and back at 23 s
# (no changes meanwhile): 135 changes in the window, 50 of them during the outage. Retry and outbox resend
# with backoff until the receiver is back; fire-and-forget gives up on the 50.

S = 1_000_000_000  # ns per second
W0 = MANIFEST["window"]["start_ns"]
OUTAGE, CRASH = (5.0, 15.0), (20.0, 23.0)
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0)
WEBHOOK_MODES = ("webhook", "webhook_ff", "webhook_outbox")


def _fault_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    """deliveries.parquet and events.parquet of that run, attempt by attempt and second by second."""
    changes = [round(t, 1) for t in np.arange(-3.0, 30.0, 0.2) if not CRASH[0] <= t < CRASH[1]]
    rows, in_flight = [], []  # in_flight: (first attempt, delivered) per change and mode
    for mode in WEBHOOK_MODES:
        for i, t_change in enumerate(changes):
            t, attempt = t_change + 0.002, 1
            while True:
                down = OUTAGE[0] <= t < OUTAGE[1]
                done = not down or mode == "webhook_ff"
                rows.append({"mode": mode, "msg_id": f"msg_{mode}_{i}", "change_id": f"c{i}",
                             "subscription_id": f"sub_{mode}", "attempt": attempt, "t_send_ns": W0 + round(t * S),
                             "t_done_ns": W0 + round(t * S) + 2_000_000, "status": 0 if down else 204,
                             "latency_ms": 2.0, "bytes_out": 430, "bytes_in": 0 if down else 100,
                             "error": "connection refused" if down else None, "retry_after_s": None,
                             "outcome": ("gave_up" if mode == "webhook_ff" else "retry") if down else "ok"})
                if done:
                    break
                t += RETRY_DELAYS[attempt - 1]
                if CRASH[0] <= t < CRASH[1]:  # the producer is down: its next attempt waits for the restart
                    t = CRASH[1] + 0.1
                attempt += 1
            in_flight.append((t_change, t))
    deliveries = pd.DataFrame(rows)
    events = [{"t_ns": W0 + round(OUTAGE[0] * S), "source": "receiver", "event": "down", "mode": "refuse"},
              {"t_ns": W0 + round(OUTAGE[1] * S), "source": "receiver", "event": "up", "mode": "refuse"},
              {"t_ns": W0 + round(CRASH[0] * S), "source": "orchestrator", "event": "producer_killed"},
              {"t_ns": W0 + round(CRASH[1] * S), "source": "orchestrator", "event": "producer_restarted"}]
    for second in range(-3, 36):
        if CRASH[0] <= second < CRASH[1]:
            continue  # the producer is down: no stats
        sent = deliveries[deliveries["t_send_ns"] <= W0 + second * S]
        events.append({"t_ns": W0 + second * S + 1000, "source": "producer", "event": "stats",
                       "changes": sum(t <= second for t in changes), "attempts": len(sent),
                       "ok": int((sent["status"] == 204).sum()), "failed": int((sent["status"] == 0).sum()),
                       "pending": sum(a <= second < b for a, b in in_flight)})
    table = pd.DataFrame(events).astype({"changes": "Int64", "attempts": "Int64", "ok": "Int64", "failed": "Int64",
                                         "pending": "Int64"})
    return deliveries, table


def _loss(policy: str, **values: Any) -> dict[str, Any]:
    row = {"policy": policy, "changes": 135, "observed": 135, "lost": 0, "coalesced": 0, "duplicates_delivered": 0,
           "duplicates_processed": None if policy == "polling" else 0, "late": 0, "max_delay_ms": 1001.0,
           "lost_change_ids": []}
    if policy != "polling":
        row.update(attempted_during_outage=50, gave_up=0)
    row.update(values)
    return row


FAULTS: dict[str, Any] = {
    "receiver_down": [{"start_ns": W0 + 5 * S, "end_ns": W0 + 15 * S, "mode": "refuse", "duration_s": 10.0}],
    "producer_crashes": [{"killed_ns": W0 + 20 * S, "restarted_ns": W0 + 23 * S, "down_s": 3.0}],
    "changes_in_outage": 50,
    "slo_s": 5.0,
    "modes": {
        "polling": _loss("polling"),
        "polling_etag": _loss("polling", observed=123, coalesced=12, max_delay_ms=2950.0),
        "webhook": _loss("retry", duplicates_delivered=2, late=31, max_delay_ms=9_480.5),
        "webhook_ff": _loss("fire_and_forget", observed=85, lost=50, gave_up=50, max_delay_ms=4.2,
                            lost_change_ids=[f"c{i}" for i in range(40, 60)]),
        "webhook_outbox": _loss("outbox", late=31, max_delay_ms=9_481.0),
    },
}

SECURITY: dict[str, Any] = {
    "attack_enabled": True, "hostile_sent": 300, "hostile_accepted": 0, "hostile_as_expected": 298, "receiver_5xx": 0,
    "kinds": {
        "forged_signature": {"sent": 100, "expected_status": 401, "as_expected": 100, "statuses": {"401": 100},
                             "accepted": 0, "deduplicated": 0, "audited": 100},
        "replayed_id": {"sent": 100, "expected_status": 200, "as_expected": 98, "statuses": {"200": 98, "0": 2},
                        "accepted": 0, "deduplicated": 98, "audited": 98},
        "tampered_body": {"sent": 100, "expected_status": 401, "as_expected": 100, "statuses": {"401": 100},
                          "accepted": 0, "deduplicated": 0, "audited": 100},
    },
    "legit": {"sent": 1200, "answered_2xx": 1200, "accepted_fraction": 1.0},
    "audit": {"rows": 1498, "hostile_rows": 298, "legit_rows": 1200, "complete": True},
}


def _fault_summary(**changes: Any) -> dict[str, Any]:
    """SUMMARY with the two extra webhook modes, the faults and the security sections."""
    summary = _summary(faults=copy.deepcopy(FAULTS), security=copy.deepcopy(SECURITY), changes=135)
    for mode in WEBHOOK_MODES[1:]:
        summary["modes"][mode] = copy.deepcopy(SUMMARY["modes"]["webhook"])
    summary.update(changes)
    return summary


def make_fault_run(root: Path, summary: dict[str, Any] | None = None, *, deliveries: bool = True,
                   events: bool = True) -> Path:
    d, e = _fault_tables()
    return make_run(root, summary=summary or _fault_summary(), deliveries=d if deliveries else None,
                    events=e if events else None)


def _md_row(md: str, label: str) -> list[str]:
    """The cells of the Markdown results row whose label is `label`."""
    for line in md.splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0].strip("*") == label:
            return cells[1:]
    raise AssertionError(f"no row {label!r} in report.md")


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return make_run(tmp_path)


def test_writes_markdown_html_and_every_figure(run_dir: Path) -> None:
    out = build_report(run_dir)

    assert out["md"] == run_dir / "report.md" and out["md"].is_file()
    assert out["html"] == run_dir / "report.html" and out["html"].is_file()
    assert sorted(p.name for p in out["figures"]) == sorted(f"{name}.png" for name in FIGURES)
    for path in out["figures"]:
        assert path.parent == run_dir / "figures"
        assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    md = out["md"].read_text(encoding="utf-8")
    for name in FIGURES:
        assert f"](figures/{name}.png)" in md


def test_html_is_self_contained_with_every_figure_embedded(run_dir: Path) -> None:
    out = build_report(run_dir)
    page = out["html"].read_text(encoding="utf-8")

    assert 'src="http' not in page and 'href="http' not in page
    assert "http://" not in page and "https://" not in page
    assert "<link" not in page and "<script" not in page
    embedded = DATA_URI.findall(page)
    assert len(embedded) == len(FIGURES)
    # each data URI is exactly one of the PNG files written
    assert sorted(base64.b64decode(data) for data in embedded) == sorted(p.read_bytes() for p in out["figures"])


def test_markdown_shows_the_summary_numbers(run_dir: Path) -> None:
    md = build_report(run_dir)["md"].read_text(encoding="utf-8")

    assert _md_row(md, "")[:3] == ["polling", "polling_etag", "webhook"]
    # the interval is shown as summary.json gives it (a Wilson interval, asymmetric near 0 and 1)
    assert _md_row(md, "wasted fraction (95% CI)")[1] == "90.47% (88.90% to 91.86%)"
    assert _md_row(md, "model: wasted fraction e^(−λT)")[1] == "90.48%"
    assert _md_row(md, "wasted fraction (95% CI)")[0] == "3.33% (0.59% to 16.67%)"
    assert _md_row(md, "model: wasted fraction e^(−λT)") == ["0.67%", "90.48%", "–"]
    assert _md_row(md, "requests") == ["30", "1,500", "151"]
    assert _md_row(md, "coalesced")[1] == "12"
    assert _md_row(md, "requests per change") == ["0.200", "10.0", "1.01"]
    assert _md_row(md, "producer CPU µs per change")[:2] == ["20.0", "900"]
    assert _md_row(md, "latency p99 (ms)") == ["990", "990", "12.0"]
    assert _md_row(md, "model: changes per useful poll") == ["5.03", "–", "–"]
    assert "- **polling**: analytic: wasted = e^(-lambda\\*T), latency = T/2" in md
    assert "150 changes happened in the window" in md
    assert "at 0.1 changes/s per resource; pollers polled every 1 s" in md
    assert "hookbench run scenarios/default.toml --set seed=42" in md
    assert "0123456789abcdef0123456789abcdef01234567" in md
    assert "Test CPU @ 3.0GHz" in md


def test_null_values_render_as_a_dash(tmp_path: Path) -> None:
    summary = _summary()
    summary["modes"]["webhook"]["latency_ms"] = {"mean": None, "p50": None, "p90": None, "p99": None,
                                                 "max": None, "n": 0}
    summary["modes"]["polling"]["bytes_per_change"] = None
    summary["modes"]["webhook"]["model"] = {}
    out = build_report(make_run(tmp_path, summary=summary))
    md = out["md"].read_text(encoding="utf-8")

    assert _md_row(md, "wasted fraction (95% CI)")[2] == "–"  # webhook: null in summary.json
    assert _md_row(md, "latency p50 (ms)")[2] == "–"
    assert _md_row(md, "model: mean latency (ms)")[2] == "–"  # model {}: key absent
    assert _md_row(md, "bytes per change")[0] == "–"
    assert "None" not in md and "nan" not in md.lower()
    assert "<td>–</td>" in out["html"].read_text(encoding="utf-8")


@pytest.mark.parametrize("saturated", [True, False])
def test_saturation_warning_appears_iff_harness_saturated(tmp_path: Path, saturated: bool) -> None:
    summary = _summary(harness_saturated=saturated)
    if saturated:
        summary["saturation"]["reasons"] = ["producer event-loop lag p99 85 ms > 50 ms", "locust CPU 97% > 90%"]
    out = build_report(make_run(tmp_path, summary=summary))
    md, page = out["md"].read_text(encoding="utf-8"), out["html"].read_text(encoding="utf-8")

    warning = "the harness itself was a bottleneck"
    assert (warning in md) is saturated
    assert (warning in page) is saturated
    assert ('class="notice warning"' in page) is saturated
    assert ("understate the capacity" in md) is saturated
    assert ("locust CPU 97% &gt; 90%" in page) is saturated
    if saturated:
        assert "**⚠ Warning: the harness itself was a bottleneck in this run**" in md
        assert "> - producer event-loop lag p99 85 ms \\> 50 ms" in md
    else:
        assert "not saturated: producer event-loop lag p99 1.2 ms, max 4 ms" in md
        assert "Locust CPU max 23%" in md


@pytest.mark.parametrize("partial", [True, False])
def test_partial_notice_appears_iff_partial(tmp_path: Path, partial: bool) -> None:
    out = build_report(make_run(tmp_path, summary=_summary(partial=partial)))
    md, page = out["md"].read_text(encoding="utf-8"), out["html"].read_text(encoding="utf-8")

    assert ("Partial run: interrupted" in md) is partial
    assert ('class="notice caution"' in page) is partial


@pytest.mark.parametrize("file_name", ["summary.json", "manifest.json"])
@pytest.mark.parametrize("version", [2, "1", True, None])
def test_unknown_format_version_is_refused(tmp_path: Path, file_name: str, version: Any) -> None:
    run_dir = make_run(tmp_path)
    path = run_dir / file_name
    data = json.loads(path.read_text(encoding="utf-8"))
    data["format_version"] = version
    path.write_text(json.dumps(data), encoding="utf-8")

    with pytest.raises(FormatVersionError, match=re.escape(str(path))) as info:
        build_report(run_dir)
    assert "format_version" in str(info.value)
    assert not (run_dir / "report.md").exists()


def test_missing_format_version_is_refused(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    summary = _summary()
    del summary["format_version"]
    (run_dir / "summary.json").write_text(json.dumps(summary), encoding="utf-8")

    with pytest.raises(FormatVersionError, match=r"format_version = \(missing\)"):
        build_report(run_dir)


@pytest.mark.parametrize("file_name", ["summary.json", "manifest.json", "detections.parquet"])
def test_missing_file_raises_run_dir_error_naming_it(tmp_path: Path, file_name: str) -> None:
    run_dir = make_run(tmp_path)
    (run_dir / file_name).unlink()

    with pytest.raises(RunDirError, match=re.escape(str(run_dir / file_name))):
        build_report(run_dir)


def test_missing_run_dir_and_bad_json_raise_run_dir_error(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match="not a directory"):
        build_report(tmp_path / "nope")
    run_dir = make_run(tmp_path)
    (run_dir / "summary.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(RunDirError, match="cannot be read as JSON"):
        build_report(run_dir)


def test_detections_without_the_contract_columns_are_refused(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    pd.DataFrame({"mode": ["polling"], "latency": [1.0]}).to_parquet(run_dir / "detections.parquet")

    with pytest.raises(RunDirError, match="latency_ms"):
        build_report(run_dir)


def test_zero_detections_skip_the_latency_figure_with_a_note(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    build_report(run_dir)  # first with data: the stale latency figure must then go away
    _detections(0).to_parquet(run_dir / "detections.parquet", index=False)

    out = build_report(run_dir)
    md, page = out["md"].read_text(encoding="utf-8"), out["html"].read_text(encoding="utf-8")

    # the frontier places the summary's latency percentiles, which this summary still holds
    assert [p.name for p in out["figures"]] == ["wasted_fraction.png", "requests_per_change.png", "frontier.png"]
    assert not (run_dir / "figures" / "latency_cdf.png").exists()
    assert "**Figure skipped:** no change was detected in the measured window" in md
    assert "figures/latency_cdf.png" not in md
    assert len(DATA_URI.findall(page)) == 3


def test_only_present_modes_and_unknown_keys_are_tolerated(tmp_path: Path) -> None:
    summary = _summary(overload={"curve": [1, 2, 3]}, claims={"C1": "supported"})
    summary["modes"] = {"webhook": dict(SUMMARY["modes"]["webhook"], retries=3, extra={"a": 1},
                                        model={"requests_per_change": 1.0, "changes_per_useful_poll": math.inf})}
    del summary["saturation"]
    out = build_report(make_run(tmp_path, summary=summary))
    md = out["md"].read_text(encoding="utf-8")

    assert _md_row(md, "") == ["webhook"]
    assert _md_row(md, "retries") == ["3"]  # optional row, shown because a mode has it
    assert _md_row(md, "model: changes per useful poll") == ["∞"]  # json writes inf as Infinity
    # no polling mode: nothing to show on the wasted-fraction figure
    assert [p.name for p in out["figures"]] == ["latency_cdf.png", "requests_per_change.png", "frontier.png"]
    assert "**Figure skipped:** no polling mode reported" in md
    assert "Harness check:** not saturated." in md


def test_text_from_files_is_escaped(tmp_path: Path) -> None:
    manifest = copy.deepcopy(MANIFEST)
    manifest["scenario"]["description"] = "<script>alert('x')</script> & *stars* | pipes"
    summary = _summary(harness_saturated=True)
    summary["saturation"]["reasons"] = ["<b>lag</b>"]
    out = build_report(make_run(tmp_path, manifest=manifest, summary=summary))
    page = out["html"].read_text(encoding="utf-8")
    md = out["md"].read_text(encoding="utf-8")

    assert "<script>" not in page and "<b>lag</b>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; *stars*" in page
    assert "&lt;b&gt;lag&lt;/b&gt;" in page
    assert r"\<script\>" in md and r"\*stars\*" in md


def test_model_label_names_e_to_the_minus_lambda_t_only_for_poisson_changes(tmp_path: Path) -> None:
    summary = _summary()
    summary["workload"] = dict(summary["workload"], process="constant")
    md = build_report(make_run(tmp_path, summary=summary))["md"].read_text(encoding="utf-8")

    assert _md_row(md, "model: wasted fraction") == ["0.67%", "90.48%", "–"]
    assert "e^(−λT) for Poisson changes" not in md


def test_time_scaled_run_says_so(tmp_path: Path) -> None:
    manifest = dict(MANIFEST, time_scale=10.0)
    out = build_report(make_run(tmp_path, manifest=manifest, summary=_summary(time_scale=10.0)))

    assert "time-scaled by 10:" in out["md"].read_text(encoding="utf-8")


def test_reports_imports_neither_servers_scenarios_locust_nor_pyplot(run_dir: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from reports import build_report; "
        f"build_report(Path({str(run_dir)!r})); "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'servers', 'scenarios', 'locust', 'gevent'}"
        " or m == 'matplotlib.pyplot'); print(bad); sys.exit(1 if bad else 0)"
    )
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


# --- loss table, security table, delivery timeline -------------------------------------------------

def _section(md: str, heading: str) -> str:
    """The text of the `## heading` section of report.md, up to the next `## ` heading."""
    start = md.index(f"## {heading}\n")
    end = md.find("\n## ", start + 1)
    return md[start:end if end >= 0 else None]


def test_loss_table_has_a_row_per_mode_and_lost_changes_stand_out(tmp_path: Path) -> None:
    out = build_report(make_fault_run(tmp_path))
    md, page = out["md"].read_text(encoding="utf-8"), out["html"].read_text(encoding="utf-8")
    loss = _section(md, "Who lost what")

    assert ("| mode | policy | changes | observed | lost | coalesced | duplicates delivered | duplicates processed"
            " | late (\\> 5 s SLO) | max delay (s) |") in loss
    assert _md_row(loss, "polling") == ["cursor polling catch-up", "135", "135", "0", "0", "0", "–", "0", "1.00"]
    assert _md_row(loss, "polling_etag") == ["state polling", "135", "123", "0", "12", "0", "–", "0", "2.95"]
    assert _md_row(loss, "webhook") == ["retries (in memory)", "135", "135", "0", "0", "2", "0", "31", "9.48"]
    assert _md_row(loss, "webhook_ff") == ["fire-and-forget", "135", "85", "**50**", "0", "0", "0", "0", "0.00420"]
    assert _md_row(loss, "webhook_outbox")[:4] == ["retries + durable outbox", "135", "135", "0"]
    assert "|---|---|---:|" in loss  # the policy column is text, left-aligned
    assert page.count('<td class="fail">') == 1 and '<td class="fail">50</td>' in page
    assert '<td class="text">fire-and-forget</td>' in page
    # the faults as measured, relative to the window start
    assert ("The receiver was down once (as measured from its own records): 10 s refusing connections, "
            "from 5 s to 15 s into the window. 50 changes were made in the window while it was down.") in loss
    assert "The producer crashed (kill -9) once: killed 20 s into the window, back 3 s later." in loss
    assert "Deliveries given up: webhook 0, webhook_ff 50, webhook_outbox 0." in loss
    assert "- **webhook_ff**: c40, c41, c42, c43, c44, c45, c46, c47, c48, c49, … (50 lost in all)" in loss


def test_loss_table_marks_duplicates_processed_and_tolerates_an_unrestarted_producer(tmp_path: Path) -> None:
    summary = _fault_summary()
    faults = summary["faults"]
    faults["modes"]["webhook"]["duplicates_processed"] = 3
    faults["receiver_down"] = [{"start_ns": W0 + 2 * S, "end_ns": W0 + 4 * S, "mode": "503", "duration_s": 2.0},
                               {"start_ns": W0 + 8 * S, "end_ns": W0 + 9 * S, "mode": "refuse", "duration_s": 1.0}]
    faults["producer_crashes"] = [{"killed_ns": W0 + 25 * S, "restarted_ns": None, "down_s": None}]
    del faults["modes"]["webhook_ff"]["lost_change_ids"]
    md = build_report(make_fault_run(tmp_path, summary))["md"].read_text(encoding="utf-8")
    loss = _section(md, "Who lost what")

    assert _md_row(loss, "webhook")[6] == "**3**"
    assert ("down 2 times (as measured from its own records): 2 s answering 503 Service Unavailable, from 2 s to "
            "4 s into the window; 1 s refusing connections, from 8 s to 9 s into the window.") in loss
    assert "killed 25 s into the window, not restarted before the run ended." in loss
    assert "Lost changes" not in loss  # no ids recorded: nothing to list


@pytest.mark.parametrize("webhook_modes, shown", [(("webhook",), False), (("webhook", "webhook_ff"), True)])
def test_loss_table_without_faults_only_compares_several_webhook_modes(
        tmp_path: Path, webhook_modes: tuple[str, ...], shown: bool) -> None:
    summary = _fault_summary()
    summary["faults"].update(receiver_down=[], producer_crashes=[], changes_in_outage=0)
    summary["faults"]["modes"] = {m: s for m, s in summary["faults"]["modes"].items()
                                  if not m.startswith("webhook") or m in webhook_modes}
    md = build_report(make_fault_run(tmp_path, summary))["md"].read_text(encoding="utf-8")

    assert ("## Who lost what" in md) is shown
    assert ("No fault was injected in this run" in md) is shown
    # no outage, no crash: nothing for the timeline to show
    assert "**Figure skipped:** no receiver outage or producer crash in this run" in md


def test_security_table_when_every_defence_holds(tmp_path: Path) -> None:
    out = build_report(make_fault_run(tmp_path))
    md, page = out["md"].read_text(encoding="utf-8"), out["html"].read_text(encoding="utf-8")
    sec = _section(md, "Security under attack")

    assert "each hostile request breaks exactly one rule" in sec.lower()
    assert "expected to get the duplicate answer, 2xx, without being processed again" in sec
    assert _md_row(sec, "forged_signature") == ["100", "401", "100", "–", "0", "0"]
    assert _md_row(sec, "replayed_id") == ["100", "200", "98", "no answer×2", "0", "98"]
    assert _md_row(sec, "all hostile requests") == ["300", "", "298", "no answer×2", "0", "98"]
    assert _md_row(sec, "legitimate deliveries answered 2xx") == ["1,200 of 1,200 (100.00%)"]
    assert _md_row(sec, "receiver 5xx answers") == ["0"]
    assert _md_row(sec, "audit log complete") == ["yes (1,498 rows: 298 hostile, 1,200 legitimate)"]
    assert "**Verdict:** no hostile request was processed" in sec
    assert "2 hostile requests got another answer than expected" in sec
    assert "Security check failed" not in md and 'class="notice warning"' not in page


def test_security_failures_stand_out(tmp_path: Path) -> None:
    summary = _fault_summary()
    sec = summary["security"]
    sec["kinds"]["tampered_body"].update(as_expected=96, statuses={"401": 96, "200": 3, "500": 1}, accepted=3)
    sec.update(hostile_accepted=3, hostile_as_expected=294, receiver_5xx=1)
    sec["legit"] = {"sent": 1200, "answered_2xx": 1188, "accepted_fraction": 0.99}
    sec["audit"]["complete"] = False
    out = build_report(make_fault_run(tmp_path, summary))
    md, page = out["md"].read_text(encoding="utf-8"), out["html"].read_text(encoding="utf-8")
    text = _section(md, "Security under attack")

    assert "**⚠ Security check failed**" in text
    assert "> - 3 hostile requests were processed as new (tampered_body)." in text
    assert "> - The receiver answered 1 request with a 5xx error." in text
    # this run also had a receiver outage, which fails legitimate deliveries by itself: said, still a failure
    assert ("> - Only 99.00% of legitimate deliveries were answered 2xx (1,188 of 1,200). The receiver was also "
            "down for part of this run") in text
    assert _md_row(text, "tampered_body") == ["100", "401", "96", "200×3, 500×1", "**3**", "0"]
    assert _md_row(text, "all hostile requests")[3:5] == ["200×3, no answer×2, 500×1", "**3**"]
    assert _md_row(text, "legitimate deliveries answered 2xx") == ["**1,188 of 1,200 (99.00%)**"]
    assert _md_row(text, "receiver 5xx answers") == ["**1**"]
    assert _md_row(text, "audit log complete")[0].startswith("**no (")
    assert "Verdict" not in text
    assert 'class="notice warning" role="alert"' in page
    assert '<td class="fail">1,188 of 1,200 (99.00%)</td>' in page


def test_security_audit_row_names_foreign_senders_rows_apart(tmp_path: Path) -> None:
    summary = _fault_summary()
    summary["security"]["audit"].update(rows=1503, foreign_rows=5)
    summary["security"]["foreign"] = {"accepted": 4, "duplicates": 1, "endpoints": {"webhook": {"accepted": 4,
                                                                                                 "duplicates": 1}}}
    sec = _section(build_report(make_fault_run(tmp_path, summary))["md"].read_text(encoding="utf-8"),
                   "Security under attack")
    assert _md_row(sec, "audit log complete") == ["yes (1,503 rows: 298 hostile, 1,200 legitimate, 5 from foreign "
                                                  "senders)"]
    assert _md_row(sec, "legitimate deliveries answered 2xx") == ["1,200 of 1,200 (100.00%)"]


def test_security_section_only_when_an_attack_ran(tmp_path: Path) -> None:
    summary = _fault_summary()
    summary["security"].update(attack_enabled=False, hostile_sent=0, kinds={}, hostile_as_expected=0)
    md = build_report(make_fault_run(tmp_path, summary))["md"].read_text(encoding="utf-8")

    assert "## Security under attack" not in md
    assert "## Who lost what" in md


def test_old_summary_without_faults_or_security_skips_them(run_dir: Path) -> None:
    out = build_report(run_dir)
    md, page = out["md"].read_text(encoding="utf-8"), out["html"].read_text(encoding="utf-8")

    assert "Who lost what" not in md and "Security under attack" not in md
    assert "**Figure skipped:** summary.json has no faults section" in md
    assert 'class="fail"' not in page


def test_delivery_timeline_is_drawn_and_embedded_when_a_fault_hit_deliveries(tmp_path: Path) -> None:
    out = build_report(make_fault_run(tmp_path))
    md, page = out["md"].read_text(encoding="utf-8"), out["html"].read_text(encoding="utf-8")
    png = tmp_path / "run" / "figures" / "delivery_timeline.png"

    assert png in out["figures"] and len(out["figures"]) == len(FIGURES) + 1
    assert "![Webhook deliveries through the faults](figures/delivery_timeline.png)" in md
    assert "one panel per webhook mode" in md and "Bottom: the producer's delivery backlog" in md
    embedded = [base64.b64decode(data) for data in DATA_URI.findall(page)]
    assert png.read_bytes() in embedded and len(embedded) == len(FIGURES) + 1
    # three mode panels and the backlog, readable at 100 dpi: 750 px wide and taller than the other figures
    width, height = int.from_bytes(png.read_bytes()[16:20], "big"), int.from_bytes(png.read_bytes()[20:24], "big")
    assert width == 750 and height > 700


def test_delivery_timeline_aggregates_many_modes_and_old_tables(tmp_path: Path) -> None:
    deliveries, events = _fault_tables()
    extra = deliveries[deliveries["mode"] == "webhook"].assign(mode="webhook_slow")
    (tmp_path / "many").mkdir()
    many = make_run(tmp_path / "many", summary=_fault_summary(), deliveries=pd.concat([deliveries, extra]),
                    events=events)
    (tmp_path / "old").mkdir()  # an older deliveries.parquet has no mode column; no events.parquet at all
    old = make_run(tmp_path / "old", summary=_fault_summary(), deliveries=deliveries.drop(columns=["mode"]))

    many_md = build_report(many)["md"].read_text(encoding="utf-8")
    old_out = build_report(old)
    old_md = old_out["md"].read_text(encoding="utf-8")

    assert "per 1 s bin of send time, all webhook modes together" in many_md
    assert old / "figures" / "delivery_timeline.png" in old_out["figures"]
    assert "all webhook modes together" in old_md
    assert "The producer's delivery backlog was not recorded (no stats in events.parquet)." in old_md


@pytest.mark.parametrize("change, note", [
    ("no deliveries", "the run directory has no deliveries.parquet"),
    ("no columns", "deliveries.parquet lacks the columns status (written by an older hookbench)"),
    ("polling only", "no webhook delivery was attempted"),
])
def test_delivery_timeline_skipped_with_a_note(tmp_path: Path, change: str, note: str) -> None:
    run_dir = make_fault_run(tmp_path)
    build_report(run_dir)  # first drawn: the stale PNG must then go away
    deliveries = pd.read_parquet(run_dir / "deliveries.parquet")
    if change == "no deliveries":
        (run_dir / "deliveries.parquet").unlink()
    elif change == "no columns":
        deliveries.drop(columns=["status"]).to_parquet(run_dir / "deliveries.parquet", index=False)
    else:
        deliveries.assign(mode="polling").to_parquet(run_dir / "deliveries.parquet", index=False)
    out = build_report(run_dir)
    md, page = out["md"].read_text(encoding="utf-8"), out["html"].read_text(encoding="utf-8")

    assert f"**Figure skipped:** {note}" in md
    assert not (run_dir / "figures" / "delivery_timeline.png").exists()
    assert "figures/delivery_timeline.png" not in md
    assert len(DATA_URI.findall(page)) == len(FIGURES)
    assert "## Who lost what" in md  # the table does not depend on the raw table


def test_damaged_optional_table_raises_run_dir_error_naming_it(tmp_path: Path) -> None:
    run_dir = make_fault_run(tmp_path)
    (run_dir / "events.parquet").write_bytes(b"not parquet")

    with pytest.raises(RunDirError, match=re.escape(str(run_dir / "events.parquet"))):
        build_report(run_dir)


# --- a run whose pollers ran on Locust workers: the records check in the report --------------------------------

def test_remote_pollers_surplus_and_unacknowledged_workers_are_named(tmp_path: Path) -> None:
    """Issue 18: more rows than Locust counted, and a worker whose end-of-run exchange did not complete, are
    warnings naming the worker, as missing rows are; the per-worker table shows what Locust counted of each."""
    surplus = "worker 1 (pid 12 on c) sent 105 rows, Locust counted 100 of its requests: 5 extra"
    unacked = ("worker 0 (pid 11 on b) did not answer the master's end-of-run request (hb_flush) with its final "
               "totals (hb_done): its last rows may be missing and the master never acknowledged them")
    summary = _summary(records={
        "rows": 205, "files": 2, "per_worker": {"0": 100, "1": 105}, "locust_requests": 200, "complete": False,
        "lost": [], "surplus": [{"worker": 1, "read": 105, "locust_requests": 100, "extra": 5, "reason": surplus}],
        "unacknowledged": [{"worker": 0, "final_totals": False, "reason": unacked}],
        "wire": {"compression": 4.0, "workers": {
            "0": {"pid": 11, "host": "b", "received": 100, "declared": 100, "read": 100, "locust_requests": 100},
            "1": {"pid": 12, "host": "c", "received": 105, "declared": 105, "read": 105, "locust_requests": 100}}}})
    manifest = dict(MANIFEST, locust_master={"expect_workers": 2, "bind": "10.0.0.1:5557", "max_wait_s": 30})
    out = build_report(make_run(tmp_path, summary=summary, manifest=manifest))
    md, page = out["md"].read_text(encoding="utf-8"), out["html"].read_text(encoding="utf-8")

    assert "Warning: more rows than requests" in md and surplus in md
    assert "Warning: a Locust worker's end-of-run exchange with the master did not complete" in md
    assert "worker 0 (pid 11 on b) did not answer the master's end-of-run request" in md
    assert "Warning: a Locust worker's rows are missing" not in md  # nothing is lost: no deficit warning
    assert page.count('class="notice warning"') == 2
    assert "Locust counted 200 requests: INCOMPLETE: see the warning above" in md
    assert _md_row(md, "worker 1")[:4] == ["c (pid 12)", "105", "105", "100"]
