"""The outage model (bench.simulation.outage, `hookbench outage`) against expectations computed by hand from the
documented schedules (bench/data/delivery_profiles.toml), not from the code under test: GitHub loses every change
made during any outage, Svix delivers a change made at the outage's start iff L <= the sum of its delays and then at
the first cumulative offset >= L, Square loses nothing below its jittered schedule, Shopify's 8 consecutive failures
disable it, Svix's 5 days of continuous failure disable it; jitter bounds; the vectorised disable rules agree with
the dispatcher's own scalar ones (bench.delivery); same seed, same table; the CLI's files and exit codes."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.delivery import FailureRun, disable_reason, jittered, retry_delay
from bench.profiles import load_profiles
from bench.simulation.outage import outage_lengths, play, profile_cfg, simulate_outage, simulate_point

H, M = 3600.0, 60.0
# Svix: "Immediately, 5 seconds, 5 minutes, 30 minutes, 2 hours, 5 hours, 10 hours, 10 hours"
SVIX_OFFSETS = [0.0, 5.0, 305.0, 2105.0, 9305.0, 27305.0, 63305.0, 99305.0]  # cumulative, by hand
SVIX_SPAN = 5 + 5 * M + 30 * M + 2 * H + 5 * H + 10 * H + 10 * H  # 27 h 35 min 5 s
SQUARE_SPAN = (1 + 2 + 4 + 8 + 16 + 32) * M + 72 * H  # retries 1-6, then 72 hourly: 73 h 3 min
SHOPIFY_FIRST_RETRY = 56.47  # the data file's derived base: 8 doubling delays summing to 4 h


def one_change(cfg, outage: float, t: float = 0.0):
    """The fate of a single change at `t`, no jitter drawn (u = 0.5 is the nominal delay)."""
    u = np.full((1, cfg.attempts - 1), 0.5)
    return play(cfg, outage, np.array([t]), np.zeros(1, dtype=int), 1, u)


def test_the_hand_offsets_are_the_data_file_s() -> None:
    assert SVIX_OFFSETS[-1] == SVIX_SPAN == 99305.0


@pytest.mark.parametrize("outage", [0.5, 1.0, 60.0, 3600.0, 3 * 86400.0])
def test_github_loses_every_change_made_during_any_outage(outage: float) -> None:
    row = simulate_point(profile_cfg("github"), outage, rate=1.0, changes=300, rng=np.random.default_rng(1))
    assert row["outage_changes"] >= 300 * 0.8 and row["lost"] == row["outage_changes"]
    assert row["loss_fraction"] == 1.0 and row["delivered"] == 0 and row["disabled_fraction"] == 0.0


@pytest.mark.parametrize("outage,delay", [(3.0, 5.0), (5.0, 5.0), (6.0, 305.0), (2000.0, 2105.0),
                                          (30_000.0, 63305.0), (SVIX_SPAN, SVIX_SPAN), (SVIX_SPAN + 1, None)])
def test_svix_change_at_outage_start_is_delivered_at_the_first_offset_past_the_outage(outage: float,
                                                                                       delay: float | None) -> None:
    cfg = profile_cfg("svix", jitter=0.0)
    fate = one_change(cfg, outage)
    if delay is None:
        assert np.isnan(fate.delivered_at[0])  # L > the sum of the delays: every attempt fell in the outage
    else:
        assert fate.delivered_at[0] == pytest.approx(delay)
    assert not np.isfinite(fate.disabled_at).any()  # 5 days of failure are never reached


def test_square_loses_nothing_below_its_jittered_schedule() -> None:
    cfg = profile_cfg("square")
    assert one_change(dataclasses.replace(cfg, jitter=0.0), SQUARE_SPAN).delivered_at[0] == pytest.approx(SQUARE_SPAN)
    assert np.isnan(one_change(dataclasses.replace(cfg, jitter=0.0), SQUARE_SPAN + 1).delivered_at[0])
    # every delay is at least (1 - jitter) of its nominal value, so no change's schedule is shorter than this
    shortest = (1 - cfg.jitter) * SQUARE_SPAN
    row = simulate_point(cfg, shortest - 1, rate=1 / 600, changes=300, rng=np.random.default_rng(2))
    assert row["outage_changes"] > 0 and row["lost"] == 0 and row["disabled_fraction"] == 0.0


def test_shopify_is_disabled_by_its_eighth_consecutive_failure() -> None:
    cfg = profile_cfg("shopify", jitter=0.0)
    assert cfg.disable_after_failures == 8 and cfg.nominal_delay(1) == pytest.approx(SHOPIFY_FIRST_RETRY)

    def changes(n: int):
        t = np.arange(n, dtype=float)  # one change a second; the outage (30 s) ends before the first retry (56 s)
        return play(cfg, 30.0, t, np.zeros(n, dtype=int), 1, np.full((n, cfg.attempts - 1), 0.5))

    seven = changes(7)  # 7 failed first attempts: not disabled; each delivered at its first retry
    assert not np.isfinite(seven.disabled_at[0])
    assert seven.delivered_at == pytest.approx(np.arange(7) + SHOPIFY_FIRST_RETRY)
    eight = changes(8)  # the 8th failure (t = 7 s) disables it: all 8 are lost, though each would have been retried
    assert eight.disabled_at[0] == 7.0 and eight.disabled_by_count[0]
    assert np.isnan(eight.delivered_at).all()


def test_shopify_disabling_needs_a_rate_high_enough() -> None:
    cfg = profile_cfg("shopify")
    busy = simulate_point(cfg, 60.0, rate=1.0, changes=600, rng=np.random.default_rng(3))  # ~60 changes an outage
    assert busy["disabled_fraction"] == 1.0 and busy["loss_fraction"] == 1.0
    assert busy["disabled_by"] == "consecutive failures"
    quiet = simulate_point(cfg, 60.0, rate=1 / 3600, changes=300, rng=np.random.default_rng(3))  # one an hour
    assert quiet["disabled_fraction"] == 0.0 and quiet["lost"] == 0  # the first retry comes after the outage


def test_svix_five_days_of_continuous_failure_disable_it() -> None:
    cfg = profile_cfg("svix", jitter=0.0)
    assert cfg.disable_after == 5 * 86400
    t = np.arange(0.0, 6 * 86400, H)  # a change every hour of a 6-day outage; the first fails at t = 0
    fate = play(cfg, 6 * 86400, t, np.zeros(len(t), dtype=int), 1, np.full((len(t), cfg.attempts - 1), 0.5))
    # the first failed attempt that ends 5 days after the run began: the change made at exactly 120 h
    assert fate.disabled_at[0] == 5 * 86400 and not fate.disabled_by_count[0]
    assert np.isnan(fate.delivered_at).all()


@pytest.mark.parametrize("name", ["svix", "square", "stripe"])
def test_jitter_bounds_are_respected(name: str) -> None:
    cfg = profile_cfg(name)
    u = np.random.default_rng(4).random((2000, cfg.attempts - 1))
    nominal = np.array([cfg.nominal_delay(k) for k in range(1, cfg.attempts)])
    d = jittered(nominal[None, :], cfg.jitter, u)
    assert (d >= nominal * (1 - cfg.jitter)).all() and (d <= nominal * (1 + cfg.jitter)).all()
    # one change at the start of an outage just short of the first retry's lower bound: delivered inside the bounds
    first = nominal[0]
    fate = play(cfg, first * (1 - cfg.jitter) * 0.99, np.zeros(2000), np.arange(2000), 2000, u)
    assert ((fate.delivered_at >= first * (1 - cfg.jitter)) & (fate.delivered_at <= first * (1 + cfg.jitter))).all()
    # the dispatcher's draw and the model's are the same rule on the same uniform draw
    rng, again = random.Random(9), random.Random(9)
    assert retry_delay(cfg, 1, rng) == pytest.approx(float(jittered(first, cfg.jitter, again.random())))


def _scalar_disable(cfg, outage: float, t: np.ndarray, u: np.ndarray, hang: float) -> float:
    """The dispatcher's way: attempts in the order they end, FailureRun and disable_reason (bench.delivery)."""
    events = []
    for i, ti in enumerate(t):
        send = ti
        for k in range(cfg.attempts):
            ok = send < 0 or send >= outage
            events.append((send if ok else send + hang, send, ok))
            if ok or k == cfg.attempts - 1:
                break
            send += hang + float(jittered(cfg.nominal_delay(k + 1), cfg.jitter, u[i, k]))
    run = FailureRun()
    for done, send, ok in sorted(events):
        run.record(ok, send)
        if not ok and disable_reason(cfg, 503, run, done) is not None:
            return done
    return np.inf


