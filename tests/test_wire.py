"""What travels over Locust's messaging (bench.wire), and what the analysis makes of it (bench.analysis.clocks,
bench.analysis.workers): the batch codec, the batching, the clock test hook, the NTP arithmetic on given
timestamps, the offset correction and the records section's per-worker verdict. No process, no clock read."""

from __future__ import annotations

import json
import subprocess
import sys
import zlib
from pathlib import Path

import pandas as pd
import pytest

from bench.analysis.clocks import clock_estimates, clocks_section, correct_frame, manifest_clocks
from bench.analysis.saturation import locust_cpu_reasons
from bench.analysis.workers import health_samples, health_summary, records_section
from bench.config import load_scenario
from bench.errors import ScenarioError
from bench.wire import (
    SKEW_ENV,
    Batch,
    Batcher,
    WireError,
    best_sample,
    clock_skew_ns,
    decode_rows,
    encode_rows,
    ntp_sample,
    skewed,
)


def _row(i: int) -> dict[str, object]:
    return {"mode": "polling", "user": i, "worker": 1, "resource_id": None,
            "t_intended_ns": 1_700_000_000_000_000_000 + i, "t_send_ns": 1_700_000_000_000_100_000 + i,
            "t_recv_ns": 1_700_000_000_000_900_000 + i, "status": 200,
            "empty": True, "n_new": 0, "bytes": 39, "error": None, "latency_ms": None}


def test_rows_round_trip_as_json_lines_compressed_when_it_pays() -> None:
    rows = [_row(i) for i in range(1000)]
    payload, compressed, raw = encode_rows(rows)
    assert compressed and len(payload) < raw / 4  # a fleet's rows repeat their keys: zlib shrinks them a lot
    lines = decode_rows(payload, compressed, expected_rows=1000)
    assert len(lines) == raw and [json.loads(x) for x in lines.splitlines()] == rows


def test_a_small_batch_is_sent_as_is() -> None:
    payload, compressed, raw = encode_rows([{"a": 1}])
    assert not compressed and payload == b'{"a":1}\n' and raw == len(payload)
    assert decode_rows(payload, False, 1) == payload


@pytest.mark.parametrize(("payload", "compressed", "rows", "message"), [
    (b"not zlib", True, 1, "does not decompress"),
    (zlib.compress(b'{"a":1}\n{"a":2}\n'), True, 3, "holds 2 lines, its header says 3"),
    (b'{"a":1}', False, 1, "does not end with a newline"),
])
def test_a_bad_batch_is_refused_with_the_reason(payload: bytes, compressed: bool, rows: int, message: str) -> None:
    with pytest.raises(WireError, match=message):
        decode_rows(payload, compressed, rows)


def test_batch_messages_round_trip_and_a_foreign_message_is_refused() -> None:
    b = Batch(3, "fleet", 2, b"x", False, 1)
    assert Batch.from_message(b.message()) == b
    with pytest.raises(WireError, match="not a record batch"):
        Batch.from_message({"seq": 1})


def test_batcher_numbers_batches_splits_by_size_and_counts_totals() -> None:
    b = Batcher(max_rows=3, max_age_s=0.5)
    due = [b.add("fleet", {"i": i}) for i in range(7)]
    assert due == [False, False, True, True, True, True, True]  # due from the third row until taken
    b.add("polls", {"i": 0})
    batches = b.take()
    assert [(x.seq, x.stem, x.rows) for x in batches] == [(0, "fleet", 3), (1, "fleet", 3), (2, "fleet", 1),
                                                           (3, "polls", 1)]
    assert b.totals == {"fleet": 7, "polls": 1} and b.pending == 0 and b.take() == []
    b.add("fleet", {"i": 7})
    assert [x.seq for x in b.take()] == [4]  # numbering goes on across takes
    assert b.totals == {"fleet": 8, "polls": 1}


def test_batcher_is_due_by_age() -> None:
    b = Batcher(max_rows=1000, max_age_s=0.5)
    assert not b.due()
    b.add("fleet", {"i": 0})
    since = b._since
    assert since is not None
    assert not b.due(now=since + 0.4) and b.due(now=since + 0.5)


def test_the_skew_hook_shifts_this_workers_times_only() -> None:
    row = {"t_send_ns": 100, "t_recv_ns": 200, "latency_ms": 5.0, "status": 200, "empty": True, "error": None,
           "n_ns": None, "flag_ns": True}
    out = skewed(row, 250_000_000, ms_fields=("latency_ms",))
    assert out == {**row, "t_send_ns": 250_000_100, "t_recv_ns": 250_000_200, "latency_ms": 255.0}
    assert skewed(row, 0) is row


