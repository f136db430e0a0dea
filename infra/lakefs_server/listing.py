"""Pagination and delimiter folding shared by every lakeFS listing.

lakeFS pages with `after` (exclusive, lexicographic), `amount` (default 100,
max 1000, <=0 means default) and answers `has_more` by fetching one extra item;
`next_offset` is the last returned key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from infra.lakefs_server.errors import ApiError
from infra.lakefs_server.models import page

T = TypeVar("T")
DEFAULT_AMOUNT = 100
MAX_AMOUNT = 1000


def amount_of(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_AMOUNT
    try:
        n = int(raw)
    except ValueError as e:
        raise ApiError(400, f"amount: invalid value {raw!r}") from e
    if n > MAX_AMOUNT:
        raise ApiError(400, f"amount: number must be at most {MAX_AMOUNT}")
    return DEFAULT_AMOUNT if n <= 0 else n


def paginate(
    items: Iterable[T],
    key: Callable[[T], str],
    render: Callable[[T], dict[str, Any]],
    after: str,
    amount: int,
) -> dict[str, Any]:
    """Take `amount` items with key > after from key-sorted `items`; wrap them in the lakeFS envelope."""
    out: list[T] = []
    has_more = False
    for item in items:
        if after and key(item) <= after:
            continue
        if len(out) == amount:
            has_more = True
            break
        out.append(item)
    return page([render(i) for i in out], has_more, key(out[-1]) if out and has_more else "")


def fold(paths: Iterable[tuple[str, T]], prefix: str, delimiter: str) -> Iterator[tuple[str, T | None]]:
    """Collapse sorted (path, item) pairs into common prefixes below `prefix` (item None for a prefix)."""
    last_prefix = None
    for path, item in paths:
        if delimiter:
            idx = path.find(delimiter, len(prefix))
            if idx >= 0:
                cp = path[: idx + len(delimiter)]
                if cp != last_prefix:
                    last_prefix = cp
                    yield cp, None
                continue
        yield path, item
