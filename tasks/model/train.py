"""Train an XGBoost classifier with cross-validation and keep out-of-fold probabilities.

Every row gets a probability from a model that never saw it (cleanlab needs that to
find label issues), so the folds partition all rows:

* no time column: stratified k-fold, shuffled with the settings' seed;
* with a time column: rows are sorted by time and split with an *unshuffled*
  stratified k-fold, which cuts each class into contiguous time blocks. Each fold's
  model sees the other blocks, past and future. That is what gives every row an
  out-of-fold probability; the price is that CV metrics are not a pure
  forecast-the-future estimate (an expanding window would leave the first block
  without predictions). The metric `last_block_auc` (the latest block, predicted by
  a model trained on the older blocks only) is reported as the honest forward estimate.

Early stopping watches an inner validation split carved out of the training folds
(the most recent 10% when time-ordered, else a stratified 10%), never the held-out
fold, so the out-of-fold numbers are not tuned on. The final model is fit on all
rows with n_estimators = mean best iteration across folds.
"""

from __future__ import annotations

import os

# OpenMP threads spin while waiting by default; on a shared 2-core machine a descheduled
# spinning thread made a 2-thread fit ~10x slower than 1 thread (measured). Passive waiting
# must be set before libgomp loads, i.e. before xgboost is imported anywhere in the process.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import math  # noqa: E402
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from sklearn.metrics import average_precision_score, f1_score, log_loss
from sklearn.model_selection import train_test_split
from xgboost import XGBClassifier

from lakeloop.settings import TrainSettings
from lakeloop.spec import DatasetSpec
from tasks.model.evaluation import SliceError, acts, business_value, positive_column, row_values, slice_auc, slice_masks
from tasks.model.features import encode_labels, model_frame
from tasks.model.folds import TrainError, check_labels, fold_splits, stratified_folds
from tasks.model.metrics import safe_auc

INNER_VALID_SHARE = 0.1
MIN_SLICE_ROWS = 20


@dataclass
class TrainResult:
    model: XGBClassifier
    params: dict[str, Any]
    metrics: dict[str, float]
    oof_proba: np.ndarray  # (n_rows, n_classes), aligned with the input frame's rows
    ids: list[str]  # spec.id_column values, aligned with oof_proba
    labels: np.ndarray  # encoded labels (see features.encode_labels), aligned with oof_proba
    class_names: list[str]  # class of each oof_proba column
    fold_metrics: list[dict[str, float]]
    best_iterations: list[int]
    feature_names: list[str]
    fold_of_row: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    example: pl.DataFrame | None = None  # a few raw training rows (spec features): the MLflow input example


def class_names(spec: DatasetSpec) -> list[str]:
    """Names of the probability columns, matching `encode_labels` (binary: [negative, positive])."""
    if len(spec.classes) == 2:
        negative = next(c for c in spec.classes if c != spec.positive)
        return [negative, spec.positive]
    return list(spec.classes)


def base_params(settings: TrainSettings, n_classes: int) -> dict[str, Any]:
    params: dict[str, Any] = {
        "n_estimators": settings.n_estimators,
        "learning_rate": settings.learning_rate,
        "max_depth": settings.max_depth,
        "tree_method": "hist",
        "enable_categorical": True,
        "max_cat_to_onehot": 8,
        "n_jobs": settings.n_jobs,
        "random_state": settings.seed,
    }
    if n_classes == 2:
        params.update(objective="binary:logistic", eval_metric="logloss")
    else:
        params.update(objective="multi:softprob", eval_metric="mlogloss", num_class=n_classes)
    return params


def _inner_split(train_idx: np.ndarray, y: np.ndarray, seed: int, time_ordered: bool) -> tuple[np.ndarray, np.ndarray]:
    if time_ordered:  # rows are time-sorted: validate on the most recent training rows
        ordered = np.sort(train_idx)
        cut = int(len(ordered) * (1 - INNER_VALID_SHARE))
        fit, valid = ordered[:cut], ordered[cut:]
        if len(np.unique(y[valid])) == len(np.unique(y[train_idx])):
            return fit, valid
    fit, valid = train_test_split(train_idx, test_size=INNER_VALID_SHARE, random_state=seed,
                                  stratify=y[train_idx])
    return np.asarray(fit), np.asarray(valid)


def _fit(X: Any, y: np.ndarray, fit_idx: np.ndarray, valid_idx: np.ndarray | None, params: dict[str, Any],
         early_stopping_rounds: int | None) -> XGBClassifier:
    p = dict(params)
    if valid_idx is not None and early_stopping_rounds:
        p["early_stopping_rounds"] = early_stopping_rounds
    model = XGBClassifier(**p)
    eval_set = [(X.iloc[valid_idx], y[valid_idx])] if valid_idx is not None else None
    model.fit(X.iloc[fit_idx], y[fit_idx], eval_set=eval_set, verbose=False)
    return model


