"""The virtual-time simulator: exact on hand-made schedules, in agreement with the model where the model is
exact, seeded, and able to simulate a million subscriptions and 30M polls; the [fleet] section's errors."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.config import load_scenario, scenario_from_dict
from bench.errors import RunDirError, ScenarioError
from bench.simulation.calibrate import (
    ZAPIER,
    calibrate,
    heatmap_grid,
    reproduce_fleet,
    sensitivity_table,
    solve_rate_median,
)
from bench.simulation.population import allocate, fleet_cfg, model_useful_fraction, simulate_fleet
from bench.simulation.simulate import simulate_scenario, summary_lines
from bench.simulation.vpoll import poll_range, seen_by

DESIGN_MODE_KEYS = {"kind", "requests", "empty_requests", "wasted_fraction", "observed", "lost", "duplicates",
                    "coalesced", "requests_per_change", "bytes_per_change", "cpu_s_per_change", "latency_ms", "model"}


def scenario(process: dict, *, resources: int = 1, interval: str = "1s", duration: float = 400, warmup: float = 3,
             drain: float = 3, styles: tuple[str, ...] = ("cursor", "etag"), seed: int = 1, **extra: dict):
    data = {"name": "sim", "seed": seed, "run": {"duration": duration, "warmup": warmup, "drain": drain},
            "resources": {"count": resources}, "changes": process,
            "polling": {"interval": interval, "styles": list(styles)}, **extra}
    return scenario_from_dict(data, "test.toml")


# --- the core, by hand ----------------------------------------------------------------------------

def test_first_poll_and_window_counts_by_hand() -> None:
    # one subscriber, phase 0.25 s, every 1 s: polls at 0.25, 1.25, 2.25, 3.25, 4.25
    t = np.array([0.1, 0.2, 1.5, 3.9, 3.95])
    seen = seen_by(np.zeros(5, dtype=np.int64), t, np.array([0.25]), np.array([1.0]), k_min=0)
    assert seen.k.tolist() == [0, 0, 2, 4, 4]
    assert np.allclose((seen.t_poll - t) * 1e3, [150, 50, 750, 350, 300])
    assert seen.first.tolist() == [True, False, True, True, False]
    assert seen.last.tolist() == [False, True, True, False, True]
    assert seen.group_sizes().tolist() == [2, 1, 2]
    lo, hi = poll_range(np.array([0.25]), np.array([1.0]), 0.0, 5.0, k_min=0)
    assert (lo[0], hi[0]) == (0, 5)  # 5 polls, 3 of them useful
    lo, hi = poll_range(np.array([0.25]), np.array([1.0]), 1.0, 3.0, k_min=0)
    assert (lo[0], hi[0]) == (1, 3)  # the polls at 1.25 and 2.25
    # without k_min the schedule extends into the past: a change at -0.9 is seen by the poll at -0.75
    past = seen_by(np.zeros(1, dtype=np.int64), np.array([-0.9]), np.array([0.25]), np.array([1.0]))
    assert past.k.tolist() == [-1] and past.t_poll.tolist() == [-0.75]


def test_constant_changes_every_four_polls_are_exact(tmp_path: Path) -> None:
    # each resource changes every 4 s, polled every 1 s: exactly one poll in four is useful, and every
    # change of a resource waits the same time (its phase difference), whatever the drawn phases
    sc = scenario({"process": "constant", "interval": "4s"}, resources=3)
    s = simulate_scenario(sc, tmp_path / "run")
    cursor, etag = s["modes"]["polling"], s["modes"]["polling_etag"]
    assert s["changes"] == 300  # 400 s / 4 s per resource
    assert etag["requests"] == 1200 and etag["empty_requests"] == 900 and etag["wasted_fraction"] == 0.75
    assert etag["observed"] == 300 and etag["coalesced"] == 0 and etag["lost"] == 0
    assert etag["model"]["wasted_fraction"] == pytest.approx(0.75)
    assert cursor["requests"] == 400 and cursor["observed"] == 300 and cursor["lost"] == 0
    assert cursor["wasted_fraction"] == pytest.approx(cursor["model"]["wasted_fraction"], abs=0.25)
    det = pd.read_parquet(tmp_path / "run" / "detections.parquet")
    for _, g in det.groupby(["mode", "resource_id"]):
        lat = g["latency_ms"].to_numpy()
        assert 0 <= lat.min() and lat.max() < 1000 and np.ptp(lat) < 1e-6


def test_state_polling_coalesces_exactly(tmp_path: Path) -> None:
    # a change every 250 ms, a poll every 1 s: every poll useful, and it sees the last of 4 changes
    sc = scenario({"process": "constant", "interval": "250ms"}, resources=1)
    s = simulate_scenario(sc, tmp_path / "run")
    etag, cursor = s["modes"]["polling_etag"], s["modes"]["polling"]
    assert s["changes"] == 1600
    assert etag["requests"] == 400 and etag["empty_requests"] == 0
    # the polls that see window changes: the 400 in the window, and the first of the drain when it sees the
    # window's tail (the generator stops at the window's end), less the first of the window when all it
    # sees is older: 400 or 401, depending on the phases
    assert etag["observed"] in (400, 401) and etag["coalesced"] == 1600 - etag["observed"] and etag["lost"] == 0
    assert cursor["observed"] == 1600 and cursor["followups"] == 0 and cursor["duplicates"] == 0


def test_a_full_cursor_page_is_followed_by_another_request(tmp_path: Path) -> None:
    # 20 resources each changing every 250 ms: 80 changes per poll, page size 30 -> 3 requests per poll
    sc = scenario({"process": "constant", "interval": "250ms"}, resources=20, styles=("cursor",),
                  **{"webhook": {"enabled": False}})
    sc = scenario_from_dict({**sc.to_dict(), "polling": {**sc.to_dict()["polling"], "cursor_limit": 30}}, "t")
    m = simulate_scenario(sc, tmp_path / "run")["modes"]["polling"]
    assert m["followups"] == 800 and m["requests"] == 1200 and m["empty_requests"] == 0


def test_changes_after_the_drain_are_lost_not_coalesced(tmp_path: Path) -> None:
    # polls every 10 s, a 1 s drain: window changes whose first poll comes after the drain are lost
    sc = scenario({"process": "poisson", "rate": 0.05}, resources=20, interval="10s", duration=2000, drain=1)
    s = simulate_scenario(sc, tmp_path / "run")
    for mode in ("polling", "polling_etag"):
        m = s["modes"][mode]
        assert m["lost"] > 0 and m["observed"] + m["lost"] + m["coalesced"] == s["changes"]


# --- against the model ----------------------------------------------------------------------------

@pytest.mark.parametrize("rate, interval", [(0.1, "1s"), (0.02, "1s"), (0.001, "15s")])
def test_poisson_agrees_with_the_model_within_3_se(tmp_path: Path, rate: float, interval: str) -> None:
    sc = scenario({"process": "poisson", "rate": rate}, resources=20, interval=interval, seed=3)
    s = simulate_scenario(sc, tmp_path / "run", polls=400_000)
    assert s["simulation"]["polls_in_window"] >= 400_000
    for mode in ("polling", "polling_etag"):
        m = s["modes"][mode]
        model = m["model"]
        se = math.sqrt(model["wasted_fraction"] * (1 - model["wasted_fraction"]) / m["requests"])
        assert abs(m["wasted_fraction"] - model["wasted_fraction"]) < 3 * se + 1e-12, (mode, m["wasted_fraction"])
    # latency: iid given the schedule (Poisson changes are uniform in their poll interval)
    det = pd.read_parquet(tmp_path / "run" / "detections.parquet")
    for mode in ("polling", "polling_etag"):
        m = s["modes"][mode]
        lat = det.loc[det["mode"] == mode, "latency_ms"]
        se = lat.std() / math.sqrt(m["latency_ms"]["n"])
        assert abs(m["latency_ms"]["mean"] - m["model"]["latency_mean_ms"]) < 3 * se, mode


def test_bursty_changes_waste_more_than_poisson_with_the_same_mean_rate(tmp_path: Path) -> None:
    sc = scenario({"process": "bursty", "rate": 0.05, "on": "5s", "off": "95s"}, resources=20, seed=5)
    s = simulate_scenario(sc, tmp_path / "run", polls=400_000)
    m = s["modes"]["polling_etag"]
    assert "Poisson" in m["model"]["note"]
    assert m["wasted_fraction"] - m["model"]["wasted_fraction"] > 10 * m["wasted_fraction_se"]


def test_fixed_rate_fleet_agrees_with_the_model(tmp_path: Path) -> None:
    cfg = fleet_cfg(subscriptions=20_000, rate_median=1e-3, intervals=[60.0, 300.0], weights=[1, 1],
                    duration=6 * 3600, distribution="fixed", sigma=0)
    s = simulate_fleet(cfg, 7).summary
    assert s["polls"] == 10_000 * 360 + 10_000 * 72  # 6 h / T exactly, for every phase
    for row in s["intervals"]:  # fixed rate: the polls of one class are independent Bernoulli trials
        p = row["model_wasted_fraction"]
        assert abs(row["wasted_fraction"] - p) < 3 * math.sqrt(p * (1 - p) / row["polls"])
        assert row["latency_mean_ms"] == pytest.approx(row["interval_s"] / 2 * 1e3, rel=0.02)
    assert abs(s["wasted_fraction"] - s["model"]["wasted_fraction"]) < 3 * s["wasted_fraction_se"]


def test_lognormal_fleet_agrees_with_the_model_within_3_cluster_se() -> None:
    cfg = fleet_cfg(subscriptions=100_000, rate_median=2e-4, intervals=[60.0, 900.0], weights=[1, 3],
                    duration=86_400, sigma=1.5)
    s = simulate_fleet(cfg, 11).summary
    se = s["wasted_fraction_se_cluster"]
    assert se > s["wasted_fraction_se"]  # rate heterogeneity adds variance the binomial SE misses
    assert abs(s["wasted_fraction"] - s["model"]["wasted_fraction"]) < 3 * se


def test_a_million_subscriptions_and_30_million_polls() -> None:
    cfg = fleet_cfg(subscriptions=1_000_000, rate_median=1.5e-5, intervals=[900.0], duration=8 * 3600, sigma=1.0)
    r = simulate_fleet(cfg, 1)
    s = r.summary
    assert s["subscriptions"] == 1_000_000 and s["polls"] == 32_000_000  # 32 polls each, exactly
    assert len(r.subscriptions) == 1_000_000 and int(r.subscriptions["polls"].sum()) == s["polls"]
    assert s["useful_polls"] == int(r.subscriptions["useful"].sum()) and s["changes"] == len(r.latencies)
    assert abs(s["wasted_fraction"] - s["model"]["wasted_fraction"]) < 3 * s["wasted_fraction_se_cluster"]


# --- calibration ----------------------------------------------------------------------------------

def test_calibration_hits_its_targets_and_the_simulation_checks_it() -> None:
    cal = calibrate()
    # the fewest subscriptions reaching 30M: one more 1-minute subscription adds 1440 polls a day
    assert ZAPIER["polls"] <= cal.expected_polls < ZAPIER["polls"] + 1440
    mix = cal.mix
    frac = model_useful_fraction([T for T, _ in mix], [w for _, w in mix], "lognormal", cal.rate_median, 1.0)
    assert frac == pytest.approx(ZAPIER["useful_polls"] / ZAPIER["polls"], rel=1e-9)
    rep = reproduce_fleet(seed=2)
    check = rep.check
    assert check["polls"] >= 30_000_000 and check["passed"], check
    assert rep.to_dict()["calibration"]["kind"] == "calibration"


def test_calibration_for_one_interval_and_fixed_rates_is_closed_form() -> None:
    # all subscriptions at one rate, polled every T: 1 - e^(-lambda*T) = u  <=>  lambda = -ln(1-u)/T
    u = 460_000 / 30_000_000
    assert solve_rate_median(((900.0, 1.0),), u, sigma=0) == pytest.approx(-math.log1p(-u) / 900, rel=1e-9)
    assert calibrate(((60.0, 1.0),), period=86_400).subscriptions == math.ceil(30_000_000 / 1440)


def test_sensitivity_needs_rarer_changes_for_longer_intervals_and_wider_spreads() -> None:
    rows = sensitivity_table(sigmas=(0.0, 1.0, 2.0))
    by = {(r["mix"], r["rate_sigma"]): r["median_change_interval_s"] for r in rows}
    for sigma in (0.0, 1.0, 2.0):
        assert by[("all 1m", sigma)] < by[("all 2m", sigma)] < by[("all 15m", sigma)]
    for mix in ("all 1m", "all 15m"):
        assert by[(mix, 0.0)] < by[(mix, 1.0)] < by[(mix, 2.0)]


def test_heatmap_grid_matches_the_model_cell_by_cell() -> None:
    g = heatmap_grid([60.0, 600.0], [1e-4, 1e-3], polls_per_cell=50_000, subscriptions_per_cell=200, seed=4)
    sim, model, polls = np.array(g["wasted_fraction"]), np.array(g["model_wasted_fraction"]), np.array(g["polls"])
    assert sim.shape == (2, 2) and (polls >= 49_000).all()
    se = np.sqrt(model * (1 - model) / polls)
    assert (np.abs(sim - model) < 3 * se).all()
    assert g["claim_lambda_T"] == pytest.approx(0.0151, abs=1e-4)


def test_allocate_shares_out_exactly() -> None:
    assert allocate(10, [0.25, 0.25, 0.5]).tolist() == [3, 2, 5] or allocate(10, [0.25, 0.25, 0.5]).sum() == 10
    assert allocate(7, [1, 1, 1]).sum() == 7 and allocate(1_000_000, [1, 3]).tolist() == [250_000, 750_000]


# --- seeding, run directory, summary keys ---------------------------------------------------------

def test_same_seed_same_result_other_seed_other_result(tmp_path: Path) -> None:
    sc = scenario({"process": "poisson", "rate": 0.1}, resources=10)

    def run(name: str, seed: int | None = None) -> dict:
        s = simulate_scenario(sc, tmp_path / name, seed=seed)
        return {k: v for k, v in s["modes"].items()}

    assert run("a") == run("b")
    assert run("c", seed=99) != run("d")
    cfg = fleet_cfg(subscriptions=1000, rate_median=1e-3, intervals=[60.0], duration=3600)
    assert simulate_fleet(cfg, 1).subscriptions.equals(simulate_fleet(cfg, 1).subscriptions)
    assert not simulate_fleet(cfg, 1).subscriptions.equals(simulate_fleet(cfg, 2).subscriptions)


def test_run_directory_has_the_live_keys_and_says_what_is_not_simulated(tmp_path: Path) -> None:
    sc = load_scenario(Path(__file__).resolve().parents[1] / "scenarios" / "default.toml")
    s = simulate_scenario(sc, tmp_path / "run")
    assert s["simulated"] is True and s["harness_saturated"] is False
    for key in ("scenario", "duration_s", "seed", "changes", "modes"):
        assert key in s
    for mode, m in s["modes"].items():
        assert DESIGN_MODE_KEYS <= set(m), mode
        assert m["bytes_per_change"] is None and m["cpu_s_per_change"] is None
    hook = s["modes"]["webhook"]
    assert hook["requests"] == s["changes"] and hook["latency_ms"]["mean"] is None and hook["latency_ms"]["note"]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["kind"] == "simulated" and manifest["seed"] == 42 and manifest["scenario"]["name"] == "default"
    assert manifest["versions"]["numpy"] and manifest["time_scale"] == 1.0
    assert json.loads((tmp_path / "run" / "summary.json").read_text()) == json.loads(json.dumps(s))
    assert "polls/s" in summary_lines(s)[0]
    with pytest.raises(RunDirError, match="not empty"):
        simulate_scenario(sc, tmp_path / "run")


def test_polls_lengthens_the_window_and_big_tables_are_sampled(tmp_path: Path) -> None:
    sc = scenario({"process": "poisson", "rate": 0.5}, resources=5, duration=10, styles=("cursor",))
    s = simulate_scenario(sc, tmp_path / "run", polls=500_000)
    assert s["window"]["extended_for_polls"] and s["simulation"]["polls_in_window"] >= 500_000
    info = s["tables"]["detections"]["polling"]
    assert info["sampled"] and info["of"] == s["modes"]["polling"]["observed"]
    assert len(pd.read_parquet(tmp_path / "run" / "detections.parquet")) == info["rows"]


def test_scenario_with_a_fleet_writes_the_fleet_section(tmp_path: Path) -> None:
    sc = scenario({"process": "poisson", "rate": 0.1}, fleet={"subscriptions": 5000, "duration": "6h",
                                                              "intervals": ["1m", "15m"], "interval_weights": [1, 1],
                                                              "rate_median": 1e-4})
    s = simulate_scenario(sc, tmp_path / "run")
    f = s["fleet"]
    assert f["subscriptions"] == 5000 and [r["interval_s"] for r in f["intervals"]] == [60.0, 900.0]
    assert len(pd.read_parquet(tmp_path / "run" / "fleet_subscriptions.parquet")) == 5000
    assert (tmp_path / "run" / "fleet_intervals.parquet").exists()
    assert (tmp_path / "run" / "fleet_latency.parquet").exists()


# --- [fleet] errors -------------------------------------------------------------------------------

BASE = """\
name = "f"
[run]
duration = "10s"
[resources]
count = 2
[changes]
rate = 0.1
[polling]
interval = "1s"
[fleet]
"""


@pytest.mark.parametrize("body, key, words", [
    ("", "fleet.rate_median", "is required"),
    ("rate_median = 0", "fleet.rate_median", "must be a number > 0"),
    ("rate_median = 1e-4\nsubscriptions = 0", "fleet.subscriptions", "from 1 to 100000000"),
    ('rate_median = 1e-4\nduration = "-1h"', "fleet.duration", "virtual duration"),
    ('rate_median = 1e-4\nintervals = []', "fleet.intervals", "non-empty list"),
    ('rate_median = 1e-4\nintervals = ["1m", "x"]', "fleet.intervals", "non-empty list"),
    ('rate_median = 1e-4\ninterval_weights = [1, 2]', "fleet.interval_weights", "one weight per interval"),
    ('rate_median = 1e-4\ninterval_weights = [0, 0, 0]', "fleet.interval_weights", "not all 0"),
    ('rate_median = 1e-4\nrate_distribution = "pareto"', "fleet.rate_distribution", "lognormal, fixed"),
    ('rate_median = 1e-4\nrate_sigma = 9', "fleet.rate_sigma", "from 0 to 5"),
    ('rate_median = 1e-4\nprocess = "bursty"', "fleet.on", "is required"),
    ('rate_median = 1e-4\nstyle = "etag"', "fleet.style", "one of cursor"),
    ('rate_median = 1e-4\ncolour = 1', "fleet.colour", "unknown key"),
])
def test_bad_fleet_values_name_file_key_and_expected(tmp_path: Path, body: str, key: str, words: str) -> None:
    p = tmp_path / "f.toml"
    p.write_text(textwrap.dedent(BASE) + body + "\n")
    with pytest.raises(ScenarioError) as e:
        load_scenario(p)
    assert e.value.key == key and words in e.value.expected and str(p) in str(e.value)


def test_fleet_section_is_optional_and_reads_days() -> None:
    base = {"name": "f", "run": {"duration": 10}, "resources": {"count": 1}, "changes": {"rate": 0.1},
            "polling": {"interval": "1s"}}
    assert scenario_from_dict(base, "x").fleet is None
    sc = scenario_from_dict({**base, "fleet": {"rate_median": 1e-4, "duration": "1d"}}, "x")
    assert sc.fleet is not None and sc.fleet.duration == 86_400.0 and sc.fleet.interval_weights == (1 / 3,) * 3
    assert scenario_from_dict(sc.to_dict(), "x") == scenario_from_dict(sc.to_dict(), "x")
    assert scenario_from_dict(sc.to_dict(), "x").fleet == sc.fleet
    over = scenario_from_dict(base, "x", ["fleet.rate_median=2e-4", 'fleet.intervals=["2m"]'])
    assert over.fleet is not None and over.fleet.intervals == (120.0,)
