"""The crossover of a sweep (claim C5): where a consumer-driven mode becomes cheaper per change than each push mode
as the change rate grows, measured (log-log interpolation between the two bracketing points) and, for the cursor
feed, in the model (R*lambda*T = 1). Pure arithmetic over sweep.json's point records.

`measured` is the cursor poller (`polling`) against each push mode, as claim C5 and the sweep report read it.
`by_mode` holds the same computation for every consumer-driven mode present in the points (every kind of
bench.modes that is not push: cursor, ETag, long polling, adaptive, SSE), `by_mode[mode][metric][push mode]`.

What a crossover means depends on how a mode's cost per change moves with the rate. Fixed-interval polling pays
per poll, not per change, so its cost per change falls as 1/rate (cursor feed: 1/(R*lambda*T) polls per change)
and crosses a push mode's constant cost once. Adaptive polling falls the same way between its bounds. Long polling
costs about one request per change once changes come faster than the wait ends (plus the empty answers of waits
that end with nothing, which matter only at low rates), so against a webhook's one delivery per change it tends to
a tie, not a crossing: a crossing found there lies within the noise between two nearly equal costs, and
`order_changes` > 1 says so. An SSE stream is one connection per run, about 0 requests per change at any rate, so
the honest answer is "already cheaper at the lowest swept rate" in requests (its cost is a held connection, which
per-change figures do not show; the points keep `held_connections`). Bytes and CPU per change of these modes have
no model here: their crossovers, where there are any, are measured only.
"""

from __future__ import annotations

import math
from typing import Any

from bench.modes import MODE_CURSOR, MODE_KINDS, find_kind, is_push

__all__ = ["COST_METRICS", "consumer_modes", "crossover"]

COST_METRICS = ("requests_per_change", "bytes_per_change", "cpu_s_per_change")


