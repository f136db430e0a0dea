"""Candidate models for a voted ensemble, all scored on the same out-of-fold predictions.

Why shared folds: ensemble weights and the ensemble's CV AUC are computed from
the members' out-of-fold (OOF) probabilities. If every member uses the same
stratified folds, each OOF prediction comes from a model that never saw that
row, so the vote's CV AUC is leakage-free and comparable with each member's.

Members: an Optuna-tuned XGBoost (trial *and* time budget; no early stopping,
so the validation fold never chooses the number of trees), diverse XGBoost
variants (other seeds with row/column subsampling, shallow trees, a random
feature subset) and a scaled logistic regression as a non-tree baseline. Every
run is nested under one parent MLflow run carrying the lakeFS lineage tags.
"""

from __future__ import annotations

import os

# Passive OpenMP waiting must be set before xgboost loads libgomp (see tasks/model/train.py: spinning
# threads made multi-threaded fits ~10x slower on the shared 2-core machine).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import mlflow
import numpy as np
import polars as pl
import xgboost as xgb
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from lakeloop.adapters.mlflow_tracking import Lineage
from lakeloop.spec import DatasetSpec
from tasks.model.features import encode_labels, model_frame, numeric_matrix
from tasks.model.folds import check_labels, stratified_folds
from tasks.model.metrics import auc_score  # re-exported: callers score members with it

if TYPE_CHECKING:  # imported where a search runs: it costs every flow process's start-up otherwise
    import optuna

MemberKind = Literal["xgboost", "logreg"]


@dataclass(frozen=True)
class MemberConfig:
    """What to train: a kind, its hyperparameters and the features it may use."""

    name: str
    kind: MemberKind
    params: dict[str, Any]
    features: tuple[str, ...]


@dataclass
class Member:
    """A trained candidate: OOF probabilities (n, k) on the shared folds plus the model fitted on all rows."""

    name: str
    kind: MemberKind
    params: dict[str, Any]
    features: list[str]
    oof: np.ndarray
    cv_auc: float
    model: Any  # xgb.Booster (xgboost) or sklearn Pipeline (logreg)
    fit_seconds: float = 0.0
    run_id: str | None = None


@dataclass
class CandidateSet:
    spec: DatasetSpec
    frame: pl.DataFrame  # the training rows (for input examples)
    y: np.ndarray
    folds: np.ndarray  # fold id per row
    members: list[Member]
    lineage: Lineage
    parent_run_id: str | None
    best_params: dict[str, Any] = field(default_factory=dict)
    trials: int = 0

    def member(self, name: str) -> Member:
        for m in self.members:
            if m.name == name:
                return m
        raise KeyError(f"no candidate member named {name!r}; have {[m.name for m in self.members]}")


def _subspec(spec: DatasetSpec, features: tuple[str, ...] | list[str]) -> DatasetSpec:
    keep = set(features)
    return spec.model_copy(update={"features": [f for f in spec.features if f.name in keep]})


# ---- fitting ------------------------------------------------------------------------
LINEAR_BLAS_THREADS = 1
"""BLAS threads for the linear member. Its matrix has tens of columns, so a second BLAS thread buys
nothing, while OpenBLAS's spin-waiting threads on the shared 2-core machine made the committee's three
logistic fits take 7 s instead of 2 s at 100k rows (bench_train); probabilities differ by ~1e-15."""


def _xgb_params(params: dict[str, Any], n_classes: int, n_jobs: int) -> tuple[dict[str, Any], int]:
    p = dict(params)
    rounds = int(p.pop("n_estimators", 200))
    base: dict[str, Any] = {"tree_method": "hist", "nthread": n_jobs, "verbosity": 0}
    if n_classes == 2:
        base.update(objective="binary:logistic", eval_metric="auc")
    else:
        base.update(objective="multi:softprob", num_class=n_classes, eval_metric="mlogloss")
    base.update(p)
    if "random_state" in base:
        base["seed"] = base.pop("random_state")
    return base, rounds


def fit_model(cfg: MemberConfig, df: pl.DataFrame, y: np.ndarray, spec: DatasetSpec,
              n_classes: int, n_jobs: int = 2) -> Any:
    """Fit one member on all of `df` (the final model shipped in the ensemble)."""
    sub = _subspec(spec, cfg.features)
    if cfg.kind == "xgboost":
        params, rounds = _xgb_params(cfg.params, n_classes, n_jobs)
        dtrain = xgb.DMatrix(model_frame(df, sub), label=y, enable_categorical=True, nthread=n_jobs)
        return xgb.train(params, dtrain, num_boost_round=rounds)
    if cfg.kind == "logreg":
        pipe: Pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, **cfg.params))
        X = numeric_matrix(df, sub)
        with threadpool_limits(LINEAR_BLAS_THREADS, user_api="blas"):
            pipe.fit(X, y)
        return pipe
    raise ValueError(f"member {cfg.name!r}: unknown kind {cfg.kind!r}")