def test_the_skew_hook_reads_its_variable_and_names_it_when_bad() -> None:
    assert clock_skew_ns({}) == 0 and clock_skew_ns({SKEW_ENV: "-250000000"}) == -250_000_000
    with pytest.raises(ValueError, match=f"{SKEW_ENV} = '0.25s': must be an integer number of nanoseconds"):
        clock_skew_ns({SKEW_ENV: "0.25s"})


def test_ntp_arithmetic_on_given_timestamps() -> None:
    # worker 250 ns ahead; 30 ns out, 5 ns on the worker, 50 ns back
    t1 = 1000
    t2 = t1 + 30 + 250
    t3 = t2 + 5
    t4 = t3 - 250 + 50
    offset, delay = ntp_sample(t1, t2, t3, t4)
    assert (offset, delay) == (240.0, 80.0)  # the asymmetry (50 - 30) / 2 = 10 ns is the error ...
    assert abs(offset - 250) <= delay / 2  # ... within the uncertainty delay / 2


def test_best_sample_keeps_the_minimum_delay_and_refuses_negative_ones() -> None:
    samples = [(0, 300, 300, 100), (1000, 1260, 1261, 1021), (2000, 2400, 2401, 2300), (3000, 2000, 2000, 2990)]
    best = best_sample(samples)
    assert best == {"offset_ns": 250.0, "delay_ns": 20.0, "uncertainty_ns": 10.0, "samples": 3}
    assert best_sample([]) is None and best_sample([(3000, 2000, 2000, 2990)]) is None


