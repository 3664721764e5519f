"""Provider delivery profiles end to end: `hookbench run scenarios/faults/profiles_outage.toml`, four subscriptions
under four providers' documented policies through one 10 s receiver outage, side by side in one run."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from support import run_command

pytestmark = pytest.mark.integration


def test_profiles_through_an_outage(tmp_path: Path) -> None:
    s, run_dir, _ = run_command(["run", "scenarios/faults/profiles_outage.toml"], tmp_path, timeout=180)
    assert s["partial"] is False
    f = s["faults"]
    lost = {m: f["modes"][m]["lost"] for m in ("webhook_github", "webhook_shopify", "webhook_svix", "webhook_square")}
    # Svix and Square retry for longer than the outage (time-scaled): nothing lost
    assert lost["webhook_svix"] == lost["webhook_square"] == 0
    # GitHub makes one attempt, at once (no profile runs hookbench's breaker, which would hold attempts back
    # until the receiver is up): it loses the changes made during the outage, give or take one at either edge
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

