"""The champion's own outputs on rows it never trained on: the like-for-like reference for prediction drift.

Why: out-of-fold probabilities come from the fold models, a batch's from the final model refit on every
training row. The two differ in shape even when the data does not move, so a monitor comparing them
fires on stationary batches (it did on 4 of 4 in issue 15's measurement). The same model scoring its
training commit's holdout differs from its scores on new rows only when the rows do. The reference is
stored with the version's run the first time it is needed, so every later check compares with the
same sample.
"""

from __future__ import annotations

import io

import polars as pl

from tasks.serving.inference import predict_batch

REFERENCE_ARTIFACT = "monitor/reference_predictions.parquet"
MIN_REFERENCE_ROWS = 50


class ReferenceError(ValueError):
    """No like-for-like reference can be built (too few holdout rows); the message says why."""


def holdout_outputs(holdout: pl.DataFrame, model_uri: str, *, id_column: str, model: object = None) -> pl.DataFrame:
    """The model's predictions on `holdout` (rows it never trained on), as the monitor compares them."""
    if holdout.height < MIN_REFERENCE_ROWS:
        raise ReferenceError(f"{model_uri}: {holdout.height} holdout rows, fewer than {MIN_REFERENCE_ROWS}; "
                             "no like-for-like prediction reference")
    return predict_batch(holdout, model_uri, id_column=id_column, model=model)


def to_bytes(reference: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    reference.write_parquet(buf)
    return buf.getvalue()


def from_bytes(data: bytes) -> pl.DataFrame:
    return pl.read_parquet(io.BytesIO(data))
