"""hookbench's measurements over Locust's own master/worker messaging: record rows, worker health, clock samples.

Not a locustfile. A locustfile calls `attach(environment, *record_files)` in its init listener; on a plain
(local) runner nothing changes, each process writes its own files. On a Locust worker (a separately started one
or a `--processes N` fork) every row goes to the master instead, and the master is the only writer:

- rows: batched per record stem (bench.wire.Batcher: 1000 rows or 0.5 s), zlib-compressed JSON lines, numbered
  per worker ("hb_rows"). The master appends them to `<records>/<stem>-w<index>-<pid>.jsonl` (index: Locust's
  worker index, pid: the worker's). On stop the worker sends what is left, then Locust's own stats report (so the
  master's request count holds every request before the totals arrive, rather than only if the final report at
  quit beats Locust's 0.5 s), then "hb_done" with its row totals per stem; the master answers "hb_ack" with what
  it received; the worker warns at exit when that is missing or differs. `<records>/wire.json` keeps, per
  worker, rows received and declared, batches, gaps, bytes, the requests its Locust stats reports counted
  (`locust_requests`, summed from events.worker_report) and how the final exchange went as the master saw it
  (`final`: asked with "hb_flush", "hb_done" received after that, rows covered by the last "hb_ack", the error
  if the ack could not be sent), so a worker that never completed it is named in the master's summary and not
  only in its own log.
- health: once a second each worker sends its own CPU % (psutil) and its greenlet lag (the overshoot of a 0.1 s
  sleep, the worst in the second) ("hb_health"): `<records>/worker_health.jsonl` (t_ns is the master's clock).
- clocks: at test_start and before the final flush the master sends each worker CLOCK_SAMPLES pings ("hb_clock",
  t1); the worker answers t1, t2 (received), t3 (sent) ("hb_clock_reply"); the master notes t4 and writes every
  exchange to `<records>/clock.jsonl`; bench.analysis.clocks keeps the minimum-delay one.

Ordering (Locust 2.47, runners.py). Messages of one worker arrive at the master in order, and the master handles
them one at a time in its `client_listener` greenlet; a handler that waited there for a later message would wait
forever. A headless shape ends with `MasterRunner.quit()`, which sends no "stop", only "quit", then waits 0.5 s
and kills the greenlet that receives: a worker's last rows could still be on their way. So the master's
`test_stop` listener (which runs in the greenlet that called stop/quit, before any "quit" goes out) sends
"hb_flush"; a worker stops its users on it (its own test_stop sends the last batches and "hb_done"), and the master
waits, outside the receiving greenlet, until every live worker's "hb_done" has come (so every earlier batch has
been written) or DONE_WAIT_S has passed. With a "stop" first (run time, web UI) the workers have flushed before
their "client_stopped"; the "hb_flush" then only asks for a second "hb_done". If test_stop runs in the receiving
greenlet (the last worker quit), every worker has already sent everything: nothing is waited for.

Test hook: HOOKBENCH_CLOCK_SKEW_NS (bench.wire.SKEW_ENV) on a worker shifts every `*_ns` time of its rows (and
their declared ms fields) and its clock answers, as if its clock ran that far ahead. HOOKBENCH_WORKER_RECORDS=DIR
makes a worker also keep its own copy of the rows it sends, in DIR/<stem>-<pid>.jsonl.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gevent
import psutil
from locust.runners import STATE_STOPPED, MasterRunner, WorkerRunner

from bench.records import JsonlWriter
from bench.wire import (
    CLOCK_FILE,
    HEALTH_FILE,
    LOCAL_COPY_ENV,
    WIRE_FILE,
    Batch,
    Batcher,
    WireError,
    clock_skew_ns,
    decode_rows,
    skewed,
)
from scenarios._locust_common import RecordFile

if TYPE_CHECKING:
    from locust.env import Environment

__all__ = ["attach", "CLOCK_FILE", "HEALTH_FILE", "WIRE_FILE", "LOCAL_COPY_ENV", "CLOCK_SAMPLES"]

log = logging.getLogger("hookbench.wire")

ROWS, DONE, ACK, FLUSH, HELLO = "hb_rows", "hb_done", "hb_ack", "hb_flush", "hb_hello"
HEALTH, CLOCK, CLOCK_REPLY = "hb_health", "hb_clock", "hb_clock_reply"
CLOCK_SAMPLES = 8
LAG_TICK_S, HEALTH_EVERY_S = 0.1, 1.0
CLOCK_WAIT_S, DONE_WAIT_S = 3.0, 30.0
PEER_SILENT_S = 5.0  # a worker that sent nothing for this long is not waited for

_node: list[Any] = []  # this process's _WorkerNode or _MasterNode (one per process, whatever the locustfiles)


def attach(environment: Environment, *files: RecordFile) -> list[str]:
    """Route `files` over Locust's messaging when this process is a worker; on a master, receive. Returns errors
    (a bad HOOKBENCH_CLOCK_SKEW_NS) for the caller's fail_at_init."""
    runner = environment.runner
    if not isinstance(runner, (WorkerRunner, MasterRunner)):
        return []
    if not _node:
        try:
            _node.append(_WorkerNode(environment) if isinstance(runner, WorkerRunner) else _MasterNode(environment))
        except ValueError as exc:
            return [str(exc)]
    if isinstance(_node[0], _WorkerNode):
        for f in files:
            _node[0].add(f)
    return []


