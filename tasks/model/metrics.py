"""ROC AUC of class-probability matrices, the one definition every trainer, gate and monitor scores with.

Why here: the single-model trainer, the candidate ensemble, the promotion gate and
the performance monitor must agree on what "AUC" means (binary on the positive
column, multiclass one-vs-rest macro) or their numbers would not be comparable.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def auc_score(y: np.ndarray, proba: np.ndarray) -> float:
    """ROC AUC for (n, k) probabilities: binary on column 1, multiclass one-vs-rest macro."""
    if proba.ndim == 1:
        return float(roc_auc_score(y, proba))
    if proba.shape[1] == 2:
        return float(roc_auc_score(y, proba[:, 1]))
    return float(roc_auc_score(y, proba, multi_class="ovr", labels=list(range(proba.shape[1]))))


def safe_auc(y: np.ndarray, proba: np.ndarray) -> float | None:
    """`auc_score`, or None where AUC is undefined (a single class; multiclass with a class absent).

    For folds, slices and evaluation sets that may be too small to hold every class.
    """
    present = len(np.unique(y))
    if present < 2:
        return None
    if proba.shape[1] > 2 and present < proba.shape[1]:
        return None
    return auc_score(y, proba)