def _positive(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0 \
        else None


def _cost(x: Any) -> float | None:
    """A consumer's cost per change: positive, or 0 (an SSE stream opened before the window made no request in
    it: cheaper than any push mode there), else None."""
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x >= 0 \
        else None


def _constant(values: list[Any]) -> Any:
    """The one value every item shares, or None."""
    return values[0] if values and all(v == values[0] for v in values) else None


def consumer_modes(modes: list[str]) -> list[str]:
    """The consumer-driven modes among `modes` (every known kind that is not push: pull and stream), in the
    registry's order, each once."""
    found = [(MODE_KINDS.index(k), m) for m in dict.fromkeys(modes) if (k := find_kind(m)) is not None
             and not k.is_push]
    return [m for _, m in sorted(found, key=lambda item: item[0])]


def crossover(points: list[dict[str, Any]]) -> dict[str, Any]:
    """Where each consumer-driven mode becomes cheaper per change than each push mode, as the change rate per
    resource grows: measured for requests, bytes and producer CPU per change, and the cursor feed's model for
    requests per change (1/(R*lambda*T) polls per change vs 1 delivery: R*lambda*T = 1).

    `points` are sweep.json point records. Only complete points count (not partial, no error). A measured
    crossover is the first rate where the consumer's cost drops below the push mode's, interpolated linearly in
    log(cost) against log(rate) between the two bracketing points; otherwise it is null with the reason.
    `measured` is the cursor poller's (`polling`), `by_mode` every consumer-driven mode's (the cursor's again).
    """
    used = [p for p in points if not p.get("partial") and not p.get("error")]
    rates = [_positive((p.get("workload") or {}).get("rate_per_resource")) for p in used]
    used = [p for p, r in zip(used, rates) if r is not None]
    used.sort(key=lambda p: p["workload"]["rate_per_resource"])
    R = _constant([p["workload"].get("resources") for p in used])
    T = _constant([p["workload"].get("poll_interval_s") for p in used])
    scale = _constant([p.get("time_scale") for p in used])
    modes = [m for p in used for m in p["modes"]]
    webhooks = list(dict.fromkeys(m for m in modes if is_push(m)))
    consumers = consumer_modes(modes)
    out: dict[str, Any] = {
        "polling_mode": MODE_CURSOR, "webhook_modes": webhooks, "x": "workload.rate_per_resource (live)",
        "points_used": [p["index"] for p in used],
        "points_excluded": [p["index"] for p in points if p not in used],
        "resources": R, "poll_interval_s": T, "time_scale": scale,
        "measured": _series(used, MODE_CURSOR, webhooks, R, T, scale), "model": {},
        "consumer_modes": consumers,
        "by_mode": {mode: _series(used, mode, webhooks, R, T, scale) for mode in consumers},
    }
    out["model"]["requests_per_change"] = _model(used, R, T, scale)
    return out


def _series(used: list[dict[str, Any]], mode: str, webhooks: list[str], R: Any, T: Any,
            scale: float | None) -> dict[str, dict[str, Any]]:
    """{metric: {push mode: result}} of consumer mode `mode` (a placeholder push mode "webhook" when there is
    none, so that the reason has a place)."""
    series_reason = _series_reason(used, mode, R, T, webhooks)
    return {
        metric: {
            wh: ({"rate_per_resource": None, "reason": series_reason} if series_reason
                 else _measured(used, metric, mode, wh, R * T, scale))
            for wh in (webhooks or ["webhook"])
        }
        for metric in COST_METRICS
    }


def _subject(mode: str) -> str:
    """How a reason names the consumer: "polling" for the cursor poller (as C5 has always said), else its mode."""
    return "polling" if mode == MODE_CURSOR else mode


def _series_reason(used: list[dict[str, Any]], mode: str, R: Any, T: Any, webhooks: list[str]) -> str | None:
    """Why no measured crossover of `mode` can be read off these points at all, or None."""
    if not any(mode in p["modes"] for p in used):
        kind = find_kind(mode)
        if mode == MODE_CURSOR:
            return f"no cursor polling mode ({MODE_CURSOR!r}) in the complete points: add \"cursor\" to polling.styles"
        style = f': add "{kind.style}" to polling.styles' if kind is not None and kind.style else ""
        return f"no {mode!r} mode in the complete points{style}"
    if not webhooks:
        return "no webhook mode in the complete points: set webhook.enabled = true"
    rates = [p["workload"]["rate_per_resource"] for p in used]
    if len(rates) < 2:
        return f"{len(rates)} complete point{'s' if len(rates) != 1 else ''} with a change rate: a crossover needs 2"
    if len(set(rates)) == 1:
        return "the change rate is the same at every point: sweep changes.rate (or changes.interval)"
    if len(set(rates)) < len(rates):
        return ("several points share a change rate (the grid varies something else too): "
                "the crossover needs one point per rate")
    if R is None or T is None:
        return ("resources.count or the poll interval differ between points: a crossover in the change rate "
                "alone would compare different workloads")
    return None


def _measured(used: list[dict[str, Any]], metric: str, consumer: str, webhook: str, rt: float,
              scale: float | None) -> dict[str, Any]:
    pts = []
    for p in used:
        pull = _cost((p["modes"].get(consumer) or {}).get(metric))
        push = _positive((p["modes"].get(webhook) or {}).get(metric))
        if pull is not None and push is not None:
            pts.append((p["workload"]["rate_per_resource"], pull, push))
    skipped = len(used) - len(pts)
    res: dict[str, Any] = {"rate_per_resource": None, "nominal_rate_per_resource": None, "R_lambda_T": None,
                           "cost": None, "bracket": None, "order_changes": 0, "points_without_value": skipped,
                           "reason": None}
    if len(pts) < 2:
        res["reason"] = (f"fewer than 2 points where both {consumer} and {webhook} have a {metric} "
                         f"({skipped} without: no changes in the window, or no cost recorded)")
        return res
    who = _subject(consumer)
    # > 0: the consumer dearer; a consumer cost of 0 is cheaper than any push cost (-inf)
    d = [(math.log(pull) if pull > 0 else -math.inf) - math.log(push) for _, pull, push in pts]
    res["order_changes"] = sum((a >= 0) != (b >= 0) for a, b in zip(d, d[1:]))
    for (x0, p0, _), (x1, p1, _), d0, d1 in zip(pts, pts[1:], d, d[1:]):
        if d0 >= 0 > d1:
            res["bracket"] = [x0, x1]
            if math.isinf(d1):  # log(0): the bracket is all there is to say
                res["reason"] = (f"{who}'s {metric} is 0 at {x1:.4g}/s: the crossing lies between {x0:.4g}/s and "
                                 f"{x1:.4g}/s, where a log scale cannot place it")
                return res
            t = d0 / (d0 - d1)
            x = math.exp(math.log(x0) + t * (math.log(x1) - math.log(x0)))
            res.update(rate_per_resource=x, nominal_rate_per_resource=None if not scale else x / scale,
                       R_lambda_T=x * rt, cost=math.exp(math.log(p0) + t * (math.log(p1) - math.log(p0))))
            if res["order_changes"] > 1:
                res["reason"] = (f"the order changes {res['order_changes']} times across the range (noise, or a "
                                 "cost that is not monotonic): this is the first crossing")
            return res
    lo, hi = pts[0][0], pts[-1][0]
    if all(v < 0 for v in d):
        res["reason"] = (f"{who} already cheaper at the lowest swept rate ({lo:.4g}/s): the crossover lies "
                         "below the range")
    elif all(v >= 0 for v in d):
        res["reason"] = f"{who} never cheaper in the swept range ({lo:.4g}/s to {hi:.4g}/s)"
    else:
        res["reason"] = (f"{who} is cheaper at low rates and dearer at high ones: no crossing in the expected "
                         "direction")
    return res


def _model(used: list[dict[str, Any]], R: Any, T: Any, scale: float | None) -> dict[str, Any]:
    formula = "cursor feed: 1/(R·λ·T) polls per change; webhook: 1 delivery per change; equal at R·λ·T = 1"
    if not (isinstance(R, int) and R > 0 and _positive(T)):
        return {"rate_per_resource": None, "R_lambda_T": 1.0, "formula": formula,
                "reason": "resources.count or the poll interval differ between the complete points (or none is "
                          "complete): no single model rate"}
    x = 1.0 / (R * T)
    rates = [p["workload"]["rate_per_resource"] for p in used]
    return {"rate_per_resource": x, "nominal_rate_per_resource": None if not scale else x / scale,
            "R_lambda_T": 1.0, "resources": R, "poll_interval_s": T, "formula": formula,
            "in_range": bool(rates) and min(rates) <= x <= max(rates), "reason": None}
