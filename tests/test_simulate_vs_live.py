"""The simulator is trusted because it is checked: each configuration runs live (`hookbench run`: producer,
Locust pollers, real HTTP on 127.0.0.1) and simulated, and the two must agree within 3 standard errors on
the wasted fraction and within 10% on the mean detection latency, for both polling styles.

The simulated side replays the live run's own changes (its changes.parquet, as a trace with resource ids)
through `simulate_scenario`, cycling it with fresh poll phases for SIM_POLLS polls. Both sides then poll
the same change stream, so the comparison is of the polling itself (the simulator's core) and does not
hinge on how far the seeded live stream happened to stray from its nominal rate (one Poisson stream here
drew 9.5% more changes than expected, which alone put an independent comparison at z = -2.7). How the
simulator draws changes is checked against the model in tests/test_simulate.py and tests/test_workload.py.

Scenarios are written in live units (time_scale 1) so no scaling sits between the two. The live latency
includes the HTTP round trip: its median (rtt_ms_p50) is taken off before comparing. The live standard
error of a state poller's wasted fraction (pooled, two-proportion test) is the larger of the binomial one
and the one with resources as clusters (bursty changes make successive polls of one resource alike, which
the binomial SE ignores). Given the stream, poll outcomes vary less than binomially, so the test is
conservative. Run it alone with:
flock /tmp/hookbench-bench.lock .venv/bin/python -m pytest tests/test_simulate_vs_live.py
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from support import run_command

from bench.config import load_scenario
from bench.simulation.simulate import simulate_scenario

pytestmark = pytest.mark.integration

SIM_POLLS = 400_000
# 40 resources polled every 250 ms: 160 state polls and 4 feed polls per second.
COMMON = """\
seed = 5
[run]
duration = "15s"
warmup = "2s"
drain = "2s"
[resources]
count = 40
[polling]
interval = "250ms"
styles = ["cursor", "etag"]
[webhook]
enabled = false
"""
CONFIGS = {
    # Poisson, lambda*T = 0.25 per resource (state polls) and 10 for the feed of all 40
    "poisson": '[changes]\nprocess = "poisson"\nrate = 1.0\n',
    # constant, every 2.7 T: a resource's changes fall at ever other offsets from its polls, so the mean
    # latency does not hang on a few random phases
    "constant": '[changes]\nprocess = "constant"\ninterval = "675ms"\n',
    # bursty on/off: 0.5 s bursts at 5/s, 2 s quiet; mean 1/s per resource
    "bursty": '[changes]\nprocess = "bursty"\nrate = 1.0\non = "500ms"\noff = "2s"\n',
}


def _cluster_se(polls: pd.DataFrame) -> float:
    """SE of the empty fraction with resources as clusters."""
    g = polls.groupby("resource_id")["empty"].agg(["sum", "count"])
    k, n = g["sum"].to_numpy(float), g["count"].to_numpy(float)
    r = k.sum() / n.sum()
    c = len(g)
    return math.sqrt(c / (c - 1) * float(((k - r * n) ** 2).sum())) / n.sum()


def _live_polls(run_dir: Path, mode: str) -> pd.DataFrame:
    w = json.loads((run_dir / "manifest.json").read_text())["window"]
    p = pd.read_parquet(run_dir / "polls.parquet")
    return p[(p["mode"] == mode) & ~p["initial"] & (p["t_intended_ns"] >= w["start_ns"])
             & (p["t_intended_ns"] < w["end_ns"])]


def _live_changes_as_trace(run_dir: Path, out: Path) -> Path:
    """Every change the live producer made (Unix time, resource id), as a trace CSV for the simulator."""
    c = pd.read_parquet(run_dir / "changes.parquet").sort_values("t_change_ns")
    assert len(c) > 100, len(c)
    out.write_text("unix_time,resource_id\n" + "".join(f"{t / 1e9:.9f},{r}\n" for t, r in
                                                       zip(c["t_change_ns"].tolist(), c["resource_id"].tolist())))
    return out


def _se(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n) if n else math.inf


@pytest.mark.parametrize("name", list(CONFIGS))
def test_simulated_and_live_agree(tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.toml"
    path.write_text(f'name = "vs-{name}"\n' + COMMON + CONFIGS[name])
    live, run_dir, _ = run_command(["run", str(path)], tmp_path / "live", timeout=120)
    trace = _live_changes_as_trace(run_dir, tmp_path / "live-changes.csv")
    replay = load_scenario(path, ["changes.process=trace", f"changes.trace={trace}"])
    sim = simulate_scenario(replay, tmp_path / "sim", polls=SIM_POLLS)
    report = {"config": name, "harness_saturated": live["harness_saturated"]}
    failures = []
    for mode in ("polling", "polling_etag"):
        lv, sm = live["modes"][mode], sim["modes"][mode]
        assert lv["requests"] > 40 and sm["requests"] >= 5_000, (mode, lv["requests"], sm["requests"])
        # two-proportion test: under "same wasted fraction" both SEs use the pooled fraction (a live 0 of 60
        # would otherwise claim an SE of 0)
        pooled = (lv["empty_requests"] + sm["empty_requests"]) / (lv["requests"] + sm["requests"])
        se_live = _se(pooled, lv["requests"])
        if mode == "polling_etag":
            se_live = max(se_live, _cluster_se(_live_polls(run_dir, mode)))
        se = math.hypot(se_live, _se(pooled, sm["requests"]))
        diff = lv["wasted_fraction"] - sm["wasted_fraction"]
        rtt = lv["rtt_ms_p50"] or 0.0
        live_lat = lv["latency_ms"]["mean"] - rtt
        sim_lat = sm["latency_ms"]["mean"]
        report[mode] = {"wasted_live": lv["wasted_fraction"], "wasted_sim": sm["wasted_fraction"],
                        "z": diff / se if se else 0.0, "latency_live_minus_rtt_ms": live_lat,
                        "latency_sim_ms": sim_lat, "latency_rel_diff": live_lat / sim_lat - 1, "rtt_ms_p50": rtt,
                        "live_polls": lv["requests"], "live_changes_observed": lv["observed"]}
        if abs(diff) > 3 * se + 1e-12:
            failures.append(f"{mode}: wasted live {lv['wasted_fraction']:.4f} vs sim {sm['wasted_fraction']:.4f} "
                            f"(> 3 SE = {3 * se:.4f})")
        if abs(live_lat / sim_lat - 1) > 0.10:
            failures.append(f"{mode}: mean latency live-rtt {live_lat:.1f} ms vs sim {sim_lat:.1f} ms (> 10%)")
    print(json.dumps(report))  # the agreement figures, shown with pytest -s
    assert not failures, "\n".join(failures) + f"\n{json.dumps(report, indent=1)}"
