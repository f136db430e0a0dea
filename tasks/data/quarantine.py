"""Where quarantined rows go: one parquet per validated object and commit.

Why a separate object per (source, commit): quarantined rows stay reviewable and
replayable next to the commit that brought them, and nothing is ever overwritten.
The flow writes them on a quarantine branch (`quarantine_branch`); lakeFS branch
names allow only `[\\w-]` (no '/'), hence `quarantine-<commit-short>`.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    from tasks.data.dataset import UnreadableObject
    from tasks.data.validate import ValidationResult

SHORT_COMMIT = 12
QUARANTINE_PREFIX = "quarantine"


def short_commit(commit: str, length: int = SHORT_COMMIT) -> str:
    if not commit:
        raise ValueError("a commit id is needed to name a quarantine object")
    return commit[:length]


def quarantine_path(source: str, commit: str) -> str:
    """`quarantine/<commit-short>/<source path>.parquet` for object `source` seen in `commit`.

    The whole object path is kept (extension included), so `data/a/x.parquet` and `data/b/x.csv`
    of one commit never land on the same quarantine object.
    """
    path = PurePosixPath(source.lstrip("/")) if source else PurePosixPath("frame")
    return f"{QUARANTINE_PREFIX}/{short_commit(commit)}/{path}.parquet"


def quarantine_branch(commit: str) -> str:
    """The lakeFS branch holding a commit's quarantined rows (valid lakeFS branch name)."""
    return f"{QUARANTINE_PREFIX}-{short_commit(commit)}"


def quarantine_frame(result: ValidationResult) -> pl.DataFrame:
    """Rows to write to the quarantine object: `_row`, original values as strings, `_source`, `_reasons`."""
    return result.invalid


def unreadable_frame(u: UnreadableObject) -> pl.DataFrame:
    """The quarantine record of an object no reader could open: invalid rows' shape (`_row` null: no row
    was read), plus `_checksum`, which names the bytes (they stay at the source commit, beside the record)."""
    from tasks.data.validate import REASONS, ROW, SOURCE

    return pl.DataFrame({ROW: [None], SOURCE: [u.source], "_checksum": [u.obj.checksum], REASONS: [u.reason]},
                        schema={ROW: pl.Int64, SOURCE: pl.String, "_checksum": pl.String, REASONS: pl.String})
