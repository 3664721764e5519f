"""`hookbench run --master` with remote pollers, without processes: the ordinal plan that splits ETag resources
between workers, the records check per stem, the clock correction of polls and observations, and the CLI's
refusals. The run itself, across namespaces, is tests/test_cross_host.py::test_run_with_pollers_on_workers_b_and_c.
"""

from __future__ import annotations

import random

import pandas as pd
import pytest
from support import REPO

from bench.analysis.clocks import clock_estimates
from bench.analysis.remote import corrected_tables, remote_sections
from bench.analysis.tables import Tables
from bench.analysis.workers import records_section
from bench.cli import main
from scenarios._ordinals import Ordinals, plan_offsets


@pytest.mark.parametrize("seed", range(20))
def test_offsets_give_every_ordinal_once(seed: int) -> None:
    """Whatever the dispatcher gave each worker (balanced or not), offset + local count covers 0..n-1 once."""
    rng = random.Random(seed)
    workers = rng.randint(1, 5)
    counts = {w: {"EtagPoller": rng.randint(0, 30), "CursorPoller": rng.randint(0, 1)} for w in range(workers)}
    plan = plan_offsets(counts)
    for cls in ("EtagPoller", "CursorPoller"):
        used = [plan[w][cls] + k for w in counts for k in range(counts[w][cls])]
        assert sorted(used) == list(range(sum(c[cls] for c in counts.values())))


def test_offsets_follow_worker_index_order() -> None:
    assert plan_offsets({1: {"EtagPoller": 25}, 0: {"EtagPoller": 26}}) == {0: {"EtagPoller": 0},
                                                                            1: {"EtagPoller": 26}}


def test_the_plan_waits_until_the_reports_add_up_to_the_dispatch() -> None:
    """Locust fires the master's spawning_complete after 1 s even when a worker's report is late; the plan is only
    made once the reported users add up to the dispatched ones, class by class."""
    from types import SimpleNamespace as NS

    runner = NS(target_user_classes_count={"EtagPoller": 50, "CursorPoller": 1, "SseListener": 0},
                clients={"a": NS(user_classes_count={"EtagPoller": 25, "CursorPoller": 1}),
                         "b": NS(user_classes_count={})})  # b's report has not come yet
    assert Ordinals._reported(runner) is False
    runner.clients["b"].user_classes_count = {"EtagPoller": 24}
    assert Ordinals._reported(runner) is False
    runner.clients["b"].user_classes_count = {"EtagPoller": 25, "CursorPoller": 0}
    assert Ordinals._reported(runner) is True


def _wire(declared: dict[str, int] | None, received: dict[str, int]) -> dict[str, object]:
    return {"0": {"pid": 7, "host": "b", "received": received, "declared": declared, "batches": 3,
                  "missing_batches": [], "raw_bytes": 100, "wire_bytes": 20}}


def test_records_per_stem_compare_polls_with_polls() -> None:
    polls = pd.DataFrame({"worker": [0] * 5})
    rec = records_section(polls, files=1, locust_requests=5, wire=_wire({"polls": 5, "observations": 3},
                                                                        {"polls": 5, "observations": 3}),
                          stem="polls")
    entry = rec["wire"]["workers"]["0"]
    assert (entry["read"], entry["received"], entry["declared"]) == (5, 5, 5) and rec["complete"] is True


def test_records_lost_observations_are_named_though_polls_are_whole() -> None:
    polls = pd.DataFrame({"worker": [0] * 5})
    rec = records_section(polls, files=1, locust_requests=5, wire=_wire({"polls": 5, "observations": 3},
                                                                        {"polls": 5, "observations": 1}),
                          stem="polls")
    assert rec["complete"] is False
    (lost,) = rec["lost"]
    assert lost["stems"] == ["observations"] and lost["reason"] == "worker 0 (pid 7 on b) declared 3 rows, 1 arrived " \
                                                                   "(0 batch(es) missing)"


def _clock_rows(worker: int, offset_ns: int, t0: int) -> list[dict[str, int]]:
    """Exchanges of a worker whose clock reads `offset_ns` ahead, 200 us each way."""
    rows = []
    for k in range(8):
        t1 = t0 + k * 1_000_000
        rows.append({"worker": worker, "phase": "start", "t1": t1, "t2": t1 + 200_000 + offset_ns,
                     "t3": t1 + 210_000 + offset_ns, "t4": t1 + 410_000})
    return rows


