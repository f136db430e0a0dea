"""The ledger's ownership rules: a lost lease cannot complete, and locks exclude across threads."""

from __future__ import annotations

import pickle
import threading
import time
from pathlib import Path

import pytest

from lakeloop.state import LeaseLost, Ledger, LockTimeout


def test_an_owner_whose_lease_expired_cannot_complete(tmp_path: Path) -> None:
    """Issue 10: `complete()` did not check the owner, so a run whose lease had been taken over still
    marked the work done and both owners "won"."""
    lg = Ledger(tmp_path / "l.sqlite3", lease_seconds=0.05)
    assert lg.claim("k", "retrain", "a")
    time.sleep(0.1)
    assert lg.claim("k", "retrain", "b")  # a looks dead: b takes over
    with pytest.raises(LeaseLost) as err:
        lg.complete("k", "a")
    d = lg.get("k")
    assert d is not None and d.state == "claimed" and d.owner == "b"
    lg.complete("k", "b")
    assert lg.is_settled("k")
    again = pickle.loads(pickle.dumps(err.value))
    assert isinstance(again, LeaseLost) and again.holder == "b" and str(again) == str(err.value)


def test_lock_excludes_other_owners_and_frees_on_exit(tmp_path: Path) -> None:
    lg = Ledger(tmp_path / "l.sqlite3")
    inside: list[int] = []
    overlap: list[bool] = []

    def work(i: int) -> None:
        with lg.lock("promote:m", f"w{i}", timeout=30, poll=0.01):
            inside.append(i)
            overlap.append(len(inside) > 1)
            time.sleep(0.05)
            inside.remove(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlap == [False] * 4
    assert lg.get("promote:m") is None  # released, reusable


def test_lock_times_out_with_a_clear_error(tmp_path: Path) -> None:
    lg = Ledger(tmp_path / "l.sqlite3")
    with lg.lock("k", "a", timeout=5), pytest.raises(LockTimeout, match="held by a"), \
            lg.lock("k", "b", timeout=0.2, poll=0.05):
        pass
    e = LockTimeout("x")
    assert str(pickle.loads(pickle.dumps(e))) == "x"
