"""Durable queue of labeling tasks on their way to Label Studio, so a round survives Label Studio
being down: rows are written here first and marked sent with their task id once Label Studio has them
(`lakeloop.adapters.label_studio` sends them; matching on (row id, row hash) makes a resend a no-op)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from lakeloop.sqlite_table import SqliteTable


class Outbox(SqliteTable):
    """Durable queue of tasks to create: (project, row id, row hash) -> payload, sent task id."""

    schema = ("CREATE TABLE IF NOT EXISTS outbox (project_id INTEGER NOT NULL, row_id TEXT NOT NULL, "
              "row_hash TEXT NOT NULL, payload TEXT NOT NULL, enqueued_at TEXT NOT NULL, "
              "sent_at TEXT, task_id INTEGER, PRIMARY KEY (project_id, row_id, row_hash))")

    def enqueue(self, project_id: int, tasks: Sequence[dict[str, Any]]) -> int:
        now = datetime.now(UTC).isoformat()
        with self._conn() as c:
            before = c.total_changes
            c.executemany("INSERT OR IGNORE INTO outbox (project_id, row_id, row_hash, payload, enqueued_at) "
                          "VALUES (?, ?, ?, ?, ?)",
                          [(project_id, t["data"]["row_id"], t["data"]["row_hash"], json.dumps(t), now)
                           for t in tasks])
            return c.total_changes - before

    def pending(self, project_id: int | None = None) -> list[tuple[int, str, str, dict[str, Any]]]:
        q = "SELECT project_id, row_id, row_hash, payload FROM outbox WHERE sent_at IS NULL"
        args: tuple[Any, ...] = ()
        if project_id is not None:
            q += " AND project_id = ?"
            args = (project_id,)
        with self._conn() as c:
            rows = c.execute(q + " ORDER BY enqueued_at, rowid", args).fetchall()
        return [(int(p), r, h, json.loads(pl_)) for p, r, h, pl_ in rows]

    def mark_sent(self, project_id: int, sent: Sequence[tuple[str, str, int]]) -> None:
        now = datetime.now(UTC).isoformat()
        with self._conn() as c:
            c.executemany("UPDATE outbox SET sent_at = ?, task_id = ? WHERE project_id = ? AND row_id = ? "
                          "AND row_hash = ?", [(now, t, project_id, r, h) for r, h, t in sent])

    def task_ids(self, project_id: int, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
        with self._conn() as c:
            rows = c.execute("SELECT row_id, row_hash, task_id FROM outbox WHERE project_id = ? "
                             "AND task_id IS NOT NULL", (project_id,)).fetchall()
        want = set(keys)
        return {(r, h): int(t) for r, h, t in rows if (r, h) in want}
