"""What a training run logs to MLflow: params, metrics, the model as a pyfunc, the training profile,
the drift report and out-of-fold probabilities, then a registered version carrying the lineage.

The model is the one lakeloop pyfunc (`tasks.model.pyfunc`) with the classifier as its only
member, so single models and ensembles share one output contract and one loader."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import numpy as np
import polars as pl
from mlflow.exceptions import MlflowException

from lakeloop.adapters.mlflow_tracking import (
    MODEL_ARTIFACT_PATH,
    TAG_CODE_VERSION,
    TAG_TRIGGER,
    Lineage,
    ModelRecord,
    TrackingError,
    client,
    experiment_id,
)
from lakeloop.code_version import code_version
from lakeloop.settings import MLflowSettings, get_settings
from lakeloop.spec import DatasetSpec
from tasks.data.drift import DriftReport
from tasks.data.profiling import from_bytes, summarize
from tasks.model.candidates import Member
from tasks.model.ensemble import single_member_plan
from tasks.model.model_logging import log_oof, log_pyfunc
from tasks.model.train import TrainResult


def oof_frame(result: TrainResult, data: pl.DataFrame, spec: DatasetSpec) -> pl.DataFrame:
    """Out-of-fold probabilities with ids and observed labels, one row per training row (for cleanlab)."""
    if len(result.oof_proba) != data.height:
        raise ValueError(f"oof_proba has {len(result.oof_proba)} rows, training frame {data.height}")
    cols: dict[str, Any] = {
        spec.id_column: data.get_column(spec.id_column).cast(pl.Utf8),
        spec.label_column: data.get_column(spec.label_column).cast(pl.Utf8),
        "label_index": pl.Series(result.labels.astype(np.int64)),
        "fold": pl.Series(result.fold_of_row.astype(np.int64)) if len(result.fold_of_row) else None,
    }
    for i, name in enumerate(result.class_names):
        cols[f"proba_{name}"] = pl.Series(result.oof_proba[:, i].astype(np.float64))
    return pl.DataFrame({k: v for k, v in cols.items() if v is not None})


def log_training(
    result: TrainResult,
    *,
    spec: DatasetSpec,
    lineage: Lineage,
    profile_view_bytes: bytes,
    drift_report: DriftReport | None,
    reason: str,
    registered_name: str,
    oof: pl.DataFrame | None = None,
    example: pl.DataFrame | None = None,
    settings: MLflowSettings | None = None,
    extra_tags: dict[str, str] | None = None,
) -> ModelRecord:
    """Log params, metrics, model, profile, drift report (and OOF probabilities) and register a version.

    `extra_tags` go on the run and the version from the start (e.g. `lakeloop.experiment`).

    MLflow's client retries each request itself (MLFLOW_HTTP_REQUEST_MAX_RETRIES, _BACKOFF_FACTOR); when it
    gives up, this raises TrackingError naming the model and commit. A version is registered only after the
    whole run logged, so a failure before it leaves no version and moves no alias."""
    s = settings or get_settings().mlflow
    try:
        return _log_training(result, spec=spec, lineage=lineage, profile_view_bytes=profile_view_bytes,
                             drift_report=drift_report, reason=reason, registered_name=registered_name, oof=oof,
                             example=example, settings=s, extra_tags=extra_tags)
    except MlflowException as e:
        raise TrackingError(f"model {registered_name!r} for {lineage.repository}@{lineage.commit_id[:12]}: "
                            f"MLflow at {s.tracking_uri} failed while logging the training run: {e}") from e


def _log_training(result: TrainResult, *, spec: DatasetSpec, lineage: Lineage, profile_view_bytes: bytes,
                  drift_report: DriftReport | None, reason: str, registered_name: str, oof: pl.DataFrame | None,
                  example: pl.DataFrame | None, settings: MLflowSettings,
                  extra_tags: dict[str, str] | None) -> ModelRecord:
    s = settings
    c = client(s)
    mlflow.set_tracking_uri(s.tracking_uri)
    mlflow.set_registry_uri(s.tracking_uri)
    exp_id = experiment_id(c, s.experiment)
    tags = {**lineage.tags(), TAG_CODE_VERSION: code_version(), TAG_TRIGGER: reason,
            "lakeloop.dataset": spec.name, **(extra_tags or {})}
    with mlflow.start_run(experiment_id=exp_id, tags=tags, nested=mlflow.active_run() is not None,
                          run_name=f"{registered_name}-{lineage.commit_id[:12]}") as run:
        run_id = run.info.run_id
        mlflow.log_params({k: str(v) for k, v in result.params.items()})
        mlflow.log_metrics({k: float(v) for k, v in result.metrics.items() if np.isfinite(v)})
        for fm in result.fold_metrics:
            step = int(fm.get("fold", 0))
            mlflow.log_metrics({f"fold.{k}": float(v) for k, v in fm.items() if k != "fold"}, step=step)
        member, ex = xgb_member(result), example if example is not None else result.example
        info = log_pyfunc(MODEL_ARTIFACT_PATH, [member], single_member_plan(member), spec,
                          ex.head(5) if ex is not None else None)
        mlflow.log_dict(
            {"features": result.feature_names, "class_names": result.class_names,
             "best_iterations": result.best_iterations, "fold_metrics": result.fold_metrics,
             "spec": spec.model_dump(mode="json"), "lineage": lineage.model_dump()},
            "training/summary.json",
        )
        with tempfile.TemporaryDirectory() as tmp:
            prof = Path(tmp) / "profile.bin"
            prof.write_bytes(profile_view_bytes)
            mlflow.log_artifact(str(prof), artifact_path="profile")
            mlflow.log_dict(summarize(from_bytes(profile_view_bytes)).model_dump(mode="json"),
                            "profile/summary.json")
        if oof is not None:
            log_oof(oof)
        if drift_report is not None:
            mlflow.log_dict(drift_report.model_dump(mode="json"), "drift/report.json")
            mlflow.log_text(drift_report.to_markdown(), "drift/report.md")

    mv = mlflow.register_model(info.model_uri, registered_name, tags=tags)
    version = str(mv.version)
    c.update_model_version(registered_name, version,
                           description=f"trained on {lineage.repository}@{lineage.commit_id[:12]} ({reason})")
    return ModelRecord(name=registered_name, run_id=run_id, model_uri=f"models:/{registered_name}/{version}",
                       version=version)


def xgb_member(result: TrainResult) -> Member:
    """The trained classifier as the only member of a plan: a single model ships as an ensemble of one."""
    return Member(name="xgboost", kind="xgboost", params=result.params, features=list(result.feature_names),
                  oof=result.oof_proba, cv_auc=float(result.metrics.get("roc_auc", float("nan"))),
                  model=result.model)


def load_xgb(model_uri: str) -> Any:
    """The XGBClassifier inside a model logged by `log_training` (its pyfunc's only member).

    Checked by shape, not by class: the pyfunc class is pickled by value, so a loaded one need
    not be `tasks.model.pyfunc.VotingEnsemble` itself.
    """
    from xgboost import XGBClassifier  # lazily: train.py sets passive OpenMP waiting before xgboost loads

    model = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
    members = getattr(model, "members", None)
    if not members or len(members) != 1 or members[0][0].get("kind") != "xgboost":
        raise TrackingError(f"{model_uri} is not a single-XGBoost lakeloop model")
    classifier = XGBClassifier()
    classifier.load_model(bytearray(members[0][1].save_raw("ubj")))  # the file keeps the sklearn metadata
    return classifier
