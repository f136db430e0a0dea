"""The Label Studio adapter: projects, tasks, annotations, webhooks, and an outbox.

Everything goes through `label-studio-sdk` 2.x, so the same code runs against
the local server (`infra.local.label_studio`) and a shared one.

Why an outbox: a labeling round must survive Label Studio being down. Tasks
are first written to a durable SQLite outbox, then sent; what cannot be sent
stays there until `flush_outbox()` succeeds. Before sending, the project's
existing tasks are listed and matched on (row id, row hash), so a task whose
import succeeded but whose answer was lost is not created a second time:
nothing lost, nothing sent twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError
from label_studio_sdk.types import ViewDataRequestRequest
from pydantic import BaseModel

from lakeloop.adapters.secrets import reveal
from lakeloop.settings import Settings
from lakeloop.task_outbox import Outbox

UNSURE = "unsure"
FROM_NAME = "label"
TO_NAME = "features"
ANNOTATION_ACTIONS = ["ANNOTATION_CREATED", "ANNOTATION_UPDATED"]
# Label Studio pre-selects only the predictions whose model_version is the project's, and sets the project's
# from the first import. One fixed version for every round keeps later rounds pre-selected too; the run that
# made a prediction travels in the task's data instead.
PREDICTION_VERSION = "lakeloop"
REVIEW_TAB = "review"
# Label Studio's own data-manager columns a reviewer never needs
CLUTTER_COLUMNS = ["inner_id", "annotations_results", "annotations_ids", "predictions_results",
                   "predictions_model_versions", "predictions_score", "file_upload", "storage_filename",
                   "created_at", "updated_at", "updated_by", "avg_lead_time", "draft_exists", "completed_at"]


class LabelingError(RuntimeError):
    """Label Studio refused a request or the input cannot become tasks; the message says which."""


class LabelStudioUnavailable(LabelingError):
    """Label Studio could not be reached (connection error, timeout or 5xx)."""


class Annotation(BaseModel):
    """One answer from the labeling team, flattened from Label Studio's task JSON."""

    annotation_id: int
    task_id: int
    project_id: int
    row_id: str
    row_hash: str
    choice: str | None  # a class name, UNSURE, or None when the task was skipped
    skipped: bool
    annotator: str  # e-mail when known, else "user:<id>"
    annotator_id: int
    created_at: datetime
    updated_at: datetime
    lead_time: float | None

    @property
    def unsure(self) -> bool:
        return self.skipped or self.choice in (None, UNSURE)


@dataclass
class SendResult:
    created: list[int] = field(default_factory=list)  # task ids created now
    existing: list[int] = field(default_factory=list)  # rows already in the project with the same hash
    queued: int = 0  # rows still waiting in the outbox (Label Studio unreachable)
    error: str | None = None


# ---- outbox ------------------------------------------------------------------
# ---- the adapter -------------------------------------------------------------
def _unavailable(e: Exception) -> bool:
    if isinstance(e, httpx.TransportError):
        return True
    return isinstance(e, ApiError) and (e.status_code is None or e.status_code >= 500)


