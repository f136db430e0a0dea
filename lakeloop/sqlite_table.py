"""SQLite plumbing of the local lakeFS server's metadata (lakeloop's own state goes through
`lakeloop.state_db`, which can also be PostgreSQL).

`ThreadConnections`: called on every request, so each thread keeps one connection in WAL mode and
opens its transactions explicitly, writes with `immediate`.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class ThreadConnections:
    """One long-lived connection per thread to the database at `path`, opened on first use.

    Autocommit (`isolation_level=None`): the only transactions are those the caller opens. WAL lets
    readers run beside the one writer; `synchronous=NORMAL` is WAL's usual pairing (a process crash
    loses nothing). A writer waits up to 30 s for the lock. Connections never cross threads (each
    thread has its own), so sqlite3's same-thread check is off.
    """

    def __init__(self, path: Path, *, row_factory: Callable[[sqlite3.Cursor, tuple[Any, ...]], Any] | None = None
                 ) -> None:
        self.path = Path(path)
        self._row_factory = row_factory
        self._local = threading.local()

    def get(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            if self._row_factory is not None:
                conn.row_factory = self._row_factory
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def close(self) -> None:
        """Close this thread's connection (its next `get` opens a new one)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction on an autocommit connection, all or nothing.

    `BEGIN IMMEDIATE` takes the write lock up front, so what the block reads cannot be changed by
    another writer before it writes (a deferred BEGIN that reads first may fail to upgrade to a write).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
