"""Confirm that each commit event Prefect accepted started an on-commit run; re-deliver what was lost.

Why: `POST /api/events` answering 2xx only means the event is on Prefect's message bus. In
Prefect OSS (3.8) that bus is in memory (`prefect.server.utilities.messaging.memory`), and so is
the trigger service's record of seen event ids (`prefect.server.events.ordering.memory`, a
TTLCache). An event accepted while the trigger service lags behind (a busy SQLite database) is
gone if the server stops before the trigger reads it, and the ledger already says "done":
bench/bench_burst_restart.py lost 5 of 30 commits that way, accepted 3-5 s before a restart.

So the bridge records every commit event it published (`SentCommitEvents`, under the state
directory), and each reconcile pass (`confirm_once`) looks for the on-commit run of each commit
published more than `grace_s` ago:

* a run in a final state (completed, failed, cancelled): confirmed, nothing more to do;
* a run scheduled, pending or running: wait (it is Prefect's, and the worker's, to run);
* no run at all, once Prefect has moved past it: re-deliver the event. The first time with its
  own id (if Prefect did see it, the seen-id cache skips it; a restarted server has forgotten it
  and runs it), then with a derived id, in case the trigger saw the event but the action creating
  the run failed. "Moved past": a commit event published more than `PROGRESS_SLACK_S` after this
  one (or after its last re-delivery) already has its run; Prefect's trigger service reads its
  bus in order, so until then a missing run may only be a backlog (a loaded SQLite server lags
  by minutes) and a second copy under a new id would become a second run. With no such later
  event (the end of a burst, or triggers that stopped), it acts after `stall_s` regardless;
* only crashed runs (the infrastructure died, e.g. the flow process lost the API during the
  restart): reschedule the latest one, as "Retry" in Prefect's UI does, so the commit still
  has one run.

After `max_attempts` actions a commit is given up on and logged as an error. Nothing here waits
for lost events that were never published: the ledger and the reconciler own those.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx
import sqlalchemy as sa
from prefect.events import Event

from lakeloop.events import LAKEFS_COMMIT_CREATED, LAKEFS_MERGE_COMPLETED
from lakeloop.state_db import StateTable

log = logging.getLogger("infra.bridge.run_confirm")

CONFIRM_FILE = "run-confirmations.sqlite3"
COMMIT_EVENTS = frozenset({LAKEFS_COMMIT_CREATED, LAKEFS_MERGE_COMPLETED})
DEFAULT_DEPLOYMENT = "on-commit/on-commit"
DEFAULT_GRACE_S = 60.0
DEFAULT_WINDOW_S = 6 * 3600.0
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_STALL_S = 600.0
PROGRESS_SLACK_S = 2.0
FINAL_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
CRASHED = "CRASHED"

Emitter = Callable[[Event], None]
Publisher = Callable[[list[Event]], None]


@dataclass(frozen=True)
class SentEvent:
    event_id: str
    repository: str
    commit_id: str
    body: dict[str, Any]
    sent_at: float
    redeliveries: int
    reschedules: int
    last_action_at: float | None

    @property
    def attempts(self) -> int:
        return self.redeliveries + self.reschedules

    def event(self, attempt: int = 0) -> Event:
        """The event as published; from the second re-delivery on, under an id derived from it."""
        ev = Event.model_validate(self.body)
        if attempt > 0:
            ev = ev.model_copy(update={"id": uuid.uuid5(uuid.UUID(self.event_id), f"redelivery-{attempt}")})
        return ev


class SentCommitEvents(StateTable):
    """Commit events the bridge (or its reconciler) published, until their run is confirmed."""

    schema = (
        "CREATE TABLE IF NOT EXISTS sent ("
        " event_id TEXT PRIMARY KEY,"
        " repository TEXT NOT NULL,"
        " commit_id TEXT NOT NULL,"
        " body TEXT NOT NULL,"
        " sent_at REAL NOT NULL,"
        " confirmed_at REAL,"
        " redeliveries INTEGER NOT NULL DEFAULT 0,"
        " reschedules INTEGER NOT NULL DEFAULT 0,"
        " last_action_at REAL,"
        " abandoned_at REAL,"
        " note TEXT)"
    )

    filename = CONFIRM_FILE

    def record(self, event: Event, sent_at: float | None = None) -> bool:
        """Remember a published commit event (other events are ignored); False if known already."""
        return self.record_many([event], sent_at) == 1

    def record_many(self, events: list[Event], sent_at: float | None = None) -> int:
        """`record` for a batch the bridge published together, in one transaction; how many were new."""
        at = time.time() if sent_at is None else sent_at
        rows = [{"id": str(e.id), "repo": str(e.payload.get("repository", "")),
                 "commit": str(e.payload.get("commit_id", "")),
                 "body": json.dumps(e.model_dump(mode="json"), sort_keys=True), "at": at}
                for e in events if e.event in COMMIT_EVENTS]
        if not rows:
            return 0
        with self.db.write() as c:
            return sum(c.execute(sa.text(
                "INSERT INTO sent (event_id, repository, commit_id, body, sent_at) "
                "VALUES (:id, :repo, :commit, :body, :at) ON CONFLICT (event_id) DO NOTHING"), row).rowcount
                for row in rows)

    def due(self, now: float, grace_s: float, window_s: float) -> list[SentEvent]:
        """Unconfirmed events sent (or last acted on) more than `grace_s` ago, within `window_s`."""
        with self.db.read() as c:
            rows = c.execute(sa.text(
                "SELECT event_id, repository, commit_id, body, sent_at, redeliveries, reschedules, last_action_at "
                "FROM sent WHERE confirmed_at IS NULL AND abandoned_at IS NULL AND sent_at >= :since "
                "AND COALESCE(last_action_at, sent_at) <= :until ORDER BY sent_at"),
                {"since": now - window_s, "until": now - grace_s}).fetchall()
        return [SentEvent(str(i), str(r), str(cid), json.loads(b), float(s), int(rd), int(rs),
                          None if la is None else float(la)) for i, r, cid, b, s, rd, rs, la in rows]

    def sent_after(self, t: float) -> list[tuple[str, float]]:
        """(commit id, sent at) of every commit event published after `t`, confirmed or not."""
        with self.db.read() as c:
            rows = c.execute(sa.text("SELECT commit_id, sent_at FROM sent WHERE sent_at > :t"), {"t": t}).fetchall()
        return [(str(cid), float(at)) for cid, at in rows]

    def confirm(self, event_ids: Iterable[str], now: float) -> None:
        params = [{"now": now, "id": i} for i in event_ids]
        if params:
            with self.db.write() as c:
                c.execute(sa.text("UPDATE sent SET confirmed_at = :now WHERE event_id = :id"), params)

    def acted(self, event_id: str, now: float, *, redelivered: bool, note: str) -> None:
        column = "redeliveries" if redelivered else "reschedules"
        with self.db.write() as c:
            c.execute(sa.text(f"UPDATE sent SET {column} = {column} + 1, last_action_at = :now, note = :note "
                              "WHERE event_id = :id"), {"now": now, "note": note, "id": event_id})

    def abandon(self, event_id: str, now: float, note: str) -> None:
        with self.db.write() as c:
            c.execute(sa.text("UPDATE sent SET abandoned_at = :now, note = :note WHERE event_id = :id"),
                      {"now": now, "note": note, "id": event_id})

    def get(self, event_id: str) -> dict[str, Any] | None:
        with self.db.read() as c:
            row = c.execute(sa.text("SELECT * FROM sent WHERE event_id = :id"), {"id": event_id}).mappings().first()
        return dict(row) if row is not None else None

    def prune(self, older_than_s: float = 7 * 86400.0) -> int:
        with self.db.write() as c:
            return c.execute(sa.text("DELETE FROM sent WHERE sent_at < :t"), {"t": time.time() - older_than_s}).rowcount


def recording(emitter: Emitter, store: SentCommitEvents) -> Emitter:
    """`emitter`, then remember the event if it was a commit event (only once it was accepted)."""

    def emit(event: Event) -> None:
        emitter(event)
        try:
            store.record(event)
        except Exception:  # the event is out; losing its confirmation is not worth failing the delivery
            log.exception("could not record commit event %s for run confirmation", event.id)

    return emit


def recording_batches(publish: Publisher, store: SentCommitEvents) -> Publisher:
    """`recording` for a publisher of whole batches (the bridge's group commit)."""

    def emit(events: list[Event]) -> None:
        publish(events)
        try:
            store.record_many(events)
        except Exception:
            log.exception("could not record %d commit events for run confirmation", len(events))

    return emit


class RunsView(Protocol):
    def runs_by_commit(self, since: float) -> dict[str, list[dict[str, Any]]]: ...

    def reschedule(self, flow_run_id: str) -> None: ...


class PrefectRuns:
    """The on-commit deployment's flow runs, read through Prefect's REST API."""

    def __init__(self, api_url: str, deployment: str = DEFAULT_DEPLOYMENT, timeout: float = 30.0) -> None:
        self.api_url = api_url.rstrip("/")
        self.deployment = deployment
        self.timeout = timeout
        self._deployment_id: str | None = None

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        r = httpx.request(method, f"{self.api_url}{path}", json=body, timeout=self.timeout)
        r.raise_for_status()
        return r.json() if r.content else None

    def deployment_id(self) -> str:
        if self._deployment_id is None:
            self._deployment_id = str(self._call("GET", f"/deployments/name/{self.deployment}")["id"])
        return self._deployment_id

    def runs_by_commit(self, since: float) -> dict[str, list[dict[str, Any]]]:
        after = (datetime.fromtimestamp(since, tz=UTC) - timedelta(minutes=1)).isoformat()
        out: dict[str, list[dict[str, Any]]] = {}
        offset = 0
        while True:
            page: list[dict[str, Any]] = self._call("POST", "/flow_runs/filter", {
                "limit": 200, "offset": offset, "sort": "EXPECTED_START_TIME_DESC",
                "deployments": {"id": {"any_": [self.deployment_id()]}},
                "flow_runs": {"expected_start_time": {"after_": after}}})
            for r in page:
                out.setdefault(str(r["parameters"].get("commit_id")), []).append(r)
            if len(page) < 200:
                return out
            offset += len(page)

    def reschedule(self, flow_run_id: str) -> None:
        """What "Retry" does in Prefect's UI: a forced transition to Scheduled, for the worker to run again."""
        now = datetime.now(UTC).isoformat()
        self._call("POST", f"/flow_runs/{flow_run_id}/set_state", {
            "state": {"type": "SCHEDULED", "name": "AwaitingRetry",
                      "message": "lakeloop: the run crashed; rescheduled by the bridge's run confirmation",
                      "state_details": {"scheduled_time": now}},
            "force": True})


@dataclass
class ConfirmReport:
    confirmed: list[str] = field(default_factory=list)  # commit ids
    waiting: list[str] = field(default_factory=list)
    redelivered: list[str] = field(default_factory=list)
    rescheduled: list[str] = field(default_factory=list)
    abandoned: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def confirm_once(store: SentCommitEvents, runs: RunsView, emitter: Emitter, *, grace_s: float = DEFAULT_GRACE_S,
                 window_s: float = DEFAULT_WINDOW_S, max_attempts: int = DEFAULT_MAX_ATTEMPTS,
                 stall_s: float = DEFAULT_STALL_S, now: float | None = None) -> ConfirmReport:
    """One pass: confirm, wait for, re-deliver or reschedule each due commit event (see the module doc)."""
    now = time.time() if now is None else now
    report = ConfirmReport()
    due = store.due(now, grace_s, window_s)
    if not due:
        return report
    since = min(e.sent_at for e in due)
    by_commit = runs.runs_by_commit(since)
    # how far Prefect's triggers got: the latest-published commit event that has its run
    progress = max((at for cid, at in store.sent_after(since) if by_commit.get(cid)), default=0.0)
    for e in due:
        found = by_commit.get(e.commit_id, [])
        states = {str(r.get("state_type")) for r in found}
        if states & FINAL_STATES:
            store.confirm([e.event_id], now)
            report.confirmed.append(e.commit_id)
            continue
        if states - {CRASHED}:  # scheduled, pending, running, paused...: Prefect's to run
            report.waiting.append(e.commit_id)
            continue
        if e.attempts >= max_attempts:
            why = "only crashed runs" if found else "no run"
            store.abandon(e.event_id, now, f"{why} after {e.attempts} attempt(s)")
            report.abandoned.append(e.commit_id)
            log.error("lakefs://%s commit %s: %s after %d attempt(s); giving up", e.repository, e.commit_id,
                      why, e.attempts)
            continue
        last_send = e.last_action_at if e.redeliveries and e.last_action_at else e.sent_at
        if not found and progress <= last_send + PROGRESS_SLACK_S and now - last_send < stall_s:
            report.waiting.append(e.commit_id)  # Prefect may only be behind: nothing later has run either
            continue
        try:
            if found:
                latest = max(found, key=lambda r: str(r.get("expected_start_time") or ""))
                runs.reschedule(str(latest["id"]))
                store.acted(e.event_id, now, redelivered=False, note=f"rescheduled crashed run {latest['id']}")
                report.rescheduled.append(e.commit_id)
                log.warning("lakefs://%s commit %s: its on-commit run %s crashed; rescheduled", e.repository,
                            e.commit_id, latest["id"])
            else:
                ev = e.event(e.redeliveries)
                emitter(ev)
                store.acted(e.event_id, now, redelivered=True, note=f"re-delivered as {ev.id}")
                report.redelivered.append(e.commit_id)
                log.warning("lakefs://%s commit %s: accepted by Prefect %.0fs ago but no on-commit run; "
                            "re-delivered (event %s)", e.repository, e.commit_id, now - e.sent_at, ev.id)
        except Exception as exc:
            report.errors.append(f"{e.commit_id}: {type(exc).__name__}: {exc}")
            log.warning("run confirmation of %s stopped: %s", e.commit_id, exc)
            break  # Prefect is unreachable or refusing: the next pass tries again
    return report