def predict_proba(cfg: MemberConfig, model: Any, df: pl.DataFrame, spec: DatasetSpec, n_classes: int) -> np.ndarray:
    """(n, k) class probabilities of a fitted member on polars rows, via `tasks.model.features`."""
    sub = _subspec(spec, cfg.features)
    if cfg.kind == "xgboost":
        raw = np.asarray(model.inplace_predict(model_frame(df, sub)), dtype="float64")
    else:
        X = numeric_matrix(df, sub)
        with threadpool_limits(LINEAR_BLAS_THREADS, user_api="blas"):
            raw = np.asarray(model.predict_proba(X), dtype="float64")
    return np.column_stack([1.0 - raw, raw]) if raw.ndim == 1 else raw


def oof_proba(cfg: MemberConfig, df: pl.DataFrame, y: np.ndarray, folds: np.ndarray, spec: DatasetSpec,
              n_classes: int, n_jobs: int = 2, on_fold: Any = None) -> np.ndarray:
    """Out-of-fold probabilities: row i is predicted by the model trained without fold(i)."""
    oof = np.zeros((len(y), n_classes))
    for f in range(int(folds.max()) + 1):
        tr, va = np.flatnonzero(folds != f), np.flatnonzero(folds == f)
        model = fit_model(cfg, df[tr], y[tr], spec, n_classes, n_jobs)
        oof[va] = predict_proba(cfg, model, df[va], spec, n_classes)
        if on_fold is not None:
            on_fold(f, auc_score(y[va], oof[va]))
    return oof


def train_member(cfg: MemberConfig, df: pl.DataFrame, y: np.ndarray, folds: np.ndarray, spec: DatasetSpec,
                 n_jobs: int = 2) -> Member:
    n_classes = len(spec.classes)
    t0 = time.perf_counter()
    oof = oof_proba(cfg, df, y, folds, spec, n_classes, n_jobs)
    model = fit_model(cfg, df, y, spec, n_classes, n_jobs)
    return Member(name=cfg.name, kind=cfg.kind, params=dict(cfg.params), features=list(cfg.features),
                  oof=oof, cv_auc=auc_score(y, oof), model=model, fit_seconds=time.perf_counter() - t0)


# ---- search -------------------------------------------------------------------------
def _suggest(trial: optuna.Trial, seed: int) -> dict[str, Any]:
    return {
        "n_estimators": trial.suggest_int("n_estimators", 50, 400, step=25),
        "max_depth": trial.suggest_int("max_depth", 2, 7),
        "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.3, log=True),
        "min_child_weight": trial.suggest_float("min_child_weight", 0.5, 20.0, log=True),
        "subsample": trial.suggest_float("subsample", 0.6, 1.0),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.5, 1.0),
        "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 10.0, log=True),
        "random_state": seed,
    }


def tune_xgboost(df: pl.DataFrame, y: np.ndarray, folds: np.ndarray, spec: DatasetSpec, *,
                 n_trials: int, timeout_s: float, seed: int = 42, n_jobs: int = 2) -> optuna.Study:
    """Optuna TPE search maximising OOF AUC; stops at `n_trials` or `timeout_s`, whichever comes first.

    Intermediate fold AUCs feed a median pruner, so hopeless trials stop early and the
    time budget buys more trials. The first trial is the settings' default XGBoost.
    """
    import optuna

    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    feats = tuple(spec.model_features)
    n_classes = len(spec.classes)

    def objective(trial: optuna.Trial) -> float:
        params = _suggest(trial, seed)
        cfg = MemberConfig("trial", "xgboost", params, feats)
        running: list[float] = []

        def on_fold(f: int, auc: float) -> None:
            running.append(auc)
            trial.report(float(np.mean(running)), f)
            if trial.should_prune():
                raise optuna.TrialPruned()

        oof = oof_proba(cfg, df, y, folds, spec, n_classes, n_jobs, on_fold)
        return auc_score(y, oof)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
    )
    study.enqueue_trial({"n_estimators": 200, "max_depth": 5, "learning_rate": 0.08, "min_child_weight": 1.0,
                         "subsample": 1.0, "colsample_bytree": 1.0, "reg_lambda": 1.0})
    study.optimize(objective, n_trials=n_trials, timeout=timeout_s)
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        raise RuntimeError(f"no Optuna trial completed within {timeout_s}s / {n_trials} trials")
    return study


