"""Change processes: seeded, in time order, and with the rates they claim."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from bench.workload import change_schedule


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
                                            ("bursty", {"rate": 1})])
def test_bad_parameters(process: str, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        change_schedule(process, 3, 1, **kwargs)
