"""The outbox against the real test Prefect server: a model event emitted while Prefect is
unreachable is delivered by a replay with the id it got at enqueue time, and starts the
deployment its trigger names exactly once, even when it is sent again."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from prefect import flow
from prefect.context import FlowRunContext

from infra.procs import free_port
from lakeloop import events
from lakeloop.adapters import prefect_events
from lakeloop.adapters.prefect_events import replay_outbox
from lakeloop.event_outbox import EventOutbox
from tests.fixtures.prefect import PrefectStack

pytestmark = pytest.mark.integration

RELABEL = "request-relabel/request-relabel"


def events_seen_by_prefect(stack: PrefectStack, event_ids: list[str]) -> list[dict[str, Any]]:
    page: dict[str, Any] = stack._post("/events/filter", {"filter": {"id": {"id": event_ids}}, "limit": 50})
    return list(page["events"])


def wait_for_events(stack: PrefectStack, event_ids: list[str], timeout: float = 180.0) -> list[dict[str, Any]]:
    """The event persister writes in batches (every 5 s at most), and minutes late when the machine is
    loaded (seen in a full run beside other work): wait until all are stored."""
    deadline = time.monotonic() + timeout
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        found = events_seen_by_prefect(stack, event_ids)
        if len({e["id"] for e in found}) >= len(event_ids):
            return found
        time.sleep(0.5)
    raise AssertionError(f"{len(found)}/{len(event_ids)} events stored after {timeout:.0f}s")


def registered(run_id: str) -> dict[str, Any]:
    return {"repository": "outbox-it", "commit_id": f"c-{run_id}", "run_id": run_id, "model_name": "churn",
            "version": "1"}


def test_replay_delivers_once_with_the_same_id(prefect_server: PrefectStack, tmp_path: Path) -> None:
    run_id = f"outbox-{uuid.uuid4().hex[:8]}"
    closed = f"http://127.0.0.1:{free_port()}/api"
    prefect_server.pause_pool(True)  # only which runs the trigger creates matters here
    try:
        ev = prefect_events.emit_durable(events.MODEL_REGISTERED, events.model_resource("churn"), registered(run_id),
                                 state_dir=tmp_path, api_url=closed)
        [pending] = EventOutbox.at(tmp_path).pending()
        assert pending.id == str(ev.id)

        assert replay_outbox(tmp_path, prefect_server.api_url) == 1
        assert EventOutbox.at(tmp_path).pending() == []
        assert replay_outbox(tmp_path, prefect_server.api_url) == 0
        stored = wait_for_events(prefect_server, [str(ev.id)])
        assert [e["id"] for e in stored] == [str(ev.id)]
        assert stored[0]["payload"]["run_id"] == run_id

        def mine(r: dict[str, Any]) -> bool:
            return bool(r["parameters"].get("run_id") == run_id)

        prefect_server.wait_for_runs(RELABEL, mine, count=1, timeout=60)
        # a second send of the same event (a replay after a send whose answer was lost) starts nothing:
        # Prefect's trigger service skips an event id it has already seen
        prefect_events.post_events([pending.event()], prefect_server.api_url)
        time.sleep(5)
        assert len([r for r in prefect_server.flow_runs(RELABEL) if mine(r)]) == 1
    finally:
        prefect_server.pause_pool(False)


def test_inside_a_flow_run_the_run_is_related(prefect_server: PrefectStack, tmp_path: Path) -> None:
    run_id = f"related-{uuid.uuid4().hex[:8]}"
    closed = f"http://127.0.0.1:{free_port()}/api"

    @flow(name="outbox-related-check")
    def emitter() -> tuple[str, str]:
        ctx = FlowRunContext.get()
        assert ctx is not None and ctx.flow_run is not None
        ev = prefect_events.emit_durable(events.MODEL_REGISTERED, events.model_resource("churn"), registered(run_id),
                                 state_dir=tmp_path, api_url=closed)  # Prefect "down" for this event only
        return str(ctx.flow_run.id), str(ev.id)

    flow_run_id, event_id = emitter()
    [pending] = EventOutbox.at(tmp_path).pending()
    related = {r["prefect.resource.id"]: r["prefect.resource.role"] for r in pending.body["related"]}
    assert related[f"prefect.flow-run.{flow_run_id}"] == "flow-run"
    assert "flow" in related.values()

    prefect_server.pause_pool(True)
    try:
        assert replay_outbox(tmp_path, prefect_server.api_url) == 1
        [stored] = wait_for_events(prefect_server, [event_id])
        assert f"prefect.flow-run.{flow_run_id}" in {r["prefect.resource.id"] for r in stored["related"]}
    finally:
        prefect_server.pause_pool(False)
