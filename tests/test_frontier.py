"""The cost–freshness frontier (reports/frontier.py): one point per mode with a measured latency, placed at the
summary's own values, and the fixed-polling model curve computed exactly from the workload."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
from test_reports import SUMMARY, _mode, make_run

from reports.frontier import frontier_points, model_curve
from reports.rundir import RunData, load_run


def _run(tmp_path: Path, summary: dict) -> RunData:
    return load_run(make_run(tmp_path, summary=summary))


def test_one_point_per_mode_at_the_summary_values(tmp_path: Path) -> None:
    summary = copy.deepcopy(SUMMARY)
    summary["modes"]["polling_sse"] = _mode("stream", "sse", requests_per_change=0.0, bytes_per_change=250.0,
                                            latency_ms={"p50": 1.5, "p99": 4.0, "n": 150},
                                            held_connections={"max": 1, "mean": 1.0, "samples": 30})
    summary["modes"]["polling_long"] = _mode("polling", "long", latency_ms={"p50": 2.0, "p99": None})  # no p99
    points = frontier_points(_run(tmp_path, summary)).set_index("mode")
    assert list(points.index) == ["polling", "polling_etag", "webhook", "polling_sse"]  # long: no p99, no point
    assert points.loc["polling_etag", "latency_p50_ms"] == 480.0 and points.loc["webhook", "latency_p99_ms"] == 12.0
    assert points.loc["polling_etag", "bytes_per_change"] == 2431.5
    assert points.loc["polling_etag", "cpu_s_per_change"] == pytest.approx(900.0)  # shown in µs
    assert math.isnan(points.loc["polling_sse", "requests_per_change"])  # 0 requests per change: not on a log axis
    assert points.loc["polling_sse", "held_max"] == 1


def test_model_curve_is_the_cursor_feed_model(tmp_path: Path) -> None:
    curve = model_curve(_run(tmp_path, copy.deepcopy(SUMMARY)))
    assert curve is not None
    # R = 50 resources, lambda = 0.1/s: requests per change 1/(R*lambda*T); p50 T/2, p99 0.99 T (no rtt recorded)
    for row in curve.itertuples():
        assert row.requests_per_change == pytest.approx(1 / (50 * 0.1 * row.interval_s))
        assert row.latency_p50_ms == pytest.approx(row.interval_s * 500)
        assert row.latency_p99_ms == pytest.approx(row.interval_s * 990)
        # bytes: the model's requests times the cursor poller's measured bytes per request (90.1 / 0.2)
        assert row.bytes_per_change == pytest.approx(row.requests_per_change * 90.1 / 0.2)
    assert curve["interval_s"].min() == pytest.approx(0.01) and curve["interval_s"].max() == pytest.approx(100.0)


def test_no_workload_no_curve(tmp_path: Path) -> None:
    summary = copy.deepcopy(SUMMARY)
    del summary["workload"]
    assert model_curve(_run(tmp_path, summary)) is None
