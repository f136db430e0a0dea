"""`lakeloop ingest`: a user's file lands unchanged where the loop reads batches, committed with its lineage."""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl
import pytest

from infra.demo.synth import synth_batch
from lakeloop.adapters.lakefs import Lake
from tasks.data.batches import IngestError, ingest_file

pytestmark = pytest.mark.integration


def test_ingest_commits_the_file_unchanged_with_its_lineage_and_refuses_it_twice(lake: Lake,
                                                                                tmp_path: Path) -> None:
    file = tmp_path / "march 2026.csv"
    synth_batch(50, seed=1, start_id=0).data.write_csv(file)
    first = ingest_file(lake, file, "main", "march batch")
    assert first.path == "data/001-march-2026.csv" and first.rows == 50
    assert lake.read_bytes("main", first.path) == file.read_bytes()  # nothing lost or re-encoded
    info = lake.commit_info(first.commit_id)
    assert info.message == "march batch"
    assert info.metadata["lakeloop.kind"] == "data" and info.metadata["rows"] == "50"
    assert info.metadata["lakeloop.source"] == "march 2026.csv"
    assert info.metadata["lakeloop.sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()
    assert info.metadata["lakeloop.user"] and info.metadata["lakeloop.tool_version"]
    assert lake.read_frame("main", first.path).height == 50  # the loop reads it like any batch

    with pytest.raises(IngestError, match="already added by commit"):
        ingest_file(lake, file, "main")
    pq = tmp_path / "april.parquet"
    synth_batch(20, seed=2, start_id=50).data.write_parquet(pq)
    assert ingest_file(lake, pq, "main").path == "data/002-april.parquet"  # the next batch number


@pytest.mark.parametrize("name,content,needle", [("empty.csv", b"id,x\n", "no rows"),
                                                  ("bad.parquet", b"\x00\x01garbage", "not a readable")])
def test_unreadable_or_empty_files_and_unknown_branches_write_nothing(lake: Lake, tmp_path: Path, name: str,
                                                                      content: bytes, needle: str) -> None:
    head = lake.head("main")
    bad = tmp_path / name
    bad.write_bytes(content)
    with pytest.raises(IngestError, match=needle):
        ingest_file(lake, bad, "main")
    good = tmp_path / "good.csv"
    pl.DataFrame({"id": ["1"]}).write_csv(good)
    with pytest.raises(IngestError, match="does not exist"):
        ingest_file(lake, good, "no-such-branch")
    assert lake.head("main") == head and not lake.data_objects("main")
