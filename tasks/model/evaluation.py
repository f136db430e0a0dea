"""What a model's probabilities are worth on labelled rows, as the spec defines it.

Why one module: the trainer's metrics, the gate's checks and the monitor's decay
must mean the same thing by "the positive column", "act on this row", "value per
row" and "the rows of slice `fiber`". Computed in each of them, a threshold, a cost
or a slice's null handling could differ, and the value or slice AUC training
reports would not be the one the gate judges.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl

from lakeloop.spec import DatasetSpec
from tasks.model.metrics import safe_auc


class SliceError(ValueError):
    """A spec slice whose expression does not evaluate to a boolean on the data."""


def positive_column(spec: DatasetSpec) -> int:
    """Column of the positive class in a probability matrix (binary: 1, as `features.encode_labels` orders it)."""
    return spec.label_index(spec.positive) if len(spec.classes) > 2 else 1


def acts(p_pos: np.ndarray, spec: DatasetSpec) -> np.ndarray:
    """The decision the business takes on each row: act where the positive probability reaches the threshold."""
    return np.asarray(p_pos >= spec.business_threshold)


def row_values(y_pos: np.ndarray, p_pos: np.ndarray, spec: DatasetSpec) -> np.ndarray:
    """Value of each row when acting on `p >= business_threshold`, from the spec's cost matrix.

    Per row, not summed: the gate's paired bootstrap resamples these values.
    """
    act = acts(p_pos, spec)
    cm = spec.cost_matrix
    return np.select([act & y_pos, act & ~y_pos, ~act & ~y_pos],
                     [cm.true_positive, cm.false_positive, cm.true_negative], cm.false_negative).astype("float64")


def business_value(y_pos: np.ndarray, p_pos: np.ndarray, spec: DatasetSpec) -> float:
    """Mean value per row of acting on `p >= business_threshold` (0 for no rows)."""
    return float(row_values(y_pos, p_pos, spec).sum()) / max(len(y_pos), 1)


def proba_matrix(pred: pd.DataFrame | pl.DataFrame, spec: DatasetSpec) -> np.ndarray:
    """(n, k) class probabilities from the model's prediction columns (`probability` or `probability_<class>`).

    Fresh pyfunc output (pandas) and stored predictions (polars) are read the same way.
    """
    if len(spec.classes) == 2:
        p = np.asarray(pred["probability"], dtype="float64")
        return np.column_stack([1.0 - p, p])
    return np.column_stack([np.asarray(pred[f"probability_{c}"], dtype="float64") for c in spec.classes])


def slice_masks(df: pl.DataFrame, spec: DatasetSpec) -> dict[str, np.ndarray]:
    """Row mask of each `spec.slices` entry; a null result is outside the slice, a non-boolean one an error."""
    masks: dict[str, np.ndarray] = {}
    for s in spec.slices:
        try:
            col = df.select(pl.sql_expr(s.expr).alias("m")).get_column("m")
        except Exception as e:  # polars raises several error types for bad SQL
            raise SliceError(f"slice {s.name!r}: expression {s.expr!r} does not evaluate on the data: {e}") from e
        if col.dtype != pl.Boolean:
            raise SliceError(f"slice {s.name!r}: expression {s.expr!r} is {col.dtype}, not boolean")
        masks[s.name] = col.fill_null(False).to_numpy()
    return masks


def slice_auc(y: np.ndarray, proba: np.ndarray, mask: np.ndarray) -> float | None:
    """AUC on a slice's rows; None where it is undefined (no rows, or too few classes among them)."""
    return safe_auc(y[mask], proba[mask]) if mask.any() else None
