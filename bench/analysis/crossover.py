"""The polling-vs-webhook crossover of a sweep (claim C5): where cursor polling becomes cheaper per change than each
webhook mode as the change rate grows, measured (log-log interpolation between the two bracketing points) and in the
model (R*lambda*T = 1). Pure arithmetic over sweep.json's point records."""

from __future__ import annotations

import math
from typing import Any

from bench.modes import MODE_CURSOR, is_push

__all__ = ["COST_METRICS", "crossover"]

COST_METRICS = ("requests_per_change", "bytes_per_change", "cpu_s_per_change")


def _positive(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0 \
        else None


def _constant(values: list[Any]) -> Any:
    """The one value every item shares, or None."""
    return values[0] if values and all(v == values[0] for v in values) else None


def crossover(points: list[dict[str, Any]]) -> dict[str, Any]:
    """Where cursor polling (mode `polling`) becomes cheaper per change than each webhook mode, as the change
    rate per resource grows: measured for requests, bytes and producer CPU per change, and the model for
    requests per change (1/(R*lambda*T) polls per change vs 1 delivery: R*lambda*T = 1).

    `points` are sweep.json point records. Only complete points count (not partial, no error). A measured
    crossover is the first rate where polling's cost drops below the webhook's, interpolated linearly in
    log(cost) against log(rate) between the two bracketing points; otherwise it is null with the reason.
    """
    used = [p for p in points if not p.get("partial") and not p.get("error")]
    rates = [_positive((p.get("workload") or {}).get("rate_per_resource")) for p in used]
    used = [p for p, r in zip(used, rates) if r is not None]
    used.sort(key=lambda p: p["workload"]["rate_per_resource"])
    R = _constant([p["workload"].get("resources") for p in used])
    T = _constant([p["workload"].get("poll_interval_s") for p in used])
    scale = _constant([p.get("time_scale") for p in used])
    webhooks = list(dict.fromkeys(m for p in used for m in p["modes"] if is_push(m)))
    out: dict[str, Any] = {
        "polling_mode": MODE_CURSOR, "webhook_modes": webhooks, "x": "workload.rate_per_resource (live)",
        "points_used": [p["index"] for p in used],
        "points_excluded": [p["index"] for p in points if p not in used],
        "resources": R, "poll_interval_s": T, "time_scale": scale, "measured": {}, "model": {},
    }
    series_reason = _series_reason(used, R, T, webhooks)
    for metric in COST_METRICS:
        out["measured"][metric] = {
            wh: ({"rate_per_resource": None, "reason": series_reason} if series_reason
                 else _measured(used, metric, wh, R * T, scale))
            for wh in (webhooks or ["webhook"])
        }
    out["model"]["requests_per_change"] = _model(used, R, T, scale)
    return out


def _series_reason(used: list[dict[str, Any]], R: Any, T: Any, webhooks: list[str]) -> str | None:
    """Why no measured crossover can be read off these points at all, or None."""
    if not any(MODE_CURSOR in p["modes"] for p in used):
        return f"no cursor polling mode ({MODE_CURSOR!r}) in the complete points: add \"cursor\" to polling.styles"
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


def _measured(used: list[dict[str, Any]], metric: str, webhook: str, rt: float,
              scale: float | None) -> dict[str, Any]:
    pts = []
    for p in used:
        poll, hook = (_positive((p["modes"].get(m) or {}).get(metric)) for m in (MODE_CURSOR, webhook))
        if poll is not None and hook is not None:
            pts.append((p["workload"]["rate_per_resource"], poll, hook))
    skipped = len(used) - len(pts)
    res: dict[str, Any] = {"rate_per_resource": None, "nominal_rate_per_resource": None, "R_lambda_T": None,
                           "cost": None, "bracket": None, "order_changes": 0, "points_without_value": skipped,
                           "reason": None}
    if len(pts) < 2:
        res["reason"] = (f"fewer than 2 points where both {MODE_CURSOR} and {webhook} have a {metric} "
                         f"({skipped} without: no changes in the window, or no cost recorded)")
        return res
    d = [math.log(poll) - math.log(hook) for _, poll, hook in pts]  # > 0: polling dearer
    res["order_changes"] = sum((a >= 0) != (b >= 0) for a, b in zip(d, d[1:]))
    for (x0, p0, _), (x1, p1, _), d0, d1 in zip(pts, pts[1:], d, d[1:]):
        if d0 >= 0 > d1:
            t = d0 / (d0 - d1)
            x = math.exp(math.log(x0) + t * (math.log(x1) - math.log(x0)))
            res.update(rate_per_resource=x, nominal_rate_per_resource=None if not scale else x / scale,
                       R_lambda_T=x * rt, cost=math.exp(math.log(p0) + t * (math.log(p1) - math.log(p0))),
                       bracket=[x0, x1])
            if res["order_changes"] > 1:
                res["reason"] = (f"the order changes {res['order_changes']} times across the range (noise, or a "
                                 "cost that is not monotonic): this is the first crossing")
            return res
    lo, hi = pts[0][0], pts[-1][0]
    if all(v < 0 for v in d):
        res["reason"] = (f"polling already cheaper at the lowest swept rate ({lo:.4g}/s): the crossover lies "
                         "below the range")
    elif all(v >= 0 for v in d):
        res["reason"] = f"polling never cheaper in the swept range ({lo:.4g}/s to {hi:.4g}/s)"
    else:
        res["reason"] = "polling is cheaper at low rates and dearer at high ones: no crossing in the expected direction"
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
