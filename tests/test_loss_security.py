"""The faults and security sections on fixed, hand-made tables."""

from __future__ import annotations

import pandas as pd

from bench.analysis.loss import down_intervals
from bench.analysis.summary import Window, detections, summarize
from bench.analysis.tables import Tables
from bench.config import scenario_from_dict


def ms(x: float) -> int:
    return int(x * 1_000_000)


W = Window(ms(1000), ms(2000), ms(3000))
SCENARIO = scenario_from_dict({
    "name": "hand", "run": {"duration": 1}, "resources": {"count": 2}, "changes": {"rate": 1.0},
    "polling": {"interval": 1, "styles": ["cursor"]},
    "webhook": {"slo": "300ms", "subscriptions": [{"name": "webhook", "policy": "retry"},
                                                  {"name": "webhook_ff", "policy": "fire_and_forget"}]},
}, "test").to_dict()

CHANGES = [{"change_id": f"c{i}", "resource_id": 0, "seq": i, "version": i, "t_change_ns": ms(1000 + 100 * i)}
           for i in range(1, 6)]  # c1..c5 at 1100..1500 ms
# receiver down 1250..1450 ms: c3 (1300) and c4 (1400) fall in it
EVENTS = [{"t_ns": ms(1250), "source": "receiver", "event": "down", "mode": "refuse"},
          {"t_ns": ms(1450), "source": "receiver", "event": "up", "mode": "refuse"},
          {"t_ns": ms(1600), "source": "orchestrator", "event": "producer_killed"},
          {"t_ns": ms(1700), "source": "orchestrator", "event": "producer_restarted"}]


def attempt(mode: str, change: str, n: int, t: float, status: int, outcome: str) -> dict:
    return {"mode": mode, "msg_id": f"msg_{change}", "change_id": change, "subscription_id": mode, "attempt": n,
            "t_send_ns": ms(t), "t_done_ns": ms(t) + 1000, "status": status, "latency_ms": 0.001,
            "bytes_out": 1, "bytes_in": 1, "error": None, "retry_after_s": None, "outcome": outcome}


DELIVERIES = (
    [attempt("webhook", f"c{i}", 1, 1000 + 100 * i + 1, 204, "ok") for i in (1, 2, 5)]
    + [attempt("webhook", "c3", 1, 1301, 0, "retry"), attempt("webhook", "c3", 2, 1500, 204, "ok"),
       attempt("webhook", "c4", 1, 1401, 0, "retry"), attempt("webhook", "c4", 2, 1600, 204, "ok")]
    + [attempt("webhook_ff", f"c{i}", 1, 1000 + 100 * i + 1, 204, "ok") for i in (1, 2, 5)]
    + [attempt("webhook_ff", "c3", 1, 1301, 0, "gave_up"), attempt("webhook_ff", "c4", 1, 1401, 0, "gave_up")]
)


def audit(endpoint: str | None, change: str | None, t: float, verdict: str, status: int,
          attack: str | None = None) -> dict:
    return {"t_ns": ms(t), "t_obs_ns": ms(t), "endpoint": endpoint, "remote": "127.0.0.1", "method": "POST",
            "path": "/hooks/<token>", "msg_id": None if change is None else f"msg_{change}", "change_id": change,
            "status": status, "verdict": verdict, "reason": None, "latency_ms": 0.1, "attack": attack}


ARRIVALS = (
    [audit("webhook", f"c{i}", 1000 + 100 * i + 2, "accepted", 204) for i in (1, 2, 5)]
    + [audit("webhook", "c3", 1501, "accepted", 204), audit("webhook", "c4", 1601, "accepted", 204),
       audit("webhook", "c4", 1602, "duplicate", 200)]  # a retry after a lost ack: delivered twice, processed once
    + [audit("webhook_ff", f"c{i}", 1000 + 100 * i + 2, "accepted", 204) for i in (1, 2, 5)]
    # hostile: a replay of c1 (deduplicated), forged signatures (401), one that got through (accepted)
    + [audit("webhook", "c1", 1800, "duplicate", 200, "replayed_id")]
    + [audit("webhook", None, 1800 + i, "rejected", 401, "forged_signature") for i in range(3)]
    + [audit("webhook", "atk1", 1810, "accepted", 204, "tampered_body")]
)
ATTACKS = ([{"kind": "replayed_id", "t_send_ns": ms(1800), "t_recv_ns": ms(1801), "status": 200,
             "expected_status": 200, "bytes": 10}]
           + [{"kind": "forged_signature", "t_send_ns": ms(1800 + i), "t_recv_ns": ms(1801 + i), "status": 401,
               "expected_status": 401, "bytes": 10} for i in range(3)]
           + [{"kind": "tampered_body", "t_send_ns": ms(1810), "t_recv_ns": ms(1811), "status": 204,
               "expected_status": 401, "bytes": 10}])


