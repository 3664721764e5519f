"""The producer's SQLite store (WAL): resources, the append-only change log, subscriptions, the durable outbox.

Queries run synchronously in the event loop's thread: they take microseconds on these tables, and
their cost lands on the producer's CPU, which is exactly what polling (and the outbox) is charged for.
A committed transaction survives `kill -9` of the producer (WAL, synchronous=NORMAL); it is not meant
to survive a power cut.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from bench.config import DeliveryCfg, delivery_from_dict
from bench.protocol import ChangeEvent, change_event

__all__ = ["Store", "Subscription", "OutboxRow", "SCHEMA_VERSION"]

SCHEMA_VERSION = 2  # PRAGMA user_version; 0/1 = the first layout (one `secret` per subscription), converted on open

_SUBSCRIPTION_COLUMNS = """
    id TEXT PRIMARY KEY, url TEXT NOT NULL, scheme TEXT NOT NULL, secrets TEXT NOT NULL,
    delivery TEXT NOT NULL, policy TEXT NOT NULL, basic_user TEXT, basic_password TEXT, ca_file TEXT,
    created_ns INTEGER NOT NULL, active INTEGER NOT NULL DEFAULT 1, disabled_reason TEXT"""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS resources (
    id INTEGER PRIMARY KEY, version INTEGER NOT NULL, seq INTEGER NOT NULL,
    change_id TEXT, t_change_ns INTEGER, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY, change_id TEXT NOT NULL UNIQUE, resource_id INTEGER NOT NULL,
    version INTEGER NOT NULL, t_change_ns INTEGER NOT NULL);
-- secrets: JSON list, current first (rotation); delivery: JSON of DeliveryCfg; policy repeats delivery.policy
-- so that apply_change can pick the outbox subscriptions in SQL. Secrets stay here: no endpoint returns them.
CREATE TABLE IF NOT EXISTS subscriptions (SUBSCRIPTION_COLUMNS);
-- one row per (outbox subscription, change) not yet delivered; attempts = attempts begun so far
CREATE TABLE IF NOT EXISTS outbox (
    subscription_id TEXT NOT NULL, seq INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    next_ns INTEGER NOT NULL, PRIMARY KEY (subscription_id, seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (subscription_id, next_ns, seq);
-- outbox rows that will not be delivered: attempts ran out, or the subscription was disabled or deleted
CREATE TABLE IF NOT EXISTS dead_letters (
    subscription_id TEXT NOT NULL, seq INTEGER NOT NULL, attempts INTEGER NOT NULL, reason TEXT NOT NULL,
    t_dead_ns INTEGER NOT NULL, PRIMARY KEY (subscription_id, seq)) WITHOUT ROWID;
""".replace("SUBSCRIPTION_COLUMNS", _SUBSCRIPTION_COLUMNS)


@dataclass(frozen=True)
class Subscription:
    """One subscription as stored. Secrets and the Basic Auth password never appear in its repr."""

    id: str
    url: str
    scheme: str
    secrets: tuple[str, ...] = field(repr=False)
    delivery: DeliveryCfg
    basic_auth: tuple[str, str] | None = field(default=None, repr=False)
    ca_file: str | None = None
    created_ns: int = 0

    @property
    def name(self) -> str:
        """The mode name its deliveries are charged to."""
        return self.delivery.name

    def public(self) -> dict[str, Any]:
        """What an endpoint may show: everything but the secrets and the password."""
        return {"id": self.id, "url": self.url, "scheme": self.scheme, "name": self.delivery.name,
                "delivery": dataclasses.asdict(self.delivery),
                "basic_auth": None if self.basic_auth is None else {"user": self.basic_auth[0]},
                "ca_file": self.ca_file}


@dataclass(frozen=True)
class OutboxRow:
    """A pending outbox delivery and its change."""

    subscription_id: str
    attempts: int  # attempts begun before this one
    next_ns: int  # wall clock (ns) when it is due
    change: ChangeEvent


