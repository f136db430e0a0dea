"""What lakeloop adds around `xgboost.train`: `train_xgb` end to end vs bare XGBoost doing the same fits.

Side by side in one run, repeated (median), on synthetic churn data (`infra.demo.synth`):

* product: `train_xgb(frame, spec, settings)` as `retrain` calls it (time order, encoding,
  stratified folds, early stopping on an inner split, out-of-fold probabilities, metrics and
  slices, the forward-estimate fit, the final fit);
* bare: the same boosters with `xgboost.train` on the same encoded matrix, parameters, folds,
  inner splits and rounds (`QuantileDMatrix` with the training matrix as the reference of its
  validation matrix, as XGBClassifier builds them), predicting each held-out fold.

The bare out-of-fold probabilities must equal the product's, so both trained the same models.
`train.overhead_vs_xgboost` is product wall / bare wall (CPU beside it); the breakdown times each
extra step alone on the same data, and `explained_overhead_vs_xgboost` adds those to the bare fits,
which is steadier than the wall-clock ratio when other work shares the cores. The committee (the
review's linear model on the same folds) and the OOF frame are timed too, beside the ratio: they
are extra models and artifacts of `retrain`, not overhead of a fit. MLflow logging is not timed
here (it needs a tracking server).
Run: `python -m bench.bench_train [--rows N] [--repeats R]`.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as tasks.model.train sets it, before xgboost loads

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
import xgboost as xgb  # noqa: E402

from bench.results_io import record  # noqa: E402
from infra.demo.synth import synth_batch  # noqa: E402
from lakeloop.settings import TrainSettings  # noqa: E402
from lakeloop.spec import DatasetSpec  # noqa: E402
from tasks.labels.review_committee import score_committee  # noqa: E402
from tasks.model import candidates  # noqa: E402
from tasks.model.features import encode_labels, model_frame  # noqa: E402
from tasks.model.folds import check_labels, fold_splits, stratified_folds  # noqa: E402
from tasks.model.train import _inner_split, base_params, evaluate, train_xgb  # noqa: E402
from tasks.model.training_run import oof_frame  # noqa: E402

SPEC_PATH = Path(__file__).resolve().parents[1] / "examples" / "churn" / "spec.yaml"

Plan = list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # (fit rows, early-stopping rows, predicted rows)


def time_order(df: pl.DataFrame, spec: DatasetSpec) -> pl.DataFrame:
    assert spec.time_column is not None
    order = df.select(pl.arg_sort_by(pl.col(spec.time_column), maintain_order=True)).to_series().to_numpy()
    return df[order]


def fit_plan(y: np.ndarray, s: TrainSettings) -> tuple[Plan, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The product's folds and inner splits (time-ordered), and its forward-estimate split."""
    plan: Plan = []
    for k, (train_idx, test_idx) in enumerate(fold_splits(stratified_folds(y, s.folds, s.seed, time_ordered=True))):
        fit_idx, valid_idx = _inner_split(train_idx, y, s.seed + k, True)
        plan.append((fit_idx, valid_idx, test_idx))
    cut = int(len(y) * (s.folds - 1) / s.folds)
    fit_idx, valid_idx = _inner_split(np.arange(cut), y, s.seed, True)
    return plan, (fit_idx, valid_idx, np.arange(cut, len(y)))


