"""Invalid rows are never dropped: they go to lakeFS, on a `quarantine-<commit>` branch, with a reason per row."""

from __future__ import annotations

import polars as pl
from lakefs.exceptions import BadRequestException

from lakeloop.adapters.lakefs import Lake
from lakeloop.outcomes import QuarantineRecord
from lakeloop.spec import DatasetSpec
from tasks.data.dataset import CommitBatch
from tasks.data.quarantine import quarantine_branch, quarantine_frame, quarantine_path


def quarantine_invalid(lake: Lake, spec: DatasetSpec, batch: CommitBatch) -> QuarantineRecord | None:
    """Write each object's invalid rows (values as read + `_reasons`) on `quarantine-<commit>` and commit them.

    The branch starts at the source commit, so it shows the bad rows next to the data
    they came with; re-running a commit rewrites the same paths and commits nothing new.
    """
    bad = [c for c in batch.checks if c.result.invalid.height]
    if not bad:
        return None
    branch = quarantine_branch(batch.commit_id)
    lake.ensure_branch(branch, batch.commit_id)
    paths = []
    for c in bad:
        path = quarantine_path(c.obj.path, batch.commit_id)
        frame = quarantine_frame(c.result).with_columns(pl.lit(batch.commit_id).alias("_source_commit"))
        lake.write_frame(branch, path, frame)
        paths.append(path)
    rows = sum(c.result.invalid.height for c in bad)
    try:
        commit_id: str | None = lake.commit(
            branch,
            f"quarantine {rows} invalid row(s) from {batch.commit_id[:12]}",
            {"lakeloop.kind": "quarantine", "lakeloop.source_commit": batch.commit_id, "lakeloop.rows": str(rows)},
        )
    except BadRequestException:  # an identical re-run stages nothing: lakeFS answers "no changes"
        commit_id = None
    return QuarantineRecord(branch=branch, commit_id=commit_id, objects=paths, rows=rows)
