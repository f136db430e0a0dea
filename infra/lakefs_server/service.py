"""lakeFS semantics over the store: repositories, branches, staging, commits, merges, hooks.

HTTP-free on purpose, so the rules (what a commit consumes, when a merge
conflicts, which ref a hook reads its actions from) live in one place and the
web layer only translates requests. Methods that trigger `post-*` hooks return
a callable the web layer runs after the response has been sent.

Locking: operations that move a branch head (commit, merge, revert, reset,
delete) hold a per-branch lock for their whole duration, including `pre-*`
hooks, so the head cannot move under them. Uploads do not take it: a commit
only clears the staging rows it actually consumed, so an upload racing a
commit stays staged for the next one (lakeFS's staging-token behaviour).
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import json
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any

from infra.lakefs_server import merge as mergelib
from infra.lakefs_server import refs
from infra.lakefs_server.errors import ApiError, found, not_found
from infra.lakefs_server.hooks import ACTIONS_PREFIX, Action, ActionError, Event, Runner, load_actions
from infra.lakefs_server.listing import fold, paginate
from infra.lakefs_server.models import ActionRun, Commit, Diff, HookRun, ObjectStats, Ref, Repository
from infra.lakefs_server.store import EMPTY_TREE_ID, BlobWriter, Entry, Store, Tree

PostHook = Callable[[], None] | None
REPO_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{2,62}$")
BRANCH_NAME = re.compile(r"^\w[-\w]*$")
NAMESPACE = re.compile(r"^(local|mem)://.+")


def identity(size: int, checksum: str, metadata: dict[str, str], content_type: str) -> str:
    """lakeFS's entry identity: equal identities are the same object for diff and merge."""
    raw = json.dumps([size, checksum, sorted(metadata.items()), content_type], separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()


def object_stats(path: str, e: Entry, user_metadata: bool = True) -> dict[str, Any]:
    return ObjectStats(
        path=path,
        physical_address=e["address"],
        checksum=e["checksum"],
        size_bytes=e["size"],
        mtime=e["mtime"],
        metadata=dict(e.get("metadata") or {}) if user_metadata else None,
        content_type=e["content_type"],
    ).dump()


def _diff_out(kind: str, path: str, e: Entry | None, prefix_fold: bool) -> dict[str, Any]:
    if prefix_fold:
        return Diff(type="prefix_changed", path=path, path_type="common_prefix").dump()
    return Diff(type=kind, path=path, size_bytes=e["size"] if e else None).dump()


class LakeFS:
    """One lakeFS installation: a single user, any number of repositories."""

    def __init__(self, store: Store, username: str = "admin") -> None:
        self.store = store
        self.username = username
        self.runner = Runner(store)
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._commit_cache: dict[tuple[str, str], dict[str, Any]] = {}

    # -- helpers ---------------------------------------------------------------------

    @contextmanager
    def branch_lock(self, repo: str, branch: str) -> Iterator[None]:
        with self._locks_guard:
            lock = self._locks.setdefault((repo, branch), threading.Lock())
        with lock:
            yield

    def _repo(self, conn: sqlite3.Connection, repo: str) -> sqlite3.Row:
        row: sqlite3.Row | None = conn.execute("SELECT * FROM repos WHERE id=?", (repo,)).fetchone()
        return found(row, f"repository {repo}")

    def _branch_head(self, conn: sqlite3.Connection, repo: str, branch: str) -> str:
        row = conn.execute("SELECT head FROM branches WHERE repo=? AND name=?", (repo, branch)).fetchone()
        return str(found(row, f"branch {branch}")["head"])

    @staticmethod
    def _writable(r: sqlite3.Row) -> sqlite3.Row:
        """The repository row `r`, or 403 when it is read-only: every write to a branch checks this."""
        if r["read_only"]:
            raise ApiError(403, "repository is read-only")
        return r

    @staticmethod
    def _set_head(conn: sqlite3.Connection, repo: str, branch: str, cid: str) -> None:
        conn.execute("UPDATE branches SET head=? WHERE repo=? AND name=?", (cid, repo, branch))

    def commit(self, conn: sqlite3.Connection, repo: str, cid: str) -> dict[str, Any]:
        """A commit record (immutable, so cached forever)."""
        hit = self._commit_cache.get((repo, cid))
        if hit is not None:
            return hit
        row = conn.execute("SELECT rowid AS seq, * FROM commits WHERE repo=? AND id=?", (repo, cid)).fetchone()
        c = dict(found(row, f"commit {cid}"))
        c["parents"] = json.loads(c["parents"])
        c["metadata"] = json.loads(c["metadata"])
        self._commit_cache[(repo, cid)] = c
        return c

    def _tree(self, conn: sqlite3.Connection, repo: str, cid: str) -> Tree:
        return self.store.tree(self.commit(conn, repo, cid)["meta_range_id"])[0]

    def _staging(self, conn: sqlite3.Connection, repo: str, branch: str) -> dict[str, str | None]:
        rows = conn.execute("SELECT path, entry FROM staging WHERE repo=? AND branch=?", (repo, branch))
        return {r["path"]: r["entry"] for r in rows}

    @staticmethod
    def _overlay(tree: Tree, staging: dict[str, str | None]) -> Tree:
        out = dict(tree)
        for path, raw in staging.items():
            if raw is None:
                out.pop(path, None)
            else:
                out[path] = json.loads(raw)
        return out

    def _insert_commit(
        self,
        conn: sqlite3.Connection,
        repo: str,
        parents: list[str],
        tree: Tree,
        message: str,
        metadata: dict[str, str],
        date: int | None = None,
        committer: str | None = None,
    ) -> str:
        tid = self.store.put_tree(conn, tree)
        return self._write_commit(
            conn, repo, self._commit_id(conn, repo, parents, tid, message, metadata, date, committer)
        )

    def _commit_id(
        self,
        conn: sqlite3.Connection,
        repo: str,
        parents: list[str],
        tid: str,
        message: str,
        metadata: dict[str, str],
        date: int | None,
        committer: str | None,
    ) -> dict[str, Any]:
        gen = max((self.commit(conn, repo, p)["generation"] for p in parents), default=0) + 1
        rec = {
            "parents": parents,
            "committer": self.username if committer is None else committer,
            "message": message,
            "creation_date": int(time.time()) if date is None else int(date),
            "metadata": metadata,
            "generation": gen,
            "meta_range_id": tid,
        }
        rec["id"] = hashlib.sha256(json.dumps([repo, rec], sort_keys=True).encode()).hexdigest()
        return rec

    def _write_commit(self, conn: sqlite3.Connection, repo: str, rec: dict[str, Any]) -> str:
        conn.execute(
            "INSERT OR IGNORE INTO commits (repo, id, parents, committer, message, creation_date, metadata,"
            " generation, meta_range_id) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                repo,
                rec["id"],
                json.dumps(rec["parents"]),
                rec["committer"],
                rec["message"],
                rec["creation_date"],
                json.dumps(rec["metadata"]),
                rec["generation"],
                rec["meta_range_id"],
            ),
        )
        return str(rec["id"])

    def _actions_in(self, tree: Tree) -> list[Action]:
        files = []
        for path in sorted(tree):
            if path.startswith(ACTIONS_PREFIX) and "/" not in path[len(ACTIONS_PREFIX) :]:
                files.append((path, self.store.blob_path(tree[path]["blob"]).read_bytes()))
        return load_actions(files) if files else []

    def _pre(self, tree: Tree, event: Event) -> None:
        """Run a pre-* event synchronously; any failure aborts the operation with 412."""
        try:
            actions = self._actions_in(tree)
        except ActionError as e:
            raise ApiError(412, f"{event.event_type} hook aborted: {e}") from e
        failure = self.runner.run(actions, event)
        if failure:
            raise ApiError(412, failure)

    def _post(self, tree: Tree, event: Event) -> PostHook:
        try:
            actions = self._actions_in(tree)
        except ActionError:
            return None
        if not actions:
            return None
        return lambda: self.runner.run_later(actions, event)

    # -- repositories ----------------------------------------------------------------

    def create_repo(self, name: str, namespace: str, default_branch: str, read_only: bool) -> dict[str, Any]:
        if not REPO_NAME.match(name):
            raise ApiError(400, f"repository name {name!r}: invalid value")
        if not NAMESPACE.match(namespace):
            raise ApiError(400, "storage namespace: must match ^(local|mem)://")
        if not BRANCH_NAME.match(default_branch):
            raise ApiError(400, f"branch name {default_branch!r}: invalid value")
        with self.store.write() as conn:
            if conn.execute("SELECT 1 FROM repos WHERE id=?", (name,)).fetchone():
                raise ApiError(409, "error creating repository: not unique")
            ns = namespace.rstrip("/")
            if conn.execute("SELECT 1 FROM namespaces WHERE ns=?", (ns,)).fetchone():
                raise ApiError(400, f"failed to create repository: storage namespace already in use: {namespace}")
            now = int(time.time())
            conn.execute("INSERT INTO namespaces (ns) VALUES (?)", (ns,))
            conn.execute(
                "INSERT INTO repos (id, storage_namespace, default_branch, creation_date, read_only)"
                " VALUES (?,?,?,?,?)",
                (name, namespace, default_branch, now, int(read_only)),
            )
            cid = self._insert_commit(conn, name, [], {}, "Repository created", {}, now, committer="")
            conn.execute("INSERT INTO branches (repo, name, head) VALUES (?,?,?)", (name, default_branch, cid))
            return Repository.render(self._repo(conn, name))

    def get_repo(self, name: str) -> dict[str, Any]:
        with self.store.read() as conn:
            return Repository.render(self._repo(conn, name))

    def list_repos(self, prefix: str, after: str, amount: int) -> dict[str, Any]:
        with self.store.read() as conn:
            rows = conn.execute("SELECT * FROM repos WHERE id >= ? ORDER BY id", (prefix,)).fetchall()
        rows = [r for r in rows if r["id"].startswith(prefix)]
        return paginate(rows, lambda r: r["id"], Repository.render, after, amount)

    def delete_repo(self, name: str) -> None:
        with self.store.write() as conn:
            self._repo(conn, name)
            for table in ("repos",):
                conn.execute(f"DELETE FROM {table} WHERE id=?", (name,))
            for table in ("branches", "staging", "tags", "commits", "action_runs", "hook_runs"):
                conn.execute(f"DELETE FROM {table} WHERE repo=?", (name,))
        for key in [k for k in self._commit_cache if k[0] == name]:
            self._commit_cache.pop(key, None)

    # -- branches and tags -----------------------------------------------------------

    def list_branches(self, repo: str, prefix: str, after: str, amount: int, hidden: bool) -> dict[str, Any]:
        with self.store.read() as conn:
            self._repo(conn, repo)
            rows = conn.execute("SELECT * FROM branches WHERE repo=? ORDER BY name", (repo,)).fetchall()
        rows = [r for r in rows if r["name"].startswith(prefix) and (hidden or not r["hidden"])]
        return paginate(
            rows, lambda r: r["name"], lambda r: Ref(id=r["name"], commit_id=r["head"]).dump(), after, amount
        )

    def get_branch(self, repo: str, branch: str) -> dict[str, Any]:
        with self.store.read() as conn:
            self._repo(conn, repo)
            return Ref(id=branch, commit_id=self._branch_head(conn, repo, branch)).dump()

    def create_branch(self, repo: str, name: str, source: str, hidden: bool) -> tuple[str, PostHook]:
        if not BRANCH_NAME.match(name):
            raise ApiError(400, f"branch name {name!r}: invalid value")
        with self.branch_lock(repo, name):
            with self.store.read() as conn:
                self._repo(conn, repo)
                if conn.execute("SELECT 1 FROM branches WHERE repo=? AND name=?", (repo, name)).fetchone():
                    raise ApiError(409, "branch already exists: not unique")
                cid = refs.resolve(conn, repo, source).commit_id
                tree = self._tree(conn, repo, cid)
            ev = Event("pre-create-branch", repo, branch_id=name, source_ref=source, commit_id=cid)
            self._pre(tree, ev)
            with self.store.write() as conn:
                if conn.execute("SELECT 1 FROM branches WHERE repo=? AND name=?", (repo, name)).fetchone():
                    raise ApiError(409, "branch already exists: not unique")
                conn.execute(
                    "INSERT INTO branches (repo, name, head, hidden) VALUES (?,?,?,?)", (repo, name, cid, int(hidden))
                )
            return cid, self._post(tree, replace(ev, event_type="post-create-branch"))

    def delete_branch(self, repo: str, branch: str) -> PostHook:
        with self.branch_lock(repo, branch):
            with self.store.read() as conn:
                r = self._repo(conn, repo)
                head = self._branch_head(conn, repo, branch)
                if r["default_branch"] == branch:
                    raise ApiError(403, "cannot delete repository default branch")
                tree = self._tree(conn, repo, head)
            ev = Event("pre-delete-branch", repo, branch_id=branch, source_ref=branch, commit_id=head)
            self._pre(tree, ev)
            with self.store.write() as conn:
                conn.execute("DELETE FROM branches WHERE repo=? AND name=?", (repo, branch))
                conn.execute("DELETE FROM staging WHERE repo=? AND branch=?", (repo, branch))
            return self._post(tree, replace(ev, event_type="post-delete-branch"))

    def reset_branch(self, repo: str, branch: str, kind: str, path: str) -> None:
        if kind not in ("reset", "object", "common_prefix"):
            raise ApiError(400, f"reset type {kind!r}: invalid value")
        with self.branch_lock(repo, branch), self.store.write() as conn:
            self._repo(conn, repo)
            self._branch_head(conn, repo, branch)
            if kind == "reset":
                conn.execute("DELETE FROM staging WHERE repo=? AND branch=?", (repo, branch))
            elif kind == "object":
                conn.execute("DELETE FROM staging WHERE repo=? AND branch=? AND path=?", (repo, branch, path))
            else:
                conn.execute(
                    "DELETE FROM staging WHERE repo=? AND branch=? AND substr(path, 1, ?) = ?",
                    (repo, branch, len(path), path),
                )

    def list_tags(self, repo: str, prefix: str, after: str, amount: int) -> dict[str, Any]:
        with self.store.read() as conn:
            self._repo(conn, repo)
            rows = conn.execute("SELECT * FROM tags WHERE repo=? ORDER BY name", (repo,)).fetchall()
        rows = [r for r in rows if r["name"].startswith(prefix)]
        return paginate(
            rows, lambda r: r["name"], lambda r: Ref(id=r["name"], commit_id=r["commit_id"]).dump(), after, amount
        )

    def create_tag(self, repo: str, tag: str, ref: str, force: bool) -> dict[str, Any]:
        if not BRANCH_NAME.match(tag.replace(".", "_")):
            raise ApiError(400, f"tag {tag!r}: invalid value")
        with self.store.write() as conn:
            self._repo(conn, repo)
            cid = refs.resolve(conn, repo, ref).commit_id
            if conn.execute("SELECT 1 FROM tags WHERE repo=? AND name=?", (repo, tag)).fetchone() and not force:
                raise ApiError(409, "tag already exists: not unique")
            conn.execute("INSERT OR REPLACE INTO tags (repo, name, commit_id) VALUES (?,?,?)", (repo, tag, cid))
        return Ref(id=tag, commit_id=cid).dump()

    def get_tag(self, repo: str, tag: str) -> dict[str, Any]:
        with self.store.read() as conn:
            self._repo(conn, repo)
            row = conn.execute("SELECT commit_id FROM tags WHERE repo=? AND name=?", (repo, tag)).fetchone()
        return Ref(id=tag, commit_id=found(row, f"tag {tag}")["commit_id"]).dump()

    def delete_tag(self, repo: str, tag: str) -> None:
        with self.store.write() as conn:
            self._repo(conn, repo)
            if conn.execute("DELETE FROM tags WHERE repo=? AND name=?", (repo, tag)).rowcount == 0:
                raise not_found(f"tag {tag}")

    # -- objects ---------------------------------------------------------------------

    def check_branch(self, repo: str, branch: str) -> str:
        """404 before an upload streams its body; returns the storage namespace."""
        with self.store.read() as conn:
            r = self._repo(conn, repo)
            self._branch_head(conn, repo, branch)  # an upload to a missing branch is 404 even when read-only
            return str(self._writable(r)["storage_namespace"])

    def put_object(
        self,
        repo: str,
        branch: str,
        path: str,
        writer: BlobWriter,
        content_type: str,
        metadata: dict[str, str],
        if_absent: bool,
    ) -> dict[str, Any]:
        if not path:
            raise ApiError(400, "path: required")
        namespace = self.check_branch(repo, branch)
        sha, md5, size = self.store.commit_blob(writer)
        entry: Entry = {
            "address": f"{namespace.rstrip('/')}/data/{uuid.uuid4().hex}",
            "checksum": md5,
            "size": size,
            "mtime": int(time.time()),
            "content_type": content_type,
            "metadata": metadata,
            "blob": sha,
            "identity": identity(size, md5, metadata, content_type),
        }
        with self.store.write() as conn:
            head = self._branch_head(conn, repo, branch)
            if if_absent and self._lookup(conn, repo, refs.Resolved(head, branch, staged=True), path):
                raise ApiError(412, "object already exists")
            conn.execute(
                "INSERT OR REPLACE INTO staging (repo, branch, path, entry) VALUES (?,?,?,?)",
                (repo, branch, path, json.dumps(entry, separators=(",", ":"))),
            )
        return object_stats(path, entry)

    def _lookup(self, conn: sqlite3.Connection, repo: str, res: refs.Resolved, path: str) -> Entry | None:
        if res.staged or res.staging_only:
            row = conn.execute(
                "SELECT entry FROM staging WHERE repo=? AND branch=? AND path=?", (repo, res.branch, path)
            ).fetchone()
            if row is not None:
                return None if row["entry"] is None else dict(json.loads(row["entry"]))
        return self._tree(conn, repo, res.commit_id).get(path)

    def get_entry(self, repo: str, ref: str, path: str) -> Entry:
        with self.store.read() as conn:
            self._repo(conn, repo)
            entry = self._lookup(conn, repo, refs.resolve(conn, repo, ref), path)
        if entry is None:
            raise not_found(f"object {path}")
        return entry

    def delete_objects(self, repo: str, branch: str, paths: list[str], missing_ok: bool) -> None:
        with self.store.write() as conn:
            self._writable(self._repo(conn, repo))
            head = self._branch_head(conn, repo, branch)
            tree = self._tree(conn, repo, head)
            res = refs.Resolved(head, branch, staged=True)
            for path in paths:
                if self._lookup(conn, repo, res, path) is None:
                    if missing_ok:
                        continue
                    raise not_found(f"object {path}")
                if path in tree:
                    conn.execute(
                        "INSERT OR REPLACE INTO staging (repo, branch, path, entry) VALUES (?,?,?,NULL)",
                        (repo, branch, path),
                    )
                else:
                    conn.execute("DELETE FROM staging WHERE repo=? AND branch=? AND path=?", (repo, branch, path))

    def _view(self, conn: sqlite3.Connection, repo: str, ref: str) -> tuple[Tree, list[str], dict[str, Entry | None]]:
        res = refs.resolve(conn, repo, ref)
        tree, paths = self.store.tree(self.commit(conn, repo, res.commit_id)["meta_range_id"])
        staged: dict[str, Entry | None] = {}
        if (res.staged or res.staging_only) and res.branch:
            staged = {
                p: (None if raw is None else json.loads(raw))
                for p, raw in self._staging(conn, repo, res.branch).items()
            }
        return tree, paths, staged

    def list_objects(
        self,
        repo: str,
        ref: str,
        prefix: str,
        after: str,
        amount: int,
        delimiter: str,
        user_metadata: bool,
    ) -> dict[str, Any]:
        with self.store.read() as conn:
            self._repo(conn, repo)
            tree, paths, staged = self._view(conn, repo, ref)
        start = max(prefix, after)
        lo = bisect.bisect_left(paths, start)

        def merged() -> Iterator[tuple[str, Entry]]:
            tree_part = (p for p in (paths[i] for i in range(lo, len(paths))))
            stage_part = sorted(p for p in staged if p >= start)
            last = None
            for p in heapq.merge(tree_part, stage_part):
                if not p.startswith(prefix):
                    if p > prefix:
                        break
                    continue
                if p == last:
                    continue
                last = p
                e = staged[p] if p in staged else tree[p]
                if e is not None:
                    yield p, e

        def render(item: tuple[str, Entry | None]) -> dict[str, Any]:
            p, e = item
            if e is None:
                return ObjectStats(path=p, path_type="common_prefix").dump()
            return object_stats(p, e, user_metadata)

        return paginate(fold(merged(), prefix, delimiter), lambda i: i[0], render, after, amount)

    # -- commits, log, diff ----------------------------------------------------------

    def commit_branch(
        self,
        repo: str,
        branch: str,
        message: str,
        metadata: dict[str, str],
        allow_empty: bool,
        date: int | None,
    ) -> tuple[dict[str, Any], PostHook]:
        with self.branch_lock(repo, branch):
            with self.store.read() as conn:
                self._writable(self._repo(conn, repo))
                head = self._branch_head(conn, repo, branch)
                head_tree = self._tree(conn, repo, head)
                staging = self._staging(conn, repo, branch)
            tree = self._overlay(head_tree, staging)
            tid = self.store.tree_id(tree)
            if tid == self.store.tree_id(head_tree) and not allow_empty:
                raise ApiError(400, "no changes")
            ev = Event(
                "pre-commit",
                repo,
                branch_id=branch,
                source_ref=branch,
                commit_message=message,
                committer=self.username,
                commit_metadata=metadata,
            )
            self._pre(tree, ev)
            with self.store.write() as conn:
                cid = self._insert_commit(conn, repo, [head], tree, message, metadata, date)
                self._set_head(conn, repo, branch, cid)
                conn.executemany(
                    "DELETE FROM staging WHERE repo=? AND branch=? AND path=? AND entry IS ?",
                    [(repo, branch, p, raw) for p, raw in staging.items()],
                )
                c = self.commit(conn, repo, cid)
            post = self._post(tree, replace(ev, event_type="post-commit", source_ref=cid, commit_id=cid))
            return Commit.render(c), post

    def get_commit(self, repo: str, ref: str) -> dict[str, Any]:
        with self.store.read() as conn:
            self._repo(conn, repo)
            return Commit.render(self.commit(conn, repo, refs.resolve(conn, repo, ref).commit_id))

    def log(
        self,
        repo: str,
        ref: str,
        after: str,
        amount: int,
        objects: list[str],
        prefixes: list[str],
        first_parent: bool,
        since: int | None,
        stop_at: str,
    ) -> dict[str, Any]:
        with self.store.read() as conn:
            self._repo(conn, repo)
            start = refs.resolve(conn, repo, ref).commit_id
            stop = refs.resolve(conn, repo, stop_at).commit_id if stop_at else None

            def walk() -> Iterator[dict[str, Any]]:
                first = self.commit(conn, repo, start)
                heap = [(-first["creation_date"], -first["seq"], start)]
                seen = {start}
                while heap:
                    _, _, cid = heapq.heappop(heap)
                    c = self.commit(conn, repo, cid)
                    if since is not None and c["creation_date"] < since:
                        continue
                    if self._touches(conn, repo, c, objects, prefixes):
                        yield c
                    if cid == stop:
                        return
                    for p in c["parents"][:1] if first_parent else c["parents"]:
                        if p not in seen:
                            seen.add(p)
                            pc = self.commit(conn, repo, p)
                            heapq.heappush(heap, (-pc["creation_date"], -pc["seq"], p))

            # `after` is a commit id, not an ordered key: skip up to and including it.
            items = walk()
            if after:
                for c in items:
                    if c["id"] == after:
                        break
            return paginate(items, lambda c: c["id"], Commit.render, "", amount)

    def _touches(
        self, conn: sqlite3.Connection, repo: str, c: dict[str, Any], objects: list[str], prefixes: list[str]
    ) -> bool:
        if not objects and not prefixes:
            return True
        tree = self.store.tree(c["meta_range_id"])[0]
        parent = self._tree(conn, repo, c["parents"][0]) if c["parents"] else {}
        for kind, path, _ in mergelib.diff_trees(parent, tree):
            del kind
            if path in objects or any(path.startswith(p) for p in prefixes):
                return True
        return False

    def _info(self, conn: sqlite3.Connection, repo: str) -> mergelib.CommitInfo:
        def info(cid: str) -> tuple[list[str], int]:
            c = self.commit(conn, repo, cid)
            return c["parents"], int(c["generation"])

        return info

    def _ref_tree(self, conn: sqlite3.Connection, repo: str, res: refs.Resolved) -> Tree:
        tree = self._tree(conn, repo, res.commit_id)
        if res.staging_only and res.branch:
            return self._overlay(tree, self._staging(conn, repo, res.branch))
        return tree

    def diff_refs(
        self,
        repo: str,
        left: str,
        right: str,
        kind: str,
        prefix: str,
        after: str,
        amount: int,
        delimiter: str,
    ) -> dict[str, Any]:
        if kind not in ("three_dot", "two_dot"):
            raise ApiError(400, f"type {kind!r}: invalid value")
        with self.store.read() as conn:
            self._repo(conn, repo)
            lres, rres = refs.resolve(conn, repo, left), refs.resolve(conn, repo, right)
            if kind == "three_dot" and (lres.staging_only or rres.staging_only):
                raise ApiError(400, "ref: invalid value ($ is only valid in a two-dot diff)")
            ltree, rtree = self._ref_tree(conn, repo, lres), self._ref_tree(conn, repo, rres)
            if kind == "two_dot":
                changes = mergelib.diff_trees(ltree, rtree)
            else:
                base = mergelib.merge_base(self._info(conn, repo), lres.commit_id, rres.commit_id)
                btree = self._tree(conn, repo, base) if base else {}
                changes = mergelib.three_dot(btree, ltree, rtree)
        return self._diff_page(changes, prefix, after, amount, delimiter)

    def diff_branch(
        self, repo: str, branch: str, prefix: str, after: str, amount: int, delimiter: str
    ) -> dict[str, Any]:
        with self.store.read() as conn:
            self._repo(conn, repo)
            head_tree = self._tree(conn, repo, self._branch_head(conn, repo, branch))
            staging = self._staging(conn, repo, branch)
        staged_paths = {p: None for p in staging}
        left = {p: head_tree[p] for p in staged_paths if p in head_tree}
        right = {p: e for p, e in self._overlay(left, staging).items()}
        return self._diff_page(mergelib.diff_trees(left, right), prefix, after, amount, delimiter)

    @staticmethod
    def _diff_page(
        changes: list[tuple[str, str, Entry | None]], prefix: str, after: str, amount: int, delimiter: str
    ) -> dict[str, Any]:
        selected = ((p, (k, e)) for k, p, e in changes if p.startswith(prefix))
        folded = fold(selected, prefix, delimiter)
        return paginate(
            folded,
            lambda i: i[0],
            lambda i: _diff_out(i[1][0] if i[1] else "", i[0], i[1][1] if i[1] else None, i[1] is None),
            after,
            amount,
        )

    # -- merge and revert ------------------------------------------------------------

    def merge_base(self, repo: str, source: str, dest: str) -> dict[str, Any]:
        with self.store.read() as conn:
            self._repo(conn, repo)
            s = refs.resolve(conn, repo, source).commit_id
            d = refs.resolve(conn, repo, dest).commit_id
            base = mergelib.merge_base(self._info(conn, repo), d, s)
        if base is None:
            raise not_found("merge base")
        return {"source_commit_id": s, "destination_commit_id": d, "base_commit_id": base}

    def merge(
        self,
        repo: str,
        source: str,
        dest: str,
        message: str,
        metadata: dict[str, str],
        strategy: str | None,
        force: bool,
        allow_empty: bool,
        squash: bool,
    ) -> tuple[dict[str, Any], PostHook]:
        with self.branch_lock(repo, dest):
            with self.store.read() as conn:
                self._writable(self._repo(conn, repo))
                head = self._branch_head(conn, repo, dest)
                src = refs.resolve(conn, repo, source).commit_id
                dest_tree = self._clean_tree(conn, repo, dest, head)
                base = mergelib.merge_base(self._info(conn, repo), head, src)
                if base == src and not (allow_empty or force):
                    raise ApiError(400, "no changes")
                base_tree = self._tree(conn, repo, base) if base else {}
                src_tree = self._tree(conn, repo, src)
                outcome = mergelib.three_way(base_tree, src_tree, dest_tree, strategy)
                if outcome.conflicts:
                    raise ApiError(409, "conflict found")
                metadata = {**metadata, ".lakefs.merge.strategy": strategy or "default"}
                message = message or f"Merge '{source}' into '{dest}'"
                parents = [head] if squash else [head, src]
                tid = Store.tree_id(outcome.tree)
                rec = self._commit_id(conn, repo, parents, tid, message, metadata, None, None)
            ev = Event(
                "pre-merge",
                repo,
                branch_id=dest,
                source_ref=src,
                commit_id=rec["id"],
                commit_message=message,
                committer=self.username,
                commit_metadata=metadata,
                merge_source=source,
            )
            self._pre(src_tree, ev)
            with self.store.write() as conn:
                self.store.put_tree(conn, outcome.tree)
                cid = self._write_commit(conn, repo, rec)
                self._set_head(conn, repo, dest, cid)
            post = self._post(outcome.tree, replace(ev, event_type="post-merge", source_ref=cid))
            return {"reference": cid}, post

    def _clean_tree(self, conn: sqlite3.Connection, repo: str, branch: str, head: str) -> Tree:
        """The tree of the branch's `head`, or 400 when the branch has uncommitted changes: merge, revert and
        cherry-pick only write onto a clean branch."""
        head_tree = self._tree(conn, repo, head)
        if self._dirty(conn, repo, branch, head_tree):
            raise ApiError(400, "uncommitted changes (dirty branch)")
        return head_tree

    def _dirty(self, conn: sqlite3.Connection, repo: str, branch: str, head_tree: Tree) -> bool:
        for path, raw in self._staging(conn, repo, branch).items():
            cur = head_tree.get(path)
            if raw is None:
                if cur is not None:
                    return True
            elif cur is None or json.loads(raw)["identity"] != cur["identity"]:
                return True
        return False

    def _replay(self, repo: str, branch: str, ref: str, parent_number: int, *, undo: bool,
                message: str | None, metadata: dict[str, str] | None, allow_empty: bool) -> dict[str, Any]:
        """Revert (`undo`) or cherry-pick: apply the change the commit at `ref` made against its chosen
        (1-based `parent_number`) parent, backwards or forwards, onto the clean branch head as a new commit."""
        verb = "reverting" if undo else "cherry-picking"
        with self.branch_lock(repo, branch):
            with self.store.read() as conn:
                self._repo(conn, repo)
                head = self._branch_head(conn, repo, branch)
                head_tree = self._clean_tree(conn, repo, branch, head)
                c = self.commit(conn, repo, refs.resolve(conn, repo, ref).commit_id)
                parents = c["parents"]
                if len(parents) > 1 and parent_number <= 0:
                    raise ApiError(409, f"must specify 1-based parent number for {verb} merge commit")
                idx = max(parent_number, 1) - 1
                if idx >= len(parents):
                    raise ApiError(400, f"parent number {parent_number}: invalid value")
                ctree, ptree = self.store.tree(c["meta_range_id"])[0], self._tree(conn, repo, parents[idx])
                # cherry-pick replays parent -> commit onto the head; revert replays commit -> parent
                base, source = (ctree, ptree) if undo else (ptree, ctree)
                outcome = mergelib.three_way(base, source, head_tree, None)
            if outcome.conflicts:
                raise ApiError(409, "conflict found")
            if not outcome.changed and not allow_empty:
                raise ApiError(400, "no changes")
            default_message = f"Revert {ref}" if undo else c["message"]
            with self.store.write() as conn:
                cid = self._insert_commit(conn, repo, [head], outcome.tree, message or default_message,
                                          c["metadata"] if metadata is None else metadata)
                self._set_head(conn, repo, branch, cid)
                return Commit.render(self.commit(conn, repo, cid))

    def revert(
        self,
        repo: str,
        branch: str,
        ref: str,
        parent_number: int,
        message: str | None,
        metadata: dict[str, str],
        allow_empty: bool,
    ) -> None:
        self._replay(repo, branch, ref, parent_number, undo=True, message=message, metadata=metadata,
                     allow_empty=allow_empty)

    def cherry_pick(
        self,
        repo: str,
        branch: str,
        ref: str,
        parent_number: int,
        message: str | None,
        metadata: dict[str, str] | None,
    ) -> dict[str, Any]:
        """Apply one commit's changes (against its chosen parent) onto the branch head, as a new commit."""
        return self._replay(repo, branch, ref, parent_number, undo=False, message=message, metadata=metadata,
                            allow_empty=True)

    def hard_reset(self, repo: str, branch: str, ref: str) -> None:
        """Point the branch at `ref` and drop its staging (lakeFS's hard_reset)."""
        with self.branch_lock(repo, branch), self.store.write() as conn:
            self._repo(conn, repo)
            self._branch_head(conn, repo, branch)
            cid = refs.resolve(conn, repo, ref).commit_id
            self._set_head(conn, repo, branch, cid)
            conn.execute("DELETE FROM staging WHERE repo=? AND branch=?", (repo, branch))

    def copy_object(self, repo: str, branch: str, dest: str, src_ref: str, src_path: str) -> dict[str, Any]:
        """Stage `dest` as a copy of `src_path` at `src_ref`: same bytes (blobs are shared), fresh address."""
        if not dest or not src_path:
            raise ApiError(400, "dest_path and src_path are required")
        namespace = self.check_branch(repo, branch)
        entry = dict(self.get_entry(repo, src_ref or branch, src_path))
        entry["address"] = f"{namespace.rstrip('/')}/data/{uuid.uuid4().hex}"
        entry["mtime"] = int(time.time())
        with self.store.write() as conn:
            self._branch_head(conn, repo, branch)
            conn.execute(
                "INSERT OR REPLACE INTO staging (repo, branch, path, entry) VALUES (?,?,?,?)",
                (repo, branch, dest, json.dumps(entry, separators=(",", ":"))),
            )
        return object_stats(dest, entry)

    # -- action runs -----------------------------------------------------------------

    def list_runs(self, repo: str, branch: str, commit: str, after: str, amount: int) -> dict[str, Any]:
        with self.store.read() as conn:
            self._repo(conn, repo)
            q, args = "SELECT * FROM action_runs WHERE repo=?", [repo]
            if branch:
                q, args = q + " AND branch=?", [*args, branch]
            if commit:
                q, args = q + " AND commit_id=?", [*args, commit]
            rows = conn.execute(q + " ORDER BY run_id", args).fetchall()
        return paginate(rows, lambda r: r["run_id"], ActionRun.render, after, amount)

    def get_run(self, repo: str, run_id: str) -> dict[str, Any]:
        with self.store.read() as conn:
            self._repo(conn, repo)
            row = conn.execute("SELECT * FROM action_runs WHERE repo=? AND run_id=?", (repo, run_id)).fetchone()
        return ActionRun.render(found(row, f"run {run_id}"))

    def list_hooks(self, repo: str, run_id: str, after: str, amount: int) -> dict[str, Any]:
        self.get_run(repo, run_id)
        with self.store.read() as conn:
            rows = conn.execute(
                "SELECT * FROM hook_runs WHERE repo=? AND run_id=? ORDER BY hook_run_id", (repo, run_id)
            ).fetchall()
        return paginate(rows, lambda r: r["hook_run_id"], HookRun.render, after, amount)

    def hook_output(self, repo: str, run_id: str, hook_run_id: str) -> str:
        with self.store.read() as conn:
            self._repo(conn, repo)
            row = conn.execute(
                "SELECT output FROM hook_runs WHERE repo=? AND run_id=? AND hook_run_id=?", (repo, run_id, hook_run_id)
            ).fetchone()
        return str(found(row, f"hook run {hook_run_id}")["output"])


def parse_since(raw: str | None) -> int | None:
    if not raw:
        return None
    try:
        return int(datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp())
    except ValueError as e:
        raise ApiError(400, f"since: invalid date-time {raw!r}") from e


__all__ = ["EMPTY_TREE_ID", "LakeFS", "PostHook", "parse_since"]
