"""Turn a validated polars frame into model inputs, the same way everywhere.

Training, the ensemble, the gate and batch inference all call these, so a
model never sees columns in a different order or categories with other codes.
Categoricals keep the spec's fixed category list, so unseen-at-train values
still map to the same codes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl

from lakeloop.spec import DatasetSpec, FeatureType


def model_frame(df: pl.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """Model input as pandas with `category` dtypes (XGBoost's native categorical path)."""
    out: dict[str, pd.Series] = {}
    for name in spec.model_features:
        f = spec.feature(name)
        col = df.get_column(name)
        if f.type == FeatureType.categorical:
            cats = list(f.categories or [])
            # integer codes in polars (unknown -> -1, i.e. missing): much faster than pd.Categorical(list)
            codes = col.cast(pl.Utf8).replace_strict(cats, list(range(len(cats))), default=-1, return_dtype=pl.Int16)
            out[name] = pd.Series(pd.Categorical.from_codes(codes.fill_null(-1).to_numpy(), categories=cats))
        elif f.type == FeatureType.boolean:
            out[name] = pd.Series(col.cast(pl.Float64).to_numpy(), dtype="float64")
        else:
            out[name] = pd.Series(col.cast(pl.Float64).to_numpy(), dtype="float64")
    return pd.DataFrame(out)


def numeric_matrix(df: pl.DataFrame, spec: DatasetSpec) -> np.ndarray:
    """Dense float matrix with one-hot categoricals and NaN-free numerics, for linear models."""
    cols: list[np.ndarray] = []
    for name in spec.model_features:
        f = spec.feature(name)
        col = df.get_column(name)
        if f.type == FeatureType.categorical:
            values = col.cast(pl.Utf8).to_numpy()
            for cat in f.categories or []:
                cols.append((values == cat).astype("float64"))
        else:
            arr = col.cast(pl.Float64).to_numpy().astype("float64")
            cols.append(np.nan_to_num(arr, nan=0.0))
    return np.column_stack(cols) if cols else np.empty((df.height, 0))


def encode_labels(df: pl.DataFrame, spec: DatasetSpec, column: str | None = None) -> np.ndarray:
    """Class indices in the order of `spec.classes` (binary: 1 = positive class)."""
    col = df.get_column(column or spec.label_column).cast(pl.Utf8)
    classes = list(spec.classes)
    if len(classes) == 2:
        return (col == spec.positive).cast(pl.Int64).to_numpy()
    mapping = {c: i for i, c in enumerate(classes)}
    return np.asarray([mapping[v] for v in col.to_list()], dtype=np.int64)


def decode_labels(indices: np.ndarray, spec: DatasetSpec) -> list[str]:
    classes = list(spec.classes)
    if len(classes) == 2:
        negative = next(c for c in classes if c != spec.positive)
        return [spec.positive if int(i) == 1 else negative for i in indices]
    return [classes[int(i)] for i in indices]