class _WorkerNode:
    def __init__(self, environment: Environment) -> None:
        self.env, self.runner = environment, environment.runner
        self.skew = clock_skew_ns()
        self.batcher = Batcher()
        self.pid, self.host = os.getpid(), socket.gethostname()
        self.local_dir = os.environ.get(LOCAL_COPY_ENV, "")
        self.local: dict[str, JsonlWriter] = {}
        self.done_sent: dict[str, int] | None = None
        self.dones = 0
        self.acked: dict[str, Any] | None = None
        self.raw_bytes = self.wire_bytes = 0
        RecordFile.over_wire = True
        for kind, handler in ((ACK, self._on_ack), (FLUSH, self._on_flush), (CLOCK, self._on_clock)):
            self.runner.register_message(kind, handler)
        environment.events.test_stop.add_listener(self._on_test_stop)
        environment.events.quitting.add_listener(self._on_quitting)
        self._send(HELLO, {"pid": self.pid, "host": self.host, "skew_injected": bool(self.skew)})
        self.runner.greenlet.spawn(self._pump)
        self.runner.greenlet.spawn(self._health)
        if self.skew:
            log.warning("wire: test hook %s: this worker's clock reads %+.3f ms", "HOOKBENCH_CLOCK_SKEW_NS",
                        self.skew / 1e6)

    def add(self, f: RecordFile) -> None:
        f.sink = self._row

    def _send(self, kind: str, data: dict[str, Any]) -> None:
        try:
            self.runner.send_message(kind, data)
        except Exception as exc:  # an RPC error must not kill a user greenlet; the ack check reports the loss
            log.error("wire: could not send %s to the master: %s", kind, exc)

    def _row(self, f: RecordFile, row: dict[str, Any]) -> None:
        row = skewed(row, self.skew, f.ms_fields)
        if self.local_dir:
            if f.stem not in self.local:
                self.local[f.stem] = JsonlWriter(Path(self.local_dir) / f"{f.stem}-{self.pid}.jsonl")
            self.local[f.stem].write(row)
        if self.batcher.add(f.stem, row):
            self._send_batches()

    def _send_batches(self) -> None:
        for batch in self.batcher.take():
            self.raw_bytes += batch.raw_bytes
            self.wire_bytes += len(batch.payload)
            self._send(ROWS, {**batch.message(), "pid": self.pid})

    def _pump(self) -> None:
        while True:
            gevent.sleep(0.1)
            if self.batcher.due():
                self._send_batches()

    def _health(self) -> None:
        proc = psutil.Process()
        proc.cpu_percent(None)
        last, worst = time.monotonic(), 0.0
        while True:
            t = time.monotonic()
            gevent.sleep(LAG_TICK_S)
            now = time.monotonic()
            worst = max(worst, now - t - LAG_TICK_S)
            if now - last >= HEALTH_EVERY_S:
                self._send(HEALTH, {"pid": self.pid, "host": self.host, "cpu_pct": proc.cpu_percent(None),
                                    "lag_ms": round(max(0.0, worst) * 1e3, 3)})
                last, worst = now, 0.0

    def flush_and_done(self) -> None:
        """Every pending row, then the totals: in order on the one connection, so "hb_done" arrives last."""
        self._send_batches()
        for w in self.local.values():
            w.flush()
        self._report_stats()
        self.done_sent = dict(self.batcher.totals)
        self.dones += 1
        self._send(DONE, {"pid": self.pid, "totals": self.done_sent, "batches": self.batcher.seq,
                          "raw_bytes": self.raw_bytes, "wire_bytes": self.wire_bytes})

    def _report_stats(self) -> None:
        """Locust's stats report now (what its stats_reporter sends every 3 s): ahead of "hb_done" on the same
        connection, so the master has counted every request of this worker once it has the totals. Without it the
        last requests travel only in the report sent at "quit", which Locust's master waits 0.5 s for."""
        try:
            self.runner._send_stats()
        except Exception as exc:  # as _send: the master may be gone; the records check then names the gap
            log.error("wire: could not send Locust's stats report to the master: %s", exc)

    def _on_test_stop(self, **_: Any) -> None:
        self.flush_and_done()

    def _on_flush(self, environment: Environment, msg: Any, **_: Any) -> None:
        before = self.dones
        if self.runner.state != STATE_STOPPED:
            self.runner.stop()  # its test_stop listeners run here, ours sends the last rows and "hb_done"
        if self.dones == before:
            self.flush_and_done()

    def _on_ack(self, environment: Environment, msg: Any, **_: Any) -> None:
        self.acked = dict(msg.data or {})
        if self.acked.get("received") != self.done_sent:
            log.warning("wire: the master received %s rows, this worker sent %s", self.acked.get("received"),
                        self.done_sent)

    def _on_clock(self, environment: Environment, msg: Any, **_: Any) -> None:
        t2 = time.time_ns() + self.skew
        data = dict(msg.data or {})
        self._send(CLOCK_REPLY, {**data, "t2": t2, "t3": time.time_ns() + self.skew})

    def _on_quitting(self, **_: Any) -> None:
        if self.batcher.pending:  # rows after the last "hb_done": send them, though the master may be gone
            self.flush_and_done()
        for w in self.local.values():
            w.close()
        if not self.batcher.totals:
            return
        if self.acked is None:
            log.warning("wire: the master never acknowledged this worker's rows (%s): its run directory may lack "
                        "some of them", self.batcher.totals)
        elif self.acked.get("received") != self.batcher.totals:
            log.warning("wire: the master acknowledged %s rows of %s sent: rows were lost on the way",
                        self.acked.get("received"), self.batcher.totals)
        else:
            log.info("wire: the master acknowledged every row (%s)", self.batcher.totals)


