"""Relabel rounds are serialized: two at once never send more than the team's queue has room for."""

from __future__ import annotations

import threading
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from lakeloop.state import Ledger
from tasks.labels.relabel_round import top_up

CAP = 300


class SlowQueue:
    """Label Studio's open-task count, with the read-then-send window a real round has."""

    def __init__(self) -> None:
        self.open = 0
        self.lock = threading.Lock()

    def open_tasks(self, project_id: int) -> int:
        n = self.open
        time.sleep(0.1)  # ranking and payload building happen between the read and the send
        return n

    def send(self, room: int) -> int:
        with self.lock:
            self.open += room
        return room


def _two_rounds(queue: SlowQueue, lock: Any) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    threads = [threading.Thread(target=lambda: out.append(top_up(queue, 1, CAP, CAP, queue.send, lock())))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_unserialized_rounds_both_send_a_budget() -> None:
    """The race issue 10 names, shown without the lock: both rounds see room and both send."""
    queue = SlowQueue()
    _two_rounds(queue, nullcontext)
    assert queue.open == 2 * CAP


def test_rounds_under_the_ledger_lock_never_exceed_the_cap(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.sqlite3")
    queue = SlowQueue()
    names = iter(["run-a", "run-b"])
    out = _two_rounds(queue, lambda: ledger.lock("relabel:p1", next(names), timeout=30, poll=0.01))
    assert queue.open == CAP
    assert sorted(out) == [(0, CAP), (CAP, 0)]  # the second round saw the first one's tasks
