"""Durable queue of labeling tasks on their way to Label Studio, so a round survives Label Studio
being down: rows are written here first and marked sent with their task id once Label Studio has them
(`lakeloop.adapters.label_studio` sends them; matching on (row id, row hash) makes a resend a no-op)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from lakeloop.state_db import StateTable, insert_new


class Outbox(StateTable):
    """Durable queue of tasks to create: (project, row id, row hash) -> payload, sent task id."""

    schema = ("CREATE TABLE IF NOT EXISTS outbox (project_id INTEGER NOT NULL, row_id TEXT NOT NULL, "
              "row_hash TEXT NOT NULL, payload TEXT NOT NULL, enqueued_at TEXT NOT NULL, "
              "sent_at TEXT, task_id INTEGER, PRIMARY KEY (project_id, row_id, row_hash))")
    filename = "label_studio_outbox.sqlite"

    def enqueue(self, project_id: int, tasks: Sequence[dict[str, Any]]) -> int:
        now = datetime.now(UTC).isoformat()
        with self.db.write() as c:
            return insert_new(c, "INSERT INTO outbox (project_id, row_id, row_hash, payload, enqueued_at) "
                                 "VALUES (:p, :r, :h, :payload, :now) ON CONFLICT DO NOTHING",
                              [{"p": project_id, "r": t["data"]["row_id"], "h": t["data"]["row_hash"],
                                "payload": json.dumps(t), "now": now} for t in tasks])

    def pending(self, project_id: int | None = None) -> list[tuple[int, str, str, dict[str, Any]]]:
        q = "SELECT project_id, row_id, row_hash, payload FROM outbox WHERE sent_at IS NULL"
        args: dict[str, Any] = {}
        if project_id is not None:
            q += " AND project_id = :p"
            args = {"p": project_id}
        # insertion order within one enqueue (its rows share enqueued_at) is the order they were given
        order = " ORDER BY enqueued_at, rowid" if self.db.dialect == "sqlite" else " ORDER BY enqueued_at, ctid"
        with self.db.read() as c:
            rows = c.execute(sa.text(q + order), args).fetchall()
        return [(int(p), r, h, json.loads(pl_)) for p, r, h, pl_ in rows]

    def mark_sent(self, project_id: int, sent: Sequence[tuple[str, str, int]]) -> None:
        now = datetime.now(UTC).isoformat()
        if not sent:
            return
        with self.db.write() as c:
            c.execute(sa.text("UPDATE outbox SET sent_at = :now, task_id = :t WHERE project_id = :p "
                              "AND row_id = :r AND row_hash = :h"),
                      [{"now": now, "t": t, "p": project_id, "r": r, "h": h} for r, h, t in sent])

    def task_ids(self, project_id: int, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
        with self.db.read() as c:
            rows = c.execute(sa.text("SELECT row_id, row_hash, task_id FROM outbox WHERE project_id = :p "
                                     "AND task_id IS NOT NULL"), {"p": project_id}).fetchall()
        want = set(keys)
        return {(r, h): int(t) for r, h, t in rows if (r, h) in want}
