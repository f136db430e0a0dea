"""Fault: a commit brings a corrupt (truncated) parquet object. Its rows cannot be read, so the object
itself is quarantined with its path, checksum and the reader's error; the commit's other objects go on,
and so do later commits and training sets while the broken object stays in the lake."""

from __future__ import annotations

import io

import polars as pl
import pytest

from lakeloop.adapters.lakefs import Lake
from tasks.data import dataset, quarantine_branch
from tasks.data.object_state import ObjectStates
from tasks.data.quarantine import quarantine_path
from tasks.data.validate import REASONS, SOURCE
from tests.test_object_state import SPEC, frame

pytestmark = pytest.mark.integration


def _truncated_parquet(df: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.write_parquet(buf)
    return buf.getvalue()[: len(buf.getvalue()) // 2]  # the footer is gone: no reader can open it


def test_corrupt_object_is_quarantined_and_the_commit_goes_on(lake: Lake, tmp_path) -> None:  # type: ignore[no-untyped-def]
    states = ObjectStates.for_spec(tmp_path, SPEC)
    good, broken = frame(5), "data/b.parquet"
    lake.write_frame("main", "data/a.parquet", good)
    lake.write_bytes("main", broken, _truncated_parquet(frame(1)))
    head = lake.commit("main", "one good object, one truncated")

    batch = dataset.commit_batch(lake, SPEC, head, states)
    assert [c.obj.path for c in batch.checks] == ["data/a.parquet"]
    assert batch.valid.height == good.height  # the readable object's rows proceed
    [bad] = batch.unreadable
    checksum = next(o.checksum for o in lake.data_objects(head) if o.path == broken)
    assert (bad.obj.path, bad.obj.checksum) == (broken, checksum)
    assert broken in bad.reason and "unreadable" in bad.reason

    record = quarantine_branch.quarantine_invalid(lake, SPEC, batch)
    assert record is not None and record.unreadable == [broken]
    path = quarantine_path(broken, head)
    assert path in record.objects
    q = lake.read_frame(record.branch, path)
    assert q.get_column("_checksum").to_list() == [checksum]
    assert broken in q.get_column(SOURCE).item() and q.get_column(REASONS).item() == bad.reason

    # the broken object stays at the next commit: it neither blocks that commit nor the training set
    lake.write_frame("main", "data/c.parquet", frame(3))
    nxt = lake.commit("main", "another object")
    later = dataset.commit_batch(lake, SPEC, nxt, states)
    assert [c.obj.path for c in later.checks] == ["data/c.parquet"] and not later.unreadable
    data, checks = dataset.training_set(lake, SPEC, nxt, states)
    assert [c.obj.path for c in checks] == ["data/a.parquet", "data/c.parquet"]
    assert data.height == sum(c.result.valid.height for c in checks) > 0
