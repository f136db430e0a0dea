"""The ledger's ownership rules: a lost lease cannot complete, and locks exclude across threads; on SQLite and
PostgreSQL (`state_path`)."""

from __future__ import annotations

import pickle
import threading
import time
from pathlib import Path

import pytest

from lakeloop.state import LeaseLost, Ledger, LockTimeout


def test_an_owner_whose_lease_expired_cannot_complete(state_path: Path | str) -> None:
    """Issue 10: `complete()` did not check the owner, so a run whose lease had been taken over still
    marked the work done and both owners "won"."""
    lg = Ledger(state_path, lease_seconds=0.05)
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


def test_lock_excludes_other_owners_and_frees_on_exit(state_path: Path | str) -> None:
    lg = Ledger(state_path)
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


def test_lock_times_out_with_a_clear_error(state_path: Path | str) -> None:
    lg = Ledger(state_path)
    with lg.lock("k", "a", timeout=5), pytest.raises(LockTimeout, match="held by a"), \
            lg.lock("k", "b", timeout=0.2, poll=0.05):
        pass
    e = LockTimeout("x")
    assert str(pickle.loads(pickle.dumps(e))) == "x"


def test_concurrent_claims_take_each_key_once(state_path: Path | str) -> None:
    """Owners racing for the same deliveries: every key is won by exactly one, and done once, in one order."""
    lg = Ledger(state_path)
    won: list[tuple[str, str]] = []

    def work(owner: str) -> None:
        for k in range(25):
            if lg.claim(f"k{k}", "lakefs", owner):
                won.append((f"k{k}", owner))
                lg.complete(f"k{k}", owner)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(k for k, _ in won) == sorted(f"k{k}" for k in range(25))
    done = lg.done()
    assert len(done) == 25 and sorted(d.seq or 0 for d in done) == list(range(1, 26))
    assert {d.key: d.owner for d in done} == dict(won)
