"""Webhook payloads the bridge accepts, as lakeFS and Label Studio send them.

Unknown extra fields are kept (both products add fields over time); missing or
mistyped required fields are a 400 naming the field.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class LakeFSHookEvent(BaseModel):
    """lakeFS `EventInfo` (pkg/actions/event.go): the JSON body of an action webhook."""

    model_config = ConfigDict(extra="allow")

    event_type: str = Field(min_length=1)
    event_time: datetime
    action_name: str
    hook_id: str
    repository_id: str = Field(min_length=1)
    branch_id: str | None = None
    source_ref: str | None = None
    tag_id: str | None = None
    commit_id: str | None = None
    commit_message: str | None = None
    committer: str | None = None
    commit_metadata: dict[str, str] = Field(default_factory=dict)
    merge_source: str | None = None


class LSObject(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: int


class LSAnnotation(LSObject):
    updated_at: str | None = None
    project: int | None = None


class LSTask(LSObject):
    project: int | None = None


class LabelStudioEvent(BaseModel):
    """Label Studio webhook: `{action, annotation, task, project}` (objects vary by action)."""

    model_config = ConfigDict(extra="allow")

    action: str = Field(min_length=1)
    annotation: LSAnnotation | None = None
    task: LSTask | None = None
    project: LSObject | None = None

    def project_id(self) -> int | None:
        if self.project is not None:
            return self.project.id
        if self.task is not None and self.task.project is not None:
            return self.task.project
        if self.annotation is not None:
            return self.annotation.project
        return None


def error_list(errors: list[Any]) -> str:
    """pydantic errors as `field: message` lines."""
    return "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())) or '<body>'}: {e.get('msg')}" for e in errors)