class LabelStudioAdapter:
    """One Label Studio server reached with an API token; outbox state under `state_dir`."""

    def __init__(self, url: str, token: str, state_dir: Path, *, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.client = LabelStudio(base_url=self.url, api_key=reveal(token), timeout=timeout, max_retries=1)
        self.outbox = Outbox.at(Path(state_dir))

    @classmethod
    def from_settings(cls, settings: Settings) -> LabelStudioAdapter:
        return cls(settings.label_studio.url, settings.label_studio.api_token, settings.state_dir)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            if _unavailable(e):
                raise LabelStudioUnavailable(f"Label Studio at {self.url} unreachable during {what}: "
                                             f"{type(e).__name__}: {str(e)[:200]}") from e
            if isinstance(e, ApiError):
                raise LabelingError(f"Label Studio refused {what}: HTTP {e.status_code}: {e.body}") from e
            raise

    # projects
    def ensure_project(self, title: str, *, label_config: str, instructions: str, description: str = "",
                       annotations_per_task: int = 2, hidden_data: list[str] | None = None) -> int:
        """The project called `title` (created with this config and instructions if missing).

        `annotations_per_task` (Label Studio's overlap) should match the agreement
        policy's `min_annotators`, so enough people see each row; `request_more_answers`
        raises it for the rows whose consensus is still unsure. `hidden_data` names the task data
        keys the data manager does not show (with Label Studio's own clutter columns).
        """
        if len(title.strip()) < 3:
            raise LabelingError(f"project title {title!r}: Label Studio needs at least 3 characters")
        pid = None
        for p in self._call("listing projects", self.client.projects.list, title=title):
            if p.title == title:
                pid = int(p.id)
                stale = (p.label_config or "").strip() != label_config.strip() \
                    or (p.expert_instruction or "") != instructions or p.model_version != PREDICTION_VERSION
                if stale:
                    self._call("updating the labeling config", self.client.projects.update, pid,
                               label_config=label_config, expert_instruction=instructions,
                               model_version=PREDICTION_VERSION)
                break
        if pid is None:
            created = self._call("creating a project", self.client.projects.create,
                                 title=title, description=description, label_config=label_config,
                                 expert_instruction=instructions, show_instruction=True,
                                 show_skip_button=True, maximum_annotations=annotations_per_task,
                                 model_version=PREDICTION_VERSION, show_collab_predictions=True)
            pid = int(created.id)
        self._ensure_review_tab(pid, hidden_data or [])
        return pid

    def _ensure_review_tab(self, project_id: int, hidden_data: list[str]) -> None:
        """The data manager's tab: only columns a reviewer reads (Label Studio's default tab shows them all)."""
        hidden = [f"tasks:{c}" for c in CLUTTER_COLUMNS] + [f"tasks:data.{k}" for k in hidden_data]
        columns = {"explore": hidden, "labeling": hidden}
        data = ViewDataRequestRequest(title=REVIEW_TAB, hiddenColumns=columns)  # type: ignore[call-arg]
        views = self._call("listing data manager tabs", self.client.views.list, project=project_id)
        for v in views:
            if (v.data or {}).get("title") == REVIEW_TAB:
                if (v.data or {}).get("hiddenColumns") != columns:
                    self._call("updating a data manager tab", self.client.views.update, str(v.id), data=data,
                               project=project_id)
                return
        self._call("creating a data manager tab", self.client.views.create, project=project_id, data=data)

    # tasks
    def existing_tasks(self, project_id: int) -> dict[tuple[str, str], int]:
        """(row id, row hash) -> task id of every task in the project."""
        out: dict[tuple[str, str], int] = {}
        pager = self._call("listing tasks", self.client.tasks.list, project=project_id, page_size=1000,
                           fields="task_only")
        for t in self._call("listing tasks", list, pager):
            data = t.data or {}
            if "row_id" in data:
                out[(str(data["row_id"]), str(data.get("row_hash", "")))] = int(t.id)
        return out

    def open_tasks(self, project_id: int) -> int:
        """Tasks waiting for the team: nobody answered them yet in Label Studio, or they are still in the outbox.

        Not `is_labeled`: that waits for the project's overlap, which a trusted reviewer's
        single answer never reaches although it settles the row.
        """
        pager = self._call("listing tasks", self.client.tasks.list, project=project_id, page_size=1000,
                           fields="task_only")
        untouched = sum(1 for t in self._call("listing tasks", list, pager)
                        if not t.is_labeled and not (t.total_annotations or 0) + (t.cancelled_annotations or 0))
        return untouched + len(self.outbox.pending(project_id))

    def send_tasks(self, project_id: int, payloads: list[dict[str, Any]], *, batch_size: int = 100) -> SendResult:
        """Queue one task per payload (`data.row_id`, `data.row_hash` required) in the outbox, then flush;
        idempotent by (row id, row hash).

        Returns the task ids created now, those already present, and how many
        rows still wait in the outbox because Label Studio is unreachable.
        """
        self.outbox.enqueue(project_id, payloads)
        result = self.flush_outbox(project_id, batch_size=batch_size)
        keys = [(p["data"]["row_id"], p["data"]["row_hash"]) for p in payloads]
        known = self.outbox.task_ids(project_id, keys)
        created = set(result.created)
        result.existing = sorted({known[k] for k in keys if k in known} - created)
        return result

    def flush_outbox(self, project_id: int | None = None, *, batch_size: int = 100) -> SendResult:
        """Send what waits in the outbox; stops quietly (tasks stay queued) when LS is unreachable."""
        result = SendResult()
        pending = self.outbox.pending(project_id)
        by_project: dict[int, list[tuple[str, str, dict[str, Any]]]] = {}
        for pid, rid, h, payload in pending:
            by_project.setdefault(pid, []).append((rid, h, payload))
        try:
            for pid, items in by_project.items():
                existing = self.existing_tasks(pid)
                already = [(r, h, existing[(r, h)]) for r, h, _ in items if (r, h) in existing]
                if already:
                    self.outbox.mark_sent(pid, already)
                    result.existing.extend(t for _, _, t in already)
                todo = [(r, h, p) for r, h, p in items if (r, h) not in existing]
                for start in range(0, len(todo), batch_size):
                    batch = todo[start:start + batch_size]
                    resp = self._call("importing tasks", self.client.projects.import_tasks, pid,
                                      request=[p for _, _, p in batch], return_task_ids=True)
                    ids = list(getattr(resp, "task_ids", None) or (resp.model_extra or {}).get("task_ids") or [])
                    if len(ids) != len(batch):
                        # cannot pair ids with rows: match on the data instead
                        fresh = self.existing_tasks(pid)
                        ids = [fresh[(r, h)] for r, h, _ in batch]
                    self.outbox.mark_sent(pid, [(r, h, int(t)) for (r, h, _), t in zip(batch, ids, strict=True)])
                    result.created.extend(int(t) for t in ids)
        except LabelStudioUnavailable as e:
            result.error = str(e)
        result.queued = len(self.outbox.pending(project_id))
        return result

    def request_more_answers(self, needed: dict[int, int]) -> int:
        """Raise each task's overlap (task id -> answers it needs) so Label Studio shows it to one more annotator.

        `is_labeled` is cleared too: Label Studio recomputes it only when an annotation is saved. Returns
        how many tasks were updated; a task deleted meanwhile is skipped.
        """
        done = 0
        for task_id, overlap in sorted(needed.items()):
            try:
                self._call("asking for one more answer", self.client.tasks.update, str(task_id), overlap=overlap,
                           is_labeled=False)
            except LabelingError as e:
                if "HTTP 404" not in str(e):
                    raise
                continue
            done += 1
        return done

    # annotations
    def _annotators(self) -> dict[int, str]:
        try:
            return {int(u.id): (u.email or u.username or f"user:{u.id}") for u in self.client.users.list()}
        except Exception as e:  # annotator names are cosmetic; ids remain
            if _unavailable(e):
                raise LabelStudioUnavailable(f"Label Studio at {self.url} unreachable listing users") from e
            return {}

    def fetch_annotations(self, project_id: int, since: datetime | None = None) -> list[Annotation]:
        """Every annotation in the project (updated after `since` when given), oldest first."""
        names = self._annotators()
        pager = self._call("listing annotated tasks", self.client.tasks.list, project=project_id,
                           page_size=500, fields="all")
        out: list[Annotation] = []
        for t in self._call("listing annotated tasks", list, pager):
            data = t.data or {}
            for a in t.annotations or []:
                ann = a if isinstance(a, dict) else a.model_dump()
                out.append(_annotation(ann, int(t.id), project_id, data, names))
        if since is not None:
            cut = since if since.tzinfo else since.replace(tzinfo=UTC)
            out = [a for a in out if a.updated_at > cut]
        out.sort(key=lambda a: (a.updated_at, a.annotation_id))
        return out

    # webhooks
    def register_webhook(self, project_id: int, url: str, headers: dict[str, str] | None = None) -> int:
        """Point ANNOTATION_CREATED/UPDATED of the project at `url` (idempotent by url); returns the webhook id."""
        for w in self._call("listing webhooks", self.client.webhooks.list, project=str(project_id)):
            if w.url == url and (w.project in (None, project_id)):
                self._call("updating a webhook", self.client.webhooks.update, w.id, url=url,
                           headers=headers or {}, actions=ANNOTATION_ACTIONS, is_active=True,
                           send_payload=True, send_for_all_actions=False)
                return int(w.id)
        w = self._call("creating a webhook", self.client.webhooks.create, url=url, project=project_id,
                       headers=headers or {}, actions=ANNOTATION_ACTIONS, is_active=True,
                       send_payload=True, send_for_all_actions=False)
        return int(w.id)


def _parse_time(v: Any) -> datetime:
    if isinstance(v, datetime):
        return v if v.tzinfo else v.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(v).replace("Z", "+00:00"))


