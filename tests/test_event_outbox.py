"""The durable event outbox: an event whose delivery fails is kept and replayed, once, in order (the claim and
lease tests on SQLite and on PostgreSQL, `state_backend`).

No Prefect server here: an unreachable API is a closed loopback port, and the accepting
endpoint is a small local stub that records what `POST /api/events` received (the
integration test in test_event_outbox_integration.py does the same against a real server).
"""

from __future__ import annotations

import json
import pickle
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from infra.procs import free_port
from lakeloop import events
from lakeloop.adapters import prefect_events
from lakeloop.adapters.prefect_events import replay_outbox
from lakeloop.event_outbox import OUTBOX_FILE, EventOutbox


class EventsStub:
    """`POST /api/events` that records each event it accepts (or answers 503 while `down`)."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.down = False
        self.reject_ids: set[str] = set()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path != "/api/events" or stub.down or any(e["id"] in stub.reject_ids for e in body):
                    self.send_response(503)
                    self.end_headers()
                    return
                stub.received.extend(body)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.api_url = f"http://127.0.0.1:{self.server.server_address[1]}/api"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def ids(self) -> list[str]:
        return [e["id"] for e in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub() -> Iterator[EventsStub]:
    s = EventsStub()
    yield s
    s.close()


@pytest.fixture
def closed_api() -> str:
    return f"http://127.0.0.1:{free_port()}/api"  # nothing listens there


def registered(version: int) -> dict[str, Any]:
    return {"repository": "churn", "commit_id": f"c{version}", "run_id": f"run-{version}",
            "model_name": "churn", "version": str(version)}


def emit(state_dir: Path, api_url: str, version: int) -> Any:
    return prefect_events.emit_durable(events.MODEL_REGISTERED, events.model_resource("churn"), registered(version),
                               state_dir=state_dir, api_url=api_url)


def test_unreachable_prefect_keeps_event_and_replay_sends_it_once(tmp_path: Path, closed_api: str, stub: EventsStub,
                                                                   state_backend: str | None) -> None:
    ev = emit(tmp_path, closed_api, 1)  # must not raise

    outbox = EventOutbox.at(tmp_path)
    assert outbox.path == (state_backend or tmp_path / OUTBOX_FILE)
    [entry] = outbox.pending()
    assert entry.id == str(ev.id) and entry.name == events.MODEL_REGISTERED
    assert entry.attempts == 1 and entry.sent_at is None
    assert entry.last_error and "ConnectError" in entry.last_error
    assert entry.body["payload"]["run_id"] == "run-1"

    assert replay_outbox(tmp_path, stub.api_url) == 1
    assert stub.ids() == [str(ev.id)]  # the id fixed at enqueue time, so Prefect can dedupe a replay
    assert outbox.pending() == []
    sent = outbox.get(ev.id)
    assert sent is not None and sent.sent_at is not None and sent.attempts == 2

    assert replay_outbox(tmp_path, stub.api_url) == 0  # nothing left: exactly once
    assert stub.ids() == [str(ev.id)]


def test_emit_durable_sends_at_once_when_prefect_is_up(tmp_path: Path, stub: EventsStub) -> None:
    ev = emit(tmp_path, stub.api_url, 1)
    assert stub.ids() == [str(ev.id)]
    assert EventOutbox.at(tmp_path).pending() == []
    assert stub.received[0]["event"] == events.MODEL_REGISTERED
    assert stub.received[0]["resource"]["prefect.resource.id"] == "lakeloop.model.churn"


def test_explicit_event_id_is_kept(tmp_path: Path, stub: EventsStub) -> None:
    eid = uuid.uuid4()
    ev = prefect_events.emit_durable(events.MODEL_REGISTERED, events.model_resource("churn"), registered(1),
                             state_dir=tmp_path, api_url=stub.api_url, event_id=eid)
    assert ev.id == eid and stub.ids() == [str(eid)]


@pytest.mark.usefixtures("state_backend")  # SQLite and PostgreSQL
def test_order_is_preserved_older_pending_go_first(tmp_path: Path, closed_api: str, stub: EventsStub) -> None:
    first = [emit(tmp_path, closed_api, v) for v in (1, 2, 3)]
    assert [e.id for e in EventOutbox.at(tmp_path).pending()] == [str(e.id) for e in first]
    # Prefect is back: the next emit sends the three older ones first, then its own
    last = emit(tmp_path, stub.api_url, 4)
    assert stub.ids() == [str(e.id) for e in [*first, last]]
    assert EventOutbox.at(tmp_path).pending() == []


@pytest.mark.usefixtures("state_backend")  # SQLite and PostgreSQL
def test_replay_sends_oldest_first_and_stops_at_first_failure(tmp_path: Path, closed_api: str,
                                                              stub: EventsStub) -> None:
    evs = [emit(tmp_path, closed_api, v) for v in (1, 2, 3)]
    stub.reject_ids = {str(evs[1].id)}
    outbox = EventOutbox.at(tmp_path, batch_size=1)
    tried = {p.id: p.attempts for p in outbox.pending()}  # each emit also retried the older ones
    assert list(tried.values()) == [3, 2, 1]
    assert outbox.replay(lambda batch: prefect_events.post_events(batch, stub.api_url)).sent == 1
    assert stub.ids() == [str(evs[0].id)]  # the third was not sent past the failed second
    pending = outbox.pending()
    assert [p.id for p in pending] == [str(evs[1].id), str(evs[2].id)]
    assert "HTTP 503" in (pending[0].last_error or "") and pending[0].attempts == tried[pending[0].id] + 1
    assert pending[1].attempts == tried[pending[1].id]  # not tried this time

    stub.reject_ids = set()
    assert replay_outbox(tmp_path, stub.api_url) == 2
    assert stub.ids() == [str(e.id) for e in evs]


@pytest.mark.usefixtures("state_backend")  # SQLite and PostgreSQL
def test_a_live_sender_holds_the_queue(tmp_path: Path, closed_api: str, stub: EventsStub) -> None:
    """Two senders at once (a flow and the bridge's replay) never send the same event twice: while one
    holds the oldest pending event the other leaves the queue to it (that sender drains what arrives)."""
    outbox = EventOutbox.at(tmp_path)
    emit(tmp_path, closed_api, 1)
    in_send = threading.Event()
    release = threading.Event()
    sent: list[list[str]] = []

    def slow_sender(batch: list[Any]) -> None:
        in_send.set()
        release.wait(10)
        sent.append([str(e.id) for e in batch])
        prefect_events.post_events(batch, stub.api_url)

    t = threading.Thread(target=lambda: outbox.replay(slow_sender, owner="first"))
    t.start()
    assert in_send.wait(10)
    late = emit(tmp_path, stub.api_url, 2)  # enqueued while "first" is sending: left to it
    rep = outbox.replay(lambda batch: prefect_events.post_events(batch, stub.api_url), owner="second")
    assert rep.sent == 0 and rep.busy
    release.set()
    t.join(10)
    assert len(stub.ids()) == 2 and stub.ids()[1] == str(late.id)
    assert outbox.pending() == []


@pytest.mark.usefixtures("state_backend")  # SQLite and PostgreSQL
def test_expired_lease_is_taken_over(tmp_path: Path, closed_api: str, stub: EventsStub) -> None:
    """A sender that died mid-send (its lease expired) does not block the queue for ever."""
    outbox = EventOutbox.at(tmp_path, lease_seconds=0.0)
    ev = emit(tmp_path, closed_api, 1)
    assert outbox._claim("dead-owner")  # claimed, then the owner died without releasing
    assert outbox.replay(lambda batch: prefect_events.post_events(batch, stub.api_url), owner="alive").sent == 1
    assert stub.ids() == [str(ev.id)]


def test_a_bad_payload_is_refused_before_anything_is_stored(tmp_path: Path, stub: EventsStub) -> None:
    with pytest.raises(events.EmitError, match="ModelRegisteredPayload"):
        prefect_events.emit_durable(events.MODEL_REGISTERED, events.model_resource("churn"), {"repository": "churn"},
                            state_dir=tmp_path, api_url=stub.api_url)
    assert EventOutbox.at(tmp_path).pending() == [] and stub.received == []


def test_every_exception_survives_pickle(tmp_path: Path, closed_api: str) -> None:
    """Errors cross process boundaries (Prefect task runners, worker pools): they must pickle."""
    raised: list[BaseException] = []
    try:
        prefect_events.post_events([events.build_event(events.MODEL_REGISTERED, events.model_resource("churn"),
                                           registered(1))], closed_api)
    except events.EmitError as e:
        raised.append(e)
    try:
        prefect_events.emit_durable(events.MODEL_REGISTERED, events.model_resource("churn"), {}, state_dir=tmp_path,
                            api_url=closed_api)
    except events.EmitError as e:
        raised.append(e)
    assert len(raised) == 2
    for exc in raised:
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is type(exc) and str(back) == str(exc)


def test_every_reconcile_pass_runs_the_jobs_first() -> None:
    """The bridge hands `replay_outbox` to `run_periodically` as a job; a failing job is logged, the
    others and the reconcile still run, and the jobs run again on the next pass."""
    from infra.bridge.reconcile import run_periodically

    stop = threading.Event()
    calls: list[str] = []

    def broken() -> None:
        calls.append("broken")
        raise events.EmitError("prefect down")

    def replay() -> None:
        calls.append("replay")

    def lakes() -> list[Any]:
        calls.append("reconcile")
        if calls.count("reconcile") == 2:
            stop.set()
        return []

    run_periodically(lakes, None, lambda e: None, 0.01, stop, jobs=[broken, replay])  # type: ignore[arg-type]
    assert calls == ["broken", "replay", "reconcile"] * 2


@pytest.mark.integration  # starts the bridge process
def test_the_bridge_process_replays_the_outbox(tmp_path: Path, closed_api: str, stub: EventsStub) -> None:
    """`python -m infra.bridge` replays the flows' outbox on every reconcile pass (lakeFS unreachable
    here: the reconcile part fails and is logged, the replay still happens)."""
    import time

    from infra.bridge.service import start_bridge
    from lakeloop.settings import LakeFSSettings

    ev = emit(tmp_path / "state", closed_api, 1)  # a flow's emit failed: pending in the shared state dir
    bridge = start_bridge(tmp_path, free_port(), api_url=stub.api_url, reconcile_interval=1,
                          lakefs=LakeFSSettings(endpoint=f"http://127.0.0.1:{free_port()}"))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not stub.received:
            time.sleep(0.2)
        assert stub.ids() == [str(ev.id)], bridge.log_tail()
        assert EventOutbox.at(tmp_path / "state").pending() == []
    finally:
        bridge.stop(timeout=10)


@pytest.mark.usefixtures("state_backend")  # SQLite and PostgreSQL
def test_prune_forgets_only_old_sent_events(tmp_path: Path, closed_api: str, stub: EventsStub) -> None:
    outbox = EventOutbox.at(tmp_path)
    sent = emit(tmp_path, stub.api_url, 1)
    kept = emit(tmp_path, closed_api, 2)
    assert outbox.prune(older_than_s=3600) == 0
    assert outbox.prune(older_than_s=-1) == 1  # "a week ago" moved to the future: the sent one goes
    assert outbox.get(sent.id) is None and [e.id for e in outbox.pending()] == [str(kept.id)]
