"""The rows a challenger is judged on, from data the challenger cannot poison.

Why: a gate that scores on the challenger's own commit lets that commit choose its
judge. The holdout (a stable id hash, never trained on) is drawn from a watched
branch instead, and the rows that are new since the champion's data are set aside
for the signal check: labels a model cannot predict at all are not trusted.
"""

from __future__ import annotations

import polars as pl

from lakeloop.adapters.lakefs import Lake
from lakeloop.spec import DatasetSpec
from tasks.data import dataset
from tasks.data.object_state import ObjectStates


def holdout_at(lake: Lake, spec: DatasetSpec, ref: str, states: ObjectStates | None = None) -> pl.DataFrame:
    """The holdout rows of the training set at `ref` (rows no model trains on)."""
    data, _ = dataset.training_set(lake, spec, ref, states)
    return dataset.split_holdout(data, spec)[1] if data.height else data


def rows_new_since(lake: Lake, spec: DatasetSpec, rows: pl.DataFrame, since: str | None,
                   states: ObjectStates | None = None) -> pl.DataFrame:
    """The rows whose ids were not in the lake at commit `since` (all rows when there is none)."""
    if since is None or not rows.height:
        return rows
    key = "_lakeloop_id"
    # invalid rows (quarantined, never trained on) may have a null id
    known = dataset.ids_at(lake, spec, since, rows.get_column(spec.id_column), states).alias(key).to_frame()
    return (rows.with_columns(pl.col(spec.id_column).cast(pl.Utf8).alias(key))
            .join(known, on=key, how="anti").drop(key))
