"""Analytic predictions shown beside measurements (always labelled as model, never as measured).

For a poll target that changes as a Poisson process of rate lam, polled every T:
P(empty poll) = exp(-lam*T); mean detection latency = T/2; changes per useful poll = lam*T/(1-exp(-lam*T));
polls per change = 1/(lam*T). For a target changing every I seconds with a uniform random phase, and
k such targets behind one poll (a feed): P(empty) = max(0, 1 - T/I)^k.
"""

from __future__ import annotations

import math

__all__ = ["poll_model"]


def poll_model(process: str, lam: float, T: float, targets: int = 1) -> dict[str, float]:
    """Model of one poller. `lam` = mean changes/s of one target; `targets` = targets behind each poll.

    Returns wasted_fraction, latency_mean_ms (T/2, without the round trip), requests_per_change,
    changes_per_useful_poll and lambda_T (changes per poll interval seen by one poll).
    """
    if lam <= 0 or T <= 0 or targets < 1:
        raise ValueError("lam, T must be > 0 and targets >= 1")
    lam_view = lam * targets
    lt = lam_view * T
    if process == "poisson":
        p_empty = math.exp(-lt)
    elif process == "constant":
        p_empty = max(0.0, 1.0 - T * lam) ** targets  # interval I = 1/lam
    else:
        raise ValueError(f"no model for change process {process!r}")
    useful = 1.0 - p_empty
    return {
        "wasted_fraction": p_empty,
        "latency_mean_ms": T / 2.0 * 1e3,
        "requests_per_change": 1.0 / lt,
        "changes_per_useful_poll": lt / useful if useful > 0 else math.inf,
        "lambda_T": lt,
    }
