"""lakeloop's event vocabulary: names, resource ids, payload models and event ids.

Deployment triggers in `prefect.yaml` match these names and resource ids and
template flow parameters from the payload fields, so the names, resource ids
and payload models here are the contract between emitters and `prefect.yaml`.
Sending them is the Prefect adapter's job (`lakeloop.adapters.prefect_events`).

Event ids of lakeFS commit events are derived from the commit, so a second
delivery of the same commit is also recognised as a duplicate by Prefect's
trigger service (it skips event ids it has already seen).
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from prefect.events import Event
from pydantic import BaseModel, ConfigDict, Field, ValidationError

log = logging.getLogger("lakeloop.events")

# the header that carries a webhook sender's secret to the bridge (lakeFS's hooks, Label Studio's webhooks)
WEBHOOK_TOKEN_HEADER = "X-Lakeloop-Token"

# ---- event names -------------------------------------------------------------
LAKEFS_COMMIT_CREATED = "lakefs.commit.created"
LAKEFS_MERGE_COMPLETED = "lakefs.merge.completed"
DRIFT_DETECTED = "lakeloop.drift.detected"
LABELS_READY = "lakeloop.labels.ready"
MODEL_REGISTERED = "lakeloop.model.registered"
MODEL_PROMOTED = "lakeloop.model.promoted"
GATE_REFUSED = "lakeloop.gate.refused"  # a challenger was not promoted (failed checks or a rejected approval)
INFERENCE_COMPLETED = "lakeloop.inference.completed"

ALL_EVENTS = (
    LAKEFS_COMMIT_CREATED, LAKEFS_MERGE_COMPLETED, DRIFT_DETECTED, LABELS_READY,
    MODEL_REGISTERED, MODEL_PROMOTED, INFERENCE_COMPLETED, GATE_REFUSED,
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


def drift_resource(repository: str, *, retrain: Literal["requested", "inline"]) -> dict[str, str]:
    """The dataset, labelled with who retrains: prefect.yaml's retrain trigger matches only `requested`.

    on-commit retrains inline when its commit drifted and announces the drift with `inline`, so a
    team hears of it (infra/notify.py) without a second retrain racing the first.
    """
    return {**dataset_resource(repository), "lakeloop.retrain": retrain}


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


class GateRefusedPayload(_Payload):
    """lakeloop.gate.refused -> a notification (no flow starts on it)."""

    repository: str
    model_name: str
    version: str | int
    reasons: list[str] = Field(default_factory=list)
    champion: str | None = None


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
    GATE_REFUSED: GateRefusedPayload,
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
