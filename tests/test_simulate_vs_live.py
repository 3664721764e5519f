"""The simulator is trusted because it is checked: each configuration runs live (`hookbench run`: producer,
Locust pollers, real HTTP on 127.0.0.1) and simulated, and the two must agree on the wasted fraction and on the
mean detection latency, for both polling styles, within K_SE standard errors computed from the run's own data.

The simulated side replays the live run's own changes (its changes.parquet, as a trace with resource ids)
through `simulate_scenario`, cycling it with fresh poll phases for SIM_POLLS polls. Both sides then poll
the same change stream, so the comparison is of the polling itself (the simulator's core) and does not
hinge on how far the seeded live stream happened to stray from its nominal rate (one Poisson stream here
drew 9.5% more changes than expected, which alone put an independent comparison at z = -2.7). How the
simulator draws changes is checked against the model in tests/test_simulate.py and tests/test_workload.py.

Scenarios are written in live units (time_scale 1) so no scaling sits between the two. The simulator polls at
the intended times and answers at once; a live poll is read by the producer some time e >= 0 after its intended
time (late send, request on the wire) and answered some time b >= 0 after that. Each live detection is joined to
the poll that made it, and its latency is measured twice: from that poll's intended time (mean T/2 - E[e] for
changes uniform in the interval: the changes made during e are caught early) and from the answer's arrival (mean
T/2 + E[b] + Var(e)/T: the late ones wait longer). The simulated mean must lie between the two, each side with
its statistical margin: a slower machine only widens the bracket, so it cannot fail the test, and on a quiet one
it is a few ms wide. The live standard error of a state poller's wasted fraction (pooled, two-proportion test)
and of a mean latency is the larger of the independent one and the one with resources as clusters (bursty
changes make successive polls of one resource alike, which the binomial SE ignores). Given the stream, poll
outcomes vary less than binomially, so the test is conservative. Run it alone with:
flock /tmp/hookbench-bench.lock .venv/bin/python -m pytest tests/test_simulate_vs_live.py
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from support import run_command

from bench.analysis.summary import Window, detections
from bench.analysis.tables import read_parquet
from bench.config import load_scenario
from bench.simulation.simulate import simulate_scenario

pytestmark = pytest.mark.integration

SIM_POLLS = 400_000
# Standard errors allowed either way: a normal tail of 7e-6 each; the file makes 12 such checks (3 configurations,
# 2 modes, waste and latency), so a false failure is rarer than 1 run in 10,000.
K_SE = 4.5
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


def _mean_se(values: pd.Series, clusters: pd.Series) -> float:
    """SE of the mean of `values`: the larger of the independent one and the one with `clusters` as clusters."""
    n = len(values)
    iid = float(values.std()) / math.sqrt(n)
    g = values.groupby(clusters.to_numpy()).agg(["sum", "count"])
    c = len(g)
    if c < 2:
        return iid
    r = g["sum"] - values.mean() * g["count"]
    return max(iid, math.sqrt(c / (c - 1) * float((r ** 2).sum())) / n)


def _live_latency_bracket(run_dir: Path, mode: str) -> pd.DataFrame:
    """Each window change's first detection by `mode` (as the summary counts them), joined to the poll that made
    it: latency from that poll's intended time and from its answer's arrival (ms), and the change's resource."""
    w = json.loads((run_dir / "manifest.json").read_text())["window"]
    t = read_parquet(run_dir)
    det = detections(t, Window(w["start_ns"], w["end_ns"], w["grace_end_ns"]))
    det = det[det["mode"] == mode]
    obs = t.observations.loc[t.observations["mode"] == mode, ["change_id", "user", "t_obs_ns"]]
    first = det.merge(obs, on=["change_id", "t_obs_ns"]).drop_duplicates("change_id")
    polls = t.polls.loc[t.polls["mode"] == mode, ["user", "t_recv_ns", "t_intended_ns"]]
    j = first.merge(polls, left_on=["user", "t_obs_ns"], right_on=["user", "t_recv_ns"], how="left")
    assert len(j) == len(det) and j["t_intended_ns"].notna().all(), (mode, len(j), len(det))
    return pd.DataFrame({"from_intended_ms": (j["t_intended_ns"] - j["t_change_ns"]) / 1e6,
                         "from_recv_ms": (j["t_recv_ns"] - j["t_change_ns"]) / 1e6,
                         "resource_id": j["resource_id"]})


