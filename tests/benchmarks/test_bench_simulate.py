"""Simulator throughput (`make bench`): simulated polls per second for a Zapier-scale fleet (30M polls in a
day of 1-, 2- and 15-minute pollers) and for a scenario lengthened with --polls. The figure is in
`extra_info["polls_per_s"]`; in `make test` each runs once (--benchmark-disable) so it cannot rot."""

from __future__ import annotations

from pathlib import Path

from bench.config import load_scenario
from bench.simulation.calibrate import calibrate
from bench.simulation.population import fleet_cfg, simulate_fleet
from bench.simulation.simulate import simulate_scenario

REPO = Path(__file__).resolve().parents[2]


def test_fleet_30m_polls(benchmark) -> None:  # type: ignore[no-untyped-def]
    cal = calibrate()
    cfg = fleet_cfg(subscriptions=cal.subscriptions, rate_median=cal.rate_median, intervals=[T for T, _ in cal.mix],
                    weights=[w for _, w in cal.mix], duration=cal.period_s, sigma=cal.sigma)
    result = benchmark.pedantic(simulate_fleet, args=(cfg, 1), rounds=3, iterations=1)
    s = result.summary
    assert s["polls"] >= 30_000_000
    benchmark.extra_info.update(polls=s["polls"], polls_per_s=s["simulation"]["polls_per_s"])


def test_scenario_3m_polls(benchmark, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sc = load_scenario(REPO / "scenarios" / "default.toml")
    dirs = iter(range(100))
    summary = benchmark.pedantic(lambda: simulate_scenario(sc, tmp_path / str(next(dirs)), polls=3_000_000),
                                 rounds=3, iterations=1)
    assert summary["simulation"]["polls_in_window"] >= 3_000_000
    benchmark.extra_info.update(polls=summary["simulation"]["polls"],
                                polls_per_s=summary["simulation"]["polls_per_s"])