class _Peer:
    """What the master knows of one worker process."""

    def __init__(self, client_id: str, index: int) -> None:
        self.client_id, self.index = client_id, index
        self.pid: int | None = None
        self.host = ""
        self.received: dict[str, int] = {}
        self.declared: dict[str, int] | None = None
        self.next_seq = 0
        self.missing: list[int] = []
        self.bad = 0
        self.raw_bytes = self.wire_bytes = 0
        self.writers: dict[str, JsonlWriter] = {}
        self.last_seen = time.monotonic()
        self.flushed = True  # an "hb_done" came since the last "hb_flush"
        self.flush_asked = False  # the master sent "hb_flush" at the end of the run
        self.dones = 0  # "hb_done" messages received
        self.acked_rows: int | None = None  # rows received when the last "hb_ack" went out
        self.ack_error: str | None = None  # why the last "hb_ack" could not be sent
        self.locust_requests = 0  # requests counted by this worker's Locust stats reports (events.worker_report)
        self.reports = 0
        self.clock: dict[str, int] = {}  # phase -> samples taken

    def public(self) -> dict[str, Any]:
        # final.done: the worker's last "hb_done" answered the master's "hb_flush" (or, when none was sent because
        # the workers stopped on their own, at least one came)
        done = self.flushed if self.flush_asked else self.dones > 0
        return {"client_id": self.client_id, "pid": self.pid, "host": self.host, "received": self.received,
                "declared": self.declared, "batches": self.next_seq, "missing_batches": self.missing,
                "bad_batches": self.bad, "raw_bytes": self.raw_bytes, "wire_bytes": self.wire_bytes,
                "locust_requests": self.locust_requests if self.reports else None,
                "final": {"asked": self.flush_asked, "done": done, "dones": self.dones,
                          "acked_rows": self.acked_rows, "ack_error": self.ack_error}}


