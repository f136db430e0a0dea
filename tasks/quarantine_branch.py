"""Invalid rows are never dropped: they go to lakeFS, on the `quarantine` branch, with a reason per row."""

from __future__ import annotations

import polars as pl
from lakefs.exceptions import BadRequestException

from lakeloop.spec import DatasetSpec
from tasks.dataset import CommitBatch
from tasks.decide import QuarantineRecord
from tasks.lake import Lake

QUARANTINE_BRANCH = "quarantine"


def quarantine_path(commit_id: str, source_path: str) -> str:
    stem = source_path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return f"quarantine/{commit_id[:12]}/{stem}.parquet"


def quarantine_invalid(lake: Lake, spec: DatasetSpec, batch: CommitBatch) -> QuarantineRecord | None:
    """Write each object's invalid rows (values as read + `_reasons`) and commit them, tagged with the source commit.

    The branch is created from the source commit's first parent's line of history
    on first use; objects are keyed by source commit, so re-running a commit
    rewrites the same paths and a second commit is skipped as empty.
    """
    bad = [c for c in batch.checks if c.result.invalid.height]
    if not bad:
        return None
    lake.ensure_branch(QUARANTINE_BRANCH, batch.commit_id)
    paths = []
    for c in bad:
        path = quarantine_path(batch.commit_id, c.obj.path)
        frame = c.result.invalid.with_columns(pl.lit(batch.commit_id).alias("_source_commit"))
        lake.write_frame(QUARANTINE_BRANCH, path, frame)
        paths.append(path)
    rows = sum(c.result.invalid.height for c in bad)
    try:
        commit_id: str | None = lake.commit(
            QUARANTINE_BRANCH,
            f"quarantine {rows} invalid row(s) from {batch.commit_id[:12]}",
            {"lakeloop.kind": "quarantine", "lakeloop.source_commit": batch.commit_id, "lakeloop.rows": str(rows)},
        )
    except BadRequestException:  # an identical re-run stages nothing: lakeFS answers "no changes"
        commit_id = None
    return QuarantineRecord(branch=QUARANTINE_BRANCH, commit_id=commit_id, objects=paths, rows=rows)
