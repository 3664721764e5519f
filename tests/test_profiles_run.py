"""Provider delivery profiles end to end: `hookbench run scenarios/faults/profiles_outage.toml`, four subscriptions
under four providers' documented policies through one 7 s receiver outage, side by side in one run."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
from support import REPO, run_command

from bench.config import load_scenario
from bench.simulation.outage import predict_changes

pytestmark = pytest.mark.integration


def test_profiles_through_an_outage(tmp_path: Path) -> None:
    s, run_dir, _ = run_command(["run", "scenarios/faults/profiles_outage.toml"], tmp_path, timeout=180)
    assert s["partial"] is False
    f = s["faults"]
    lost = {m: f["modes"][m]["lost"] for m in ("webhook_github", "webhook_shopify", "webhook_svix", "webhook_square")}
    # Svix and Square retry for longer than the outage (time-scaled): nothing lost
    assert lost["webhook_svix"] == lost["webhook_square"] == 0
    # GitHub makes one attempt, at once (no profile runs hookbench's breaker, which would hold attempts back
    # until the receiver is up): it loses the changes made during the outage, give or take one at either edge.
    # The change schedule is seeded (seed 7): 17 or 18 changes fall in the outage and 9-11 after it for any offset
    # (0 to 1.4 s) between the changes' start and the window's (4 ms measured). Only a change within an attempt's
    # few ms of an edge can go either way: +-2 allows two.
    assert f["changes_in_outage"] > 5
    assert abs(lost["webhook_github"] - f["changes_in_outage"]) <= 2
    # Shopify's rule removes the subscription after 8 consecutive failures: it loses every later change too
    assert lost["webhook_shopify"] > lost["webhook_github"]
    with sqlite3.connect(run_dir / "producer.db") as db:
        rows = dict(db.execute("SELECT json_extract(delivery, '$.name'), disabled_reason FROM subscriptions"))
    assert rows == {"webhook_github": None, "webhook_shopify": "8 consecutive failed attempts",
                    "webhook_svix": None, "webhook_square": None}
    # the manifest's scenario shows each subscription's profile and the values it resolved to
    scenario = json.loads((run_dir / "scenario.json").read_text())
    subs = {d["name"]: d for d in scenario["webhook"]["subscriptions"]}
    assert {n: d["profile"] for n, d in subs.items()} == {
        "webhook_github": "github", "webhook_shopify": "shopify", "webhook_svix": "svix", "webhook_square": "square"}
    assert (subs["webhook_square"]["max_attempts"], subs["webhook_square"]["timeout"]) == (79, 10.0)

    # The outage model (bench.simulation.outage) on this run's own changes and outage: what the providers' documented
    # policies predict, beside what the live dispatcher did. No profile runs hookbench's circuit breaker, so the two
    # should agree up to the changes at the outage's edges (the model takes the outage's recorded start and length;
    # the dispatcher's attempt leaves a few ms after the change).
    manifest = json.loads((run_dir / "manifest.json").read_text())
    window = manifest["window"]
    changes = pd.read_parquet(run_dir / "changes.parquet")
    t_ns = changes["t_change_ns"]
    t_ns = t_ns[(t_ns >= window["start_ns"]) & (t_ns < window["end_ns"])]
    (down,) = f["receiver_down"]
    t = ((t_ns - down["start_ns"]) / 1e9).to_numpy()
    subs = {d.name: d for d in load_scenario(REPO / "scenarios/faults/profiles_outage.toml").webhook.subscriptions}
    model = {}
    for mode in lost:
        gone, disabled_at = predict_changes(subs[mode], down["duration_s"], t)
        model[mode] = (int(gone.sum()), disabled_at)
    print("model vs live (lost):", {m: (model[m][0], lost[m]) for m in lost})
    assert model["webhook_svix"][0] == model["webhook_square"][0] == 0  # as live
    assert model["webhook_shopify"][1] < down["duration_s"]  # disabled during the outage, as live
    assert abs(model["webhook_github"][0] - lost["webhook_github"]) <= 2
    assert abs(model["webhook_shopify"][0] - lost["webhook_shopify"]) <= 2
