"""The gate's rows: the holdout of a watched ref, and which of its rows are new since a commit."""

from __future__ import annotations

import polars as pl
import pytest

from infra.demo.synth import synth_batch
from lakeloop.adapters.lakefs import Lake
from lakeloop.spec import DatasetSpec
from tasks.model.judge import holdout_at, rows_new_since

pytestmark = pytest.mark.integration


def test_rows_new_since_a_commit_even_when_the_lake_holds_rows_without_an_id(lake: Lake,
                                                                             churn_spec: DatasetSpec) -> None:
    old = synth_batch(400, seed=1).data
    broken = old.head(5).with_columns(pl.lit(None, dtype=pl.Utf8).alias(churn_spec.id_column))
    lake.write_frame("main", "data/001.parquet", pl.concat([old, broken], how="vertical_relaxed"))
    first = lake.commit("main", "old rows, five of them without an id")
    lake.write_frame("main", "data/002.parquet", synth_batch(400, seed=2, start_id=400).data)
    second = lake.commit("main", "new rows")
    holdout = holdout_at(lake, churn_spec, second)
    fresh = rows_new_since(lake, churn_spec, holdout, first)
    ids = fresh.get_column(churn_spec.id_column).cast(pl.Utf8).to_list()
    old_ids = set(old.get_column(churn_spec.id_column).cast(pl.Utf8).to_list())
    assert fresh.height and not (set(ids) & old_ids)
    assert holdout.height > fresh.height  # the old rows' holdout is still there, but not new
    assert rows_new_since(lake, churn_spec, holdout, None).height == holdout.height
