"""Paired bootstrap evidence: is model A not worse than model B on the same rows?

Why a paired bootstrap instead of a fixed tolerance: the noise in an AUC
difference depends on the rows (how many, how hard, how correlated the two
models are). Resampling the *same* rows for both models gives a confidence
interval for the difference itself, so "not worse" becomes a statement with
evidence (the interval's lower bound), and the interval is stored with the
model version. AUC is binary (positive class against the rest), computed from
average ranks, so ties count half as in the Mann-Whitney statistic.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel
from scipy.stats import rankdata


class Interval(BaseModel):
    """A point estimate with its two-sided bootstrap percentile interval."""

    estimate: float
    low: float
    high: float
    confidence: float
    resamples: int

    def __str__(self) -> str:
        return f"{self.estimate:+.4f} [{self.low:+.4f}, {self.high:+.4f}]"


def resample_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n) row indices drawn with replacement; fixed by `seed` so a gate run is reproducible."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def auc_rows(y: np.ndarray, score: np.ndarray) -> np.ndarray:
    """AUC of each row of (r, n) labels `y` (bool) and scores; NaN where a row holds one class only."""
    ranks = rankdata(score, axis=1)
    n_pos = y.sum(axis=1)
    n_neg = y.shape[1] - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = ((ranks * y).sum(axis=1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


def _interval(point: float, samples: np.ndarray, confidence: float) -> Interval:
    samples = samples[~np.isnan(samples)]
    alpha = (1 - confidence) / 2
    low, high = (np.quantile(samples, [alpha, 1 - alpha]) if samples.size else (np.nan, np.nan))
    return Interval(estimate=point, low=float(low), high=float(high), confidence=confidence,
                    resamples=int(samples.size))


def auc_interval(y: np.ndarray, score: np.ndarray, idx: np.ndarray, confidence: float) -> Interval:
    """AUC of one model, with its interval (is there any signal at all: is `low` above 0.5?)."""
    point = float(auc_rows(y[None, :], score[None, :])[0])
    return _interval(point, auc_rows(y[idx], score[idx]), confidence)


def auc_difference(y: np.ndarray, score_a: np.ndarray, score_b: np.ndarray, idx: np.ndarray,
                   confidence: float) -> Interval:
    """AUC(a) - AUC(b) on the same rows, each resample scoring both models on the same rows."""
    point = float(auc_rows(y[None, :], score_a[None, :])[0] - auc_rows(y[None, :], score_b[None, :])[0])
    yy = y[idx]
    return _interval(point, auc_rows(yy, score_a[idx]) - auc_rows(yy, score_b[idx]), confidence)


def mean_difference(values_a: np.ndarray, values_b: np.ndarray, idx: np.ndarray, confidence: float) -> Interval:
    """Mean per-row value of a minus b (e.g. business value per row), paired on the same rows."""
    d = values_a - values_b
    return _interval(float(d.mean()) if d.size else float("nan"), d[idx].mean(axis=1), confidence)
