"""The notification automations on a real Prefect server: each event reaches a local webhook receiver once,
with a link to its flow run."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prefect import flow
from prefect.runtime import flow_run

from infra.notify import NOTIFICATIONS, apply_notifications
from lakeloop import events
from lakeloop.adapters import prefect_events
from tests.fixtures.prefect import PrefectStack

pytestmark = pytest.mark.integration


class Receiver(ThreadingHTTPServer):
    messages: list[str]


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        assert isinstance(self.server, Receiver)
        self.server.messages.append(json.loads(body)["text"])
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver(prefect_server: PrefectStack) -> Iterator[Receiver]:
    from prefect.automations import Automation

    srv = Receiver(("127.0.0.1", 0), _Handler)
    srv.messages = []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    apply_notifications(f"http://127.0.0.1:{srv.server_address[1]}/hook")
    apply_notifications(f"http://127.0.0.1:{srv.server_address[1]}/hook")  # idempotent: still one of each
    yield srv
    for n in NOTIFICATIONS:  # the session's server is shared
        Automation.read(name=n.name).delete()
    srv.shutdown()


@flow(name="notify-fails")
def fails() -> None:
    raise ValueError("boom")


@flow(name="notify-emits")
def emits(state_dir: Path, api_url: str) -> str:
    """The three lakeloop events as the flows send them (emit_durable inside a flow run)."""
    for name, resource, payload in (
        (events.GATE_REFUSED, events.model_resource("churn"),
         {"repository": "churn", "model_name": "churn", "version": "7", "reasons": ["auc: too low"],
          "champion": "6"}),
        (events.MODEL_PROMOTED, events.model_resource("churn"),
         {"repository": "churn", "model_name": "churn", "version": "8", "kind": "model", "commit_id": "c" * 64}),
        (events.DRIFT_DETECTED, events.dataset_resource("churn"),
         {"repository": "churn", "branch": "main", "commit_id": "d" * 64, "reasons": ["tenure drifted"]}),
    ):
        prefect_events.emit_durable(name, resource, payload, state_dir=state_dir, api_url=api_url)
    return str(flow_run.id)


def test_each_event_is_notified_once_with_a_link_to_its_run(receiver: Receiver, prefect_server: PrefectStack,
                                                            tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        for n in NOTIFICATIONS:
            assert len(client.read_automations_by_name(n.name)) == 1, n.name
    failed = fails(return_state=True)
    assert failed.is_failed()
    failed_id = str(failed.state_details.flow_run_id)
    emitted_id = emits(tmp_path, prefect_server.api_url)
    expected = {  # (message text, run id)
        "ended Failed": failed_id, "v7 not promoted": emitted_id, "v8 is champion": emitted_id,
        "drift on churn/main": emitted_id,
    }

    def mine(key: str) -> list[str]:
        return [m for m in receiver.messages if key in m and expected[key] in m]

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not all(mine(k) for k in expected):
        time.sleep(0.5)
    time.sleep(5)  # a second delivery would have arrived by now
    for key, run_id in expected.items():
        got = mine(key)
        assert len(got) == 1, (key, receiver.messages)
        assert re.search(rf"Run: http://127\.0\.0\.1:\d+/runs/flow-run/{run_id}", got[0]), got[0]
