"""Merge base, three-way merge and tree diffs: pure functions over trees.

Entries are compared by identity (size, checksum, metadata, content type), not
by physical address, like lakeFS: the same bytes uploaded on two branches are
not a conflict.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass

from infra.lakefs_server.errors import ApiError
from infra.lakefs_server.store import Entry, Tree

CommitInfo = Callable[[str], tuple[list[str], int]]
"""commit id -> (parents, generation)."""


def merge_base(info: CommitInfo, a: str, b: str) -> str | None:
    """Best common ancestor: the highest-generation commit reachable from both."""
    seen_a: set[str] = set()
    stack = [a]
    while stack:
        c = stack.pop()
        if c in seen_a:
            continue
        seen_a.add(c)
        stack.extend(info(c)[0])
    heap: list[tuple[int, str]] = [(-info(b)[1], b)]
    seen_b: set[str] = set()
    while heap:
        _, c = heapq.heappop(heap)
        if c in seen_b:
            continue
        seen_b.add(c)
        if c in seen_a:
            return c
        for p in info(c)[0]:
            heapq.heappush(heap, (-info(p)[1], p))
    return None


def _ident(tree: Tree, path: str) -> str | None:
    e = tree.get(path)
    return None if e is None else str(e["identity"])


@dataclass
class MergeOutcome:
    tree: Tree
    conflicts: list[str]
    changed: bool  # does the result differ from dest?


def three_way(base: Tree, source: Tree, dest: Tree, strategy: str | None) -> MergeOutcome:
    """Apply source's changes since base onto dest; conflicting paths follow `strategy`."""
    if strategy not in (None, "", "dest-wins", "source-wins"):
        raise ApiError(400, f"merge strategy {strategy!r}: invalid value")
    result: Tree = dict(dest)
    conflicts: list[str] = []
    changed = False
    for path in set(base) | set(source) | set(dest):
        b, s, d = _ident(base, path), _ident(source, path), _ident(dest, path)
        if s in (b, d):
            continue  # source did not change it, or both changed it the same way
        if d == b or strategy == "source-wins":
            changed = True
            if s is None:
                result.pop(path, None)
            else:
                result[path] = source[path]
        elif strategy == "dest-wins":
            continue
        else:
            conflicts.append(path)
    return MergeOutcome(result, sorted(conflicts), changed)


def diff_trees(left: Tree, right: Tree) -> list[tuple[str, str, Entry | None]]:
    """Changes turning left into right, sorted by path: (type, path, right-or-left entry)."""
    out: list[tuple[str, str, Entry | None]] = []
    for path in sorted(set(left) | set(right)):
        le, re_ = left.get(path), right.get(path)
        if le is None and re_ is not None:
            out.append(("added", path, re_))
        elif re_ is None and le is not None:
            out.append(("removed", path, le))
        elif le is not None and re_ is not None and le["identity"] != re_["identity"]:
            out.append(("changed", path, re_))
    return out


def three_dot(base: Tree, left: Tree, right: Tree) -> list[tuple[str, str, Entry | None]]:
    """What merging right into left would bring: right's changes since the merge base.

    Walks the paths where left and right differ (lakeFS's compare iterator): a
    path only left changed is skipped, one only right changed is reported
    relative to the base, one both changed differently is a `conflict`.
    """
    out: list[tuple[str, str, Entry | None]] = []
    for _, path, _entry in diff_trees(left, right):
        b, l_, r = _ident(base, path), _ident(left, path), _ident(right, path)
        if b == r:
            continue
        only_right = "added" if b is None else "removed" if r is None else "changed"
        kind = only_right if b == l_ else "conflict"
        out.append((kind, path, right.get(path) or base.get(path) or left.get(path)))
    return out
