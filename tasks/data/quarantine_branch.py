"""Invalid rows are never dropped: they go to lakeFS, on a `quarantine-<commit>` branch, with a reason per row."""

from __future__ import annotations

import polars as pl
from lakefs.exceptions import BadRequestException

from lakeloop.adapters.lakefs import Lake
from lakeloop.outcomes import QuarantineRecord
from lakeloop.spec import DatasetSpec
from tasks.data.dataset import CommitBatch
from tasks.data.quarantine import quarantine_branch, quarantine_frame, quarantine_path, unreadable_frame


def quarantine_invalid(lake: Lake, spec: DatasetSpec, batch: CommitBatch) -> QuarantineRecord | None:
    """Write each object's invalid rows (values as read + `_reasons`) on `quarantine-<commit>` and commit them.

    The branch starts at the source commit, so it shows the bad rows next to the data
    they came with; re-running a commit rewrites the same paths and commits nothing new.
    Objects no reader could open are quarantined whole: one record each (path, checksum, reader's error).
    """
    bad = [c for c in batch.checks if c.result.invalid.height]
    if not bad and not batch.unreadable:
        return None
    branch = quarantine_branch(batch.commit_id)
    lake.ensure_branch(branch, batch.commit_id)
    paths = []
    frames = [(c.obj.path, quarantine_frame(c.result)) for c in bad]
    frames += [(u.obj.path, unreadable_frame(u)) for u in batch.unreadable]
    for source, frame in frames:
        path = quarantine_path(source, batch.commit_id)
        lake.write_frame(branch, path, frame.with_columns(pl.lit(batch.commit_id).alias("_source_commit")))
        paths.append(path)
    rows = sum(c.result.invalid.height for c in bad)
    unreadable = [u.obj.path for u in batch.unreadable]
    message = f"quarantine {rows} invalid row(s)" + (f" and {len(unreadable)} unreadable object(s)" if unreadable
                                                      else "")
    try:
        commit_id: str | None = lake.commit(
            branch,
            f"{message} from {batch.commit_id[:12]}",
            {"lakeloop.kind": "quarantine", "lakeloop.source_commit": batch.commit_id, "lakeloop.rows": str(rows)},
        )
    except BadRequestException:  # an identical re-run stages nothing: lakeFS answers "no changes"
        commit_id = None
    return QuarantineRecord(branch=branch, commit_id=commit_id, objects=paths, rows=rows, unreadable=unreadable)
