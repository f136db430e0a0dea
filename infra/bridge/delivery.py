"""Group commit of webhook deliveries: claim, publish and complete a whole batch at once.

Each webhook still follows the ledger's claim -> emit -> complete, and its 2xx is only sent once its
key is done in the ledger (or found settled already), so exactly-once and durability are those of
`Ledger.run_once`. What changes is the cost under load: webhooks that arrive while a batch is in
flight wait for the next one, and a batch of n costs three state-database transactions and one
`POST /api/events` instead of n of each (per webhook, those were the bridge's whole budget). At low
load a batch is one webhook and nothing waits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from prefect.events import Event
from starlette.concurrency import run_in_threadpool

from lakeloop.state import Ledger

log = logging.getLogger("lakeloop.bridge")

Publisher = Callable[[list[Event]], None]
MAX_BATCH = 200
# batches published at once: a batch mostly waits for Prefect's answer, so a second one fills the wait
# (claims are transactions, so two batches never hold the same key)
IN_FLIGHT = 2


@dataclass
class _Pending:
    key: str
    kind: str
    event: Event
    answer: asyncio.Future[str]


class GroupCommit:
    """Deliveries queued by concurrent requests, flushed in batches by `in_flight` tasks."""

    def __init__(self, ledger: Ledger, publish: Publisher, owner: str, max_batch: int = MAX_BATCH,
                 in_flight: int = IN_FLIGHT) -> None:
        self.ledger, self.publish, self.owner, self.max_batch = ledger, publish, owner, max_batch
        self.in_flight = in_flight
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    async def deliver(self, key: str, kind: str, event: Event) -> str:
        """"emitted" or "duplicate" once the ledger says so; raises what `publish` raised (nothing done)."""
        loop = asyncio.get_running_loop()
        if not self._tasks or any(t.done() for t in self._tasks) or self._loop is not loop:  # (a test client's
            self._queue, self._loop = asyncio.Queue(), loop  # loop per call)
            self._tasks = [loop.create_task(self._run(self._queue)) for _ in range(self.in_flight)]
        answer: asyncio.Future[str] = loop.create_future()
        await self._queue.put(_Pending(key, kind, event, answer))
        return await answer

    async def _run(self, queue: asyncio.Queue[_Pending]) -> None:
        while True:
            batch = [await queue.get()]
            while len(batch) < self.max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                outcomes = await run_in_threadpool(self._flush, batch)
            except Exception as e:  # publish (or the ledger) failed: nothing in this batch is done
                for p in batch:
                    if not p.answer.done():
                        p.answer.set_exception(e)
                continue
            for p, outcome in zip(batch, outcomes, strict=True):
                if not p.answer.done():
                    p.answer.set_result(outcome)

    def _flush(self, batch: list[_Pending]) -> list[str]:
        taken = self.ledger.claim_many([(p.key, p.kind, {"event": p.event.event}) for p in batch], self.owner)
        fresh = [p for p, t in zip(batch, taken, strict=True) if t]
        if fresh:
            try:
                self.publish([p.event for p in fresh])
            except BaseException:
                self.ledger.release_many([p.key for p in fresh], self.owner)
                raise
            for lost in self.ledger.complete_many([p.key for p in fresh], self.owner):
                log.warning("%s", lost)  # published anyway; whoever holds the claim now completes it
        return ["emitted" if t else "duplicate" for t in taken]
