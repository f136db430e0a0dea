"""Durable ledger of processed deliveries (lakeFS commits, Label Studio annotations).

The bridge and the reconciler both hand work to Prefect; the ledger is the one
place that decides who does. A delivery is *claimed* atomically (SQLite
`BEGIN IMMEDIATE`, so it also holds across processes), emitted, then marked
*done*. If the emit fails the claim is released, and a claim whose owner died
expires after its lease, so a crash never turns into a lost or a doubled event.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from lakeloop.settings import get_settings
from lakeloop.sqlite_table import ThreadConnections, immediate

DEFAULT_LEASE_SECONDS = 120.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    key        TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('claimed', 'done', 'skipped')),
    owner      TEXT NOT NULL,
    claimed_at REAL NOT NULL,
    done_at    REAL,
    seq        INTEGER,
    detail     TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS baselines (
    scope      TEXT PRIMARY KEY,
    since      REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name       TEXT PRIMARY KEY,
    value      INTEGER NOT NULL
);
"""


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
    """SQLite-backed processed-delivery ledger, safe across threads and processes."""

    def __init__(self, path: Path, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lease_seconds = lease_seconds
        self._db = ThreadConnections(self.path)
        self._conn().executescript(_SCHEMA)  # idempotent DDL; executescript manages its own transaction

    @classmethod
    def at(cls, state_dir: Path, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> Ledger:
        """The stack's ledger under `state_dir` (shared by the bridge, the reconciler and the flows)."""
        return cls(Path(state_dir) / "ledger.sqlite3", lease_seconds)

    @classmethod
    def default(cls) -> Ledger:
        return cls.at(get_settings().state_dir)

    # ---- connection handling ---------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        return self._db.get()

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        return immediate(self._conn())

    def close(self) -> None:
        """Close this thread's connection."""
        self._db.close()

    # ---- claims ----------------------------------------------------------
    def claim(self, key: str, kind: str, owner: str, detail: dict[str, str] | None = None) -> bool:
        """Take `key` for processing; False if it is done, skipped, or claimed by a live owner."""
        now = time.time()
        with self._tx() as db:
            row = db.execute("SELECT state, claimed_at FROM deliveries WHERE key = ?", (key,)).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO deliveries (key, kind, state, owner, claimed_at, detail) "
                    "VALUES (?, ?, 'claimed', ?, ?, ?)",
                    (key, kind, owner, now, json.dumps(detail or {}, sort_keys=True)),
                )
                return True
            state, claimed_at = row
            if state == "claimed" and now - claimed_at > self.lease_seconds:
                db.execute(
                    "UPDATE deliveries SET owner = ?, claimed_at = ? WHERE key = ?", (owner, now, key)
                )
                return True
            return False

    def complete(self, key: str, owner: str, detail: dict[str, str] | None = None) -> None:
        """Mark `owner`'s claim done; `seq` records the global processing order.

        Raises `LeaseLost` when `owner` no longer holds the claim, so the run that lost its
        lease cannot report as done the work another owner has taken over.
        """
        with self._tx() as db:
            row = db.execute("SELECT state, owner FROM deliveries WHERE key = ?", (key,)).fetchone()
            if row is None:
                raise KeyError(f"ledger: {key!r} was never claimed")
            if row[0] != "claimed" or row[1] != owner:
                raise LeaseLost(key, owner, row[1] if row[0] == "claimed" else None)
            seq = self._next_seq(db)
            db.execute(
                "UPDATE deliveries SET state = 'done', done_at = ?, seq = ?, "
                "detail = COALESCE(?, detail) WHERE key = ?",
                (time.time(), seq, json.dumps(detail, sort_keys=True) if detail else None, key),
            )

    def skip(self, key: str, kind: str, owner: str, reason: str) -> bool:
        """Record `key` as deliberately not processed (e.g. lakeloop's own actions commits)."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO deliveries (key, kind, state, owner, claimed_at, done_at, detail) "
                "VALUES (?, ?, 'skipped', ?, ?, ?, ?)",
                (key, kind, owner, time.time(), time.time(), json.dumps({"reason": reason})),
            )
            return cur.rowcount == 1

    def release(self, key: str, owner: str) -> None:
        """Give a claim back (emit failed), so the next delivery or reconcile pass retries it."""
        with self._tx() as db:
            db.execute("DELETE FROM deliveries WHERE key = ? AND state = 'claimed' AND owner = ?", (key, owner))

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

    @staticmethod
    def _next_seq(db: sqlite3.Connection) -> int:
        db.execute("INSERT OR IGNORE INTO counters (name, value) VALUES ('seq', 0)")
        db.execute("UPDATE counters SET value = value + 1 WHERE name = 'seq'")
        (value,) = db.execute("SELECT value FROM counters WHERE name = 'seq'").fetchone()
        return int(value)

    # ---- queries ---------------------------------------------------------
    def get(self, key: str) -> Delivery | None:
        row = self._conn().execute(
            "SELECT key, kind, state, owner, claimed_at, done_at, seq, detail FROM deliveries WHERE key = ?",
            (key,),
        ).fetchone()
        return _delivery(row) if row else None

    def is_settled(self, key: str) -> bool:
        """Done or skipped: nothing more to do for this key."""
        d = self.get(key)
        return d is not None and d.state in ("done", "skipped")

    def settled_keys(self, prefix: str = "") -> set[str]:
        rows = self._conn().execute(
            "SELECT key FROM deliveries WHERE state IN ('done', 'skipped') AND key LIKE ? ESCAPE '\\'",
            (_like_prefix(prefix),),
        ).fetchall()
        return {r[0] for r in rows}

    def done(self, prefix: str = "") -> list[Delivery]:
        """Done deliveries in processing order."""
        rows = self._conn().execute(
            "SELECT key, kind, state, owner, claimed_at, done_at, seq, detail FROM deliveries "
            "WHERE state = 'done' AND key LIKE ? ESCAPE '\\' ORDER BY seq",
            (_like_prefix(prefix),),
        ).fetchall()
        return [_delivery(r) for r in rows]

    # ---- baselines -------------------------------------------------------
    def baseline(self, scope: str, default: datetime | None = None) -> datetime:
        """When lakeloop started watching `scope` (set on first call): older history is not replayed."""
        with self._tx() as db:
            since = (default or datetime.now(UTC)).timestamp()
            db.execute("INSERT OR IGNORE INTO baselines (scope, since) VALUES (?, ?)", (scope, since))
            (value,) = db.execute("SELECT since FROM baselines WHERE scope = ?", (scope,)).fetchone()
        return datetime.fromtimestamp(value, tz=UTC)


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _delivery(row: tuple[object, ...]) -> Delivery:
    key, kind, state, owner, claimed_at, done_at, seq, detail = row
    return Delivery(
        key=str(key), kind=str(kind), state=str(state), owner=str(owner),
        claimed_at=float(claimed_at),  # type: ignore[arg-type]
        done_at=float(done_at) if done_at is not None else None,  # type: ignore[arg-type]
        seq=int(seq) if seq is not None else None,  # type: ignore[call-overload]
        detail=json.loads(str(detail)),
    )
