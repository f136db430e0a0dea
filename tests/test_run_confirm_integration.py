"""Run confirmation against the real test Prefect server: a commit event recorded as accepted but
lost inside Prefect gets its on-commit run; a crashed run is rescheduled, not duplicated."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from infra.bridge.run_confirm import PrefectRuns, SentCommitEvents, confirm_once
from lakeloop import events
from lakeloop.adapters import prefect_events
from tests.fixtures.prefect import PrefectStack

pytestmark = pytest.mark.integration

ON_COMMIT = "on-commit/on-commit"


def test_lost_commit_event_is_redelivered_and_a_crashed_run_rescheduled(prefect_server: PrefectStack,
                                                                        tmp_path: Path) -> None:
    commit_id = f"lost-{uuid.uuid4().hex[:10]}"
    ev = events.commit_event(events.CommitPayload(repository="confirm-it", branch="main", commit_id=commit_id,
                                                  lakefs_event="post-commit"))
    store = SentCommitEvents.at(tmp_path)
    store.record(ev, sent_at=time.time() - 120)  # "accepted" two minutes ago, then dropped by Prefect
    runs = PrefectRuns(prefect_server.api_url)

    def publish(e: Any) -> None:
        prefect_events.post_events([e], prefect_server.api_url)

    def mine(r: dict[str, Any]) -> bool:
        return bool(r["parameters"].get("commit_id") == commit_id)

    prefect_server.pause_pool(True)  # runs stay Scheduled: only which runs exist matters here
    try:
        rep = confirm_once(store, runs, publish, grace_s=60, stall_s=60)  # nothing was published after it
        assert rep.redelivered == [commit_id]
        [run] = prefect_server.wait_for_runs(ON_COMMIT, mine, count=1, timeout=60)
        assert confirm_once(store, runs, publish, grace_s=0).waiting == [commit_id]

        # the flow process died with the API (a restart): Prefect marks the run Crashed
        prefect_server._post(f"/flow_runs/{run['id']}/set_state",
                             {"state": {"type": "CRASHED", "name": "Crashed"}, "force": True})
        rep = confirm_once(store, runs, publish, grace_s=0)
        assert rep.rescheduled == [commit_id]
        found = [r for r in prefect_server.flow_runs(ON_COMMIT) if mine(r)]
        assert [(r["id"], r["state_type"]) for r in found] == [(run["id"], "SCHEDULED")]
    finally:
        prefect_server.pause_pool(False)