def evaluate(df: pl.DataFrame, spec: DatasetSpec, y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Training's metrics of probabilities `proba` against encoded labels `y` (the out-of-fold report).

    Value and slices come from `tasks.model.evaluation`, so they are the numbers the gate judges.
    """
    n_classes = proba.shape[1]
    eps = 1e-7
    clipped = np.clip(proba, eps, 1 - eps)
    clipped = clipped / clipped.sum(axis=1, keepdims=True)
    metrics: dict[str, float] = {"rows": float(len(y))}
    auc = safe_auc(y, proba)
    if auc is not None:
        metrics["roc_auc"] = auc
    metrics["log_loss"] = float(log_loss(y, clipped, labels=list(range(n_classes))))
    k = positive_column(spec)
    y_pos, p_pos = y == k, proba[:, k]
    if n_classes == 2:
        metrics["pr_auc"] = float(average_precision_score(y, p_pos)) if y.any() else 0.0
        metrics["f1"] = float(f1_score(y, acts(p_pos, spec).astype(np.int64), zero_division=0))
    else:
        onehot = np.eye(n_classes)[y]
        metrics["pr_auc"] = float(average_precision_score(onehot, proba, average="macro"))
        metrics["f1"] = float(f1_score(y, proba.argmax(axis=1), average="macro", zero_division=0))
    metrics["business_value"] = float(row_values(y_pos, p_pos, spec).sum())
    metrics["business_value_per_row"] = business_value(y_pos, p_pos, spec)
    metrics["accuracy"] = float(np.mean(proba.argmax(axis=1) == y))
    try:
        masks = slice_masks(df, spec)
    except SliceError as e:
        raise TrainError(str(e)) from e
    for name, mask in masks.items():
        rows = int(mask.sum())
        metrics[f"slice.{name}.rows"] = float(rows)
        sauc = slice_auc(y, proba, mask) if rows >= MIN_SLICE_ROWS else None
        if sauc is not None:
            metrics[f"slice.{name}.roc_auc"] = sauc
    return metrics


def train_xgb(
    df: pl.DataFrame,
    spec: DatasetSpec,
    settings: TrainSettings | None = None,
    params: dict[str, Any] | None = None,
    *,
    forward_estimate: bool = True,
) -> TrainResult:
    """Cross-validated XGBoost; see the module docstring for the fold scheme.

    `forward_estimate=False` skips the extra time-ordered fit behind `last_block_auc`.
    """
    s = settings or TrainSettings()
    if df.height == 0:
        raise TrainError("cannot train on an empty frame")
    check_labels(df, spec)
    time_ordered = spec.time_column is not None and spec.time_column in df.columns
    order = np.arange(df.height)
    if time_ordered:
        assert spec.time_column is not None
        order = df.select(pl.arg_sort_by(pl.col(spec.time_column), maintain_order=True)).to_series().to_numpy()
    work = df[order] if time_ordered else df

    X = model_frame(work, spec)
    y = encode_labels(work, spec)
    names = class_names(spec)
    n_classes = len(names)
    if len(np.unique(y)) < n_classes:
        missing = [names[i] for i in range(n_classes) if i not in set(np.unique(y).tolist())]
        raise TrainError(f"label column {spec.label_column!r}: no rows of class(es) {missing}")
    p = {**base_params(s, n_classes), **(params or {})}

    oof = np.full((df.height, n_classes), np.nan)
    fold_of_row = np.full(df.height, -1, dtype=np.int64)
    fold_metrics: list[dict[str, float]] = []
    best: list[int] = []
    folds = fold_splits(stratified_folds(y, s.folds, s.seed, time_ordered=time_ordered))
    for k, (train_idx, test_idx) in enumerate(folds):
        fit_idx, valid_idx = _inner_split(train_idx, y, s.seed + k, time_ordered)
        model = _fit(X, y, fit_idx, valid_idx, p, s.early_stopping_rounds)
        bi = getattr(model, "best_iteration", None)
        best.append(int(bi) + 1 if bi is not None else int(p["n_estimators"]))
        proba = model.predict_proba(X.iloc[test_idx])
        oof[test_idx] = proba
        fold_of_row[test_idx] = k
        fm = {"fold": float(k), "rows": float(len(test_idx)), "best_iteration": float(best[-1]),
              "log_loss": float(log_loss(y[test_idx], np.clip(proba, 1e-7, 1), labels=list(range(n_classes))))}
        auc = safe_auc(y[test_idx], proba)
        if auc is not None:
            fm["roc_auc"] = auc
        fold_metrics.append(fm)
    if np.isnan(oof).any():
        raise TrainError("internal: some rows got no out-of-fold probability")

    metrics = evaluate(work, spec, y, oof)
    metrics["cv_folds"] = float(s.folds)
    metrics["best_iteration_mean"] = float(np.mean(best))
    if time_ordered and forward_estimate:
        metrics.update(_last_block_metrics(X, y, p, s, n_classes))

    final_params = {**p, "n_estimators": max(1, int(math.ceil(np.mean(best))))}
    final = _fit(X, y, np.arange(len(y)), None, final_params, None)

    # back to the caller's row order
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    ids = work.get_column(spec.id_column).cast(pl.Utf8).to_list() if spec.id_column in work.columns else []
    return TrainResult(
        model=final,
        params=final_params,
        metrics=metrics,
        oof_proba=oof[inverse],
        ids=[ids[i] for i in inverse] if ids else [],
        labels=y[inverse],
        class_names=names,
        fold_metrics=fold_metrics,
        best_iterations=best,
        feature_names=list(X.columns),
        fold_of_row=fold_of_row[inverse],
        example=work.head(5).select(spec.model_features),
    )


def _last_block_metrics(X: Any, y: np.ndarray, params: dict[str, Any], s: TrainSettings,
                        n_classes: int) -> dict[str, float]:
    """Forward estimate: train on the oldest (k-1)/k of rows, score the newest 1/k."""
    n = len(y)
    cut = int(n * (s.folds - 1) / s.folds)
    train_idx, test_idx = np.arange(cut), np.arange(cut, n)
    if len(np.unique(y[train_idx])) < n_classes:
        return {}
    fit_idx, valid_idx = _inner_split(train_idx, y, s.seed, True)
    model = _fit(X, y, fit_idx, valid_idx, params, s.early_stopping_rounds)
    auc = safe_auc(y[test_idx], model.predict_proba(X.iloc[test_idx]))
    return {} if auc is None else {"last_block_auc": auc}