@pytest.mark.parametrize("name", list(CONFIGS))
def test_simulated_and_live_agree(tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.toml"
    path.write_text(f'name = "vs-{name}"\n' + COMMON + CONFIGS[name])
    live, run_dir, _ = run_command(["run", str(path)], tmp_path / "live", timeout=120)
    trace = _live_changes_as_trace(run_dir, tmp_path / "live-changes.csv")
    replay = load_scenario(path, ["changes.process=trace", f"changes.trace={trace}"])
    sim = simulate_scenario(replay, tmp_path / "sim", polls=SIM_POLLS)
    sim_det = pd.read_parquet(tmp_path / "sim" / "detections.parquet")  # a sample when large: for the spread only
    report = {"config": name, "harness_saturated": live["harness_saturated"]}
    failures = []
    for mode in ("polling", "polling_etag"):
        lv, sm = live["modes"][mode], sim["modes"][mode]
        # 60 feed polls and 2,400 state polls by design (15 s at 250 ms; counted by intended time), >= 5,000 simulated
        assert lv["requests"] > 40 and sm["requests"] >= 5_000, (mode, lv["requests"], sm["requests"])
        # two-proportion test: under "same wasted fraction" both SEs use the pooled fraction (a live 0 of 60
        # would otherwise claim an SE of 0)
        pooled = (lv["empty_requests"] + sm["empty_requests"]) / (lv["requests"] + sm["requests"])
        se_live = _se(pooled, lv["requests"])
        if mode == "polling_etag":
            se_live = max(se_live, _cluster_se(_live_polls(run_dir, mode)))
        se = math.hypot(se_live, _se(pooled, sm["requests"]))
        diff = lv["wasted_fraction"] - sm["wasted_fraction"]
        lat = _live_latency_bracket(run_dir, mode)
        assert lat["from_recv_ms"].mean() == pytest.approx(lv["latency_ms"]["mean"])  # the summary's detections
        low, high = lat["from_intended_ms"].mean(), lat["from_recv_ms"].mean()
        sim_lat = sm["latency_ms"]["mean"]
        sim_lat_se = float(sim_det.loc[sim_det["mode"] == mode, "latency_ms"].std()) / math.sqrt(sm["latency_ms"]["n"])
        lat_se = math.hypot(_mean_se(lat["from_recv_ms"], lat["resource_id"]), sim_lat_se)
        report[mode] = {"wasted_live": lv["wasted_fraction"], "wasted_sim": sm["wasted_fraction"],
                        "z": diff / se if se else 0.0, "latency_live_from_intended_ms": low,
                        "latency_live_from_recv_ms": high, "latency_sim_ms": sim_lat, "latency_se_ms": lat_se,
                        "rtt_ms_p50": lv["rtt_ms_p50"], "live_polls": lv["requests"],
                        "live_changes_observed": lv["observed"]}
        if abs(diff) > K_SE * se + 1e-12:
            failures.append(f"{mode}: wasted live {lv['wasted_fraction']:.4f} vs sim {sm['wasted_fraction']:.4f} "
                            f"(> {K_SE} SE = {K_SE * se:.4f})")
        # the bracket's ends move apart with the harness's delays (one-sided each), never towards the simulation
        if not low - K_SE * lat_se <= sim_lat <= high + K_SE * lat_se:
            failures.append(f"{mode}: mean latency sim {sim_lat:.1f} ms outside live [{low:.1f}, {high:.1f}] ms "
                            f"(from intended time, from arrival) +- {K_SE} SE = {K_SE * lat_se:.1f} ms")
    print(json.dumps(report))  # the agreement figures, shown with pytest -s
    assert not failures, "\n".join(failures) + f"\n{json.dumps(report, indent=1)}"