def member_configs(spec: DatasetSpec, best: dict[str, Any], *, seed: int = 42,
                   n_seeds: int = 2, subset_share: float = 0.6) -> list[MemberConfig]:
    """The diverse line-up built around the tuned parameters."""
    feats = tuple(spec.model_features)
    rng = np.random.default_rng(seed)
    tuned = {**best, "random_state": seed}
    configs = [MemberConfig("xgb_tuned", "xgboost", tuned, feats)]
    for i in range(1, n_seeds + 1):
        configs.append(MemberConfig(f"xgb_seed{i}", "xgboost", {
            **best, "random_state": seed + 1000 * i,
            "subsample": min(float(best.get("subsample", 1.0)), 0.8),
            "colsample_bytree": min(float(best.get("colsample_bytree", 1.0)), 0.8),
        }, feats))
    configs.append(MemberConfig("xgb_shallow", "xgboost", {
        **best, "max_depth": 2, "n_estimators": max(int(best.get("n_estimators", 200)), 300),
        "learning_rate": 0.1, "random_state": seed,
    }, feats))
    if len(feats) >= 3:
        k = max(2, round(len(feats) * subset_share))
        subset = tuple(sorted(rng.choice(len(feats), size=k, replace=False)))
        configs.append(MemberConfig("xgb_subset", "xgboost", {**tuned, "colsample_bytree": 1.0},
                                    tuple(feats[i] for i in subset)))
    configs.append(MemberConfig("logreg", "logreg", {"C": 1.0}, feats))
    return configs


# ---- orchestration ------------------------------------------------------------------
def build_candidates(
    df: pl.DataFrame,
    spec: DatasetSpec,
    lineage: Lineage,
    *,
    n_trials: int = 30,
    timeout_s: float = 300.0,
    n_folds: int = 5,
    seed: int = 42,
    n_jobs: int = 2,
    configs: list[MemberConfig] | None = None,
    experiment: str | None = None,
    log_to_mlflow: bool = True,
) -> CandidateSet:
    """Tune, train every member on shared folds, and log all of it under one parent MLflow run.

    `df` holds validated rows with the spec's label column; rows with a null or
    unknown label are refused (with their positions), not dropped.
    `configs` overrides the default line-up (the tuned parameters are still searched first).
    """
    check_labels(df, spec)
    y = encode_labels(df, spec)
    folds = stratified_folds(y, n_folds, seed)
    if experiment:
        mlflow.set_experiment(experiment)
    parent_id: str | None = None
    members: list[Member] = []
    t0 = time.perf_counter()
    run_ctx = mlflow.start_run(run_name=f"candidates-{lineage.commit_id[:12]}", tags={
        **lineage.tags(), "lakeloop.kind": "candidates"}) if log_to_mlflow else None
    try:
        if run_ctx is not None:
            parent_id = run_ctx.info.run_id
            mlflow.log_params({"n_rows": df.height, "n_folds": n_folds, "seed": seed,
                               "n_trials_budget": n_trials, "timeout_s_budget": timeout_s})
        study = tune_xgboost(df, y, folds, spec, n_trials=n_trials, timeout_s=timeout_s, seed=seed, n_jobs=n_jobs)
        best = {k: v for k, v in study.best_params.items()}
        if run_ctx is not None:
            _log_study(study, lineage)
        for cfg in configs or member_configs(spec, best, seed=seed):
            member = train_member(cfg, df, y, folds, spec, n_jobs)
            if run_ctx is not None:
                member.run_id = _log_member(member, lineage)
            members.append(member)
        if run_ctx is not None:
            mlflow.log_metrics({f"member.{m.name}.cv_auc": m.cv_auc for m in members})
            mlflow.log_metric("candidates.seconds", time.perf_counter() - t0)
    except BaseException:
        if run_ctx is not None:
            mlflow.end_run(status="FAILED")
        raise
    if run_ctx is not None:
        mlflow.end_run()
    return CandidateSet(spec=spec, frame=df, y=y, folds=folds, members=members, lineage=lineage,
                        parent_run_id=parent_id, best_params=best, trials=len(study.trials))


def _log_study(study: optuna.Study, lineage: Lineage) -> None:
    import optuna

    with mlflow.start_run(run_name="optuna-xgboost", nested=True, tags={**lineage.tags(), "lakeloop.kind": "search"}):
        mlflow.log_params({f"best.{k}": v for k, v in study.best_params.items()})
        states = [t.state for t in study.trials]
        mlflow.log_metrics({
            "best_cv_auc": float(study.best_value),
            "trials_complete": float(sum(s == optuna.trial.TrialState.COMPLETE for s in states)),
            "trials_pruned": float(sum(s == optuna.trial.TrialState.PRUNED for s in states)),
        })
        for t in study.trials:
            if t.value is not None:
                mlflow.log_metric("trial_cv_auc", float(t.value), step=t.number)


def _log_member(member: Member, lineage: Lineage) -> str:
    with mlflow.start_run(run_name=member.name, nested=True,
                          tags={**lineage.tags(), "lakeloop.kind": "member", "member.kind": member.kind}) as run:
        mlflow.log_params({**{k: v for k, v in member.params.items()}, "kind": member.kind,
                           "features": ",".join(member.features)})
        mlflow.log_metrics({"cv_auc": member.cv_auc, "fit_seconds": member.fit_seconds})
        return str(run.info.run_id)