class _MasterNode:
    def __init__(self, environment: Environment) -> None:
        self.env, self.runner = environment, environment.runner
        self.peers: dict[str, _Peer] = {}
        self.files: dict[str, JsonlWriter] = {}
        self._rx: Any = None  # the greenlet that receives (Locust's client_listener): never wait in it
        handlers = {HELLO: self._on_hello, ROWS: self._on_rows, DONE: self._on_done, HEALTH: self._on_health,
                    CLOCK_REPLY: self._on_clock_reply}
        for kind, handler in handlers.items():
            self.runner.register_message(kind, handler)
        environment.events.worker_report.add_listener(self._on_worker_report)
        environment.events.test_start.add_listener(self._on_test_start)
        environment.events.test_stop.add_listener(self._on_test_stop)
        environment.events.quitting.add_listener(self._on_quitting)

    # -- files -----------------------------------------------------------------------------------------
    def _dir(self) -> str:
        return str(getattr(self.env.parsed_options, "hb_records", "") or "")

    def _file(self, name: str) -> JsonlWriter | None:
        if not self._dir():
            return None
        if name not in self.files:
            self.files[name] = JsonlWriter(Path(self._dir()) / name)
        return self.files[name]

    def _write_summary(self) -> None:
        if not self._dir():
            return
        path = Path(self._dir()) / WIRE_FILE
        data = {"format_version": 1, "workers": {str(p.index): p.public() for p in self.peers.values()}}
        tmp = path.with_name(f".{WIRE_FILE}.{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)

    # -- messages (all in the receiving greenlet) ------------------------------------------------------
    def _peer_of(self, cid: str) -> _Peer:
        self._rx = gevent.getcurrent()
        if cid not in self.peers:
            self.peers[cid] = _Peer(cid, int(self.runner.get_worker_index(cid)))
        peer = self.peers[cid]
        peer.last_seen = time.monotonic()
        return peer

    def _peer(self, msg: Any) -> _Peer:
        peer = self._peer_of(msg.node_id)
        data = msg.data or {}
        if isinstance(data, dict) and data.get("pid") is not None:
            peer.pid = int(data["pid"])
            peer.host = str(data.get("host", peer.host))
        return peer

    def _on_hello(self, environment: Environment, msg: Any, **_: Any) -> None:
        peer = self._peer(msg)
        log.info("wire: worker %d (pid %s on %s) reports over the wire%s", peer.index, peer.pid, peer.host,
                 " (its clock is skewed by the test hook)" if (msg.data or {}).get("skew_injected") else "")

    def _on_rows(self, environment: Environment, msg: Any, **_: Any) -> None:
        peer = self._peer(msg)
        try:
            batch = Batch.from_message(msg.data)
            lines = decode_rows(batch.payload, batch.compressed, batch.rows)
        except WireError as exc:
            peer.bad += 1
            log.error("wire: worker %d sent a bad batch: %s", peer.index, exc)
            return
        if batch.seq != peer.next_seq:
            peer.missing.extend(range(peer.next_seq, batch.seq))
            log.error("wire: worker %d: batches %d..%d never arrived", peer.index, peer.next_seq, batch.seq - 1)
        peer.next_seq = max(peer.next_seq, batch.seq + 1)
        peer.received[batch.stem] = peer.received.get(batch.stem, 0) + batch.rows
        peer.raw_bytes += batch.raw_bytes
        peer.wire_bytes += len(batch.payload)
        if self._dir():
            if batch.stem not in peer.writers:
                name = f"{batch.stem}-w{peer.index}-{peer.pid or peer.client_id}.jsonl"
                peer.writers[batch.stem] = JsonlWriter(Path(self._dir()) / name)
            peer.writers[batch.stem].write_lines(lines, batch.rows)

    def _on_worker_report(self, client_id: str, data: dict[str, Any], **_: Any) -> None:
        """Locust's stats report of one worker (in the receiving greenlet): its requests since its last report."""
        peer = self._peer_of(client_id)
        total = (data or {}).get("stats_total") or {}
        peer.locust_requests += int(total.get("num_requests") or 0)
        peer.reports += 1

    def _on_done(self, environment: Environment, msg: Any, **_: Any) -> None:
        peer = self._peer(msg)
        data = msg.data or {}
        peer.declared = {str(k): int(v) for k, v in (data.get("totals") or {}).items()}
        for w in peer.writers.values():
            w.flush()
        peer.flushed = True
        peer.dones += 1
        try:
            self.runner.send_message(ACK, {"received": peer.received, "batches": peer.next_seq,
                                           "missing_batches": peer.missing}, client_id=peer.client_id)
        except Exception as exc:  # the worker is gone or unreachable: wire.json says so, the summary names it
            peer.ack_error = f"{type(exc).__name__}: {exc}"
            log.error("wire: could not acknowledge worker %d's totals: %s", peer.index, peer.ack_error)
        else:
            peer.acked_rows, peer.ack_error = sum(peer.received.values()), None
        if peer.declared != peer.received:
            log.warning("wire: worker %d declared %s rows, the master received %s", peer.index, peer.declared,
                        peer.received)
        self._write_summary()

    def _on_health(self, environment: Environment, msg: Any, **_: Any) -> None:
        peer = self._peer(msg)
        data = msg.data or {}
        if (f := self._file(HEALTH_FILE)) is not None:
            f.write({"t_ns": time.time_ns(), "worker": peer.index, "pid": peer.pid, "host": peer.host,
                     "cpu_pct": data.get("cpu_pct"), "lag_ms": data.get("lag_ms")})

    def _on_clock_reply(self, environment: Environment, msg: Any, **_: Any) -> None:
        t4 = time.time_ns()
        peer = self._peer(msg)
        data = msg.data or {}
        phase, k = str(data.get("phase")), int(data.get("k", 0))
        if (f := self._file(CLOCK_FILE)) is not None:
            f.write({"t_ns": t4, "worker": peer.index, "pid": peer.pid, "host": peer.host, "phase": phase, "k": k,
                     "t1": data.get("t1"), "t2": data.get("t2"), "t3": data.get("t3"), "t4": t4})
        peer.clock[phase] = k + 1
        if k + 1 < CLOCK_SAMPLES:
            self._ping(peer.client_id, phase, k + 1)

    # -- the run -----------------------------------------------------------------------------------------
    def _ping(self, client_id: str, phase: str, k: int) -> None:
        self.runner.send_message(CLOCK, {"phase": phase, "k": k, "t1": time.time_ns()}, client_id=client_id)

    def _clock_round(self, phase: str) -> list[str]:
        ids = set(self.peers) | {c.id for c in self.runner.clients.all}
        for cid in ids:
            if cid in self.peers:
                self.peers[cid].clock.pop(phase, None)
            self._ping(cid, phase, 0)
        return sorted(ids)

    def _live(self) -> list[_Peer]:
        return [p for p in self.peers.values() if time.monotonic() - p.last_seen < PEER_SILENT_S]

    def _wait(self, done: Any, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                return False
            gevent.sleep(0.02)
        return True

    def _on_test_start(self, **_: Any) -> None:
        self._clock_round("start")

    def _on_test_stop(self, **_: Any) -> None:
        if gevent.getcurrent() is self._rx:
            log.info("wire: stopped from the receiving greenlet (the workers quit): every worker already flushed")
            self._write_summary()
            return
        self._clock_round("end")
        if not self._wait(lambda: all(p.clock.get("end", 0) >= CLOCK_SAMPLES for p in self._live()), CLOCK_WAIT_S):
            log.warning("wire: not every worker answered the end-of-run clock samples within %.0f s", CLOCK_WAIT_S)
        for peer in self._live():
            peer.flushed, peer.flush_asked = False, True
            self.runner.send_message(FLUSH, {}, client_id=peer.client_id)
        if not self._wait(lambda: all(p.flushed for p in self._live()), DONE_WAIT_S):
            late = [p.index for p in self._live() if not p.flushed]
            log.warning("wire: worker(s) %s sent no final totals within %.0f s: their last rows may be missing",
                        late, DONE_WAIT_S)
        self._write_summary()
        raw = sum(p.raw_bytes for p in self.peers.values())
        sent = sum(p.wire_bytes for p in self.peers.values())
        rows = sum(sum(p.received.values()) for p in self.peers.values())
        if rows:
            log.info("wire: %d rows from %d worker(s): %d bytes of JSON lines in %d bytes on the wire (%.1fx)",
                     rows, len(self.peers), raw, sent, raw / max(1, sent))

    def _on_quitting(self, **_: Any) -> None:
        self._write_summary()
        for peer in self.peers.values():
            for w in peer.writers.values():
                w.close()
            peer.writers.clear()
        for f in self.files.values():
            f.close()
        self.files.clear()
