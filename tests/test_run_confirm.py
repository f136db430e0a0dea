"""Run confirmation: a commit event Prefect accepted but lost (its in-memory bus, a restart) is
re-delivered; a crashed on-commit run is rescheduled; a commit with its run is left alone."""

from __future__ import annotations

import pickle
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from prefect.events import Event

from infra.bridge.run_confirm import CONFIRM_FILE, SentCommitEvents, confirm_once, recording
from lakeloop import events

T0 = 1_000_000.0
GRACE = 60.0


class FakeRuns:
    def __init__(self) -> None:
        self.runs: dict[str, list[dict[str, Any]]] = {}
        self.rescheduled: list[str] = []
        self.down = False

    def add(self, commit_id: str, state: str, start: str = "2026-01-01T00:00:00Z") -> str:
        rid = str(uuid.uuid4())
        self.runs.setdefault(commit_id, []).append({"id": rid, "state_type": state, "expected_start_time": start,
                                                    "parameters": {"commit_id": commit_id}})
        return rid

    def runs_by_commit(self, since: float) -> dict[str, list[dict[str, Any]]]:
        if self.down:
            raise events.EmitError("prefect down")
        return self.runs

    def reschedule(self, flow_run_id: str) -> None:
        self.rescheduled.append(flow_run_id)
        for rs in self.runs.values():
            for r in rs:
                if r["id"] == flow_run_id:
                    r["state_type"] = "SCHEDULED"


def commit_ev(commit_id: str) -> Event:
    return events.commit_event(events.CommitPayload(repository="repo", branch="main", commit_id=commit_id,
                                                    lakefs_event="post-commit"))


@pytest.fixture
def store(tmp_path: Path) -> SentCommitEvents:
    return SentCommitEvents.at(tmp_path)


def test_only_accepted_commit_events_are_recorded(tmp_path: Path, store: SentCommitEvents) -> None:
    assert store.path == tmp_path / CONFIRM_FILE
    sent: list[Event] = []

    def failing(ev: Event) -> None:
        raise events.EmitError("prefect down")

    with pytest.raises(events.EmitError):
        recording(failing, store)(commit_ev("c1"))
    emit = recording(sent.append, store)
    emit(commit_ev("c2"))
    emit(events.build_event(events.LABELS_READY, events.labels_resource(1),
                            {"project_id": 1, "annotation_id": 2, "action": "ANNOTATION_CREATED"}))
    assert len(sent) == 2
    assert [e.commit_id for e in store.due(time.time() + 1, 0, 3600)] == ["c2"]


def test_a_commit_with_a_finished_run_is_confirmed_and_left_alone(store: SentCommitEvents) -> None:
    runs, sent = FakeRuns(), []
    store.record(commit_ev("c1"), sent_at=T0)
    runs.add("c1", "COMPLETED")
    assert confirm_once(store, runs, sent.append, grace_s=GRACE, now=T0 + GRACE - 1).confirmed == []  # in grace
    rep = confirm_once(store, runs, sent.append, grace_s=GRACE, now=T0 + GRACE + 1)
    assert rep.confirmed == ["c1"] and sent == []
    assert store.due(T0 + 10 * GRACE, GRACE, 1e9) == []


def test_a_scheduled_run_is_waited_for(store: SentCommitEvents) -> None:
    runs, sent = FakeRuns(), []
    store.record(commit_ev("c1"), sent_at=T0)
    runs.add("c1", "SCHEDULED")
    rep = confirm_once(store, runs, sent.append, grace_s=GRACE, now=T0 + 2 * GRACE)
    assert rep.waiting == ["c1"] and not rep.redelivered and sent == []
    runs.runs["c1"][0]["state_type"] = "COMPLETED"
    assert confirm_once(store, runs, sent.append, grace_s=GRACE, now=T0 + 3 * GRACE).confirmed == ["c1"]


def test_a_missing_run_is_waited_for_while_prefect_is_only_behind(store: SentCommitEvents) -> None:
    """No later commit event has its run yet: Prefect's triggers may just lag (a busy SQLite server),
    and a second copy under a new id would become a second run. Act once they moved past it, or
    after `stall_s` when nothing comes after (the end of a burst)."""
    runs, sent = FakeRuns(), []
    store.record(commit_ev("c1"), sent_at=T0)
    store.record(commit_ev("c2"), sent_at=T0 + 1)  # within the slack: not "later"
    runs.add("c2", "COMPLETED")
    rep = confirm_once(store, runs, sent.append, grace_s=GRACE, stall_s=600, now=T0 + GRACE + 5)
    assert rep.waiting == ["c1"] and sent == []
    store.record(commit_ev("c3"), sent_at=T0 + 30)
    runs.add("c3", "SCHEDULED")  # a later event has its run: triggers are past c1
    rep = confirm_once(store, runs, sent.append, grace_s=GRACE, stall_s=600, now=T0 + GRACE + 6)
    assert rep.redelivered == ["c1"] and [e.payload["commit_id"] for e in sent] == ["c1"]


def test_with_nothing_later_a_missing_run_is_acted_on_after_stall(store: SentCommitEvents) -> None:
    runs, sent = FakeRuns(), []
    store.record(commit_ev("last"), sent_at=T0)
    assert confirm_once(store, runs, sent.append, grace_s=GRACE, stall_s=600, now=T0 + 599).waiting == ["last"]
    assert confirm_once(store, runs, sent.append, grace_s=GRACE, stall_s=600, now=T0 + 601).redelivered == ["last"]