def test_skewed_worker_latency_is_corrected() -> None:
    """Worker 1's clock reads 2 s ahead: its observations' raw latencies are 2 s too long, corrected they match
    worker 0's, and the clocks section shows both."""
    t0 = 10**18
    changes = pd.DataFrame({"change_id": [f"c{i}" for i in range(10)], "resource_id": list(range(10)),
                            "seq": list(range(10)), "version": [1] * 10,
                            "t_change_ns": [t0 + i * 100_000_000 for i in range(10)]})
    skew = 2_000_000_000
    obs = pd.DataFrame({"mode": ["polling_etag"] * 10, "user": list(range(10)), "worker": [i % 2 for i in range(10)],
                        "change_id": [f"c{i}" for i in range(10)],
                        "t_obs_ns": [t0 + i * 100_000_000 + 300_000_000 + (skew if i % 2 else 0) for i in range(10)],
                        "via": [None] * 10})
    polls = pd.DataFrame({"mode": ["polling_etag"] * 2, "user": [0, 1], "worker": [0, 1], "resource_id": [0, 1],
                          "t_intended_ns": [t0, t0 + skew], "t_send_ns": [t0, t0 + skew],
                          "t_recv_ns": [t0 + 1_000_000, t0 + skew + 1_000_000], "status": [200, 200],
                          "empty": [False, False], "n_new": [1, 1], "bytes": [10, 10], "error": [None, None],
                          "followup": [False, False], "initial": [False, False]})
    raw = Tables.from_frames(changes=changes, observations=obs, polls=polls)
    estimates = clock_estimates(_clock_rows(0, 0, t0) + _clock_rows(1, skew, t0))
    fixed = corrected_tables(raw, estimates)
    assert fixed.polls["t_send_ns"].tolist() == [t0, t0]
    latency = (fixed.observations["t_obs_ns"] - t0 - pd.Series(range(10)) * 100_000_000) / 1e6
    assert latency.round(3).tolist() == [300.0] * 10
    health = pd.DataFrame({"t_ns": [t0] * 4, "worker": [0, 0, 1, 1], "pid": [5, 5, 6, 6], "host": ["b", "b", "c", "c"],
                           "cpu_pct": [10.0, 12.0, 95.0, 97.0], "lag_ms": [1.0, 1.0, 2.0, 2.0]})
    out = remote_sections(raw, fixed, estimates=estimates, health=health, wire=None, locust_requests=2,
                          poll_files=2, bound_s=0.005, local_pids=set(), host="a")
    w1 = out["clocks"]["workers"]["1"]
    assert w1["applied"] is True and abs(w1["start"]["offset_ms"] - 2000.0) < 0.01
    assert w1["latency_ms"]["raw"]["p50"] == pytest.approx(2300.0) and w1["latency_ms"]["corrected"]["p50"] == \
        pytest.approx(300.0)
    assert out["clocks"]["workers"]["0"]["applied"] is False
    assert out["workers"]["1"]["cpu_max_pct"] == 97.0
    assert out["reasons"] == ["Locust worker 1 (pid 6 on c) CPU above 90% in 2 one-second samples: the pollers may "
                              "have sent late"]


@pytest.mark.parametrize(("argv", "message"), [
    (["--worker"], "--master-host = None: --worker needs the master's address"),
    (["--worker", "--master-host", "h", "--seed", "3"], "--seed = 3: does not apply with --worker"),
    (["--worker", "--master-host", "h", "--out", "x"], "--out = 'x': does not apply with --worker"),
    (["--records-dir", "x"], "--records-dir = 'x': only applies with --worker"),
    (["--expect-workers", "2"], "--expect-workers = 2: only applies with --master"),
    (["--master", "--worker", "--master-host", "h"], "--worker = True: cannot be combined with --master"),
    (["--master", "--expect-workers", "0"], "--expect-workers = 0: must be an integer from 1 to 1000"),
    (["--processes", "2"], "--processes = 2: only applies with --worker"),
    (["--worker", "--master-host", "h", "--processes", "0"], "--processes = 0: must be an integer from 1 to 1000"),
])
def test_run_master_and_worker_flags(argv: list[str], message: str, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    assert main(["run", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err
