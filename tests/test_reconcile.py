"""Reconciler against the real local lakeFS server: missed commits are replayed once, in order."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prefect.events import Event

from infra.bridge.reconcile import reconcile_once
from lakeloop.adapters.lakefs import Lake
from lakeloop.branches import BranchPolicy
from lakeloop.events import LAKEFS_COMMIT_CREATED, LAKEFS_MERGE_COMPLETED, EmitError
from lakeloop.state import Ledger, commit_key

pytestmark = pytest.mark.integration


class Recorder:
    def __init__(self, fail_on: set[str] | None = None) -> None:
        self.events: list[Event] = []
        self.fail_on = fail_on or set()
        self.lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        if event.payload["commit_id"] in self.fail_on:
            raise EmitError("prefect down")
        with self.lock:
            self.events.append(event)

    def commits(self) -> list[str]:
        return [e.payload["commit_id"] for e in self.events]


def put(lake: Lake, branch: str, name: str, message: str, metadata: dict[str, str] | None = None) -> str:
    lake.write_bytes(branch, f"data/{name}.csv", f"a,b\n1,{name}\n".encode())
    return lake.commit(branch, message, metadata)


@pytest.fixture
def ledger(tmp_path: Path, lake: Lake) -> Ledger:
    lg = Ledger(tmp_path / "ledger.sqlite3")
    lg.baseline(f"lakefs:{lake.settings.repository}", default=datetime(2000, 1, 1, tzinfo=UTC))
    return lg


def test_replays_missed_commits_in_order_once(lake: Lake, ledger: Ledger) -> None:
    repo = lake.settings.repository
    lake.ensure_branch("ingest-1")
    c1 = put(lake, "ingest-1", "a", "one")
    c2 = put(lake, "ingest-1", "b", "two")
    act = put(lake, "main", "actions", "install", {"lakeloop.kind": "actions"})
    m = lake.merge("ingest-1", "main")
    c3 = put(lake, "main", "c", "three")
    # c1 was delivered by the bridge before the outage
    assert ledger.run_once(commit_key(repo, c1), "lakefs", "bridge", lambda: None)

    rec = Recorder()
    ingest = BranchPolicy(watched=("main",), experiments=("ingest-*",))
    rep = reconcile_once(lake, ledger, rec, policy=ingest)
    assert rep.emitted == [c2, m, c3] == rec.commits()
    assert rep.skipped == [act]
    by_commit = {e.payload["commit_id"]: e for e in rec.events}
    assert by_commit[c2].event == LAKEFS_COMMIT_CREATED
    assert by_commit[c2].resource.id == f"lakefs.repo.{repo}.branch.ingest-1"
    assert by_commit[m].event == LAKEFS_MERGE_COMPLETED and by_commit[m].payload["branch"] == "main"
    assert by_commit[c3].payload["delivered_by"] == "reconcile"
    assert [d.key for d in ledger.done()] == [commit_key(repo, c) for c in (c1, c2, m, c3)]

    again = reconcile_once(lake, ledger, rec, policy=ingest)
    assert again.emitted == [] and rec.commits() == [c2, m, c3]


def test_publish_failure_stops_the_pass_and_the_next_pass_resumes(lake: Lake, ledger: Ledger) -> None:
    cs = [put(lake, "main", f"f{i}", f"c{i}") for i in range(4)]
    rec = Recorder(fail_on={cs[1]})
    rep = reconcile_once(lake, ledger, rec)
    assert rep.emitted == [cs[0]] and len(rep.errors) == 1 and cs[1] in rep.errors[0]
    rec.fail_on.clear()
    rep = reconcile_once(lake, ledger, rec)
    assert rep.emitted == cs[1:]
    assert rec.commits() == cs


def test_concurrent_passes_emit_each_commit_once(lake: Lake, ledger: Ledger) -> None:
    cs = [put(lake, "main", f"p{i}", f"c{i}") for i in range(6)]
    rec = Recorder()
    threads = [threading.Thread(target=reconcile_once, args=(lake, ledger, rec), kwargs={"owner": f"r{i}"})
               for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(rec.commits()) == sorted(cs)
    assert len(rec.commits()) == len(set(rec.commits()))


def test_history_before_the_baseline_is_not_replayed(lake: Lake, tmp_path: Path) -> None:
    old = put(lake, "main", "old", "before lakeloop")
    lg = Ledger(tmp_path / "fresh.sqlite3")
    lg.baseline(f"lakefs:{lake.settings.repository}", default=datetime.now(UTC) + timedelta(seconds=5))
    rec = Recorder()
    assert reconcile_once(lake, lg, rec).emitted == []
    assert old not in rec.commits()


def test_commits_on_branches_nobody_watches_are_not_replayed(lake: Lake, ledger: Ledger) -> None:
    """Issue 10: the reconciler walked every branch, so an experiment branch's commit reached on-commit."""
    lake.ensure_branch("experiment-shuffled")
    side = put(lake, "experiment-shuffled", "shuffled", "labels shuffled on purpose")
    on_main = put(lake, "main", "m1", "production batch")
    rec = Recorder()
    rep = reconcile_once(lake, ledger, rec)  # default policy: the default branch only
    assert rec.commits() == [on_main] and side not in rep.emitted
    # an experiment pattern relays it, attributed to its own branch
    rep = reconcile_once(lake, ledger, rec, policy=BranchPolicy(watched=("main",), experiments=("experiment-*",)))
    assert rep.emitted == [side]
    assert rec.events[-1].payload["branch"] == "experiment-shuffled"


