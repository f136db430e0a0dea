"""Durable state: SQLite metadata (WAL) plus content-addressed blobs on disk.

Why this shape: SQLite gives atomic multi-row updates (a commit moves a branch
head, writes a tree and clears staging in one transaction) and survives
restarts; each upload is written once, under a fresh random blob id, while
its md5 (lakeFS's checksum) is computed in the same pass, so an upload costs
one write and one hash of its bytes, like lakeFS's own local blockstore; commits
and copies never copy bytes (entries share blobs). Trees (a commit's `path -> entry` snapshot) are
immutable JSON documents keyed by their content hash, so they can be cached in
memory without invalidation.

Concurrency: one process, many threads. Each thread has its own connection
(`lakeloop.sqlite_table.ThreadConnections`); writers are serialised by a
process-wide lock around `BEGIN IMMEDIATE`, so SQLite never answers "database
is locked" to a concurrent writer. Readers run in WAL snapshots and never block.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lakeloop.sqlite_table import ThreadConnections, immediate

Entry = dict[str, Any]
"""An object entry: address, checksum (md5), size, mtime, content_type, metadata, blob (sha256), identity."""
Tree = dict[str, Entry]

EMPTY_TREE_ID = ""

SCHEMA = """
CREATE TABLE IF NOT EXISTS repos (
  id TEXT PRIMARY KEY, storage_namespace TEXT NOT NULL, default_branch TEXT NOT NULL,
  creation_date INTEGER NOT NULL, read_only INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS namespaces (ns TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS commits (
  repo TEXT NOT NULL, id TEXT NOT NULL, parents TEXT NOT NULL, committer TEXT NOT NULL,
  message TEXT NOT NULL, creation_date INTEGER NOT NULL, metadata TEXT NOT NULL,
  generation INTEGER NOT NULL, meta_range_id TEXT NOT NULL, PRIMARY KEY (repo, id));
CREATE TABLE IF NOT EXISTS trees (id TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS branches (
  repo TEXT NOT NULL, name TEXT NOT NULL, head TEXT NOT NULL, hidden INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (repo, name));
CREATE TABLE IF NOT EXISTS staging (
  repo TEXT NOT NULL, branch TEXT NOT NULL, path TEXT NOT NULL, entry TEXT,
  PRIMARY KEY (repo, branch, path));
CREATE TABLE IF NOT EXISTS tags (
  repo TEXT NOT NULL, name TEXT NOT NULL, commit_id TEXT NOT NULL, PRIMARY KEY (repo, name));
CREATE TABLE IF NOT EXISTS action_runs (
  repo TEXT NOT NULL, run_id TEXT NOT NULL, event_type TEXT NOT NULL, branch TEXT NOT NULL,
  commit_id TEXT NOT NULL, source_ref TEXT NOT NULL, status TEXT NOT NULL,
  start_time TEXT NOT NULL, end_time TEXT, PRIMARY KEY (repo, run_id));
CREATE TABLE IF NOT EXISTS hook_runs (
  repo TEXT NOT NULL, run_id TEXT NOT NULL, hook_run_id TEXT NOT NULL, action TEXT NOT NULL,
  hook_id TEXT NOT NULL, status TEXT NOT NULL, start_time TEXT NOT NULL, end_time TEXT,
  output TEXT NOT NULL DEFAULT '', PRIMARY KEY (repo, run_id, hook_run_id));
"""


class BlobWriter:
    """Streams an upload to a temp file while hashing it: one write and one md5 pass over the bytes.

    The blob id is random (as a lakeFS physical address is), so no second hash is needed to name it.
    """

    def __init__(self, tmp_dir: Path) -> None:
        self.blob_id = uuid.uuid4().hex
        self.path = tmp_dir / f"upload-{self.blob_id}"
        self._f = open(self.path, "xb", buffering=0)  # noqa: SIM115 - closed by close()/discard()
        self._md5 = hashlib.md5(usedforsecurity=False)
        self.size = 0

    def write(self, chunk: bytes | bytearray | memoryview) -> None:
        """Append a chunk; hashlib and the unbuffered file write both release the GIL for large chunks."""
        self._md5.update(chunk)
        view = memoryview(chunk)
        while view:
            view = view[self._f.write(view) or 0 :]
        self.size += len(chunk)

    def close(self) -> tuple[str, str, int]:
        """Finish the file; returns (blob id, md5, size)."""
        self._f.close()
        return self.blob_id, self._md5.hexdigest(), self.size

    def discard(self) -> None:
        if not self._f.closed:
            self._f.close()
        self.path.unlink(missing_ok=True)


class Store:
    """SQLite + blob directory under `data_dir`."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.blob_dir = self.data_dir / "blobs" / "sha256"  # the name stores made before random ids keep
        self.tmp_dir = self.data_dir / "tmp"
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.tmp_dir.glob("upload-*"):  # uploads interrupted by a crash never reached metadata
            stale.unlink(missing_ok=True)
        self.db_path = self.data_dir / "lakefs.sqlite"
        self._db = ThreadConnections(self.db_path, row_factory=sqlite3.Row)
        self._wlock = threading.Lock()
        self._tree_cache: OrderedDict[str, tuple[Tree, list[str]]] = OrderedDict()
        self._cache_lock = threading.Lock()
        with self._wlock:
            self._conn().executescript(SCHEMA)

    # -- connections and transactions -------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        return self._db.get()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A serialised write transaction: all or nothing."""
        with self._wlock, immediate(self._conn()) as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent read snapshot (several SELECTs see the same state)."""
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    # -- blobs ------------------------------------------------------------------------

    def blob_path(self, blob_id: str) -> Path:
        """Where a blob lives: ids are sha256 hex (older stores) or random hex, fanned out by their first bytes."""
        return self.blob_dir / blob_id[:2] / blob_id[2:4] / blob_id

    def new_blob_writer(self) -> BlobWriter:
        return BlobWriter(self.tmp_dir)

    def commit_blob(self, writer: BlobWriter) -> tuple[str, str, int]:
        """Move a finished upload into the blob store (a rename, never a copy); returns (blob id, md5, size)."""
        blob_id, md5, size = writer.close()
        dest = self.blob_path(blob_id)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(writer.path, dest)
        return blob_id, md5, size

    # -- trees ------------------------------------------------------------------------

    @staticmethod
    def tree_id(tree: Tree) -> str:
        """Content hash of a tree: same objects (by identity) give the same id."""
        if not tree:
            return EMPTY_TREE_ID
        h = hashlib.sha256()
        for path in sorted(tree):
            h.update(path.encode())
            h.update(b"\0")
            h.update(str(tree[path]["identity"]).encode())
            h.update(b"\n")
        return h.hexdigest()

    def put_tree(self, conn: sqlite3.Connection, tree: Tree) -> str:
        tid = self.tree_id(tree)
        if tid != EMPTY_TREE_ID:
            conn.execute(
                "INSERT OR IGNORE INTO trees (id, data) VALUES (?, ?)",
                (tid, json.dumps(tree, separators=(",", ":"))),
            )
            self._cache_put(tid, tree)
        return tid

    def _cache_put(self, tid: str, tree: Tree) -> None:
        with self._cache_lock:
            self._tree_cache[tid] = (tree, sorted(tree))
            self._tree_cache.move_to_end(tid)
            while len(self._tree_cache) > 256:
                self._tree_cache.popitem(last=False)

    def tree(self, tid: str) -> tuple[Tree, list[str]]:
        """A tree and its sorted paths; callers must not mutate the result."""
        if tid == EMPTY_TREE_ID:
            return {}, []
        with self._cache_lock:
            hit = self._tree_cache.get(tid)
            if hit is not None:
                self._tree_cache.move_to_end(tid)
                return hit
        row = self._conn().execute("SELECT data FROM trees WHERE id = ?", (tid,)).fetchone()
        if row is None:
            raise KeyError(tid)
        tree: Tree = json.loads(row["data"])
        self._cache_put(tid, tree)
        return tree, sorted(tree)