def _annotation(ann: dict[str, Any], task_id: int, project_id: int, data: dict[str, Any],
                names: dict[int, str]) -> Annotation:
    choice: str | None = None
    for r in ann.get("result") or []:
        if r.get("from_name") == FROM_NAME and r.get("type") == "choices":
            picked = (r.get("value") or {}).get("choices") or []
            choice = str(picked[0]) if picked else None
    who = ann.get("completed_by")
    uid = int(who["id"] if isinstance(who, dict) else who or 0)
    return Annotation(
        annotation_id=int(ann["id"]), task_id=task_id, project_id=project_id,
        row_id=str(data.get("row_id", "")), row_hash=str(data.get("row_hash", "")),
        choice=choice, skipped=bool(ann.get("was_cancelled")),
        annotator=names.get(uid, f"user:{uid}"), annotator_id=uid,
        created_at=_parse_time(ann["created_at"]), updated_at=_parse_time(ann.get("updated_at") or ann["created_at"]),
        lead_time=float(ann["lead_time"]) if ann.get("lead_time") is not None else None,
    )


def annotation_from_webhook(payload: dict[str, Any]) -> Annotation:
    """An `Annotation` from an ANNOTATION_CREATED/UPDATED webhook body (for the bridge)."""
    task = payload.get("task") or {}
    ann = payload.get("annotation") or {}
    project = payload.get("project") or {}
    if not ann or not task:
        raise LabelingError(f"webhook {payload.get('action')!r}: body lacks 'annotation' or 'task'")
    return _annotation(ann, int(task["id"]), int(project.get("id", task.get("project", 0)) or 0),
                       task.get("data") or {}, {})

