"""Analysis on fixed, hand-made tables: every expected value below was worked out by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from bench.analysis.stats import latency_stats, percentile, wilson_interval
from bench.analysis.summary import Window, detections, summarize
from bench.analysis.tables import Tables
from bench.config import scenario_from_dict
from bench.model import poll_model
from bench.results import RunStatus, write_json


def ms(x: float) -> int:
    return int(x * 1_000_000)


W = Window(ms(1000), ms(2000), ms(3000))

SCENARIO = scenario_from_dict({
    "name": "hand", "seed": 3, "run": {"duration": 1, "warmup": 1, "drain": 1},
    "resources": {"count": 3}, "changes": {"process": "poisson", "rate": 2.0}, "polling": {"interval": "250ms"},
}, "test").to_dict()

CHANGES = [  # (id, resource, version, t ms); c1 is before the window, c7 after it
    ("c1", 0, 1, 500), ("c2", 0, 2, 1100), ("c3", 1, 1, 1200), ("c4", 1, 2, 1300),
    ("c5", 2, 1, 1500), ("c6", 0, 3, 1900), ("c7", 2, 2, 2100),
]

OBS = [  # (mode, change, t_obs ms)
    # cursor: every window change seen once, c3 seen twice (a duplicate), c6 late but within grace
    ("polling", "c1", 600), ("polling", "c2", 1150), ("polling", "c3", 1250), ("polling", "c3", 1400),
    ("polling", "c4", 1350), ("polling", "c5", 1600), ("polling", "c6", 2500),
    # etag: c3 overwritten by c4 before a poll (coalesced); c5 never seen (lost);
    # c6 seen only after the grace period (lost: r0's newest version seen in time is 2 < 3)
    ("polling_etag", "c2", 1200), ("polling_etag", "c4", 1400), ("polling_etag", "c6", 3500),
    # webhook: c5 arrived twice (duplicate), c6 never (lost)
    ("webhook", "c2", 1101), ("webhook", "c3", 1202), ("webhook", "c4", 1303), ("webhook", "c5", 1504),
    ("webhook", "c5", 1600),
]


def poll(mode: str, t: float, empty: bool, *, initial: bool = False, error: str | None = None) -> dict:
    return {"mode": mode, "user": 0, "resource_id": None if mode == "polling" else 0, "t_intended_ns": ms(t),
            "t_send_ns": ms(t) + 100_000, "t_recv_ns": ms(t) + 1_100_000, "status": 200, "empty": empty,
            "n_new": 0 if empty else 1, "bytes": 10, "error": error, "followup": False, "initial": initial}


POLLS = (
    [poll("polling", 950, False, initial=True), poll("polling", 900, True)]  # outside: initial, before window
    + [poll("polling", t, e) for t, e in [(1000, True), (1250, False), (1500, True), (1750, False)]]
    + [poll("polling", 2000, True)]  # the window's end is exclusive
    + [poll("polling_etag", 1000 + 50 * i, i < 7, error="HTTP 500" if i == 0 else None) for i in range(10)]
    + [poll("polling_etag", 1020, False, initial=True)]
)


def attempt(change: str, n: int, status: int) -> dict:
    return {"mode": "webhook", "msg_id": f"msg_{change}", "change_id": change, "subscription_id": "s", "attempt": n,
            "t_send_ns": 0, "t_done_ns": 0, "status": status, "latency_ms": 1.0, "bytes_out": 400, "bytes_in": 90,
            "error": None if 200 <= status < 300 else "x"}


DELIVERIES = [attempt("c1", 1, 204), attempt("c2", 1, 204), attempt("c3", 1, 500), attempt("c3", 2, 204),
              attempt("c4", 1, 204), attempt("c5", 1, 0), attempt("c5", 2, 204), attempt("c6", 1, 0),
              attempt("c6", 2, 0)]

MARKS = {
    "window_start": {"modes": {"polling": {"requests": 10, "bytes_in": 100, "bytes_out": 200, "cpu_ns": 1000},
                               "webhook": {"requests": 1, "bytes_in": 90, "bytes_out": 400, "cpu_ns": 500}}},
    "window_end": {"modes": {"polling": {"requests": 14, "bytes_in": 500, "bytes_out": 1200, "cpu_ns": 6000},
                             "webhook": {"requests": 9, "bytes_in": 810, "bytes_out": 3600, "cpu_ns": 10500}}},
}


def tables(**extra: list[dict]) -> Tables:
    return Tables.from_frames(
        changes=[{"change_id": c, "resource_id": r, "seq": i + 1, "version": v, "t_change_ns": ms(t)}
                 for i, (c, r, v, t) in enumerate(CHANGES)],
        observations=[{"mode": m, "user": 0, "change_id": c, "t_obs_ns": ms(t)} for m, c, t in OBS],
        polls=POLLS, deliveries=DELIVERIES, **extra)


@pytest.fixture(scope="module")
def summary() -> dict:
    return summarize(tables(), W, SCENARIO, MARKS, modes=["polling", "polling_etag", "webhook"])


def test_window_changes_only(summary: dict) -> None:
    assert summary["changes"] == 5  # c2..c6
    assert summary["duration_s"] == 1.0


def test_cursor_polling(summary: dict) -> None:
    m = summary["modes"]["polling"]
    assert (m["requests"], m["empty_requests"], m["wasted_fraction"]) == (4, 2, 0.5)
    assert (m["observed"], m["lost"], m["duplicates"], m["coalesced"]) == (5, 0, 1, 0)
    assert m["requests_per_change"] == 4 / 5
    assert m["bytes_per_change"] == (1700 - 300) / 5
    assert m["cpu_s_per_change"] == pytest.approx(5000e-9 / 5)
    # latencies 50, 50, 50, 100, 600 ms
    assert m["latency_ms"] == {"mean": 170.0, "p50": 50.0, "p90": 600.0, "p99": 600.0, "max": 600.0, "n": 5}
    assert m["wasted_fraction_se"] == pytest.approx(math.sqrt(0.25 / 4))
    assert m["rtt_ms_p50"] == pytest.approx(1.0)


def test_etag_polling_coalesced_and_lost(summary: dict) -> None:
    m = summary["modes"]["polling_etag"]
    assert (m["requests"], m["empty_requests"], m["errors"]) == (10, 7, 1)
    assert m["wasted_fraction"] == 0.7
    assert (m["observed"], m["coalesced"], m["lost"], m["duplicates"]) == (2, 1, 2, 0)
    assert m["latency_ms"]["mean"] == 100.0 and m["latency_ms"]["n"] == 2
    assert m["bytes_per_change"] == 0.0  # no cost counters for this mode in the marks: nothing was spent


def test_webhook(summary: dict) -> None:
    m = summary["modes"]["webhook"]
    assert (m["requests"], m["errors"], m["retries"]) == (8, 4, 3)  # c1's attempt is outside the window
    assert (m["observed"], m["lost"], m["duplicates"]) == (4, 1, 1)
    assert m["empty_requests"] == 4 and m["wasted_fraction"] == 0.5
    assert m["latency_ms"] == {"mean": 2.5, "p50": 2.0, "p90": 4.0, "p99": 4.0, "max": 4.0, "n": 4}
    assert m["bytes_per_change"] == (4410 - 490) / 5


def test_models_beside_measurements(summary: dict) -> None:
    lam, T = 2.0, 0.25
    cursor = summary["modes"]["polling"]["model"]
    assert cursor["lambda_T"] == pytest.approx(3 * lam * T)
    assert cursor["wasted_fraction"] == pytest.approx(math.exp(-1.5))
    assert cursor["latency_mean_ms"] == pytest.approx(125.0 + 1.0)  # T/2 + measured median round trip
    etag = summary["modes"]["polling_etag"]["model"]
    assert etag["wasted_fraction"] == pytest.approx(math.exp(-0.5))
    assert etag["requests_per_change"] == pytest.approx(2.0)
    assert summary["modes"]["webhook"]["model"]["requests_per_change"] == 1.0


def test_detections_table_is_first_observation_per_mode() -> None:
    d = detections(tables(), W)
    assert len(d) == 5 + 2 + 4
    c3 = d[(d["mode"] == "polling") & (d["change_id"] == "c3")]
    assert c3["latency_ms"].tolist() == [50.0]


def test_saturation_flags_loop_lag_and_locust_cpu() -> None:
    lag = [{"server": "producer", "t_ns": ms(1000 + i), "lag_ms": 1.0, "cpu_s": 0.0} for i in range(98)]
    lag += [{"server": "producer", "t_ns": ms(1500), "lag_ms": 50.0, "cpu_s": 0.0}] * 2  # p99 of 100 = 50 ms
    hot = [{"t_ns": ms(1100 + i), "process": "locust", "cpu_pct": 97.0} for i in range(2)]
    s = summarize(tables(loop_lag=lag, harness=hot), W, SCENARIO, MARKS, modes=["polling"])
    assert s["harness_saturated"] is True
    assert s["saturation"]["producer_loop_lag_ms"] == {"p99": 50.0, "max": 50.0, "n": 100}
    assert any("producer event-loop lag p99 50.0 ms" in r for r in s["saturation"]["reasons"])
    assert any("locust (Locust) CPU above 90% in 2 one-second samples" in r for r in s["saturation"]["reasons"])


def test_not_saturated_when_quiet(summary: dict) -> None:
    assert summary["harness_saturated"] is False and summary["saturation"]["reasons"] == []


def test_late_pollers_flag_saturation() -> None:
    late = [dict(p, t_send_ns=p["t_intended_ns"] + ms(60)) for p in POLLS]  # 60 ms late on a 250 ms interval
    s = summarize(Tables.from_frames(**{**tables().__dict__, "polls": late}), W, SCENARIO, MARKS, modes=["polling"])
    assert any("sent late" in r for r in s["saturation"]["reasons"])


def test_empty_window_gives_nulls_not_errors() -> None:
    s = summarize(Tables.from_frames(), Window(0, 0, 0), SCENARIO, {}, modes=["polling", "webhook"],
                  status=RunStatus.INTERRUPTED)
    assert s["changes"] == 0 and s["partial"] is True and s["status"] == "interrupted"
    m = s["modes"]["polling"]
    assert m["requests"] == 0 and m["wasted_fraction"] is None and m["requests_per_change"] is None
    assert m["latency_ms"]["p50"] is None and m["bytes_per_change"] is None


def test_summary_has_the_design_keys(summary: dict, tmp_path) -> None:
    top = {"scenario", "duration_s", "seed", "changes", "harness_saturated", "modes"}
    mode_keys = {"kind", "requests", "empty_requests", "wasted_fraction", "observed", "lost", "duplicates",
                 "coalesced", "requests_per_change", "bytes_per_change", "cpu_s_per_change", "latency_ms", "model"}
    assert top <= summary.keys()
    for m in summary["modes"].values():
        assert mode_keys <= m.keys()
        assert {"mean", "p50", "p90", "p99", "max"} <= m["latency_ms"].keys()
    write_json(tmp_path / "s.json", summary)  # strict JSON (no NaN/Infinity) round trip
    assert json.loads((tmp_path / "s.json").read_text())["modes"]["polling"]["requests"] == 4


@pytest.mark.parametrize("p,expected", [(1, 1), (10, 1), (10.1, 2), (50, 5), (90, 9), (99, 10), (100, 10)])
def test_nearest_rank_percentile(p: float, expected: int) -> None:
    assert percentile(np.arange(1, 11, dtype=float), p) == expected


def test_latency_stats_of_nothing() -> None:
    assert latency_stats([]) == {"mean": None, "p50": None, "p90": None, "p99": None, "max": None, "n": 0}


def test_wilson_interval() -> None:
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(3.8416 / 13.8416)  # z^2/(n+z^2) when k = 0
    lo, hi = wilson_interval(5, 10)
    assert (lo, hi) == (pytest.approx(0.23659, abs=1e-5), pytest.approx(0.76341, abs=1e-5))
    assert wilson_interval(0, 0) is None


def test_poll_model_values() -> None:
    m = poll_model("poisson", 0.1, 1.0)
    assert m["wasted_fraction"] == pytest.approx(math.exp(-0.1))
    assert m["requests_per_change"] == pytest.approx(10.0)
    assert m["changes_per_useful_poll"] == pytest.approx(0.1 / (1 - math.exp(-0.1)))
    assert m["latency_mean_ms"] == 500.0
    # the 98.5% claim: lambda*T = 0.0151 gives 98.5% empty polls
    assert poll_model("poisson", 0.0151, 1.0)["wasted_fraction"] == pytest.approx(0.985, abs=1e-4)
    # a state poller sees the last change of each interval: a little less than T/2
    state = poll_model("poisson", 2.0, 1.0, state=True)["latency_mean_ms"]
    assert state == pytest.approx((0.5 - math.exp(-2) / (1 - math.exp(-2))) * 1e3)
    assert state < 500.0
    feed = poll_model("constant", 0.1, 2.0, targets=3)  # interval 10 s, T = 2 s, 3 targets
    assert feed["wasted_fraction"] == pytest.approx(0.8 ** 3)
    with pytest.raises(ValueError):
        poll_model("poisson", 0.0, 1.0)
