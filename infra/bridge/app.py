"""The bridge: lakeFS and Label Studio webhooks in, Prefect events out.

Prefect OSS has no incoming webhooks and lakeFS has no Prefect hook, so this
small ASGI app relays them. Every request is authenticated with its sender's
own secret (`infra.bridge.auth`: a token header, or a timestamped HMAC-SHA256
refused outside the replay window), validated (400 and nothing emitted when
malformed) and deduplicated through the durable ledger before an event is
published; the ledger entry is only marked done once Prefect accepted the
event, so a failed publish answers 503 and is retried (by lakeFS or by the
reconciler).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from prefect.events import Event
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from infra.bridge.auth import DEFAULT_REPLAY_WINDOW_S, SenderAuth
from infra.bridge.delivery import GroupCommit, Publisher
from infra.bridge.gate import MergeCheck
from infra.bridge.models import LabelStudioEvent, LakeFSHookEvent, error_list
from infra.bridge.openapi import openapi_document
from lakeloop.branches import BranchPolicy
from lakeloop.events import (
    LABELS_READY,
    CommitPayload,
    EmitError,
    LabelsPayload,
    build_event,
    commit_event,
    is_internal_commit,
    labels_resource,
)
from lakeloop.state import LeaseLost, Ledger, annotation_key, commit_key

log = logging.getLogger("lakeloop.bridge")

Emitter = Callable[[Event], None]
MergeGate = Callable[[LakeFSHookEvent], MergeCheck]
Body = TypeVar("Body", bound=BaseModel)

RELAYED = {"post-commit", "post-merge"}
LS_ACTIONS = {"ANNOTATION_CREATED", "ANNOTATION_UPDATED"}


@dataclass
class BridgeConfig:
    lakefs_secret: str = field(repr=False)  # /lakefs/* only
    label_studio_secret: str = field(repr=False)  # /label-studio/* only
    ledger: Ledger
    emitter: Emitter
    gate: MergeGate | None = None
    owner: str = "bridge"
    counters: dict[str, int] = field(default_factory=dict)
    # Label Studio sends one webhook per answer. With a quiet period, answers are deduped and acknowledged
    # at once, and one `labels.ready` per project is emitted after `labels_quiet_s` without new answers
    # (a labeler working through 300 tasks starts one intake, not 300). 0 emits per answer.
    labels_quiet_s: float = 0.0
    # which branches' commits are relayed (None: all; the production wiring always sets it)
    branches: BranchPolicy | None = None
    # a signed request's timestamp may be this far from the bridge's clock (see infra.bridge.auth)
    replay_window_s: float = DEFAULT_REPLAY_WINDOW_S

    # publishes a batch of events at once, all or nothing (production: one POST /api/events); None: the
    # emitter, one event per batch
    publish: Publisher | None = None

    def senders(self) -> tuple[SenderAuth, SenderAuth]:
        """(lakeFS, Label Studio): each knows the other's secret only to name it when it is misused."""
        lakefs, ls = "lakeFS", "Label Studio"
        return (SenderAuth(lakefs, self.lakefs_secret, self.replay_window_s, {ls: self.label_studio_secret}),
                SenderAuth(ls, self.label_studio_secret, self.replay_window_s, {lakefs: self.lakefs_secret}))


def commit_payload(ev: LakeFSHookEvent, delivered_by: str = "bridge") -> CommitPayload:
    assert ev.branch_id and ev.commit_id
    return CommitPayload(
        repository=ev.repository_id, branch=ev.branch_id, commit_id=ev.commit_id,
        message=ev.commit_message or "", committer=ev.committer or "", metadata=dict(ev.commit_metadata),
        merge_source=ev.merge_source, lakefs_event=ev.event_type, event_time=ev.event_time,
        delivered_by="bridge" if delivered_by == "bridge" else "reconcile",
    )


