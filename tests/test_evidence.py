"""Paired bootstrap evidence: point estimates agree with sklearn, intervals mean what they say."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from tasks.model.evidence import auc_difference, auc_interval, auc_rows, mean_difference, resample_indices


def _data(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.3
    score = y * 0.8 + rng.normal(size=n)  # informative, AUC ~0.7
    return y, score


def test_auc_rows_matches_sklearn_with_ties() -> None:
    y, score = _data()
    rounded = np.round(score, 1)  # many ties
    assert auc_rows(y[None, :], rounded[None, :])[0] == pytest.approx(roc_auc_score(y, rounded))
    assert np.isnan(auc_rows(np.zeros((1, 5), dtype=bool), np.arange(5.0)[None, :])[0])


def test_identical_models_differ_by_exactly_zero() -> None:
    y, score = _data()
    iv = auc_difference(y, score, score, resample_indices(len(y), 200, 1), 0.95)
    assert iv.estimate == iv.low == iv.high == 0.0


def test_a_better_model_has_a_positive_lower_bound_and_a_worse_one_a_negative_upper_bound() -> None:
    y, score = _data()
    noisy = score + np.random.default_rng(3).normal(scale=2.0, size=len(y))
    idx = resample_indices(len(y), 500, 2)
    better = auc_difference(y, score, noisy, idx, 0.95)
    assert better.low > 0 and better.estimate == pytest.approx(roc_auc_score(y, score) - roc_auc_score(y, noisy))
    assert auc_difference(y, noisy, score, idx, 0.95).high < 0


def test_shuffled_labels_carry_no_signal() -> None:
    y, score = _data(600)
    shuffled = np.random.default_rng(4).permutation(y)
    idx = resample_indices(len(y), 500, 5)
    assert auc_interval(shuffled, score, idx, 0.95).low < 0.5 < auc_interval(y, score, idx, 0.95).low


def test_interval_covers_the_truth_about_as_often_as_it_says() -> None:
    """Coverage of the paired mean difference over repeated draws (the interval is not a constant)."""
    rng = np.random.default_rng(9)
    hits = 0
    for i in range(200):
        a, b = rng.normal(0.1, 1, 300), rng.normal(0.0, 1, 300)
        iv = mean_difference(a, b, resample_indices(300, 300, i), 0.9)
        hits += iv.low <= 0.1 <= iv.high
    assert 0.8 <= hits / 200 <= 0.97
