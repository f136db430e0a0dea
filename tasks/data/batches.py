"""Adding a batch to the lake: one data object under the data prefix, one commit with its lineage metadata.

The one code path for `lakeloop ingest` and the demo, so a batch a person ingests lands where the
loop reads batches (`<data_prefix>NNN-<name>.<csv|parquet>`) and says where it came from.
"""

from __future__ import annotations

import getpass
import hashlib
import io
import re
from pathlib import Path

import polars as pl
from pydantic import BaseModel

from lakeloop.adapters.lakefs import Lake
from lakeloop.code_version import code_version

SUFFIXES = {".csv": ".csv", ".parquet": ".parquet", ".pq": ".parquet"}
CONTENT_TYPES = {".csv": "text/csv", ".parquet": "application/vnd.apache.parquet"}
_INDEX = re.compile(r"^(\d+)-")


class IngestError(ValueError):
    """A file that cannot be ingested as it is; nothing was written."""


class IngestResult(BaseModel):
    commit_id: str
    branch: str
    path: str
    rows: int
    sha256: str
    metadata: dict[str, str]


def next_index(lake: Lake, branch: str) -> int:
    """One past the highest `NNN-` batch number under the data prefix (1 for an empty lake)."""
    prefix = lake.settings.data_prefix
    found = [int(m[1]) for o in lake.data_objects(branch) if (m := _INDEX.match(o.path[len(prefix):]))]
    return max(found, default=0) + 1


def add_batch(lake: Lake, branch: str, name: str, data: pl.DataFrame | bytes, *, rows: int,
              message: str, metadata: dict[str, str] | None = None, index: int | None = None,
              suffix: str = ".parquet") -> tuple[str, str]:
    """Write one batch object and commit it; returns (path, commit id). A frame is written in `suffix`'s
    format; bytes are stored as they are (a user's file keeps its exact content and checksum)."""
    n = next_index(lake, branch) if index is None else index
    path = f"{lake.settings.data_prefix}{n:03d}-{name}{suffix}"
    if isinstance(data, pl.DataFrame):
        lake.write_frame(branch, path, data)
    else:
        lake.write_bytes(branch, path, data, content_type=CONTENT_TYPES[suffix])
    commit_id = lake.commit(branch, message, {"lakeloop.kind": "data", "rows": str(rows), **(metadata or {})})
    return path, commit_id


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name (a container without a passwd entry)
        return "unknown"


def read_rows(data: bytes, suffix: str) -> int:
    """Rows of a CSV or parquet file; an unreadable file is an IngestError."""
    try:
        if suffix == ".csv":
            return pl.read_csv(io.BytesIO(data), infer_schema=False).height
        return pl.read_parquet(io.BytesIO(data)).height
    except Exception as e:  # polars raises several unrelated types for unreadable files
        raise IngestError(f"not a readable {suffix[1:]} file: {e}") from e


def ingest_file(lake: Lake, file: Path, branch: str, message: str | None = None, *, force: bool = False,
                history: int = 200) -> IngestResult:
    """Upload `file` unchanged as the next batch on `branch` and commit it with its lineage.

    Refused (nothing written): an unknown branch, an unreadable or empty file, or a file whose sha256
    one of the branch's last `history` commits already added (`force` adds it again).
    """
    suffix = SUFFIXES.get(file.suffix.lower())
    if suffix is None:
        raise IngestError(f"{file}: only {', '.join(SUFFIXES)} files can be ingested")
    try:
        data = file.read_bytes()
    except OSError as e:
        raise IngestError(f"{file}: {e.strerror or e}") from e
    rows = read_rows(data, suffix)
    if rows == 0:
        raise IngestError(f"{file}: no rows")
    branches = lake.branches()
    if branch not in branches:
        raise IngestError(f"branch {branch!r} does not exist in {lake.settings.repository} (branches: "
                          f"{', '.join(sorted(branches))})")
    sha = hashlib.sha256(data).hexdigest()
    if not force:
        for c in lake.log(branch, limit=history):
            if c.metadata.get("lakeloop.sha256") == sha:
                raise IngestError(f"{file.name} (sha256 {sha[:12]}) was already added by commit {c.id[:12]} "
                                  f"({c.message}); --force adds it again")
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", file.stem).strip("-.") or "batch"
    metadata = {"lakeloop.source": file.name, "lakeloop.sha256": sha, "lakeloop.user": _user(),
                "lakeloop.tool_version": code_version()}
    path, commit_id = add_batch(lake, branch, name, data, rows=rows, suffix=suffix, metadata=metadata,
                                message=message or f"ingest {file.name} ({rows} rows)")
    return IngestResult(commit_id=commit_id, branch=branch, path=path, rows=rows, sha256=sha,
                        metadata={"lakeloop.kind": "data", "rows": str(rows), **metadata})
