"""Change processes: seeded, in time order, and with the rates they claim."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from bench.workload import change_schedule, change_times


def take(it, n):  # type: ignore[no-untyped-def]
    return list(itertools.islice(it, n))


def test_same_seed_same_schedule_other_seed_other_schedule() -> None:
    a = take(change_schedule("poisson", 10, 5, rate=0.5), 200)
    assert a == take(change_schedule("poisson", 10, 5, rate=0.5), 200)
    assert a != take(change_schedule("poisson", 10, 6, rate=0.5), 200)


def test_poisson_rate_and_uniform_resources() -> None:
    n, resources, rate = 40_000, 8, 0.25
    events = take(change_schedule("poisson", resources, 1, rate=rate), n)
    times = np.array([t for t, _ in events])
    assert np.all(np.diff(times) > 0)
    measured = n / times[-1]
    # n events of a Poisson process: the rate estimate has relative SE 1/sqrt(n) = 0.5%; allow 4 SE
    assert abs(measured / (resources * rate) - 1) < 4 / np.sqrt(n)
    counts = np.bincount([r for _, r in events], minlength=resources)
    expected = n / resources
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 24.3  # chi-square, 7 degrees of freedom, p = 0.001
    # exponential gaps: coefficient of variation 1
    gaps = np.diff(times)
    assert abs(gaps.std() / gaps.mean() - 1) < 0.03


def test_constant_process_each_resource_every_interval() -> None:
    events = take(change_schedule("constant", 5, 3, interval=2.0), 50)
    times = [t for t, _ in events]
    assert times == sorted(times)
    for rid in range(5):
        own = [t for t, r in events if r == rid]
        assert len(own) == 10
        assert np.allclose(np.diff(own), 2.0)
        assert 0 <= own[0] < 2.0


@pytest.mark.parametrize("process,kwargs", [("poisson", {}), ("constant", {}), ("poisson", {"rate": -1}),
                                            ("bursty", {"rate": 1}), ("trace", {})])
def test_bad_parameters(process: str, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        change_schedule(process, 3, 1, **kwargs)


def test_change_times_poisson_with_a_rate_per_resource() -> None:
    rates = np.array([0.01, 0.1, 1.0])
    t, r = change_times("poisson", 3, 20_000.0, np.random.default_rng(4), rate=rates)
    assert np.all(np.diff(t) >= 0) and t.min() >= 0 and t.max() < 20_000
    counts = np.bincount(r, minlength=3)
    expected = rates * 20_000
    assert np.all(np.abs(counts - expected) < 4 * np.sqrt(expected))


def test_change_times_constant_every_interval_from_a_phase() -> None:
    t, r = change_times("constant", 4, 100.0, np.random.default_rng(2), interval=np.array([1.0, 2.0, 5.0, 50.0]))
    for rid, interval in enumerate((1.0, 2.0, 5.0, 50.0)):
        own = t[r == rid]
        assert np.allclose(np.diff(own), interval) and 0 <= own[0] < interval
        assert len(own) in (int(100 / interval), int(100 / interval) + 1)


def test_bursty_keeps_its_mean_rate_and_is_burstier_than_poisson() -> None:
    rate, on, off, horizon, n = 0.2, 2.0, 18.0, 20_000.0, 200
    t, r = change_times("bursty", n, horizon, np.random.default_rng(5), rate=rate, on=on, off=off)
    expected = rate * horizon * n
    # the count of an on/off-modulated Poisson process varies more than Poisson's: allow 5% (many SE here)
    assert abs(t.size / expected - 1) < 0.05
    gaps = np.diff(t[r == 7])
    assert gaps.std() / gaps.mean() > 1.5  # Poisson gaps have CV 1
    on_rate = rate * (on + off) / on
    short = gaps[gaps < on]  # gaps inside a burst are exponential with the on rate
    assert abs(1 / short.mean() - on_rate) / on_rate < 0.35


def test_bursty_live_schedule_is_seeded() -> None:
    a = take(change_schedule("bursty", 10, 5, rate=0.5, on=1.0, off=4.0), 300)
    assert a == take(change_schedule("bursty", 10, 5, rate=0.5, on=1.0, off=4.0), 300)
    assert [x[0] for x in a] == sorted(x[0] for x in a)


@pytest.mark.parametrize("process,kwargs", [("bursty", {"rate": 1.0, "on": 1.0}),
                                            ("bursty", {"rate": 1.0, "on": 0, "off": 1}),
                                            ("trace", {}), ("weekly", {"rate": 1.0})])
def test_change_times_bad_parameters(process: str, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        change_times(process, 3, 10.0, np.random.default_rng(1), **kwargs)
