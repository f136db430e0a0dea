"""A small durable SQLite table: the labeling loop's outbox, review ledger and applied-answer ledger.

One place for what the three share: the file and its table are created on first use,
and every call gets its own connection that commits (or rolls back) and is closed, so
no connection outlives the call (`with sqlite3.connect(...)` alone commits but never closes).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar


class SqliteTable:
    schema: ClassVar[str]  # the CREATE TABLE IF NOT EXISTS statement

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._conn() as c:
            c.execute(self.schema)

    @contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=30)
        try:
            with conn:  # commit on success, roll back on error
                yield conn
        finally:
            conn.close()
