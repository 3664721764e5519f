"""The poller core (scenarios/_poll_core.py) on scripted answers, and the rows pollers.py and fleet.py write from it.

Locust monkey-patches the process that imports it, so each check runs in its own interpreter (no server: the
client is a fake that answers from a script) and prints what it saw as JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

FAKE_CLIENT = '''
import json, sys
sys.path.insert(0, ".")
from scenarios import _poll_core as core

class Resp:
    def __init__(self, status, body=None, headers=None, error=None):
        self.status_code, self.headers, self.error = status, headers or {}, error
        self.content = body if isinstance(body, bytes) else (b"" if body is None else json.dumps(body).encode())
        self.marked = None
    def success(self): self.marked = "success"
    def failure(self, error): self.marked = "failure: " + error
    def __enter__(self): return self
    def __exit__(self, *exc): return False

class Client:
    def __init__(self, answers): self.answers, self.sent = list(answers), []
    def get(self, path, name, headers, catch_response):
        self.sent.append([path, name, headers])
        return self.answers.pop(0)

def change(seq, t=1000):
    return {"change_id": f"c{seq}", "resource_id": 0, "seq": seq, "version": 1, "t_change_ns": t}

def page(seqs, next_after, has_more):
    return Resp(200, {"changes": [change(s) for s in seqs], "next_after": next_after, "has_more": has_more})

def resource(version, etag=None):
    body = {"id": 3, "version": version, "seq": version, "change_id": f"r3v{version}" if version else None,
            "t_change_ns": 500 + version if version else None, "data": {"value": 0}}
    return Resp(200, body, {"ETag": etag} if etag else {})

def show(o):
    return {"status": o.status, "error": o.error, "initial": o.initial, "first_read": o.first_read,
            "new": [c.change_id for c in o.new], "n_new": o.n_new, "more": o.more}
'''


def run(script: str) -> Any:
    done = subprocess.run([sys.executable, "-c", FAKE_CLIENT + textwrap.dedent(script)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_cursor_follows_full_pages_and_counts_only_changes_past_the_cursor() -> None:
    out = run('''
        feed = core.CursorFeed(limit=2)
        client = Client([page([1, 2], 2, True), page([2, 3], 3, False), page([], 3, False), page([3], 3, True)])
        rows = []
        core.run_poll(feed, client, core.TERSE, 10, lambda o, t, f: rows.append([show(o), t, f]))
        core.run_poll(feed, client, core.TERSE, 20, lambda o, t, f: rows.append([show(o), t, f]))
        core.run_poll(feed, client, core.TERSE, 30, lambda o, t, f: rows.append([show(o), t, f]))
        print(json.dumps({"rows": rows, "sent": client.sent, "after": feed.after}))
    ''')
    rows = out["rows"]
    assert [r[0]["new"] for r in rows] == [["c1", "c2"], ["c3"], [], []]  # c2 again: already seen
    assert [r[0]["more"] for r in rows] == [True, False, False, False]  # has_more without progress: no loop
    assert [r[0]["initial"] for r in rows] == [True, True, False, False]  # the catch-up is the initial sync
    assert [r[2] for r in rows] == [False, True, False, False]  # the follow-up page
    assert rows[1][1] != 10 and rows[2][1] == 20  # a follow-up's intended time is the previous answer's arrival
    assert [s[0] for s in out["sent"]] == ["/changes?after=0&limit=2", "/changes?after=2&limit=2",
                                          "/changes?after=3&limit=2", "/changes?after=3&limit=2"]
    assert {s[1] for s in out["sent"]} == {"/changes"} and out["after"] == 3


def test_etag_first_read_304_and_coalesced_versions() -> None:
    out = run('''
        res = core.EtagResource(3)
        client = Client([resource(2, '"r3-v2"'), Resp(304), resource(5), resource(4), resource(0)])
        seen = [show(res.poll(client, core.TERSE)) for _ in range(4)]
        fresh = core.EtagResource(4)
        seen.append(show(fresh.poll(client, core.TERSE)))
        print(json.dumps({"seen": seen, "sent": client.sent, "version": res.version, "etag": res.etag}))
    ''')
    first, not_modified, moved, older, empty_first = out["seen"]
    assert (first["first_read"], first["initial"], first["n_new"], first["new"]) == (True, True, 2, ["r3v2"])
    assert (not_modified["status"], not_modified["n_new"], not_modified["new"]) == (304, 0, [])
    assert (moved["first_read"], moved["n_new"], moved["new"]) == (False, 3, ["r3v5"])  # 3 versions, 1 observed
    assert (older["n_new"], older["new"]) == (0, []) and out["version"] == 5  # a stale answer never goes back
    assert (empty_first["first_read"], empty_first["n_new"], empty_first["new"]) == (True, 0, [])
    assert out["sent"][0] == ["/resources/3", "/resources/[id]", None]
    assert out["sent"][1][2] == {"If-None-Match": '"r3-v2"'}  # the server's ETag
    assert out["sent"][3][2] == {"If-None-Match": '"r3-v5"'} and out["etag"] == '"r3-v5"'  # none sent: etag_for


def test_failures_are_worded_as_each_locustfile_always_wrote_them() -> None:
    out = run('''
        answers = lambda: [Resp(0, error=ConnectionRefusedError(111, "Connection refused")), Resp(503),
                           Resp(200, b"{not json"), Resp(200, {"next_after": 1})]
        words = {}
        for name in ("TERSE", "DETAILED"):
            feed, client = core.CursorFeed(10), Client(answers())
            words[name] = [show(feed.poll(client, getattr(core, name))) for _ in range(4)]
            words[name + "_marked"] = [r.marked for r in answers()]  # fresh ones: nothing marked
        print(json.dumps(words))
    ''')
    assert [o["error"] for o in out["TERSE"]] == ["connection", "HTTP 503", "bad body: JSONDecodeError",
                                                  "bad body: KeyError"]
    assert [o["error"] for o in out["DETAILED"]] == ["ConnectionRefusedError: [Errno 111] Connection refused",
                                                     "HTTP 503", "bad JSON", "bad body: KeyError: 'changes'"]
    assert all(o["n_new"] == 0 and not o["more"] and o["initial"] for o in out["TERSE"] + out["DETAILED"])


ROWS = '''
import types
from pathlib import Path
rec = Path(sys.argv[1])
from scenarios import pollers, fleet
pollers._polls.directory = pollers._observations.directory = fleet._polls.directory = str(rec)
def O(status, error, initial, first_read, new, n_new, more):
    return core.Outcome(status, 4_900_000, 5_000_000, 10, error, initial, first_read, new, n_new, more)
cases = {  # status, error, initial, first_read, new, n_new, more
    "error": O(0, "timeout", False, False, [], 0, False),
    "not_modified": O(304, None, False, False, [], 0, False),
    "first_read": O(200, None, True, True, [core.Change("c7", 900)], 7, False),
    "first_read_empty": O(200, None, True, True, [], 0, False),
    "moved": O(200, None, False, False, [core.Change("c9", 1_500_000)], 2, False),
    "page": O(200, None, True, False, [core.Change("a", 900), core.Change("b", 1_200_000)], 2, True),
}
for name, o in cases.items():
    etag = name != "page"
    poller = types.SimpleNamespace(mode=name, index=1, worker=0, rid=3 if etag else None, flags_initial=etag,
                                   row_extra=lambda followup: {})
    pollers._Poller.record(poller, o, 1800, not etag)
    user = types.SimpleNamespace(mode=name, index=1, worker=0, rid=3 if etag else None, t_join_ns=1000)
    fleet.FleetPoller._record(user, o, 1800, not etag)
for f in (pollers._polls, pollers._observations, fleet._polls):
    f.close()
read = lambda stem: [json.loads(x) for p in rec.glob(stem + "-*.jsonl") for x in p.read_text().splitlines()]
print(json.dumps({"polls": read("polls"), "observations": read("observations"), "fleet": read("fleet"),
                  "metrics": fleet._metrics.snapshot()["counts"]}))
'''


def test_rows_of_the_run_pollers_and_of_the_fleet(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", FAKE_CLIENT + ROWS, str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    polls = {r["mode"]: r for r in out["polls"]}
    fleet = {r["mode"]: r for r in out["fleet"]}
    keys = ("empty", "n_new", "initial", "error")
    # pollers.py (hookbench run): an error is an empty poll; a first ETag read is a sync, neither empty nor new;
    # a cursor row is never flagged initial
    assert {m: tuple(r[k] for k in keys) for m, r in polls.items()} == {
        "error": (True, 0, False, "timeout"), "not_modified": (True, 0, False, None),
        "first_read": (False, 0, True, None), "first_read_empty": (False, 0, True, None),
        "moved": (False, 2, False, None), "page": (False, 2, False, None)}
    assert set(polls["page"]) == {"mode", "user", "worker", "resource_id", "t_intended_ns", "t_send_ns",
                                  "t_recv_ns", "status", "empty", "n_new", "bytes", "error", "followup", "initial"}
    assert sorted((o["mode"], o["change_id"]) for o in out["observations"]) == [
        ("first_read", "c7"), ("moved", "c9"), ("page", "a"), ("page", "b")]
    # fleet.py (hookbench load): an error is neither empty nor useful; a first read counts the versions
    assert {m: tuple(r[k] for k in keys) for m, r in fleet.items()} == {
        "error": (False, 0, False, "timeout"), "not_modified": (True, 0, False, None),
        "first_read": (False, 7, True, None), "first_read_empty": (True, 0, True, None),
        "moved": (False, 2, False, None), "page": (False, 2, True, None)}
    # latency: only changes made after the join (t_join 1000), the largest of a page
    assert {m: r["latency_ms"] for m, r in fleet.items()} == {
        "error": None, "not_modified": None, "first_read": None, "first_read_empty": None, "moved": 3.5,
        "page": 3.8}
    assert set(fleet["page"]) == {"mode", "user", "worker", "resource_id", "t_intended_ns", "t_send_ns", "t_recv_ns",
                                  "status", "empty", "n_new", "bytes", "error", "latency_ms", "followup", "initial"}
    assert out["metrics"] == {"polls": 6, "empty": 2, "useful": 3, "errors": 1, "initial": 3}