def bare_xgboost(X: Any, y: np.ndarray, plan: Plan, last: tuple[np.ndarray, np.ndarray, np.ndarray],
                 params: dict[str, Any], s: TrainSettings) -> tuple[np.ndarray, list[int], float]:
    """The product's boosters with xgboost.train only: folds, forward estimate, final fit.

    Returns the out-of-fold probabilities, best rounds per fold, and the forward-estimate fit's seconds."""
    native = xgb.XGBClassifier(**params).get_xgb_params()
    rounds = int(params["n_estimators"])

    def fit(fit_idx: np.ndarray, valid_idx: np.ndarray | None, n_rounds: int) -> xgb.Booster:
        dtrain = xgb.QuantileDMatrix(X.iloc[fit_idx], y[fit_idx], enable_categorical=True, nthread=s.n_jobs)
        evals = []
        if valid_idx is not None:
            evals = [(xgb.QuantileDMatrix(X.iloc[valid_idx], y[valid_idx], ref=dtrain, enable_categorical=True,
                                          nthread=s.n_jobs), "validation_0")]
        return xgb.train(native, dtrain, n_rounds, evals=evals, verbose_eval=False,
                         early_stopping_rounds=s.early_stopping_rounds if valid_idx is not None else None)

    def predict(booster: xgb.Booster, idx: np.ndarray) -> np.ndarray:
        p = booster.inplace_predict(X.iloc[idx], iteration_range=(0, booster.best_iteration + 1))
        return np.column_stack([1 - p, p])

    oof = np.full((len(y), 2), np.nan)
    best: list[int] = []
    for fit_idx, valid_idx, test_idx in plan:
        booster = fit(fit_idx, valid_idx, rounds)
        best.append(booster.best_iteration + 1)
        oof[test_idx] = predict(booster, test_idx)
    t0 = time.perf_counter()
    predict(fit(last[0], last[1], rounds), last[2])
    forward_s = time.perf_counter() - t0
    fit(np.arange(len(y)), None, max(1, int(math.ceil(np.mean(best)))))
    return oof, best, forward_s


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def timed_cpu(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall and CPU seconds (all threads of this process: xgboost's OpenMP threads count)."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t0, time.process_time() - c0, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--n-estimators", type=int, default=120)
    ap.add_argument("--learning-rate", type=float, default=0.2)
    a = ap.parse_args(argv)
    spec = DatasetSpec.from_yaml(SPEC_PATH)
    s = TrainSettings(folds=a.folds, n_estimators=a.n_estimators, learning_rate=a.learning_rate)
    df = synth_batch(a.rows, seed=7).data

    work = time_order(df, spec)
    X, y = model_frame(work, spec), encode_labels(work, spec)
    params = base_params(s, 2)
    plan, last = fit_plan(y, s)

    small = df.head(3000)  # warm-up: first-call imports and allocations are not what either side costs
    small_work = time_order(small, spec)
    small_y = encode_labels(small_work, spec)
    train_xgb(small, spec, s)
    bare_xgboost(model_frame(small_work, spec), small_y, *fit_plan(small_y, s), params, s)

    product_s: list[float] = []
    bare_s: list[float] = []
    product_cpu: list[float] = []
    bare_cpu: list[float] = []
    forward_s: list[float] = []
    result = None
    bare_oof = np.empty(0)
    for _ in range(a.repeats):  # interleaved, so load changes hit both sides alike
        t, c, result = timed_cpu(lambda: train_xgb(df, spec, s))
        product_s.append(t)
        product_cpu.append(c)
        t, c, (bare_oof, bare_best, fwd) = timed_cpu(lambda: bare_xgboost(X, y, plan, last, params, s))
        bare_s.append(t)
        bare_cpu.append(c)
        forward_s.append(fwd)
    assert result is not None
    order = work.get_column(spec.id_column).cast(pl.Utf8).to_list()
    position = {v: i for i, v in enumerate(result.ids)}
    product_oof_in_time_order = result.oof_proba[[position[v] for v in order]]
    same = bool(np.array_equal(product_oof_in_time_order, bare_oof)) and result.best_iterations == bare_best
    max_diff = float(np.abs(product_oof_in_time_order - bare_oof).max())

    # each extra step alone, on the same data (median of the repeats)
    def med(fn: Callable[[], Any]) -> float:
        return statistics.median(timed(fn)[0] for _ in range(a.repeats))

    breakdown = {
        "check_labels_s": med(lambda: check_labels(df, spec)),
        "time_order_s": med(lambda: time_order(df, spec)),
        "encode_s": med(lambda: (model_frame(work, spec), encode_labels(work, spec))),
        "folds_s": med(lambda: fit_plan(y, s)),
        "metrics_s": med(lambda: evaluate(work, spec, y, bare_oof)),
    }
    product, bare = statistics.median(product_s), statistics.median(bare_s)
    explained = sum(breakdown.values())
    breakdown["unexplained_s"] = product - bare - explained
    committee_s = med(lambda: score_committee(result, df, spec))
    candidates.LINEAR_BLAS_THREADS = None  # side by side: the linear member as it ran before, BLAS unlimited
    committee_unlimited_s = med(lambda: score_committee(result, df, spec))
    candidates.LINEAR_BLAS_THREADS = 1
    oof_frame_s = med(lambda: oof_frame(result, df, spec))

    figures: dict[str, Any] = {
        "rows": a.rows,
        "folds": a.folds,
        "n_estimators": a.n_estimators,
        "repeats": a.repeats,
        "product_s": round(product, 3),
        "bare_xgboost_s": round(bare, 3),
        "overhead_vs_xgboost": round(product / bare, 4),
        "product_cpu_s": round(statistics.median(product_cpu), 3),
        "bare_xgboost_cpu_s": round(statistics.median(bare_cpu), 3),
        "overhead_cpu_vs_xgboost": round(statistics.median(product_cpu) / statistics.median(bare_cpu), 4),
        "extra_s": round(product - bare, 3),
        # the steps timed alone, over the bare fits: the overhead without the wall clock's noise on a shared machine
        "explained_overhead_vs_xgboost": round((bare + explained) / bare, 4),
        "forward_estimate_fit_s": round(statistics.median(forward_s), 3),
        "breakdown_s": {k: round(v, 4) for k, v in breakdown.items()},
        "same_oof": int(same),
        "oof_max_abs_diff": max_diff,
        "committee_s": round(committee_s, 3),
        "committee_blas_unlimited_s": round(committee_unlimited_s, 3),
        "oof_frame_s": round(oof_frame_s, 3),
        "with_committee_vs_xgboost": round((product + committee_s + oof_frame_s) / bare, 4),
        "goal": 1.10,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "cores": os.cpu_count(),
    }
    print(f"{a.rows:,} rows, {a.folds} folds, {a.n_estimators} rounds max, {a.repeats} repeats "
          f"(load {figures['load_avg_1m']}, {figures['cores']} cores)")
    print(f"  train_xgb        : {product:7.2f} s  (runs {[round(t, 2) for t in product_s]})")
    print(f"  bare xgboost     : {bare:7.2f} s  (runs {[round(t, 2) for t in bare_s]})")
    print(f"  CPU              : {figures['product_cpu_s']:.2f} s vs {figures['bare_xgboost_cpu_s']:.2f} s "
          f"= {figures['overhead_cpu_vs_xgboost']:.3f}x")
    print(f"  (both include the forward-estimate booster: {statistics.median(forward_s):.2f} s)")
    print(f"  overhead         : {product / bare:7.3f}x (goal <= 1.10); same OOF: {same} (max diff {max_diff:.2g})")
    for k, v in breakdown.items():
        print(f"    {k:<16} {v:7.3f} s")
    print(f"  steps timed alone over the bare fits: {figures['explained_overhead_vs_xgboost']:.3f}x")
    print(f"  committee {committee_s:.2f} s (BLAS threads unlimited: {committee_unlimited_s:.2f} s), "
          f"oof frame {oof_frame_s:.2f} s: {figures['with_committee_vs_xgboost']:.3f}x with them")
    print(f"wrote {record('train', figures)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
