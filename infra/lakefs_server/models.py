"""Pydantic models of the payloads this server produces.

Field order matters: lakeFS serialises with Go's encoding/json (struct order),
and webhook receivers may compare raw bodies, so the models declare fields in
lakeFS's order and dump with `exclude_none` to mimic Go's `omitempty`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel


class Out(BaseModel):
    def dump(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)

    @classmethod
    def render(cls, record: sqlite3.Row | Mapping[str, Any]) -> dict[str, Any]:
        """The payload of a stored record (an `sqlite3.Row` or a dict): the store names its columns as
        lakeFS names the fields, so one rule maps every record; columns lakeFS does not send are left out."""
        keys = record.keys()
        return cls(**{name: record[name] for name in cls.model_fields if name in keys}).dump()


class Pagination(Out):
    has_more: bool
    next_offset: str
    results: int
    max_per_page: int = 1000


class Repository(Out):
    id: str
    creation_date: int
    default_branch: str
    storage_id: str = ""
    storage_namespace: str
    read_only: bool = False


class Ref(Out):
    id: str
    commit_id: str


class Commit(Out):
    id: str
    parents: list[str]
    committer: str
    message: str
    creation_date: int
    meta_range_id: str
    metadata: dict[str, str]
    generation: int
    version: int = 1


class ObjectStats(Out):
    path: str
    path_type: str = "object"
    physical_address: str = ""
    checksum: str = ""
    size_bytes: int | None = None
    mtime: int = 0
    metadata: dict[str, str] | None = None
    content_type: str | None = None


class Diff(Out):
    type: str
    path: str
    path_type: str = "object"
    size_bytes: int | None = None


class ActionRun(Out):
    run_id: str
    branch: str
    start_time: str
    end_time: str | None = None
    event_type: str
    status: str
    commit_id: str


class HookRun(Out):
    hook_run_id: str
    action: str
    hook_id: str
    start_time: str
    end_time: str | None = None
    status: str


class EventInfo(Out):
    """The webhook body, `pkg/actions/event.go` EventInfo, keys in Go struct order."""

    event_type: str
    event_time: str
    action_name: str
    hook_id: str
    repository_id: str
    branch_id: str | None = None
    source_ref: str | None = None
    tag_id: str | None = None
    commit_id: str | None = None
    commit_message: str | None = None
    committer: str | None = None
    commit_metadata: dict[str, str] | None = None
    merge_source: str | None = None


def page(results: list[dict[str, Any]], has_more: bool, next_offset: str) -> dict[str, Any]:
    """The `{pagination, results}` envelope every lakeFS listing uses."""
    return {
        "pagination": Pagination(
            has_more=has_more, next_offset=next_offset if has_more else "", results=len(results)
        ).dump(),
        "results": results,
    }
