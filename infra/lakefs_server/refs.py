"""Ref expressions, as lakeFS parses and resolves them (`pkg/graveler/ref/parse_ref.go`).

A ref is `base(~N|^N|@|$)*`. The base resolves, in order, as a full commit id,
a branch, a tag, then a unique hex commit-id prefix. `~N` follows first parents
N times, `^N` picks the Nth parent (`^0` is the commit itself). `@` (committed
state of a branch) and `$` (its staging) are only valid alone, on a branch.
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass

from infra.lakefs_server.errors import ApiError, found, not_found

_MOD = re.compile(r"([~^])(\d*)|([@$])")
_HEX = re.compile(r"^[0-9a-f]+$")
MIN_PREFIX = 4


@dataclass(frozen=True)
class Resolved:
    """What a ref names: a commit, and for a plain branch ref the branch whose staging overlays it."""

    commit_id: str
    branch: str | None = None  # set when the base was a branch
    staged: bool = False  # plain branch ref: read committed state + staging
    staging_only: bool = False  # `branch$`


def parse(ref: str) -> tuple[str, list[tuple[str, int]]]:
    """Split `ref` into its base and modifiers; 400 on malformed expressions."""
    i = 0
    while i < len(ref) and ref[i] not in "~^@$":
        i += 1
    base, rest = ref[:i], ref[i:]
    if not base:
        raise ApiError(400, "ref: invalid value")
    mods: list[tuple[str, int]] = []
    pos = 0
    while pos < len(rest):
        m = _MOD.match(rest, pos)
        if m is None:
            raise ApiError(400, "ref: invalid value")
        if m.group(3):
            mods.append((m.group(3), 0))
        else:
            mods.append((m.group(1), int(m.group(2)) if m.group(2) else 1))
        pos = m.end()
    if any(k in "@$" for k, _ in mods) and len(mods) != 1:
        raise ApiError(400, "ref: invalid value")
    return base, mods


def _parents(conn: sqlite3.Connection, repo: str, commit_id: str) -> list[str]:
    row = conn.execute("SELECT parents FROM commits WHERE repo=? AND id=?", (repo, commit_id)).fetchone()
    parents: list[str] = json.loads(found(row, f"commit {commit_id}")["parents"])
    return parents


def resolve(conn: sqlite3.Connection, repo: str, ref: str) -> Resolved:
    """Resolve a ref expression to a commit; 404 when any step is missing."""
    base, mods = parse(ref)
    commit_id: str | None = None
    branch: str | None = None
    if len(base) == 64 and _HEX.match(base):
        row = conn.execute("SELECT id FROM commits WHERE repo=? AND id=?", (repo, base)).fetchone()
        commit_id = row["id"] if row else None
    if commit_id is None:
        row = conn.execute("SELECT head FROM branches WHERE repo=? AND name=?", (repo, base)).fetchone()
        if row is not None:
            commit_id, branch = row["head"], base
    if commit_id is None:
        row = conn.execute("SELECT commit_id FROM tags WHERE repo=? AND name=?", (repo, base)).fetchone()
        if row is not None:
            commit_id = row["commit_id"]
    if commit_id is None and len(base) >= MIN_PREFIX and _HEX.match(base):
        rows = conn.execute(
            "SELECT id FROM commits WHERE repo=? AND id >= ? AND id < ? LIMIT 2", (repo, base, base + "g")
        ).fetchall()
        if len(rows) == 1:
            commit_id = rows[0]["id"]
    if commit_id is None:
        raise not_found(ref)
    if not mods:
        return Resolved(commit_id, branch, staged=branch is not None)
    if mods[0][0] in "@$":
        if branch is None:
            raise ApiError(400, "ref: invalid value")
        return Resolved(commit_id, branch, staged=False, staging_only=mods[0][0] == "$")
    for kind, n in mods:
        if kind == "~":
            for _ in range(n):
                parents = _parents(conn, repo, commit_id)
                if not parents:
                    raise not_found(ref)
                commit_id = parents[0]
        elif n > 0:
            parents = _parents(conn, repo, commit_id)
            if n > len(parents):
                raise not_found(ref)
            commit_id = parents[n - 1]
    return Resolved(commit_id)