class Store:
    def __init__(self, path: str | Path, resources: int, *, legacy_delivery: DeliveryCfg | None = None) -> None:
        """Open (or create) the store. `legacy_delivery` is given to subscriptions of a first-layout file."""
        self.path = str(path)
        self.db = sqlite3.connect(self.path, isolation_level=None)  # autocommit; explicit BEGIN for writes
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self._migrate(legacy_delivery)
        self.db.executescript(_SCHEMA)
        self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        have = self.db.execute("SELECT COUNT(*) FROM resources").fetchone()[0]
        if have < resources:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT INTO resources (id, version, seq, value) VALUES (?, 0, 0, 0)",
                                [(i,) for i in range(have, resources)])
            self.db.execute("COMMIT")
        self.resources = resources
        self._next_seq = (self.db.execute("SELECT MAX(seq) FROM changes").fetchone()[0] or 0) + 1
        # In-memory copies of what an empty poll asks (head of the log, each resource's version), kept in
        # step by apply_change, the only writer: a producer may answer empty polls without a query.
        self._versions: dict[int, int] = dict(self.db.execute("SELECT id, version FROM resources").fetchall())

    def _migrate(self, legacy_delivery: DeliveryCfg | None) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise ValueError(f"{self.path}: store schema {version} is newer than this hookbench's "
                             f"({SCHEMA_VERSION}); use a newer hookbench or another --db file")
        cols = [r[1] for r in self.db.execute("PRAGMA table_info(subscriptions)")]
        if "secret" not in cols:
            return
        # First layout: (id, url, secret, created_ns, active). Keep every row, as a standard-scheme subscription.
        if legacy_delivery is None:
            raise ValueError(f"{self.path}: store from an older hookbench: its subscriptions need a delivery policy")
        delivery = json.dumps(dataclasses.asdict(legacy_delivery))
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.execute("ALTER TABLE subscriptions RENAME TO subscriptions_v1")
            self.db.execute(f"CREATE TABLE subscriptions ({_SUBSCRIPTION_COLUMNS})")
            self.db.execute("INSERT INTO subscriptions "
                            "(id, url, scheme, secrets, delivery, policy, created_ns, active) "
                            "SELECT id, url, 'standard', json_array(secret), ?, ?, created_ns, active "
                            "FROM subscriptions_v1", (delivery, legacy_delivery.policy))
            self.db.execute("DROP TABLE subscriptions_v1")
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.db.close()

    # --- writes -------------------------------------------------------------------------------
    def apply_change(self, resource_id: int, t_change_ns: int, value: int) -> ChangeEvent:
        """Mutate one resource, append the change to the log and queue it in the outbox of every active
        outbox subscription, in one transaction: once this returns, the change cannot be lost."""
        seq = self._next_seq
        change_id = f"ch{seq}"
        self.db.execute("BEGIN IMMEDIATE")
        try:
            (version,) = self.db.execute(
                "UPDATE resources SET version = version + 1, seq = ?, change_id = ?, t_change_ns = ?, value = ? "
                "WHERE id = ? RETURNING version", (seq, change_id, t_change_ns, value, resource_id)).fetchone()
            self.db.execute("INSERT INTO changes (seq, change_id, resource_id, version, t_change_ns) "
                            "VALUES (?, ?, ?, ?, ?)", (seq, change_id, resource_id, version, t_change_ns))
            self.db.execute("INSERT INTO outbox (subscription_id, seq, attempts, next_ns) "
                            "SELECT id, ?, 0, ? FROM subscriptions WHERE active = 1 AND policy = 'outbox'",
                            (seq, t_change_ns))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self._next_seq = seq + 1
        self._versions[resource_id] = version
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

    def change_by_id(self, change_id: str) -> ChangeEvent | None:
        """One change by its id (the UNIQUE index on change_id): what a thin event's fetch reads."""
        row = self.db.execute("SELECT change_id, resource_id, seq, version, t_change_ns FROM changes "
                              "WHERE change_id = ?", (change_id,)).fetchone()
        return None if row is None else change_event(*row)

    def change_count(self) -> int:
        return self._next_seq - 1

    @property
    def head_seq(self) -> int:
        """The seq of the newest change (0: none yet), from memory: `changes_after(head_seq, n)` is always empty."""
        return self._next_seq - 1

    def cached_version(self, resource_id: int) -> int | None:
        """`resource_version` from memory, without a query."""
        return self._versions.get(resource_id)

    # --- subscriptions ------------------------------------------------------------------------
    def add_subscription(self, url: str, scheme: str, secrets_: Iterable[str], delivery: DeliveryCfg, now_ns: int, *,
                         basic_auth: tuple[str, str] | None = None, ca_file: str | None = None) -> Subscription:
        """Store a validated subscription (the caller checked every value) and return it."""
        sid = "sub_" + secrets.token_hex(8)
        sub = Subscription(sid, url, scheme, tuple(secrets_), delivery, basic_auth, ca_file, now_ns)
        user, password = basic_auth if basic_auth is not None else (None, None)
        self.db.execute(
            "INSERT INTO subscriptions (id, url, scheme, secrets, delivery, policy, basic_user, basic_password, "
            "ca_file, created_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (sid, url, scheme, json.dumps(list(sub.secrets)), json.dumps(dataclasses.asdict(delivery)),
             delivery.policy, user, password, ca_file, now_ns))
        return sub

    def remove_subscription(self, sid: str, reason: str = "deleted") -> bool:
        """Deactivate a subscription (DELETE, or 410 Gone); False if it was not active."""
        cur = self.db.execute("UPDATE subscriptions SET active = 0, disabled_reason = ? WHERE id = ? AND active = 1",
                              (reason, sid))
        return cur.rowcount > 0

    def active_subscriptions(self) -> list[Subscription]:
        rows = self.db.execute("SELECT id, url, scheme, secrets, delivery, basic_user, basic_password, ca_file, "
                               "created_ns FROM subscriptions WHERE active = 1 ORDER BY created_ns, id").fetchall()
        return [self._subscription(*r) for r in rows]

    def _subscription(self, sid: str, url: str, scheme: str, secrets_json: str, delivery_json: str,
                      user: str | None, password: str | None, ca_file: str | None, created_ns: int) -> Subscription:
        delivery = delivery_from_dict(json.loads(delivery_json), f"{self.path}: subscription {sid}")
        auth = (user, password) if user is not None and password is not None else None
        return Subscription(sid, url, scheme, tuple(json.loads(secrets_json)), delivery, auth, ca_file, created_ns)

    # --- the outbox ---------------------------------------------------------------------------
    def outbox_due(self, sid: str, limit: int) -> list[OutboxRow]:
        """The `limit` earliest-due rows of one subscription (due or not), oldest change first among equals."""
        rows = self.db.execute(
            "SELECT o.attempts, o.next_ns, c.change_id, c.resource_id, c.seq, c.version, c.t_change_ns "
            "FROM outbox o JOIN changes c ON c.seq = o.seq WHERE o.subscription_id = ? "
            "ORDER BY o.next_ns, o.seq LIMIT ?", (sid, limit)).fetchall()
        return [OutboxRow(sid, r[0], r[1], change_event(*r[2:])) for r in rows]

    def outbox_begin(self, sid: str, seq: int) -> int:
        """Count an attempt as begun before it is sent (so a crash mid-attempt still counts it); its number."""
        row = self.db.execute("UPDATE outbox SET attempts = attempts + 1 WHERE subscription_id = ? AND seq = ? "
                              "RETURNING attempts", (sid, seq)).fetchone()
        return 0 if row is None else row[0]

    def outbox_delivered(self, sid: str, seq: int) -> None:
        self.db.execute("DELETE FROM outbox WHERE subscription_id = ? AND seq = ?", (sid, seq))

    def outbox_retry(self, sid: str, seq: int, next_ns: int) -> None:
        self.db.execute("UPDATE outbox SET next_ns = ? WHERE subscription_id = ? AND seq = ?", (next_ns, sid, seq))

    def outbox_dead(self, sid: str, seqs: Iterable[int] | None, reason: str, now_ns: int, *,
                    keep: Iterable[int] = ()) -> list[tuple[int, int]]:
        """Move rows to dead_letters: those in `seqs`, or all of the subscription's but `keep` when `seqs` is
        None. Returns [(seq, attempts)] moved."""
        where, args = "subscription_id = ?", [sid]
        if seqs is not None:
            seqs = list(seqs)
            if not seqs:
                return []
            where += f" AND seq IN ({','.join('?' * len(seqs))})"
            args += seqs
        keep = list(keep)
        if keep:
            where += f" AND seq NOT IN ({','.join('?' * len(keep))})"
            args += keep
        self.db.execute("BEGIN IMMEDIATE")
        try:
            moved = self.db.execute(f"DELETE FROM outbox WHERE {where} RETURNING seq, attempts", args).fetchall()
            self.db.executemany("INSERT OR REPLACE INTO dead_letters "
                                "(subscription_id, seq, attempts, reason, t_dead_ns) VALUES (?, ?, ?, ?, ?)",
                                [(sid, s, a, reason, now_ns) for s, a in moved])
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return sorted(moved)

    def outbox_pending(self, sid: str | None = None) -> int:
        if sid is None:
            return self.db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        return self.db.execute("SELECT COUNT(*) FROM outbox WHERE subscription_id = ?", (sid,)).fetchone()[0]

    def change(self, seq: int) -> ChangeEvent | None:
        row = self.db.execute("SELECT change_id, resource_id, seq, version, t_change_ns FROM changes WHERE seq = ?",
                              (seq,)).fetchone()
        return None if row is None else change_event(*row)