def create_app(config: BridgeConfig) -> Starlette:
    # project -> (ledger key, answer) not yet announced; each key is claimed, and completed once announced
    pending: dict[int, list[tuple[str, LabelsPayload]]] = {}
    timers: dict[int, asyncio.TimerHandle] = {}

    def count(name: str) -> None:
        config.counters[name] = config.counters.get(name, 0) + 1

    def refuse(counter: str, error: str, status: int) -> JSONResponse:
        count(counter)
        return JSONResponse({"error": error}, status)

    def ignored(reason: str) -> JSONResponse:
        count("ignored")
        return JSONResponse({"status": "ignored", "reason": reason})

    lakefs_sender, label_studio_sender = config.senders()

    async def parse(request: Request, model: type[Body], sender: SenderAuth) -> Body | JSONResponse:
        body = await request.body()
        refusal = sender.refusal(request.headers, body)
        if refusal is not None:
            return refuse("unauthorized", refusal, 401)
        try:
            data = json.loads(body)
        except ValueError as e:
            return refuse("malformed", f"body is not JSON: {e}", 400)
        try:
            return model.model_validate(data)
        except ValidationError as e:
            return refuse("malformed", f"invalid {model.__name__}: {error_list(e.errors())}", 400)

    def hook(model: type[Body], handle: Callable[[Body], Awaitable[JSONResponse]], sender: SenderAuth
             ) -> Callable[[Request], Awaitable[JSONResponse]]:
        """An endpoint that answers requests not from `sender`, or malformed ones, itself; `handle` sees valid
        bodies only."""
        async def endpoint(request: Request) -> JSONResponse:
            ev = await parse(request, model, sender)
            return ev if isinstance(ev, JSONResponse) else await handle(ev)

        return endpoint

    if config.publish is not None:
        batches = GroupCommit(config.ledger, config.publish, config.owner)
    else:
        batches = GroupCommit(config.ledger, lambda events: config.emitter(*events), config.owner, max_batch=1)

    async def relay(key: str, kind: str, event: Event, **extra: str) -> JSONResponse:
        """Emit once per key; 503 (retryable by the sender) when Prefect does not accept the event."""
        try:
            status = await batches.deliver(key, kind, event)
        except EmitError as e:
            log.warning("emit failed for %s: %s", key, e)
            return refuse("emit_failed", f"Prefect did not accept the event: {e}", 503)
        count(status)
        return JSONResponse({"status": status, "event": event.event, "key": key, **extra})

    async def lakefs_events(ev: LakeFSHookEvent) -> JSONResponse:
        if ev.event_type not in RELAYED:
            return ignored(f"{ev.event_type} is not relayed")
        missing = [f for f in ("branch_id", "commit_id") if not getattr(ev, f)]
        if missing:
            return refuse("malformed", f"{ev.event_type} event without {', '.join(missing)}", 400)
        assert ev.commit_id and ev.branch_id
        if config.branches is not None and not config.branches.relayed(ev.branch_id):
            # the trust boundary: a commit on a branch nobody watches starts nothing
            return ignored(f"branch {ev.branch_id!r} is neither watched nor an experiment branch")
        key = commit_key(ev.repository_id, ev.commit_id)
        if is_internal_commit(ev.commit_metadata):
            await run_in_threadpool(config.ledger.skip, key, "lakefs", config.owner, "lakeloop actions commit")
            count("skipped")
            return JSONResponse({"status": "skipped", "key": key})
        event = commit_event(commit_payload(ev))
        return await relay(key, "lakefs", event, event_id=str(event.id))

    async def lakefs_pre_merge(ev: LakeFSHookEvent) -> JSONResponse:
        if ev.event_type != "pre-merge":
            return JSONResponse({"status": "ignored", "reason": f"{ev.event_type} is not gated"})
        if config.gate is None:
            return JSONResponse({"status": "ok", "reason": "no gate configured"})
        try:
            result = await run_in_threadpool(config.gate, ev)
        except Exception as e:  # the gate itself failed: block rather than let unchecked data in
            log.exception("pre-merge gate failed")
            return refuse("gate_error", f"merge gate error: {type(e).__name__}: {e}", 500)
        count("gate_ok" if result.ok else "gate_blocked")
        body = {"status": "ok" if result.ok else "blocked", "message": result.message, "checked": result.checked,
                "problems": result.problems}
        return JSONResponse(body, 200 if result.ok else 400)

    async def label_studio_events(ev: LabelStudioEvent) -> JSONResponse:
        if ev.action not in LS_ACTIONS:
            return ignored(f"{ev.action} does not change labels")
        project_id = ev.project_id()
        if ev.annotation is None or project_id is None:
            return refuse("malformed", f"{ev.action} without annotation.id and project.id", 400)
        version = ev.annotation.updated_at or "created"
        key = annotation_key(project_id, f"{ev.annotation.id}@{version}")
        payload = LabelsPayload(project_id=project_id, annotation_id=ev.annotation.id,
                                task_id=ev.task.id if ev.task else None, action=ev.action)
        if config.labels_quiet_s <= 0:
            return await relay(key, "label-studio", build_event(LABELS_READY, labels_resource(project_id), payload))
        # claimed, not done: the key is done only once a labels.ready announced it (a crash meanwhile
        # leaves a claim that expires, so a redelivery is accepted again)
        fresh = await run_in_threadpool(config.ledger.claim, key, "label-studio", config.owner,
                                        {"event": LABELS_READY})
        if not fresh or any(k == key for k, _ in pending.get(project_id, [])):  # (a claim that outlived its lease)
            count("duplicate")
            return JSONResponse({"status": "duplicate", "key": key})
        pending.setdefault(project_id, []).append((key, payload))
        _restart_timer(project_id)
        count("queued")
        return JSONResponse({"status": "queued", "key": key, "pending": len(pending[project_id])})

    def _restart_timer(project_id: int) -> None:
        loop = asyncio.get_running_loop()
        if project_id in timers:
            timers[project_id].cancel()
        timers[project_id] = loop.call_later(config.labels_quiet_s,
                                             lambda: asyncio.ensure_future(announce(project_id)))

    async def announce(project_id: int) -> None:
        """One event for the answers gathered; on failure keep them and try again after another quiet period.
        (If the bridge dies meanwhile, ingest-labels' schedule still reads every answer from Label Studio.)

        The batch is taken out of `pending` before the emit is awaited, so answers arriving during the
        emit wait for the next announcement instead of being deleted with this batch."""
        timers.pop(project_id, None)
        batch = pending.pop(project_id, [])
        if not batch:
            return
        last = batch[-1][1]
        payload = LabelsPayload(project_id=project_id, annotation_id=last.annotation_id, task_id=last.task_id,
                                action=last.action, answers=len(batch))
        try:
            await run_in_threadpool(config.emitter, build_event(LABELS_READY, labels_resource(project_id), payload))
        except EmitError as e:
            count("emit_failed")
            log.warning("labels.ready for project %s not accepted (%s); retrying", project_id, e)
            pending[project_id] = batch + pending.get(project_id, [])
            _restart_timer(project_id)
            return
        await run_in_threadpool(_complete_all, [k for k, _ in batch])
        count("emitted")
        if pending.get(project_id) and project_id not in timers:  # answers that arrived during the emit
            _restart_timer(project_id)

    def _complete_all(keys: list[str]) -> None:
        for k in keys:
            try:
                config.ledger.complete(k, config.owner)
            except LeaseLost:  # announced anyway; whoever holds the claim now completes it
                log.warning("answer %s was announced after its claim expired", k)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True, "counters": config.counters})

    async def openapi(request: Request) -> JSONResponse:
        return JSONResponse(openapi_document())

    return Starlette(routes=[
        Route("/health", health, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/lakefs/events", hook(LakeFSHookEvent, lakefs_events, lakefs_sender), methods=["POST"]),
        Route("/lakefs/pre-merge", hook(LakeFSHookEvent, lakefs_pre_merge, lakefs_sender), methods=["POST"]),
        Route("/label-studio/events", hook(LabelStudioEvent, label_studio_events, label_studio_sender),
              methods=["POST"]),
    ])