def _clock_rows(worker: int, offset: int, delay: int, t0: int, phase: str) -> list[dict[str, int | str]]:
    rows = []
    for k in range(8):
        d = delay + 1000 * k  # the first exchange is the quickest
        t1 = t0 + k * 10_000_000
        rows.append({"worker": worker, "pid": 100 + worker, "host": "h", "phase": phase, "k": k, "t1": t1,
                     "t2": t1 + d // 2 + offset, "t3": t1 + d // 2 + offset, "t4": t1 + d})
    return rows


def test_offsets_are_recovered_and_applied_to_the_workers_times() -> None:
    t0 = 1_700_000_000_000_000_000
    rows = (_clock_rows(0, 250_000_000, 200_000, t0, "start") + _clock_rows(0, 250_000_000, 300_000, t0 + 10**10, "end")
            + _clock_rows(1, 20_000, 200_000, t0, "start") + _clock_rows(1, 20_000, 200_000, t0 + 10**10, "end"))
    est = clock_estimates(rows)
    assert est[0]["start"]["offset_ns"] == 250_000_000 and est[0]["start"]["uncertainty_ns"] == 100_000
    assert est[0]["end"]["uncertainty_ns"] == 150_000 and est[1]["end"]["offset_ns"] == 20_000
    assert manifest_clocks(est)["0"]["start"] == {"offset_ms": 250.0, "uncertainty_ms": 0.1, "delay_ms": 0.2,
                                                  "samples": 8}
    frame = pd.DataFrame({"worker": [0, 1, 2], "t_send_ns": [t0 + 250_000_000 + 5, t0 + 7, t0 + 9],
                          "latency_ms": [260.0, 10.0, 12.0]})
    out = correct_frame(frame, est, time_col="t_send_ns", ns_cols=("t_send_ns",), ms_cols=("latency_ms",))
    # worker 0: moved by 250 ms; worker 1's 20 us is within its 100 us uncertainty: not applied; worker 2: no clock
    assert out["t_send_ns"].tolist() == [t0 + 5, t0 + 7, t0 + 9]
    assert out["latency_ms"].tolist() == [10.0, 10.0, 12.0]
    assert frame["t_send_ns"].iloc[0] == t0 + 250_000_000 + 5  # the input is left alone
    section = clocks_section(est, 0.00012, raw=frame, corrected=out, latency_col="latency_ms", workers=[0, 1, 2])
    assert section["flagged"] == [0] and section["unmeasured"] == [2]  # 0.15 ms > 0.12 ms; worker 2 never answered
    assert section["workers"]["0"]["applied"] and not section["workers"]["1"]["applied"]
    assert section["workers"]["0"]["latency_ms"]["raw"]["p50"] == 260.0
    assert section["workers"]["0"]["latency_ms"]["corrected"]["p50"] == 10.0


def _wire(declared0: int | None, received0: int, missing: list[int] | None = None, *,
          counted: tuple[int | None, int | None] = (None, None),
          final0: dict[str, object] | None = None) -> dict[str, object]:
    """wire.json's `workers` of two workers: worker 0 as given, worker 1 declared and delivered 5 rows.
    `counted`: each worker's `locust_requests` (None: a wire.json written before that key); `final0`: worker 0's
    `final` (None: written before that key)."""
    out: dict[str, dict[str, object]] = {
        "0": {"pid": 11, "host": "a", "received": {"fleet": received0},
              "declared": None if declared0 is None else {"fleet": declared0}, "batches": 3,
              "missing_batches": missing or [], "raw_bytes": 800, "wire_bytes": 100},
        "1": {"pid": 12, "host": "b", "received": {"fleet": 5}, "declared": {"fleet": 5}, "batches": 1,
              "missing_batches": [], "raw_bytes": 200, "wire_bytes": 100}}
    for w, n in zip(("0", "1"), counted):
        if n is not None:
            out[w]["locust_requests"] = n
    if final0 is not None:
        out["0"]["final"] = final0
    return out


def _rows(n0: int, n1: int) -> pd.DataFrame:
    return pd.DataFrame({"worker": [0] * n0 + [1] * n1})


def test_records_complete_when_every_worker_delivered_what_it_declared() -> None:
    rec = records_section(_rows(10, 5), files=2, locust_requests=15, wire=_wire(10, 10))
    assert rec["complete"] is True and rec["lost"] == [] and rec["per_worker"] == {"0": 10, "1": 5}
    assert rec["surplus"] == [] and rec["unacknowledged"] == []
    assert rec["wire"]["workers"]["0"] == {"pid": 11, "host": "a", "received": 10, "declared": 10, "read": 10,
                                           "locust_requests": None, "batches": 3, "missing_batches": 0,
                                           "wire_bytes": 100, "raw_bytes": 800}
    assert rec["wire"]["compression"] == 5.0


def test_records_name_the_worker_that_lost_rows() -> None:
    rec = records_section(_rows(8, 5), files=2, locust_requests=15, wire=_wire(10, 8, missing=[2]))
    assert rec["complete"] is False
    (lost,) = rec["lost"]
    assert lost["worker"] == 0 and lost["declared"] == 10 and lost["received"] == 8
    assert lost["reason"] == "worker 0 (pid 11 on a) declared 10 rows, 8 arrived (1 batch(es) missing)"


def test_records_name_a_worker_without_final_totals() -> None:
    rec = records_section(_rows(10, 5), files=2, locust_requests=15, wire=_wire(None, 10))
    assert rec["complete"] is False and "worker 0 (pid 11 on a) sent no final totals" in rec["lost"][0]["reason"]


def test_records_of_a_local_run_compare_with_locusts_count_only() -> None:
    short = records_section(_rows(10, 0), files=1, locust_requests=11, wire=None)
    assert short["complete"] is False and short["lost"] == [
        {"worker": None, "rows": 10, "locust_requests": 11, "missing": 1,
         "reason": "10 rows, Locust counted 11 requests: 1 missing"}]
    rec = records_section(_rows(10, 0), files=1, locust_requests=10, wire=None)
    assert rec["complete"] is True and "wire" not in rec
    assert records_section(_rows(0, 0), files=0, locust_requests=None, wire=None)["complete"] is None


# --- more rows than requests (issue 18): a surplus is a defect too, named like a deficit ----------------------

def test_more_rows_than_locust_counted_is_not_complete() -> None:
    """The records check used to pass `rows >= locust_requests` as complete: 12 rows for 10 requests are 2 rows
    too many (written twice, or not this run's), and say so."""
    rec = records_section(_rows(12, 0), files=1, locust_requests=10, wire=None)
    assert rec["complete"] is False and rec["lost"] == []
    assert rec["surplus"] == [{"worker": None, "rows": 12, "locust_requests": 10, "extra": 2,
                               "reason": "12 rows, Locust counted 10 requests: 2 extra"}]


def test_a_worker_whose_rows_outnumber_its_declared_total_is_named() -> None:
    rec = records_section(_rows(12, 5), files=2, locust_requests=17, wire=_wire(10, 12))
    assert rec["complete"] is False and rec["lost"] == []
    (extra,) = rec["surplus"]
    assert (extra["worker"], extra["declared"], extra["received"], extra["extra"]) == (0, 10, 12, 2)
    assert extra["reason"] == "worker 0 (pid 11 on a) declared 10 rows, 12 arrived: 2 extra"


def test_rows_in_the_records_beyond_what_arrived_are_named() -> None:
    rec = records_section(_rows(12, 5), files=2, locust_requests=15, wire=_wire(10, 10))
    assert rec["complete"] is False
    assert [e["reason"] for e in rec["surplus"]] == [
        "the records hold 12 rows of worker 0 (pid 11 on a), 10 arrived over the wire: 2 extra"]


def test_each_workers_rows_against_its_own_locust_count() -> None:
    """The master sums each worker's Locust stats reports (wire.json `locust_requests`): a surplus or a deficit
    against them names the worker, even when the totals happen to agree."""
    rec = records_section(_rows(10, 5), files=2, locust_requests=15, wire=_wire(10, 10, counted=(11, 4)))
    assert rec["complete"] is False
    assert [e["reason"] for e in rec["lost"]] == [
        "worker 0 (pid 11 on a) sent 10 rows, Locust counted 11 of its requests: 1 missing"]
    assert [(e["worker"], e["extra"], e["reason"]) for e in rec["surplus"]] == [
        (1, 1, "worker 1 (pid 12 on b) sent 5 rows, Locust counted 4 of its requests: 1 extra")]
    assert rec["wire"]["workers"]["1"]["locust_requests"] == 4
    whole = records_section(_rows(10, 5), files=2, locust_requests=15, wire=_wire(10, 10, counted=(10, 5)))
    assert whole["complete"] is True and whole["lost"] == whole["surplus"] == []


# --- the end-of-run exchange, as the master saw it (issue 18): named in the master's summary -----------------

FINAL_OK = {"asked": True, "done": True, "dones": 1, "acked_rows": 10, "ack_error": None}


@pytest.mark.parametrize(("final", "complete", "reason"), [
    (FINAL_OK, True, None),
    ({**FINAL_OK, "done": False, "dones": 0, "acked_rows": None}, False,
     "worker 0 (pid 11 on a) did not answer the master's end-of-run request (hb_flush) with its final totals "
     "(hb_done): its last rows may be missing and the master never acknowledged them"),
    ({**FINAL_OK, "asked": False, "done": False, "dones": 0, "acked_rows": None}, False,
     "worker 0 (pid 11 on a) was silent when the run ended: the master did not ask it for its last rows and no "
     "final totals (hb_done) came from it"),
    ({**FINAL_OK, "acked_rows": None, "ack_error": "RPCError: socket closed"}, True,
     "the master could not acknowledge worker 0 (pid 11 on a)'s final totals (RPCError: socket closed): the "
     "worker was not told that its rows arrived"),
    ({**FINAL_OK, "acked_rows": 7}, True,
     "3 of worker 0 (pid 11 on a)'s rows arrived after the master's last acknowledgement (of 7 rows): the worker "
     "was not told that they arrived"),
])
def test_a_worker_whose_final_exchange_did_not_complete_is_named(final: dict[str, object], complete: bool,
                                                                 reason: str | None) -> None:
    """The worker's own log says "never acknowledged"; the master's summary must say it too. Its rows may still
    be whole (the ack could not be sent): `complete` then holds, the entry is there all the same."""
    rec = records_section(_rows(10, 5), files=2, locust_requests=15, wire=_wire(10, 10, final0=final))
    assert rec["complete"] is complete and rec["lost"] == rec["surplus"] == []
    if reason is None:
        assert rec["unacknowledged"] == []
    else:
        assert rec["unacknowledged"] == [{"worker": 0, "final_totals": final["done"], "reason": reason}]


def test_a_wire_file_without_the_final_exchange_names_nothing() -> None:
    assert records_section(_rows(10, 5), files=2, locust_requests=15, wire=_wire(10, 10))["unacknowledged"] == []


def test_worker_health_counts_remote_workers_once() -> None:
    health = pd.DataFrame({"t_ns": [1, 2, 3, 4], "worker": [0, 0, 1, 1], "pid": [11, 11, 12, 12],
                           "host": ["here", "here", "there", "there"], "cpu_pct": [50.0, 60.0, 95.0, 97.0],
                           "lag_ms": [1.0, 2.0, 30.0, 40.0]})
    samples = health_samples(health, local_pids={11}, host="here")  # worker 0 is a local fork: sampled already
    assert samples["process"].unique().tolist() == ["Locust worker 1 (pid 12 on there)"]
    assert samples["cpu_pct"].tolist() == [95.0, 97.0]
    assert health_summary(health)["1"] == {"samples": 2, "cpu_max_pct": 97.0, "cpu_mean_pct": 96.0,
                                           "lag_max_ms": 40.0}


def test_a_hot_remote_worker_saturates_the_run_and_is_named() -> None:
    health = pd.DataFrame({"t_ns": [1, 2, 3], "worker": [1, 1, 1], "pid": [12, 12, 12], "host": ["b"] * 3,
                           "cpu_pct": [95.0, 40.0, 97.0], "lag_ms": [1.0, 1.0, 1.0]})
    local = pd.DataFrame({"process": ["locust"] * 3, "cpu_pct": [10.0, 12.0, 11.0]})
    samples = pd.concat([local, health_samples(health, local_pids=set(), host="a")], ignore_index=True)
    assert locust_cpu_reasons(samples, 0) == ["Locust worker 1 (pid 12 on b) CPU above 90% in 2 one-second samples"]


def test_clock_bound_is_a_load_key() -> None:
    path = "scenarios/overload_producer.toml"
    assert load_scenario(path).load.clock_bound == 0.005
    assert load_scenario(path, ["load.clock_bound=2ms"]).load.clock_bound == pytest.approx(0.002)
    with pytest.raises(ScenarioError, match="clock_bound"):
        load_scenario(path, ["load.clock_bound=-1ms"])


# The master's side of the end-of-run exchange (scenarios/_wire.py), driven with fixed messages in a process of its
# own (importing Locust gevent-patches the process): worker 0 answers the "hb_flush" but the "hb_ack" cannot be
# sent, worker 1 never answers. wire.json must say so, and the records section name both.
MASTER_SCRIPT = r"""
import json, sys
from pathlib import Path
from types import SimpleNamespace as NS

import scenarios._wire as wire
from bench.wire import Batcher

wire.CLOCK_WAIT_S, wire.DONE_WAIT_S = 0.05, 0.3  # nobody answers the clock pings; worker 1 never answers at all


class Events:
    def __getattr__(self, name):
        return NS(add_listener=lambda fn: None)


def send_message(kind, data=None, client_id=None):
    if kind == "hb_flush" and client_id == "a":  # worker 0 answers at once with its totals
        node._on_done(env, NS(node_id="a", data={"pid": 11, "totals": {"fleet": 2}}))
    elif kind == "hb_ack":
        raise RuntimeError("socket closed")


runner = NS(register_message=lambda kind, fn: None, send_message=send_message,
            get_worker_index=lambda cid: {"a": 0, "b": 1}[cid], clients=NS(all=[]))
env = NS(runner=runner, events=Events(), parsed_options=NS(hb_records=sys.argv[1]))
node = wire._MasterNode(env)
for cid, pid in (("a", 11), ("b", 12)):
    node._on_hello(env, NS(node_id=cid, data={"pid": pid, "host": "h"}))
    batcher = Batcher()
    batcher.add("fleet", {"i": 0})
    batcher.add("fleet", {"i": 1})
    for batch in batcher.take():
        node._on_rows(env, NS(node_id=cid, data={**batch.message(), "pid": pid}))
    node._on_worker_report(cid, {"stats_total": {"num_requests": 2}})
node._rx = None  # test_stop runs outside the receiving greenlet, as after the ramp's last step
node._on_test_stop()
"""


def test_the_master_records_an_end_of_run_exchange_that_did_not_complete(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", MASTER_SCRIPT, str(tmp_path)], cwd=Path(__file__).resolve().parents[1],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    workers = json.loads((tmp_path / "wire.json").read_text())["workers"]
    assert workers["0"]["final"] == {"asked": True, "done": True, "dones": 1, "acked_rows": None,
                                     "ack_error": "RuntimeError: socket closed"}
    assert workers["1"]["final"] == {"asked": True, "done": False, "dones": 0, "acked_rows": None, "ack_error": None}
    assert workers["0"]["locust_requests"] == workers["1"]["locust_requests"] == 2
    rec = records_section(_rows(2, 2), files=2, locust_requests=4, wire=workers)
    assert [u["reason"] for u in rec["unacknowledged"]] == [
        "the master could not acknowledge worker 0 (pid 11 on h)'s final totals (RuntimeError: socket closed): the "
        "worker was not told that its rows arrived",
        "worker 1 (pid 12 on h) did not answer the master's end-of-run request (hb_flush) with its final totals "
        "(hb_done): its last rows may be missing and the master never acknowledged them"]
    assert rec["complete"] is False  # worker 1's final totals never came
    assert "sent no final totals" in rec["lost"][0]["reason"] and rec["lost"][0]["worker"] == 1