@pytest.mark.parametrize("seed", range(6))
def test_the_vectorised_disable_rules_agree_with_the_dispatcher_s_scalar_ones(seed: int) -> None:
    rng = np.random.default_rng(seed)
    cfg = dataclasses.replace(profile_cfg("svix"), disable_after_failures=int(rng.integers(2, 9)),
                              disable_after=float(rng.uniform(5, 400)), timeout=3.0)
    outage = float(rng.uniform(10, 600))
    t = np.sort(rng.uniform(-20, outage + 5, int(rng.integers(1, 40))))
    u = rng.random((len(t), cfg.attempts - 1))
    for receiver, hang in (("refuse", 0.0), ("hang", cfg.timeout)):
        fate = play(cfg, outage, t, np.zeros(len(t), dtype=int), 1, u, receiver)
        assert fate.disabled_at[0] == _scalar_disable(cfg, outage, t, u, hang), receiver


def test_the_grid_spans_one_second_to_three_days_with_points_at_each_step() -> None:
    cfg = profile_cfg("svix")
    grid = outage_lengths(cfg)
    assert grid[0] == 1.0 and grid[-1] == 3 * 86400 and (np.diff(grid) > 0).all()
    for c in SVIX_OFFSETS[1:]:
        assert any(np.isclose(grid, c)) and any(np.isclose(grid, c * (1 - cfg.jitter)))


