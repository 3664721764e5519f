"""Analytic predictions shown beside measurements (always labelled as model, never as measured).

For a poll target that changes as a Poisson process of rate lam, polled every T:
P(empty poll) = exp(-lam*T); mean detection latency = T/2; changes per useful poll = lam*T/(1-exp(-lam*T));
polls per change = 1/(lam*T). A state poller (ETag) only ever sees the *last* change of an interval, and
the last of several Poisson events sits nearer the interval's end: its mean latency is
1/lam - T*e^(-lam*T)/(1-e^(-lam*T)) (slightly under T/2; equal to it as lam*T -> 0). For a target changing
every I seconds with a uniform random phase, and k such targets behind one poll (a feed):
P(empty) = max(0, 1 - T/I)^k.

An event stream (SSE) has no poll to wait for: each change is written to the held connection once committed,
so its latency is the one-way delivery time alone (not modelled). Its bytes per change are one event plus the
heartbeats of the idle gaps: a gap G between changes (Poisson, total rate Lambda) gets floor(G/H) heartbeats,
and E[floor(G/H)] = sum_k P(G >= kH) = 1/(e^(Lambda*H) - 1) per change.
"""

from __future__ import annotations

import math

__all__ = ["poll_model", "stream_model"]


def poll_model(process: str, lam: float, T: float, targets: int = 1, *, state: bool = False) -> dict[str, float | None]:
    """Model of one poller. `lam` = mean changes/s of one target; `targets` = targets behind each poll;
    `state` = the poll returns only the latest state (ETag polling), not every change (cursor feed).

    Returns wasted_fraction, latency_mean_ms (without the round trip), requests_per_change,
    changes_per_useful_poll (None when no poll can be useful) and lambda_T (changes per interval per poll).
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
    latency_s = T / 2.0
    if state and process == "poisson" and lt > 1e-9:
        latency_s = 1.0 / lam_view - T * math.exp(-lt) / -math.expm1(-lt)
    return {
        "wasted_fraction": p_empty,
        "latency_mean_ms": latency_s * 1e3,
        "requests_per_change": 1.0 / lt,
        "changes_per_useful_poll": lt / useful if useful > 0 else None,
        "lambda_T": lt,
    }


def stream_model(lam_total: float, heartbeat: float, event_bytes: float, heartbeat_bytes: float) -> dict[str, float]:
    """Model of one event stream carrying every change (Poisson, `lam_total` changes/s in all) with a heartbeat
    after `heartbeat` seconds of silence: heartbeats and bytes per change (bytes as sent, framing included)."""
    if lam_total <= 0 or heartbeat <= 0:
        raise ValueError("lam_total and heartbeat must be > 0")
    x = lam_total * heartbeat
    beats = math.exp(-x) / -math.expm1(-x)  # 1/(e^x - 1), without overflow for large x
    return {"heartbeats_per_change": beats, "event_bytes": float(event_bytes),
            "bytes_per_change": event_bytes + heartbeat_bytes * beats}
