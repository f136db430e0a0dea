"""Durable outbox of the events flows hand to Prefect (`lakeloop.adapters.prefect_events.emit_durable`).

An event is stored here *before* it is sent, with its Prefect event id fixed at that
moment, and only marked sent once Prefect's `POST /api/events` accepted it. A send
that fails leaves it pending; the next `emit_durable` (in any process sharing the
state directory) and the bridge's periodic `replay_outbox` send what is pending,
oldest first, stopping at the first failure so events arrive in the order emitted.
A replay re-sends the same id, so Prefect's trigger service, which skips an event id
it has already seen, does not start a second run if the first send did arrive.

Two senders at once (a flow and the bridge) do not send the same events: a sender
*claims* the oldest pending events for a lease (in a write transaction that one sender
at a time passes: SQLite `BEGIN IMMEDIATE`, a PostgreSQL advisory lock, so it holds
across processes and hosts), and marks them sent and claims the next ones in one transaction,
so an event enqueued while another process holds the queue is sent by that process.
A sender that died mid-send loses its claim when the lease expires.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from prefect.events import Event

from lakeloop.state_db import StateTable, state_target

log = logging.getLogger("lakeloop.event_outbox")

OUTBOX_FILE = "event-outbox.sqlite3"
DEFAULT_LEASE_SECONDS = 60.0  # longer than one publish (10 s timeout) by a wide margin
DEFAULT_BATCH = 50

Sender = Callable[[list[Event]], None]


@dataclass(frozen=True)
class OutboxEntry:
    seq: int
    id: str
    name: str
    body: dict[str, Any]  # the Event as JSON (model_dump(mode="json"))
    created_at: float
    attempts: int
    last_error: str | None
    sent_at: float | None

    def event(self) -> Event:
        return Event.model_validate(self.body)


@dataclass
class ReplayReport:
    sent: int = 0
    error: str | None = None  # the send that stopped the replay
    busy: bool = False  # another live sender holds the oldest pending events (it sends the rest)


class EventOutbox(StateTable):
    schema = (
        "CREATE TABLE IF NOT EXISTS events ("
        " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
        " id TEXT NOT NULL UNIQUE,"
        " name TEXT NOT NULL,"
        " body TEXT NOT NULL,"
        " created_at REAL NOT NULL,"
        " attempts INTEGER NOT NULL DEFAULT 0,"
        " last_error TEXT,"
        " sent_at REAL,"
        " claimed_by TEXT,"
        " claimed_until REAL)",
        "CREATE INDEX IF NOT EXISTS events_pending ON events (sent_at, seq)",
    )
    filename = OUTBOX_FILE

    def __init__(self, path: Path | str, *, lease_seconds: float = DEFAULT_LEASE_SECONDS,
                 batch_size: int = DEFAULT_BATCH) -> None:
        super().__init__(path)
        self.lease_seconds = lease_seconds
        self.batch_size = batch_size

    @classmethod
    def at(cls, state_dir: Path, **kwargs: Any) -> EventOutbox:
        """The stack's outbox under `state_dir` (shared by the flows and the bridge)."""
        return cls(state_target(state_dir, OUTBOX_FILE), **kwargs)

    # ---- writing -----------------------------------------------------------
    def enqueue(self, event: Event) -> bool:
        """Store `event` as pending; False if an event with its id is already here (kept as it is)."""
        body = event.model_dump(mode="json")
        with self.db.write() as c:
            cur = c.execute(sa.text("INSERT INTO events (id, name, body, created_at) "
                                    "VALUES (:id, :name, :body, :now) ON CONFLICT (id) DO NOTHING"),
                            {"id": str(event.id), "name": event.event, "body": json.dumps(body, sort_keys=True),
                             "now": time.time()})
            return cur.rowcount == 1

    def _claim(self, owner: str, done: list[str] | None = None) -> list[OutboxEntry]:
        """Mark `done` sent, then claim the oldest pending events (none if a live sender holds the oldest)."""
        now = time.time()
        with self.db.write() as c:
            self.db.serialize(c, "event-outbox")  # one claimer at a time, as SQLite's one writer
            if done:
                c.execute(sa.text("UPDATE events SET sent_at = :now, last_error = NULL, claimed_by = NULL, "
                                  "claimed_until = NULL WHERE id = :id"), [{"now": now, "id": i} for i in done])
            rows = c.execute(sa.text(
                f"SELECT {_COLUMNS}, claimed_by, claimed_until FROM events WHERE sent_at IS NULL "
                "ORDER BY seq LIMIT :n"), {"n": self.batch_size}).fetchall()
            taken: list[OutboxEntry] = []
            for row in rows:
                by, until = row[-2], row[-1]
                if by is not None and by != owner and until is not None and until > now:
                    break  # a live sender has it: never send past (or beside) it
                taken.append(_entry(row[:-2]))
            if taken:
                c.execute(sa.text("UPDATE events SET claimed_by = :owner, claimed_until = :until, "
                                  "attempts = attempts + 1 WHERE id = :id"),
                          [{"owner": owner, "until": now + self.lease_seconds, "id": e.id} for e in taken])
        return [replace(e, attempts=e.attempts + 1) for e in taken]

    def _failed(self, owner: str, ids: list[str], error: str) -> None:
        with self.db.write() as c:
            c.execute(sa.text("UPDATE events SET last_error = :error, claimed_by = NULL, claimed_until = NULL "
                              "WHERE id = :id AND claimed_by = :owner"),
                      [{"error": error[:2000], "id": i, "owner": owner} for i in ids])

    def replay(self, sender: Sender, *, owner: str | None = None) -> ReplayReport:
        """Send pending events oldest first, in batches, until none is left or a send fails.

        `sender` raises unless Prefect accepted the whole batch (`lakeloop.adapters.prefect_events.post_events`).
        """
        owner = owner or _owner()
        report = ReplayReport()
        batch = self._claim(owner)
        if not batch and self.pending():
            report.busy = True
        while batch:
            ids = [e.id for e in batch]
            try:
                sender([e.event() for e in batch])
            except Exception as e:
                report.error = f"{type(e).__name__}: {e}"
                self._failed(owner, ids, report.error)
                break
            report.sent += len(batch)
            batch = self._claim(owner, done=ids)
        return report

    def prune(self, older_than_s: float = 7 * 86400.0) -> int:
        """Forget events sent more than `older_than_s` ago; pending ones are never dropped."""
        with self.db.write() as c:
            return c.execute(sa.text("DELETE FROM events WHERE sent_at IS NOT NULL AND sent_at < :t"),
                             {"t": time.time() - older_than_s}).rowcount

    # ---- reading -----------------------------------------------------------
    def _rows(self, where: str = "", params: dict[str, Any] | None = None) -> list[OutboxEntry]:
        with self.db.read() as c:
            rows = c.execute(sa.text(f"SELECT {_COLUMNS} FROM events {where} ORDER BY seq"), params or {}).fetchall()
        return [_entry(r) for r in rows]

    def pending(self) -> list[OutboxEntry]:
        """Unsent events, oldest first."""
        return self._rows("WHERE sent_at IS NULL")

    def get(self, event_id: uuid.UUID | str) -> OutboxEntry | None:
        found = self._rows("WHERE id = :id", {"id": str(event_id)})
        return found[0] if found else None

    def entries(self) -> list[OutboxEntry]:
        """Every stored event (sent or not), oldest first."""
        return self._rows()

    def counts(self) -> dict[str, int]:
        with self.db.read() as c:
            sent, pending = c.execute(sa.text("SELECT COUNT(sent_at), COUNT(*) - COUNT(sent_at) FROM events")).one()
        return {"sent": int(sent), "pending": int(pending)}


_COLUMNS = "seq, id, name, body, created_at, attempts, last_error, sent_at"


def _entry(row: Sequence[Any]) -> OutboxEntry:
    seq, id_, name, body, created_at, attempts, last_error, sent_at = row
    return OutboxEntry(seq=int(seq), id=str(id_), name=str(name), body=json.loads(body),
                       created_at=float(created_at), attempts=int(attempts),
                       last_error=None if last_error is None else str(last_error),
                       sent_at=None if sent_at is None else float(sent_at))


def _owner() -> str:
    return f"{os.uname().nodename}:{os.getpid()}:{threading.get_ident()}:{uuid.uuid4().hex[:8]}"
