"""When the load generator, not the system under test, set the pace: Locust's CPU limit and the reasons a summary
gives, shared by a run's summary (`bench.analysis.summary`) and a load run's (`bench.orchestration.load`)."""

from __future__ import annotations

from typing import Callable

import pandas as pd

__all__ = ["LOCUST_CPU_LIMIT_PCT", "HOT_SAMPLES", "locust_cpu_reasons"]

LOCUST_CPU_LIMIT_PCT = 90.0  # Locust's own warning threshold
HOT_SAMPLES = 2  # one-second samples above the limit before a process counts as saturated (one may be a blip)


def locust_cpu_reasons(samples: pd.DataFrame, warnings: int, *, name: Callable[[str], str] = str,
                       consequence: str = "") -> list[str]:
    """One reason per Locust process whose CPU % (`samples`: columns process, cpu_pct) passed the limit in
    HOT_SAMPLES or more samples, then one for Locust's own warnings (`warnings`, counted in its logs).

    `name` words a process name in the reason; `consequence` is appended to each process's reason.
    """
    reasons = []
    for process, cpu in samples.groupby("process")["cpu_pct"]:
        hot = int((cpu > LOCUST_CPU_LIMIT_PCT).sum())
        if hot >= HOT_SAMPLES:
            reasons.append(f"{name(str(process))} CPU above {LOCUST_CPU_LIMIT_PCT:.0f}% in {hot} one-second samples"
                           + consequence)
    if warnings:
        reasons.append(f"Locust warned {warnings} times that its CPU passed {LOCUST_CPU_LIMIT_PCT:.0f}%")
    return reasons