def tables() -> Tables:
    # webhook observations by the rule of bench.analysis.tables.load_records: verified, carrying a change, not hostile
    arrivals = pd.DataFrame(ARRIVALS)
    legit = arrivals[arrivals["attack"].isna() & arrivals["verdict"].isin(["accepted", "duplicate"])]
    obs = [{"mode": r.endpoint, "user": 0, "change_id": r.change_id, "t_obs_ns": r.t_obs_ns}
           for r in legit.itertuples()]
    obs += [{"mode": "polling", "user": 0, "change_id": c["change_id"], "t_obs_ns": c["t_change_ns"] + ms(500)}
            for c in CHANGES]
    return Tables.from_frames(changes=CHANGES, deliveries=DELIVERIES, arrivals=ARRIVALS, attacks=ATTACKS,
                              events=EVENTS, observations=obs)


def summary() -> dict:
    return summarize(tables(), W, SCENARIO, {}, modes=["polling", "webhook", "webhook_ff"])


def test_down_intervals_pair_transitions() -> None:
    t = tables()
    assert down_intervals(t.events, ms(3000)) == [(ms(1250), ms(1450), "refuse")]
    open_ended = t.events[t.events["event"] == "down"]
    assert down_intervals(open_ended, ms(3000)) == [(ms(1250), ms(3000), "refuse")]


def test_faults_section_counts_loss_against_ground_truth() -> None:
    f = summary()["faults"]
    assert f["changes_in_outage"] == 2
    assert f["receiver_down"][0]["duration_s"] == 0.2
    assert f["producer_crashes"] == [{"killed_ns": ms(1600), "restarted_ns": ms(1700), "down_s": 0.1}]
    retry, ff, poll = f["modes"]["webhook"], f["modes"]["webhook_ff"], f["modes"]["polling"]
    assert (retry["policy"], retry["lost"], retry["duplicates_delivered"], retry["duplicates_processed"]) == \
        ("retry", 0, 1, 0)
    assert retry["attempted_during_outage"] == 2  # c3 and c4: first attempts inside the outage
    assert retry["late"] == 0 and retry["max_delay_ms"] == 201.0  # c4: 1400 -> 1601
    assert (ff["policy"], ff["lost"], ff["attempted_during_outage"], ff["gave_up"]) == ("fire_and_forget", 2, 2, 2)
    assert ff["lost_change_ids"] == ["c3", "c4"]
    assert (poll["policy"], poll["lost"], poll["late"]) == ("polling", 0, 5)  # 500 ms > SLO 300 ms


def test_hostile_requests_are_not_observations() -> None:
    m = summary()["modes"]["webhook"]
    assert m["observed"] == 5 and m["duplicates"] == 1  # the replayed c1 is not counted


def test_security_section() -> None:
    s = summary()["security"]
    assert s["hostile_sent"] == 5 and s["hostile_accepted"] == 1 and s["hostile_as_expected"] == 4
    assert s["kinds"]["forged_signature"] == {"sent": 3, "expected_status": 401, "as_expected": 3,
                                              "statuses": {"401": 3}, "accepted": 0, "deduplicated": 0, "audited": 3}
    assert s["kinds"]["replayed_id"]["deduplicated"] == 1 and s["kinds"]["replayed_id"]["accepted"] == 0
    assert s["kinds"]["tampered_body"]["accepted"] == 1  # a defence failed: the summary says so
    assert s["legit"] == {"sent": 12, "answered_2xx": 8, "accepted_fraction": 8 / 12}  # 4 refused in the outage
    assert s["audit"] == {"rows": 14, "hostile_rows": 5, "legit_rows": 9, "foreign_rows": 0, "complete": True}
    assert s["foreign"] == {"accepted": 0, "duplicates": 0, "endpoints": {}}
    assert s["receiver_5xx"] == 0


def test_detections_ignore_attack_rows() -> None:
    d = detections(tables(), W)
    assert set(d.loc[d["mode"] == "webhook", "change_id"]) == {"c1", "c2", "c3", "c4", "c5"}
