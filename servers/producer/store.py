"""The producer's SQLite store (WAL): resources, the append-only change log, subscriptions.

Queries run synchronously in the event loop's thread: they take microseconds on these tables, and
their cost lands on the producer's CPU, which is exactly what polling is charged for.
"""

from __future__ import annotations

import secrets
import sqlite3
from pathlib import Path
from typing import Any

from bench.protocol import ChangeEvent, change_event

__all__ = ["Store", "Subscription"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS resources (
    id INTEGER PRIMARY KEY, version INTEGER NOT NULL, seq INTEGER NOT NULL,
    change_id TEXT, t_change_ns INTEGER, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY, change_id TEXT NOT NULL UNIQUE, resource_id INTEGER NOT NULL,
    version INTEGER NOT NULL, t_change_ns INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS subscriptions (
    id TEXT PRIMARY KEY, url TEXT NOT NULL, secret TEXT NOT NULL, created_ns INTEGER NOT NULL,
    active INTEGER NOT NULL DEFAULT 1);
"""


class Subscription(tuple):
    """(id, url, secret) of an active subscription."""

    __slots__ = ()

    def __new__(cls, sid: str, url: str, secret: str) -> "Subscription":
        return super().__new__(cls, (sid, url, secret))

    id = property(lambda self: self[0])
    url = property(lambda self: self[1])
    secret = property(lambda self: self[2])


class Store:
    def __init__(self, path: str | Path, resources: int) -> None:
        self.path = str(path)
        self.db = sqlite3.connect(self.path, isolation_level=None)  # autocommit; explicit BEGIN for writes
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        have = self.db.execute("SELECT COUNT(*) FROM resources").fetchone()[0]
        if have < resources:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT INTO resources (id, version, seq, value) VALUES (?, 0, 0, 0)",
                                [(i,) for i in range(have, resources)])
            self.db.execute("COMMIT")
        self.resources = resources
        self._next_seq = (self.db.execute("SELECT MAX(seq) FROM changes").fetchone()[0] or 0) + 1

    def close(self) -> None:
        self.db.close()

    # --- writes -------------------------------------------------------------------------------
    def apply_change(self, resource_id: int, t_change_ns: int, value: int) -> ChangeEvent:
        """Mutate one resource and append the change to the log, in one transaction."""
        seq = self._next_seq
        change_id = f"ch{seq}"
        self.db.execute("BEGIN IMMEDIATE")
        try:
            (version,) = self.db.execute(
                "UPDATE resources SET version = version + 1, seq = ?, change_id = ?, t_change_ns = ?, value = ? "
                "WHERE id = ? RETURNING version", (seq, change_id, t_change_ns, value, resource_id)).fetchone()
            self.db.execute("INSERT INTO changes (seq, change_id, resource_id, version, t_change_ns) "
                            "VALUES (?, ?, ?, ?, ?)", (seq, change_id, resource_id, version, t_change_ns))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self._next_seq = seq + 1
        return change_event(change_id, resource_id, seq, version, t_change_ns)

    # --- polling API reads --------------------------------------------------------------------
    def get_resource(self, resource_id: int) -> dict[str, Any] | None:
        row = self.db.execute("SELECT id, version, seq, change_id, t_change_ns, value FROM resources WHERE id = ?",
                              (resource_id,)).fetchone()
        if row is None:
            return None
        return {"id": row[0], "version": row[1], "seq": row[2], "change_id": row[3], "t_change_ns": row[4],
                "data": {"value": row[5]}}

    def resource_version(self, resource_id: int) -> int | None:
        row = self.db.execute("SELECT version FROM resources WHERE id = ?", (resource_id,)).fetchone()
        return None if row is None else row[0]

    def changes_after(self, after: int, limit: int) -> tuple[list[ChangeEvent], bool]:
        """Up to `limit` changes with seq > after, oldest first, and whether more are waiting."""
        rows = self.db.execute("SELECT change_id, resource_id, seq, version, t_change_ns FROM changes "
                               "WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit + 1)).fetchall()
        return [change_event(*r) for r in rows[:limit]], len(rows) > limit

    def change_count(self) -> int:
        return self._next_seq - 1

    # --- subscriptions ------------------------------------------------------------------------
    def add_subscription(self, url: str, secret: str, now_ns: int) -> Subscription:
        sid = "sub_" + secrets.token_hex(8)
        self.db.execute("INSERT INTO subscriptions (id, url, secret, created_ns) VALUES (?, ?, ?, ?)",
                        (sid, url, secret, now_ns))
        return Subscription(sid, url, secret)

    def remove_subscription(self, sid: str) -> bool:
        cur = self.db.execute("UPDATE subscriptions SET active = 0 WHERE id = ? AND active = 1", (sid,))
        return cur.rowcount > 0

    def active_subscriptions(self) -> list[Subscription]:
        return [Subscription(*r) for r in
                self.db.execute("SELECT id, url, secret FROM subscriptions WHERE active = 1 ORDER BY created_ns")]
