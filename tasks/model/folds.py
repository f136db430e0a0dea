"""What both trainers (`tasks.model.train`, `tasks.model.candidates`) need before cross-validation.

Why shared: the single XGBoost model and the ensemble candidates must refuse the
same bad training frames with the same message, and cut folds the same way, so a
frame one of them accepts the other accepts too.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from sklearn.model_selection import StratifiedKFold

from lakeloop.spec import DatasetSpec

SHOWN_ROWS = 10  # bad rows named in an error message


class TrainError(ValueError):
    """Data that cannot be trained on; the message names the column and rows."""


def check_labels(df: pl.DataFrame, spec: DatasetSpec) -> None:
    """Refuse a training frame without the label or a feature column, or with null/unknown labels (rows named)."""
    col = spec.label_column
    if col not in df.columns:
        raise TrainError(f"label column {col!r} missing from the training frame")
    missing = [c for c in spec.model_features if c not in df.columns]
    if missing:
        raise TrainError(f"training frame is missing feature columns {missing}")
    labels = df.get_column(col).cast(pl.Utf8)
    bad = df.with_row_index("__row").filter(labels.is_null() | ~labels.is_in(spec.classes))
    if bad.height:
        rows = bad.get_column("__row").head(SHOWN_ROWS).to_list()
        values = bad.get_column(col).head(SHOWN_ROWS).to_list()
        raise TrainError(f"label column {col!r}: {bad.height} row(s) not in classes {spec.classes} "
                         f"(rows {rows}, values {values})")


def stratified_folds(y: np.ndarray, n_folds: int, seed: int, *, time_ordered: bool = False) -> np.ndarray:
    """Stratified fold id per row; raises when a class has fewer rows than folds.

    `time_ordered` (rows sorted by time): no shuffling, so each fold is a contiguous
    time block per class.
    """
    counts = np.bincount(y)
    if counts.min() < n_folds:
        raise TrainError(f"each class needs at least {n_folds} rows for {n_folds}-fold CV; counts {counts.tolist()}")
    skf = StratifiedKFold(n_splits=n_folds, shuffle=not time_ordered, random_state=None if time_ordered else seed)
    folds = np.empty(len(y), dtype=np.int64)
    for i, (_, val) in enumerate(skf.split(np.zeros(len(y)), y)):
        folds[val] = i
    return folds


def fold_splits(folds: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train rows, held-out rows) per fold id, both ascending as `StratifiedKFold.split` gives them."""
    return [(np.flatnonzero(folds != f), np.flatnonzero(folds == f)) for f in range(int(folds.max()) + 1)]