def test_same_seed_same_table_and_another_seed_another() -> None:
    kw = dict(lengths=(30.0, 3600.0, 86400.0), rate=0.05, changes=200)
    a, _ = simulate_outage(("shopify", "svix"), seed=5, **kw)
    b, _ = simulate_outage(("shopify", "svix"), seed=5, **kw)
    c, _ = simulate_outage(("shopify", "svix"), seed=6, **kw)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)
    assert len(a) == 6 and set(a["profile"]) == {"shopify", "svix"}


# --- the command ----------------------------------------------------------------------------------------------

def test_hookbench_outage_writes_its_run_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["outage", "--profiles", "github,svix", "--lengths", "10s,1h,30h", "--changes", "100", "--seed", "3",
                 "--out", str(tmp_path)]) == 0
    (run,) = tmp_path.iterdir()
    s = json.loads((run / "summary.json").read_text())
    assert s["kind"] == "outage" and s["model"] is True and "not a measurement" in s["label"]
    assert s["profiles"]["github"]["loss_from_s"] == 10.0 and s["profiles"]["svix"]["loss_from_s"] == 30 * H
    table = pd.read_parquet(run / "outage.parquet")
    assert len(table) == 6 and list(table["outage_s"][:3]) == [10.0, H, 30 * H]
    m = json.loads((run / "manifest.json").read_text())
    assert m["kind"] == "outage" and m["seed"] == 3 and m["parameters"]["changes_per_point"] == 100
    svix_read = {str(entry["read"]) for key, entry in load_profiles()["svix"].items() if key != "name"}
    assert m["profiles"]["svix"]["read"] == sorted(svix_read)  # the days its values were read
    assert m["profiles"]["svix"]["data_file"]["retry_delays"]["source"] == "https://docs.svix.com/retries"
    md, html = (run / "report.md").read_text(), (run / "report.html").read_text()
    assert "Model prediction, not a measurement" in md and "](figures/outage.png)" in md
    assert (run / "figures" / "outage.png").read_bytes().startswith(b"\x89PNG")
    assert html.count('src="data:image/png;base64,') == 1
    out = capsys.readouterr().out
    assert "svix" in out and "not a measurement" in out and "report: " in out


@pytest.mark.parametrize("argv,fragment", [
    (["--profiles", "github,paypal"], "unknown: paypal"),
    (["--lengths", "10s,soon"], "--lengths"),
    (["--lengths", "0s"], "positive durations"),
    (["--rate", "0"], "--rate"),
    (["--rate", "50"], "lower --rate"),
    (["--changes", "0"], "--changes"),
    (["--receiver", "crash"], "refuse, hang"),
    (["--jitter", "1.5"], "--jitter"),
])
def test_bad_input_exits_2_with_the_flag_and_leaves_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                             argv: list[str], fragment: str) -> None:
    assert main(["outage", *argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_reproduce_all_writes_c9_by_provider_as_a_model_prediction(tmp_path: Path) -> None:
    assert main(["reproduce", "all", "--only", "C9", "--quick", "--out", str(tmp_path)]) == 0
    (cdir,) = tmp_path.iterdir()
    doc = json.loads((cdir / "summary.json").read_text())
    c9 = doc["claims"]["C9"]
    assert c9["verdict"] == "holds only when" and c9["model"] is True and c9["measured"]["model_prediction"]
    assert "github: any outage" in c9["verdict_text"] and "svix: outages of" in c9["verdict_text"]
    assert set(c9["measured"]["by_provider"]) == {"stripe", "github", "shopify", "slack", "svix", "square",
                                                  "standard"}
    (run,) = c9["runs"]
    assert (cdir / run / "outage.parquet").is_file() and (cdir / run / "report.html").is_file()
    md = (cdir / "claims.md").read_text()
    section = md.split("\n## C9: ")[1]
    assert "**Model prediction (not measured):**" in section and "**Measured:**" not in section
