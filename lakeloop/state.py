"""Durable ledger of processed deliveries (lakeFS commits, Label Studio annotations).

The bridge and the reconciler both hand work to Prefect; the ledger is the one
place that decides who does. A delivery is *claimed* atomically (its row is
inserted `ON CONFLICT DO NOTHING`, or read `FOR UPDATE` to take over an expired
lease: a SQLite write transaction or a PostgreSQL row lock, so it holds across
processes, and across hosts sharing `LAKELOOP_STATE_URL`), emitted, then marked
*done*. If the emit fails the claim is released, and a claim whose owner died
expires after its lease, so a crash never turns into a lost or a doubled event.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from lakeloop.settings import get_settings
from lakeloop.state_db import StateDB, state_target

DEFAULT_LEASE_SECONDS = 120.0

LEDGER_FILE = "ledger.sqlite3"

_SCHEMA = ("""
CREATE TABLE IF NOT EXISTS deliveries (
    key        TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('claimed', 'done', 'skipped')),
    owner      TEXT NOT NULL,
    claimed_at REAL NOT NULL,
    done_at    REAL,
    seq        INTEGER,
    detail     TEXT NOT NULL DEFAULT '{}'
)""", """
CREATE TABLE IF NOT EXISTS baselines (
    scope      TEXT PRIMARY KEY,
    since      REAL NOT NULL
)""", """
CREATE TABLE IF NOT EXISTS counters (
    name       TEXT PRIMARY KEY,
    value      INTEGER NOT NULL
)""")

_ROW = "SELECT key, kind, state, owner, claimed_at, done_at, seq, detail FROM deliveries"


class LeaseLost(RuntimeError):
    """A claim was completed or released by an owner that no longer holds it (its lease expired and
    another owner took it over): the work may have run twice, and this owner must not report it done."""

    def __init__(self, key: str, owner: str, holder: str | None) -> None:
        super().__init__(f"ledger: {key!r} is not claimed by {owner!r} (held by {holder or 'nobody'})")
        self.key, self.owner, self.holder = key, owner, holder

    def __reduce__(self) -> tuple[type[LeaseLost], tuple[str, str, str | None]]:
        return (LeaseLost, (self.key, self.owner, self.holder))


class LockTimeout(TimeoutError):
    """Another owner held a ledger lock for longer than we were willing to wait."""


def commit_key(repository: str, commit_id: str) -> str:
    """Ledger key of a lakeFS commit: a commit is processed once, whichever branch shows it."""
    return f"lakefs:{repository}:{commit_id}"


def annotation_key(project_id: int | str | None, annotation_id: int | str) -> str:
    return f"label-studio:{project_id}:{annotation_id}"


@dataclass(frozen=True)
class Delivery:
    key: str
    kind: str
    state: str
    owner: str
    claimed_at: float
    done_at: float | None
    seq: int | None
    detail: dict[str, str]


class Ledger:
    """Processed-delivery ledger, safe across threads, processes and (on a shared database) hosts.

    `path`: its SQLite file, or a SQLAlchemy URL (`Ledger.at` picks `LAKELOOP_STATE_URL` when set).
    """

    def __init__(self, path: Path | str, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> None:
        self.path = path if isinstance(path, str) and "://" in path else Path(path)
        self.lease_seconds = lease_seconds
        self._db = StateDB(self.path)
        self._db.create(*_SCHEMA)

    @classmethod
    def at(cls, state_dir: Path, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> Ledger:
        """The stack's ledger under `state_dir` (shared by the bridge, the reconciler and the flows)."""
        return cls(state_target(state_dir, LEDGER_FILE), lease_seconds)

    @classmethod
    def default(cls) -> Ledger:
        return cls.at(get_settings().state_dir)

    def close(self) -> None:
        """Give back pooled connections (the next call opens new ones)."""
        self._db.engine.dispose()

    def _one(self, sql: str, params: dict[str, Any]) -> Sequence[Any] | None:
        with self._db.read() as c:
            return c.execute(sa.text(sql), params).fetchone()

    def _all(self, sql: str, params: dict[str, Any]) -> Sequence[Sequence[Any]]:
        with self._db.read() as c:
            return c.execute(sa.text(sql), params).fetchall()

    # ---- claims ----------------------------------------------------------
    def claim(self, key: str, kind: str, owner: str, detail: dict[str, str] | None = None) -> bool:
        """Take `key` for processing; False if it is done, skipped, or claimed by a live owner."""
        return self.claim_many([(key, kind, detail)], owner)[0]

    def claim_many(self, items: list[tuple[str, str, dict[str, str] | None]], owner: str) -> list[bool]:
        """`claim` for each (key, kind, detail), in one transaction (one commit for a whole batch of
        webhooks); a key twice in `items` is claimed by its first occurrence only."""
        now = time.time()
        with self._db.write() as db:
            return [self._claim(db, key, kind, owner, detail, now) for key, kind, detail in items]

    def _claim(self, db: Connection, key: str, kind: str, owner: str, detail: dict[str, str] | None,
               now: float) -> bool:
        for _ in range(2):  # a second pass when the holder released the key between the two statements
            inserted = db.execute(sa.text(
                "INSERT INTO deliveries (key, kind, state, owner, claimed_at, detail) "
                "VALUES (:key, :kind, 'claimed', :owner, :now, :detail) ON CONFLICT (key) DO NOTHING"),
                {"key": key, "kind": kind, "owner": owner, "now": now,
                 "detail": json.dumps(detail or {}, sort_keys=True)})
            if inserted.rowcount == 1:
                return True
            row = db.execute(sa.text("SELECT state, claimed_at FROM deliveries WHERE key = :key"
                                     + self._db.for_update), {"key": key}).fetchone()
            if row is None:
                continue
            if row[0] == "claimed" and now - row[1] > self.lease_seconds:
                db.execute(sa.text("UPDATE deliveries SET owner = :owner, claimed_at = :now WHERE key = :key"),
                           {"owner": owner, "now": now, "key": key})
                return True
            return False
        return False

    def complete(self, key: str, owner: str, detail: dict[str, str] | None = None) -> None:
        """Mark `owner`'s claim done; `seq` records the global processing order.

        Raises `LeaseLost` when `owner` no longer holds the claim, so the run that lost its
        lease cannot report as done the work another owner has taken over.
        """
        with self._db.write() as db:
            self._complete(db, key, owner, detail)

    def complete_many(self, keys: list[str], owner: str) -> list[LeaseLost]:
        """`complete` for each key in one transaction; the keys whose claim `owner` lost are returned,
        not raised, so one expired claim does not leave the rest of the batch undone."""
        lost: list[LeaseLost] = []
        with self._db.write() as db:
            for key in keys:
                try:
                    self._complete(db, key, owner, None)
                except LeaseLost as e:
                    lost.append(e)
        return lost

    def _complete(self, db: Connection, key: str, owner: str, detail: dict[str, str] | None) -> None:
        row = db.execute(sa.text("SELECT state, owner FROM deliveries WHERE key = :key" + self._db.for_update),
                         {"key": key}).fetchone()
        if row is None:
            raise KeyError(f"ledger: {key!r} was never claimed")
        if row[0] != "claimed" or row[1] != owner:
            raise LeaseLost(key, owner, row[1] if row[0] == "claimed" else None)
        db.execute(sa.text(
            "UPDATE deliveries SET state = 'done', done_at = :now, seq = :seq, "
            "detail = COALESCE(:detail, detail) WHERE key = :key"),
            {"now": time.time(), "seq": _next_seq(db), "key": key,
             "detail": json.dumps(detail, sort_keys=True) if detail else None})

    def skip(self, key: str, kind: str, owner: str, reason: str) -> bool:
        """Record `key` as deliberately not processed (e.g. lakeloop's own actions commits)."""
        with self._db.write() as db:
            now = time.time()
            cur = db.execute(sa.text(
                "INSERT INTO deliveries (key, kind, state, owner, claimed_at, done_at, detail) "
                "VALUES (:key, :kind, 'skipped', :owner, :now, :now, :detail) ON CONFLICT (key) DO NOTHING"),
                {"key": key, "kind": kind, "owner": owner, "now": now, "detail": json.dumps({"reason": reason})})
            return cur.rowcount == 1

    def release(self, key: str, owner: str) -> None:
        """Give a claim back (emit failed), so the next delivery or reconcile pass retries it."""
        self.release_many([key], owner)

    def release_many(self, keys: list[str], owner: str) -> None:
        if not keys:
            return
        with self._db.write() as db:
            db.execute(sa.text("DELETE FROM deliveries WHERE key = :key AND state = 'claimed' AND owner = :owner"),
                       [{"key": k, "owner": owner} for k in keys])

    def run_once(self, key: str, kind: str, owner: str, action: Callable[[], None],
                 detail: dict[str, str] | None = None) -> bool:
        """Claim `key`, run `action`, mark done; False (action not run) if someone else has it.

        If `action` raises, the claim is released and the error propagates, so a
        later delivery (or the reconciler) retries it.
        """
        if not self.claim(key, kind, owner, detail):
            return False
        try:
            action()
        except BaseException:
            self.release(key, owner)
            raise
        self.complete(key, owner)
        return True

    @contextmanager
    def lock(self, key: str, owner: str, *, timeout: float, poll: float = 0.2) -> Iterator[None]:
        """Hold `key` exclusively (across threads and processes sharing this ledger) for the block.

        Built on claims, so a holder that died frees the lock when its lease expires. The key is
        released afterwards, never marked done: a lock is reused.
        """
        deadline = time.monotonic() + timeout
        while not self.claim(key, "lock", owner):
            if time.monotonic() > deadline:
                holder = self.get(key)
                raise LockTimeout(f"ledger lock {key!r}: still held by {holder.owner if holder else '?'} "
                                  f"after {timeout:.0f}s")
            time.sleep(poll)
        try:
            yield
        finally:
            self.release(key, owner)

    # ---- queries ---------------------------------------------------------
    def get(self, key: str) -> Delivery | None:
        row = self._one(_ROW + " WHERE key = :key", {"key": key})
        return _delivery(row) if row else None

    def is_settled(self, key: str) -> bool:
        """Done or skipped: nothing more to do for this key."""
        d = self.get(key)
        return d is not None and d.state in ("done", "skipped")

    def settled_keys(self, prefix: str = "") -> set[str]:
        rows = self._all("SELECT key FROM deliveries WHERE state IN ('done', 'skipped') AND key LIKE :p ESCAPE '\\'",
                         {"p": _like_prefix(prefix)})
        return {r[0] for r in rows}

    def done(self, prefix: str = "") -> list[Delivery]:
        """Done deliveries in processing order."""
        rows = self._all(_ROW + " WHERE state = 'done' AND key LIKE :p ESCAPE '\\' ORDER BY seq",
                         {"p": _like_prefix(prefix)})
        return [_delivery(r) for r in rows]

    # ---- baselines -------------------------------------------------------
    def baseline(self, scope: str, default: datetime | None = None) -> datetime:
        """When lakeloop started watching `scope` (set on first call): older history is not replayed."""
        with self._db.write() as db:
            since = (default or datetime.now(UTC)).timestamp()
            db.execute(sa.text("INSERT INTO baselines (scope, since) VALUES (:scope, :since) "
                               "ON CONFLICT (scope) DO NOTHING"), {"scope": scope, "since": since})
            (value,) = db.execute(sa.text("SELECT since FROM baselines WHERE scope = :scope"),
                                  {"scope": scope}).one()
        return datetime.fromtimestamp(value, tz=UTC)


def _next_seq(db: Connection) -> int:
    """The next number of the global processing order (the counter's row lock orders concurrent completes)."""
    db.execute(sa.text("INSERT INTO counters (name, value) VALUES ('seq', 0) ON CONFLICT (name) DO NOTHING"))
    (value,) = db.execute(sa.text("UPDATE counters SET value = value + 1 WHERE name = 'seq' RETURNING value")).one()
    return int(value)


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _delivery(row: Sequence[Any]) -> Delivery:
    key, kind, state, owner, claimed_at, done_at, seq, detail = row
    return Delivery(
        key=str(key), kind=str(kind), state=str(state), owner=str(owner),
        claimed_at=float(claimed_at),
        done_at=float(done_at) if done_at is not None else None,
        seq=int(seq) if seq is not None else None,
        detail=json.loads(str(detail)),
    )
