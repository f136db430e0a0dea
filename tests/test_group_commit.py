"""The bridge's group commit: concurrent webhooks share batches, yet each key is emitted once, is done in
the ledger before its answer, and a failed publish leaves the whole batch retryable."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prefect.events import Event

from infra.bridge.delivery import GroupCommit
from lakeloop.events import EmitError
from lakeloop.state import Ledger


def ev(i: int) -> Event:
    return Event(event="test.delivery", resource={"prefect.resource.id": f"r.{i}"}, payload={"i": i})


class Publisher:
    def __init__(self, ledger: Ledger) -> None:
        self.batches: list[list[Event]] = []
        self.fail = False
        self.ledger = ledger

    def __call__(self, events: list[Event]) -> None:
        # nothing is done in the ledger before Prefect has the event
        assert not any(self.ledger.is_settled(f"k{e.payload['i']}") for e in events)
        if self.fail:
            raise EmitError("Prefect down")
        self.batches.append(events)


async def deliver_all(gc: GroupCommit, keys: list[int]) -> list[str | BaseException]:
    return await asyncio.gather(*(gc.deliver(f"k{i}", "lakefs", ev(i)) for i in keys), return_exceptions=True)


def test_concurrent_deliveries_are_batched_and_each_key_is_emitted_once(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.sqlite3")
    pub = Publisher(ledger)
    gc = GroupCommit(ledger, pub, "bridge")
    keys = [i % 150 for i in range(200)]  # 50 keys delivered twice, some inside the same batch
    answers = asyncio.run(deliver_all(gc, keys))
    assert answers.count("emitted") == 150 and answers.count("duplicate") == 50
    sent = [e.payload["i"] for b in pub.batches for e in b]
    assert sorted(sent) == list(range(150))
    assert len(pub.batches) < 50  # batched, not one POST per webhook
    assert all(ledger.is_settled(f"k{i}") for i in range(150))


def test_a_failed_publish_fails_its_batch_and_releases_it_for_a_retry(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.sqlite3")
    pub = Publisher(ledger)
    gc = GroupCommit(ledger, pub, "bridge")
    pub.fail = True
    answers = asyncio.run(deliver_all(gc, list(range(20))))
    assert all(isinstance(a, EmitError) for a in answers)
    assert not any(ledger.get(f"k{i}") for i in range(20))  # released: nothing claimed, nothing done
    pub.fail = False
    assert asyncio.run(deliver_all(gc, list(range(20)))) == ["emitted"] * 20


@pytest.mark.parametrize("max_batch", [1, 7])
def test_batches_never_exceed_their_bound(tmp_path: Path, max_batch: int) -> None:
    ledger = Ledger(tmp_path / "l.sqlite3")
    pub = Publisher(ledger)
    asyncio.run(deliver_all(GroupCommit(ledger, pub, "bridge", max_batch=max_batch), list(range(30))))
    assert max(len(b) for b in pub.batches) <= max_batch and sum(len(b) for b in pub.batches) == 30