def later(store: SentCommitEvents, runs: FakeRuns, at: float) -> None:
    """A commit event published at `at` whose run exists: Prefect's triggers got past `at`."""
    cid = f"later-{at}"
    store.record(commit_ev(cid), sent_at=at)
    runs.add(cid, "COMPLETED")


def test_a_lost_event_is_redelivered_same_id_first_then_a_derived_one_then_given_up(
        store: SentCommitEvents) -> None:
    runs, sent = FakeRuns(), []
    ev = commit_ev("lost")
    store.record(ev, sent_at=T0)
    later(store, runs, T0 + 10)
    t = T0 + GRACE + 1
    assert confirm_once(store, runs, sent.append, grace_s=GRACE, max_attempts=3, now=t).redelivered == ["lost"]
    assert [e.id for e in sent] == [ev.id]  # a restarted Prefect forgot the id: the same one runs it
    assert sent[0].payload == ev.payload and sent[0].resource == ev.resource

    # next pass within the grace of the re-delivery: nothing
    assert confirm_once(store, runs, sent.append, grace_s=GRACE, max_attempts=3, now=t + 1).redelivered == []
    # past the grace, but nothing published after the re-delivery has run yet: wait
    assert confirm_once(store, runs, sent.append, grace_s=GRACE, max_attempts=3,
                        now=t + GRACE + 1).waiting == ["lost"]
    # later events ran, this one still has no run: the trigger may have seen that id and dropped the
    # action, so a new id
    later(store, runs, t + 10)
    t += GRACE + 1
    assert confirm_once(store, runs, sent.append, grace_s=GRACE, max_attempts=3, now=t).redelivered == ["lost"]
    assert len(sent) == 2 and sent[1].id != ev.id and sent[1].id == uuid.uuid5(ev.id, "redelivery-1")
    later(store, runs, t + 10)
    t += GRACE + 1
    confirm_once(store, runs, sent.append, grace_s=GRACE, max_attempts=3, now=t)
    t += GRACE + 1
    rep = confirm_once(store, runs, sent.append, grace_s=GRACE, max_attempts=3, now=t)
    assert rep.abandoned == ["lost"] and len(sent) == 3
    row = store.get(str(ev.id))
    assert row is not None and row["abandoned_at"] == t and "no run" in row["note"]


def test_a_redelivered_event_whose_run_appears_is_confirmed(store: SentCommitEvents) -> None:
    runs, sent = FakeRuns(), []
    store.record(commit_ev("c1"), sent_at=T0)
    later(store, runs, T0 + 10)
    assert confirm_once(store, runs, sent.append, grace_s=GRACE, now=T0 + GRACE + 1).redelivered == ["c1"]
    runs.add("c1", "COMPLETED")
    assert "c1" in confirm_once(store, runs, sent.append, grace_s=GRACE, now=T0 + 3 * GRACE).confirmed
    assert len(sent) == 1


def test_a_crashed_run_is_rescheduled_not_duplicated(store: SentCommitEvents) -> None:
    runs, sent = FakeRuns(), []
    store.record(commit_ev("c1"), sent_at=T0)
    rid = runs.add("c1", "CRASHED")
    rep = confirm_once(store, runs, sent.append, grace_s=GRACE, now=T0 + GRACE + 1)
    assert rep.rescheduled == ["c1"] and runs.rescheduled == [rid] and sent == []
    assert confirm_once(store, runs, sent.append, grace_s=GRACE, now=T0 + 3 * GRACE).waiting == ["c1"]


def test_prefect_unreachable_changes_nothing(store: SentCommitEvents) -> None:
    runs, sent = FakeRuns(), []
    store.record(commit_ev("c1"), sent_at=T0)
    later(store, runs, T0 + 10)
    runs.down = True
    with pytest.raises(events.EmitError):
        confirm_once(store, runs, sent.append, grace_s=GRACE, now=T0 + GRACE + 1)
    runs.down = False
    assert confirm_once(store, runs, sent.append, grace_s=GRACE, now=T0 + GRACE + 2).redelivered == ["c1"]


def test_a_failed_redelivery_is_retried_next_pass(store: SentCommitEvents) -> None:
    runs = FakeRuns()
    store.record(commit_ev("c1"), sent_at=T0)
    store.record(commit_ev("c2"), sent_at=T0 + 1)
    later(store, runs, T0 + 10)

    def down(ev: Event) -> None:
        raise events.EmitError("prefect down")

    rep = confirm_once(store, runs, down, grace_s=GRACE, now=T0 + GRACE + 2)
    assert rep.redelivered == [] and len(rep.errors) == 1  # stopped at the first failure
    pickle.loads(pickle.dumps(events.EmitError(rep.errors[0])))
    sent: list[Event] = []
    assert confirm_once(store, runs, sent.append, grace_s=GRACE, now=T0 + GRACE + 3).redelivered == ["c1", "c2"]


def test_outside_the_window_nothing_is_done(store: SentCommitEvents) -> None:
    runs, sent = FakeRuns(), []
    store.record(commit_ev("old"), sent_at=T0)
    assert confirm_once(store, runs, sent.append, grace_s=GRACE, window_s=3600, now=T0 + 7200).redelivered == []