def test_a_failed_pass_is_retried_soon_not_after_the_whole_interval(lake: Lake, ledger: Ledger) -> None:
    """A bridge restarted while Prefect is slow (a ReadTimeout, seen in CI) must not leave missed
    commits waiting a whole reconcile interval: a pass with errors is retried after a short backoff."""
    from infra.bridge.reconcile import run_periodically

    cs = [put(lake, "main", f"r{i}", f"c{i}") for i in range(2)]
    rec = Recorder(fail_on={cs[0]})
    stop = threading.Event()

    def heal() -> None:  # Prefect answers again shortly after the first pass failed
        rec.fail_on.clear()

    timer = threading.Timer(0.5, heal)
    timer.start()
    worker = threading.Thread(target=run_periodically, args=(lambda: [lake], ledger, rec, 3600.0, stop),
                              daemon=True)
    worker.start()
    try:
        deadline = datetime.now(UTC) + timedelta(seconds=20)
        while datetime.now(UTC) < deadline and rec.commits() != cs:
            threading.Event().wait(0.2)
        assert rec.commits() == cs
    finally:
        stop.set()
        timer.cancel()
        worker.join(timeout=10)


def test_a_repository_that_does_not_exist_yet_is_one_log_line_then_reconciled(
        lakefs_server, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    """`lakeloop up` starts the bridge before it creates the repository: that is expected, so the first
    pass says so once (no stack trace), and the repository is reconciled as soon as it exists."""
    import logging
    import uuid

    from infra.bridge.reconcile import run_periodically
    from tests.fixtures.lake import lake_settings

    lake = Lake(lake_settings(lakefs_server, f"t-late-{uuid.uuid4().hex[:8]}"))
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    ledger.baseline(f"lakefs:{lake.settings.repository}", default=datetime(2000, 1, 1, tzinfo=UTC))
    rec = Recorder()
    stop = threading.Event()
    caplog.set_level(logging.INFO, logger="infra.bridge.reconcile")
    worker = threading.Thread(target=run_periodically, args=(lambda: [lake], ledger, rec, 3600.0, stop),
                              kwargs={"retry_after": 0.2}, daemon=True)
    worker.start()
    try:
        deadline = datetime.now(UTC) + timedelta(seconds=10)
        while datetime.now(UTC) < deadline and not any("does not exist yet" in r.message for r in caplog.records):
            threading.Event().wait(0.1)
        threading.Event().wait(1.0)  # several retries in absence
        lake.ensure_repository()
        c = put(lake, "main", "late", "first data")
        deadline = datetime.now(UTC) + timedelta(seconds=20)
        while datetime.now(UTC) < deadline and c not in rec.commits():
            threading.Event().wait(0.2)
        assert c in rec.commits()
    finally:
        stop.set()
        worker.join(timeout=10)
    mine = [r for r in caplog.records if r.name == "infra.bridge.reconcile"]
    assert [r.levelno for r in mine if "does not exist yet" in r.message] == [logging.INFO]
    assert not [r for r in mine if r.exc_info], "a missing repository is expected, not a stack trace"
