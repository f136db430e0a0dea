"""Per-object state against the real local lakeFS server: the SDK's checksums and diffs drive it, and
add/replace/remove commits give what a full recomputation gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from lakeloop.adapters.lakefs import Lake
from tasks.data import dataset
from tasks.data.object_state import ObjectStates
from tests.test_object_state import SPEC, frame, full_commit_batch, full_training_set, same_results

pytestmark = pytest.mark.integration


def test_commits_on_lakefs_equal_full_recomputation(lake: Lake, tmp_path: Path) -> None:
    states = ObjectStates.for_spec(tmp_path, SPEC)
    steps = [  # (path, content or None: remove), one commit each
        [("data/a.parquet", 0), ("data/b.csv", 1)],
        [("data/c.parquet", 3)],  # ids overlap a's
        [("data/a.parquet", 2)],  # replaced
        [("data/b.csv", None), ("data/d.parquet", 0)],  # removed; a's old content again, at another path
    ]
    for step in steps:
        for path, content in step:
            if content is None:
                lake.delete_object("main", path)
            else:
                lake.write_frame("main", path, frame(content))
        head = lake.commit("main", f"step {step}")
        batch = dataset.commit_batch(lake, SPEC, head, states)
        same_results(batch.checks, full_commit_batch(lake, head))  # type: ignore[arg-type]
        data, checks = dataset.training_set(lake, SPEC, head, ObjectStates.for_spec(tmp_path, SPEC))
        want_data, want = full_training_set(lake, head)  # type: ignore[arg-type]
        same_results(checks, want)
        assert data.equals(want_data)
    # content seen before (a's first version, now at d) was validated once: its state is shared by checksum
    keys = {ObjectStates.key(o) for o in lake.data_objects(head)}
    assert keys <= {p.name for p in states.root.iterdir()}
