"""lakeloop's event vocabulary and the two ways to hand events to Prefect.

Deployment triggers in `prefect.yaml` match these names and resource ids and
template flow parameters from the payload fields, so the names, resource ids
and payload models here are the contract between emitters and `prefect.yaml`.

* `emit()` goes through `prefect.events.emit_event` (Prefect's own background
  events worker, which also attaches the flow/task run as related resources
  when called inside a run) and then flushes that worker, so a short-lived
  process (CLI, bench, end of a flow) does not exit with events still queued.
  The worker logs, but does not raise, delivery failures.
* `publish()` posts to the server's `POST /api/events` and raises unless the
  server accepted the events. The bridge and the reconciler use it because
  they must only mark a commit processed in the ledger once Prefect has it.
* `emit_durable()` is what flows use for the events that start other flows:
  the event is stored in the outbox under the state directory
  (`lakeloop.event_outbox`) before it is published, and stays there until
  Prefect accepted it; the bridge replays what is pending on every reconcile
  pass, so a flow that dies after a failed emit loses nothing.

Event ids of lakeFS commit events are derived from the commit, so a second
delivery of the same commit is also recognised as a duplicate by Prefect's
trigger service (it skips event ids it has already seen).
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx
from prefect.events import Event, emit_event
from prefect.events.worker import EventsWorker
from prefect.settings import PREFECT_API_URL, get_current_settings
from pydantic import BaseModel, ConfigDict, Field, ValidationError

log = logging.getLogger("lakeloop.events")

# ---- event names -------------------------------------------------------------
LAKEFS_COMMIT_CREATED = "lakefs.commit.created"
LAKEFS_MERGE_COMPLETED = "lakefs.merge.completed"
DRIFT_DETECTED = "lakeloop.drift.detected"
LABELS_READY = "lakeloop.labels.ready"
MODEL_REGISTERED = "lakeloop.model.registered"
MODEL_PROMOTED = "lakeloop.model.promoted"
INFERENCE_COMPLETED = "lakeloop.inference.completed"

ALL_EVENTS = (
    LAKEFS_COMMIT_CREATED, LAKEFS_MERGE_COMPLETED, DRIFT_DETECTED, LABELS_READY,
    MODEL_REGISTERED, MODEL_PROMOTED, INFERENCE_COMPLETED,
)

# Stable namespace for deterministic event ids (uuid5).
_EVENT_NS = uuid.UUID("6c1d4a52-5b8e-4f0e-9a51-1a7e2f0c9d33")


INTERNAL_KIND_KEY = "lakeloop.kind"
INTERNAL_KINDS = frozenset({"actions", "experiment-report"})


def is_internal_commit(metadata: dict[str, str]) -> bool:
    """Commits lakeloop makes for its own plumbing (actions installs, experiment reports) start no flow."""
    return metadata.get(INTERNAL_KIND_KEY) in INTERNAL_KINDS


class EmitError(RuntimeError):
    """Prefect did not accept an event (server down, events disabled, rejected)."""


# ---- resources -----------------------------------------------------------------
def branch_resource(repository: str, branch: str, commit_id: str | None = None) -> dict[str, str]:
    """`lakefs.repo.<repository>.branch.<branch>`, the resource prefect.yaml matches for lakeFS events."""
    r = {
        "prefect.resource.id": f"lakefs.repo.{repository}.branch.{branch}",
        "prefect.resource.name": f"{repository}/{branch}",
        "lakefs.repository": repository,
        "lakefs.branch": branch,
    }
    if commit_id:
        r["lakefs.commit"] = commit_id
    return r


def dataset_resource(repository: str) -> dict[str, str]:
    return {"prefect.resource.id": f"lakeloop.dataset.{repository}", "lakefs.repository": repository}


def model_resource(model_name: str) -> dict[str, str]:
    return {"prefect.resource.id": f"lakeloop.model.{model_name}", "mlflow.model": model_name}


def labels_resource(project_id: int | None) -> dict[str, str]:
    pid = "any" if project_id is None else str(project_id)
    return {"prefect.resource.id": f"lakeloop.label-studio.project.{pid}", "label-studio.project": pid}


# ---- payloads ------------------------------------------------------------------
class _Payload(BaseModel):
    """Fields prefect.yaml templates read are declared; emitters may add more (kept as-is)."""

    model_config = ConfigDict(extra="allow")


class CommitPayload(_Payload):
    """lakefs.commit.created / lakefs.merge.completed -> on_commit(repository, branch, commit_id)."""

    model_config = ConfigDict(extra="forbid")

    repository: str
    branch: str
    commit_id: str
    message: str = ""
    committer: str = ""
    metadata: dict[str, str] = Field(default_factory=dict)
    merge_source: str | None = None
    lakefs_event: str = Field(description="lakeFS event_type, e.g. post-commit")
    event_time: datetime | None = None
    delivered_by: Literal["bridge", "reconcile"] = "bridge"


class DriftPayload(_Payload):
    """lakeloop.drift.detected -> retrain(repository, branch, commit_id, reason).

    prefect.yaml passes `reason`, else the `reasons` joined, else "drift detected".
    """

    repository: str
    branch: str
    commit_id: str
    reason: str | None = None
    reasons: list[str] = Field(default_factory=list)
    drifted_columns: list[str] = Field(default_factory=list)
    source: str | None = None


class LabelsPayload(_Payload):
    """lakeloop.labels.ready -> ingest_labels(project_id)."""

    project_id: int
    annotation_id: int
    task_id: int | None = None
    action: str
    answers: int = 1  # answers this event announces (the bridge gathers a labeler's burst into one event)


class ModelRegisteredPayload(_Payload):
    """lakeloop.model.registered -> build_ensemble(repository, commit_id) and request_relabel(..., run_id)."""

    repository: str
    commit_id: str
    run_id: str
    model_name: str
    version: str | int
    branch: str | None = None
    reason: str | None = None


class ModelPromotedPayload(_Payload):
    """lakeloop.model.promoted -> batch_inference(repository, ref); ref defaults to "main"."""

    repository: str
    model_name: str
    version: str | int
    ref: str | None = None
    commit_id: str | None = None
    alias: str = "champion"


class InferenceCompletedPayload(_Payload):
    """lakeloop.inference.completed -> monitor(repository, ref)."""

    repository: str
    ref: str


# Which payload model each event carries (prefect.yaml templates read these fields).
PAYLOADS: dict[str, type[BaseModel]] = {
    LAKEFS_COMMIT_CREATED: CommitPayload,
    LAKEFS_MERGE_COMPLETED: CommitPayload,
    DRIFT_DETECTED: DriftPayload,
    LABELS_READY: LabelsPayload,
    MODEL_REGISTERED: ModelRegisteredPayload,
    MODEL_PROMOTED: ModelPromotedPayload,
    INFERENCE_COMPLETED: InferenceCompletedPayload,
}


# ---- building and sending ----------------------------------------------------------
def payload_dict(event: str, payload: BaseModel | dict[str, Any]) -> dict[str, Any]:
    """JSON payload of `event`, checked against its model in PAYLOADS (a missing field that a
    prefect.yaml template reads would otherwise only surface as a run that never starts)."""
    model = PAYLOADS.get(event)
    if model is not None and not isinstance(payload, model):
        try:
            payload = model.model_validate(payload.model_dump() if isinstance(payload, BaseModel) else payload)
        except ValidationError as e:
            raise EmitError(f"{event}: payload does not match {model.__name__}: {e}") from e
    return payload.model_dump(mode="json") if isinstance(payload, BaseModel) else dict(payload)


def commit_event_id(event: str, repository: str, commit_id: str) -> uuid.UUID:
    return uuid.uuid5(_EVENT_NS, f"{event}:{repository}:{commit_id}")


def build_event(
    event: str,
    resource: dict[str, str],
    payload: BaseModel | dict[str, Any],
    *,
    event_id: uuid.UUID | None = None,
    related: list[dict[str, str]] | None = None,
    occurred: datetime | None = None,
) -> Event:
    data = payload_dict(event, payload)
    fields: dict[str, Any] = {"event": event, "resource": resource, "payload": data, "related": related or [],
                              "occurred": occurred or datetime.now(UTC)}
    if event_id is not None:
        fields["id"] = event_id
    return Event.model_validate(fields)


def commit_event(payload: CommitPayload) -> Event:
    """The Prefect event for a lakeFS commit or merge (id derived from the commit)."""
    name = LAKEFS_MERGE_COMPLETED if payload.lakefs_event == "post-merge" else LAKEFS_COMMIT_CREATED
    return build_event(
        name,
        branch_resource(payload.repository, payload.branch, payload.commit_id),
        payload,
        event_id=commit_event_id(name, payload.repository, payload.commit_id),
    )


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


def publish(events: list[Event], api_url: str | None = None, timeout: float = 10.0) -> None:
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
        r = httpx.post(f"{url}/events", json=body, headers=headers, timeout=timeout)
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
    """Store the event in the outbox, then send it (after any older pending ones) with `publish`.

    Never raises for a delivery failure: that is logged and the event stays pending (with its
    id) until a later `emit_durable` or the bridge's `replay_outbox` delivers it. Raises
    `EmitError` only for a payload that does not match the event's model (nothing is stored).
    Inside a run, the run's related resources are attached as `emit_event` would.
    """
    from lakeloop.event_outbox import EventOutbox
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
    report = outbox.replay(lambda batch: publish(batch, url))
    entry = outbox.get(ev.id)
    if entry is not None and entry.sent_at is None:
        if report.busy:
            log.info("%s %s queued behind another sender's events (it sends this one too)", event, ev.id)
        else:
            log.warning("%s %s not delivered yet, kept in the outbox %s: %s", event, ev.id, outbox.path,
                        report.error)
    return ev
