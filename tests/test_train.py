"""XGBoost CV training: every row gets an out-of-fold probability, metrics are real, errors name rows."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from infra.demo.synth import synth_batch
from lakeloop.settings import ROOT, TrainSettings
from lakeloop.spec import DatasetSpec
from tasks.model.features import model_frame
from tasks.model.train import TrainError, class_names, evaluate, train_xgb

FAST = TrainSettings(folds=3, n_estimators=80, early_stopping_rounds=10, n_jobs=1)


@pytest.fixture(scope="module")
def spec() -> DatasetSpec:
    return DatasetSpec.from_yaml(ROOT / "examples" / "churn" / "spec.yaml")


@pytest.fixture(scope="module")
def churn(spec: DatasetSpec):  # type: ignore[no-untyped-def]
    data = synth_batch(3000, seed=21).data.sample(fraction=1.0, shuffle=True, seed=3)  # not in time order
    return data, train_xgb(data, spec, FAST)


def test_binary_oof_metrics_and_final_model(churn, spec: DatasetSpec) -> None:  # type: ignore[no-untyped-def]
    data, r = churn
    n = data.height
    assert r.oof_proba.shape == (n, 2) and np.isfinite(r.oof_proba).all()
    np.testing.assert_allclose(r.oof_proba.sum(axis=1), 1.0, atol=1e-6)
    assert r.ids == data["customer_id"].to_list()  # aligned with the caller's row order
    assert r.class_names == ["no", "yes"] == class_names(spec)
    y = (data["churn"] == "yes").to_numpy().astype(int)
    np.testing.assert_array_equal(r.labels, y)
    assert r.metrics["roc_auc"] == pytest.approx(roc_auc_score(y, r.oof_proba[:, 1]))
    assert 0.7 < r.metrics["roc_auc"] < 0.99
    assert 0 < r.metrics["pr_auc"] < 1 and r.metrics["log_loss"] > 0 and 0 < r.metrics["f1"] < 1
    for s in spec.slices:
        assert 0.5 < r.metrics[f"slice.{s.name}.roc_auc"] <= 1
    assert r.metrics["slice.fiber.rows"] == (data["internet_service"] == "fiber").sum()
    assert "last_block_auc" in r.metrics  # time column present: forward estimate reported
    # business value from the cost matrix at the business threshold
    pred = r.oof_proba[:, 1] >= spec.business_threshold
    cm = spec.cost_matrix
    value = (cm.true_positive * np.sum(pred & (y == 1)) + cm.false_positive * np.sum(pred & (y == 0))
             + cm.false_negative * np.sum(~pred & (y == 1)))
    assert r.metrics["business_value"] == pytest.approx(value)
    # folds partition the rows; the final model uses the mean best iteration
    assert sorted(np.unique(r.fold_of_row).tolist()) == [0, 1, 2]
    assert len(r.fold_metrics) == 3 and len(r.best_iterations) == 3
    assert r.params["n_estimators"] == int(np.ceil(np.mean(r.best_iterations)))
    assert r.model.get_params()["n_estimators"] == r.params["n_estimators"]
    assert r.feature_names == spec.model_features and "email" not in r.feature_names


def test_time_ordered_folds_are_contiguous_per_class(churn, spec: DatasetSpec) -> None:  # type: ignore[no-untyped-def]
    data, r = churn
    t = data["event_time"].to_numpy()
    for cls in (0, 1):
        rows = np.flatnonzero(r.labels == cls)
        order = rows[np.argsort(t[rows], kind="stable")]
        folds = r.fold_of_row[order]
        assert (np.diff(folds) >= 0).all(), "within a class, later rows never fall in an earlier fold"


def test_oof_is_out_of_fold(spec: DatasetSpec) -> None:
    """Pure-noise labels: in-sample fit memorises them, out-of-fold AUC stays near 0.5."""
    data = synth_batch(1500, seed=4).data
    rng = np.random.default_rng(0)
    data = data.with_columns(pl.Series("churn", np.where(rng.random(data.height) < 0.3, "yes", "no")))
    r = train_xgb(data, spec, FAST, params={"max_depth": 8, "learning_rate": 0.3})
    assert abs(r.metrics["roc_auc"] - 0.5) < 0.08


def test_multiclass() -> None:
    spec = DatasetSpec.model_validate({
        "name": "iris-like", "id_column": "id", "label_column": "kind", "classes": ["a", "b", "c"],
        "positive_class": "c",
        "features": [{"name": "x1", "type": "numeric"}, {"name": "x2", "type": "numeric"},
                     {"name": "g", "type": "categorical", "categories": ["u", "v"]}],
        "slices": [{"name": "u_only", "expr": "g = 'u'"}],
    })
    rng = np.random.default_rng(1)
    n = 900
    k = rng.integers(0, 3, n)
    df = pl.DataFrame({"id": [f"i{i}" for i in range(n)], "x1": k + rng.normal(0, 0.7, n),
                       "x2": rng.normal(size=n), "g": rng.choice(["u", "v"], n),
                       "kind": np.array(["a", "b", "c"])[k]})
    r = train_xgb(df, spec, FAST)
    assert r.oof_proba.shape == (n, 3) and r.class_names == ["a", "b", "c"]
    np.testing.assert_array_equal(r.labels, k)
    assert r.metrics["roc_auc"] > 0.8 and "slice.u_only.roc_auc" in r.metrics
    assert "last_block_auc" not in r.metrics
    assert r.example is not None and r.example.columns == spec.model_features
    assert r.model.predict_proba(model_frame(df, spec)).shape == (n, 3)


def test_bad_labels_are_named(spec: DatasetSpec) -> None:
    data = synth_batch(200, seed=1).data
    bad = data.with_columns(pl.when(pl.int_range(pl.len()) == 7).then(pl.lit("maybe"))
                            .otherwise(pl.col("churn")).alias("churn"))
    with pytest.raises(TrainError, match=r"rows \[7\].*maybe"):
        train_xgb(bad, spec, FAST)
    one_class = data.with_columns(pl.lit("no").alias("churn"))
    with pytest.raises(TrainError, match="yes"):
        train_xgb(one_class, spec, FAST)


def test_evaluate_reports_slices_without_enough_rows(spec: DatasetSpec) -> None:
    data = synth_batch(30, seed=2).data
    y = (data["churn"] == "yes").to_numpy().astype(int)
    proba = np.column_stack([1 - y * 0.8, y * 0.8 + 0.1])
    proba = proba / proba.sum(axis=1, keepdims=True)
    m = evaluate(data, spec, y, proba)
    assert "slice.senior_citizens.roc_auc" not in m and m["slice.senior_citizens.rows"] < 20
