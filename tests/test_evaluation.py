"""The one evaluator: business value and slices mean the same in training, at the gate and in the monitor."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest

from infra.demo.synth import synth_batch
from lakeloop.spec import DatasetSpec
from tasks.model import evaluation, gate, train
from tasks.model.evaluation import SliceError, business_value, proba_matrix, row_values, slice_auc, slice_masks
from tasks.model.folds import TrainError
from tasks.serving import monitoring


def _scored(spec: DatasetSpec, n: int = 600) -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
    data = synth_batch(n, seed=7).data
    y = (data["churn"] == "yes").to_numpy().astype(np.int64)
    rng = np.random.default_rng(3)
    p = np.clip(0.6 * y + rng.normal(0.2, 0.25, n), 0.01, 0.99)
    return data, y, np.column_stack([1 - p, p])


def test_business_value_by_hand(churn_spec: DatasetSpec) -> None:
    # threshold 0.35; costs TP 100, FP -50, TN 0, FN 0
    y = np.array([True, True, False, False])
    p = np.array([0.9, 0.2, 0.5, 0.1])  # TP, FN, FP, TN
    assert business_value(y, p, churn_spec) == pytest.approx((100 + 0 - 50 + 0) / 4)
    assert business_value(y, np.ones(4), churn_spec) == pytest.approx((100 + 100 - 50 - 50) / 4)
    np.testing.assert_array_equal(row_values(y, p, churn_spec), [100, 0, -50, 0])


def test_train_and_gate_call_the_same_evaluator() -> None:
    """No private copies: the trainer and the gate score value and slices with `tasks.model.evaluation`."""
    for name in ("row_values", "business_value", "positive_column", "slice_masks", "slice_auc"):
        assert getattr(gate, name, getattr(evaluation, name)) is getattr(evaluation, name), f"gate.{name}"
    for name in ("row_values", "business_value", "positive_column", "slice_masks", "slice_auc", "acts"):
        assert getattr(train, name) is getattr(evaluation, name), f"train.{name}"
    assert gate.proba_matrix is monitoring.proba_matrix is evaluation.proba_matrix


def test_training_metrics_are_the_evaluators_numbers(churn_spec: DatasetSpec) -> None:
    data, y, proba = _scored(churn_spec)
    m = train.evaluate(data, churn_spec, y, proba)
    y_pos, p_pos = y == 1, proba[:, 1]
    assert m["business_value_per_row"] == business_value(y_pos, p_pos, churn_spec)
    assert m["business_value"] == float(row_values(y_pos, p_pos, churn_spec).sum())
    for name, mask in slice_masks(data, churn_spec).items():
        assert m[f"slice.{name}.rows"] == mask.sum()
        assert m[f"slice.{name}.roc_auc"] == slice_auc(y, proba, mask)


def test_multiclass_value_is_on_the_positive_column() -> None:
    spec = DatasetSpec.model_validate({
        "name": "three", "id_column": "id", "label_column": "k", "classes": ["a", "b", "c"], "positive_class": "b",
        "features": [{"name": "x", "type": "numeric"}], "business_threshold": 0.5,
        "cost_matrix": {"true_positive": 10, "false_positive": -1},
    })
    y = np.array([1, 1, 0, 2])
    proba = np.array([[0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])
    assert evaluation.positive_column(spec) == 1
    m = train.evaluate(pl.DataFrame({"x": [0.0] * 4}), spec, y, proba)
    assert m["business_value"] == 10 - 1 and m["business_value_per_row"] == pytest.approx(9 / 4)


def test_predictions_read_alike_from_pyfunc_output_and_stored_frames(churn_spec: DatasetSpec) -> None:
    fresh = pd.DataFrame({"label": ["yes", "no"], "probability": [0.8, 0.1]})
    stored = pl.DataFrame({"label": ["yes", "no"], "probability": [0.8, 0.1]}, schema_overrides={
        "probability": pl.Float32})
    np.testing.assert_allclose(proba_matrix(fresh, churn_spec), [[0.2, 0.8], [0.9, 0.1]])
    np.testing.assert_allclose(proba_matrix(stored, churn_spec), proba_matrix(fresh, churn_spec), rtol=1e-6)


def test_slices_null_is_outside_and_non_boolean_is_refused(churn_spec: DatasetSpec) -> None:
    df = pl.DataFrame({"senior_citizen": [True, None, False], "contract": ["month-to-month", None, "two-year"],
                       "internet_service": ["fiber", "dsl", None]})
    masks = slice_masks(df, churn_spec)
    assert {k: v.tolist() for k, v in masks.items()} == {
        "senior_citizens": [True, False, False], "month_to_month": [True, False, False],
        "fiber": [True, False, False]}
    assert slice_auc(np.array([1, 0, 1]), np.full((3, 2), 0.5), np.zeros(3, dtype=bool)) is None
    tenure = [{"name": "tenure", "expr": "tenure_months"}]
    bad = DatasetSpec.model_validate({**churn_spec.model_dump(), "slices": tenure})
    frame = pl.DataFrame({"tenure_months": [1, 2, 3]})
    with pytest.raises(SliceError, match="'tenure'.*not boolean"):
        slice_masks(frame, bad)
    with pytest.raises(TrainError, match="'tenure'.*not boolean"):  # training refuses the slice the gate would
        train.evaluate(frame, bad, np.array([0, 1, 0]), np.full((3, 2), 0.5))
