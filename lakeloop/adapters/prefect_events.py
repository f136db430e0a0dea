"""The Prefect events adapter: the ways lakeloop hands its events to Prefect.

* `emit()` goes through `prefect.events.emit_event` (Prefect's own background
  events worker, which also attaches the flow/task run as related resources
  when called inside a run) and then flushes that worker, so a short-lived
  process (CLI, bench, end of a flow) does not exit with events still queued.
  The worker logs, but does not raise, delivery failures.
* `post_events()` posts to the server's `POST /api/events` and raises unless the
  server accepted the events. The bridge and the reconciler use it because
  they must only mark a commit processed in the ledger once Prefect has it.
* `emit_durable()` is what flows use for the events that start other flows:
  the event is stored in the outbox under the state directory
  (`lakeloop.event_outbox`) before it is posted, and stays there until
  Prefect accepted it; the bridge replays what is pending on every reconcile
  pass (`replay_outbox`), so a flow that dies after a failed emit loses nothing.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import httpx
from prefect.events import Event, emit_event
from prefect.events.worker import EventsWorker
from prefect.settings import PREFECT_API_URL, get_current_settings
from pydantic import BaseModel

from lakeloop.event_outbox import EventOutbox
from lakeloop.events import EmitError, build_event, payload_dict
from lakeloop.state_db import describe

log = logging.getLogger("lakeloop.events")


def flush(timeout: float = 30.0) -> None:
    """Wait until Prefect's background events worker has sent everything queued."""
    import threading

    try:
        worker = EventsWorker.instance()
    except Exception:  # no API configured: nothing was queued
        return
    t = threading.Thread(target=worker.wait_until_empty, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise EmitError(f"Prefect events still queued after {timeout:.0f}s (is {PREFECT_API_URL.value()} up?)")


def emit(
    event: str,
    resource: dict[str, str],
    payload: BaseModel | dict[str, Any],
    *,
    event_id: uuid.UUID | None = None,
    related: list[dict[str, str]] | None = None,
    wait: bool = True,
) -> Event:
    """Emit through `prefect.events.emit_event`; with `wait`, block until the worker sent it."""
    data = payload_dict(event, payload)
    kwargs: dict[str, Any] = {}
    if event_id is not None:
        kwargs["id"] = event_id
    ev = emit_event(event=event, resource=resource, payload=data, related=related, **kwargs)
    if ev is None:
        raise EmitError(f"{event}: Prefect events are disabled here (PREFECT_API_URL={PREFECT_API_URL.value()!r})")
    if wait:
        flush()
    return ev


_CLIENT: httpx.Client | None = None


def _client() -> httpx.Client:
    """One keep-alive client per process: a client per call paid a TCP connect and an SSL context
    (CA bundle loading) for every event, the bridge's hottest line under load. httpx.Client is thread-safe."""
    global _CLIENT
    if _CLIENT is None:
        _CLIENT = httpx.Client(limits=httpx.Limits(max_keepalive_connections=8))
    return _CLIENT


def post_events(events: list[Event], api_url: str | None = None, timeout: float = 10.0) -> None:
    """POST events to Prefect's `/events` endpoint; raises `EmitError` unless accepted."""
    url = (api_url or PREFECT_API_URL.value() or "").rstrip("/")
    if not url:
        raise EmitError("no Prefect API URL (set PREFECT_API_URL)")
    headers = {}
    auth = get_current_settings().api.auth_string
    if auth is not None:
        import base64

        headers["Authorization"] = "Basic " + base64.b64encode(auth.get_secret_value().encode()).decode()
    body = [e.model_dump(mode="json") for e in events]
    try:
        r = _client().post(f"{url}/events", json=body, headers=headers, timeout=timeout)
    except httpx.HTTPError as e:
        raise EmitError(f"{url}/events: {type(e).__name__}: {e}") from e
    if r.status_code >= 300:
        raise EmitError(f"{url}/events: HTTP {r.status_code}: {r.text[:300]}")


def default_api_url() -> str:
    """Prefect's API URL: PREFECT_API_URL (set inside flow runs), else lakeloop's settings."""
    from lakeloop.settings import get_settings

    return str(PREFECT_API_URL.value() or get_settings().prefect.api_url)


def run_context_related() -> list[dict[str, str]]:
    """The related resources Prefect's `emit_event` attaches inside a run (flow run, flow, deployment,
    work queue, work pool, tags), built from the run context alone.

    Prefect's `related_resources_from_run_context` reads the flow, deployment, work queue and pool
    from the API to name them; that is exactly what may be down when an event has to wait in the
    outbox, so here they carry their ids (and the names the context knows) without any API call.
    """
    from prefect.context import FlowRunContext, TaskRunContext
    from prefect.events.related import object_as_related_resource, tags_as_related_resources

    flow_ctx = FlowRunContext.get()
    task_ctx = TaskRunContext.get()
    related: list[dict[str, str]] = []
    tags: set[str] = set()
    flow_run = getattr(flow_ctx, "flow_run", None)
    if flow_run is not None:
        related.append(dict(object_as_related_resource("flow-run", "flow-run", flow_run)))
        tags |= set(flow_run.tags or ())
        flow = {"prefect.resource.id": f"prefect.flow.{flow_run.flow_id}", "prefect.resource.role": "flow"}
        name = getattr(getattr(flow_ctx, "flow", None), "name", None)
        if name:
            flow["prefect.resource.name"] = str(name)
        related.append(flow)
        if flow_run.deployment_id:
            related.append({"prefect.resource.id": f"prefect.deployment.{flow_run.deployment_id}",
                            "prefect.resource.role": "deployment"})
        if flow_run.work_queue_id:
            related.append({"prefect.resource.id": f"prefect.work-queue.{flow_run.work_queue_id}",
                            "prefect.resource.role": "work-queue",
                            **({"prefect.resource.name": flow_run.work_queue_name}
                               if flow_run.work_queue_name else {})})
        if flow_run.work_pool_name:
            related.append({"prefect.resource.id": f"prefect.work-pool.{flow_run.work_pool_name}",
                            "prefect.resource.role": "work-pool", "prefect.resource.name": flow_run.work_pool_name})
    elif task_ctx is not None and task_ctx.task_run.flow_run_id:
        related.append({"prefect.resource.id": f"prefect.flow-run.{task_ctx.task_run.flow_run_id}",
                        "prefect.resource.role": "flow-run"})
    if task_ctx is not None:
        related.append(dict(object_as_related_resource("task-run", "task-run", task_ctx.task_run)))
        tags |= set(task_ctx.task_run.tags or ())
    related += [dict(r) for r in tags_as_related_resources(tags)]
    return related


def emit_durable(
    event: str,
    resource: dict[str, str],
    payload: BaseModel | dict[str, Any],
    *,
    state_dir: Path | None = None,
    api_url: str | None = None,
    event_id: uuid.UUID | None = None,
    related: list[dict[str, str]] | None = None,
) -> Event:
    """Store the event in the outbox, then send it (after any older pending ones) with `post_events`.

    Never raises for a delivery failure: that is logged and the event stays pending (with its
    id) until a later `emit_durable` or the bridge's `replay_outbox` delivers it. Raises
    `EmitError` only for a payload that does not match the event's model (nothing is stored).
    Inside a run, the run's related resources are attached as `emit_event` would.
    """
    from lakeloop.settings import get_settings

    try:
        ctx_related = run_context_related()
    except Exception:  # the run context is a nicety; the event matters more
        log.debug("no related resources from the run context", exc_info=True)
        ctx_related = []
    known = {r.get("prefect.resource.id") for r in related or []}
    ev = build_event(event, resource, payload, event_id=event_id or uuid.uuid4(),
                     related=[*(related or []), *(r for r in ctx_related if r["prefect.resource.id"] not in known)])
    outbox = EventOutbox.at(state_dir if state_dir is not None else get_settings().state_dir)
    outbox.enqueue(ev)
    url = api_url or default_api_url()
    report = outbox.replay(lambda batch: post_events(batch, url))
    entry = outbox.get(ev.id)
    if entry is not None and entry.sent_at is None:
        if report.busy:
            log.info("%s %s queued behind another sender's events (it sends this one too)", event, ev.id)
        else:
            log.warning("%s %s not delivered yet, kept in the outbox %s: %s", event, ev.id, describe(outbox.path),
                        report.error)
    return ev


def replay_outbox(state_dir: Path, api_url: str | None = None) -> int:
    """Send the pending events under `state_dir` to Prefect at `api_url`; returns how many were sent.

    Oldest first, stopping at the first failure (logged; the rest stay pending for the next pass).
    """
    report = EventOutbox.at(state_dir).replay(lambda batch: post_events(batch, api_url))
    if report.error:
        log.warning("event outbox replay stopped after %d sent: %s", report.sent, report.error)
    elif report.sent:
        log.info("event outbox replay: %d event(s) delivered", report.sent)
    return report.sent
