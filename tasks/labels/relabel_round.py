"""One review round at a time: read the team's open tasks and send only the room left, atomically.

Why a lock: two `request-relabel` runs at once (two models registered together)
would both read the open-task count, both see room, and both send a budget,
piling two rounds on the labeling team. Holding a ledger lock from the read to
the send makes the second run see the first one's tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol


class ReviewQueue(Protocol):
    def open_tasks(self, project_id: int) -> int: ...


def top_up(queue: ReviewQueue, project_id: int, budget: int, max_open: int | None,
           send: Callable[[int], int], lock: AbstractContextManager[Any]) -> tuple[int, int]:
    """(open tasks before, tasks sent): `send(room)` sends at most `room` tasks and returns how many it sent."""
    with lock:
        open_before = queue.open_tasks(project_id)
        room = min(budget, max(0, (max_open or budget) - open_before))
        return open_before, send(room)
