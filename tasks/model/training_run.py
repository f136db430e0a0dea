"""What a training run logs to MLflow: params, metrics, the model as a pyfunc, the training profile,
the drift report and out-of-fold probabilities, then a registered version carrying the lineage."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import numpy as np
import polars as pl
from mlflow.pyfunc import PythonModel

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
from tasks.model.ensemble import io_schemas
from tasks.model.train import TrainResult


class XGBSpecModel(PythonModel):  # type: ignore[misc]
    """pyfunc over one XGBoost classifier that takes the spec's raw features.

    Why not the plain `mlflow.xgboost` flavor: its pyfunc enforces the signature, and MLflow
    schemas have no categorical type, so categoricals arrive as strings and XGBoost (trained on
    pandas `category` columns) rejects them. This wrapper re-applies the spec's fixed category
    lists (the same encoding as `tasks.model.features.model_frame`) and returns the same columns as
    the ensemble pyfunc: `label`, `probability` (positive class) and, for multiclass,
    `probability_<class>`. The XGBoost model itself is the `xgb_model` artifact (.ubj).
    """

    def load_context(self, context: Any) -> None:
        from xgboost import XGBClassifier

        with open(context.artifacts["spec"]) as fh:
            self.spec: dict[str, Any] = json.load(fh)
        with open(context.artifacts["meta"]) as fh:
            self.meta: dict[str, Any] = json.load(fh)
        self.model = XGBClassifier()
        self.model.load_model(context.artifacts["xgb_model"])
        self.model.set_params(n_jobs=1)

    def predict(self, context: Any, model_input, params: dict[str, Any] | None = None) -> Any:  # type: ignore[no-untyped-def]
        import pandas as pd

        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        frame = frame.reset_index(drop=True)
        features = {f["name"]: f for f in self.spec["features"]}
        cols: dict[str, Any] = {}
        for name in self.meta["features"]:
            f = features[name]
            if name not in frame.columns:
                raise ValueError(f"model input is missing feature column {name!r}")
            if f["type"] == "categorical":
                values = frame[name].astype(object).where(frame[name].notna(), None)
                cols[name] = pd.Categorical(values, categories=f["categories"])
            else:
                cols[name] = pd.to_numeric(frame[name], errors="raise").astype("float64")
        proba = np.asarray(self.model.predict_proba(pd.DataFrame(cols)), dtype="float64")
        classes: list[str] = self.meta["class_names"]
        positive = classes.index(self.meta["positive"])
        if len(classes) == 2:
            labels = np.where(proba[:, positive] >= self.meta["threshold"], positive, 1 - positive)
        else:
            labels = proba.argmax(axis=1)
        out = pd.DataFrame({"label": np.asarray(classes, dtype=object)[labels],
                            "probability": proba[:, positive]})
        if len(classes) > 2:
            for i, c in enumerate(classes):
                out[f"probability_{c}"] = proba[:, i]
        return out


def model_signature(spec: DatasetSpec) -> Any:
    """Raw spec features in, `label` + `probability` out (same contract as the ensemble pyfunc)."""
    from mlflow.models.signature import ModelSignature

    inputs, outputs = io_schemas(spec)
    return ModelSignature(inputs=inputs, outputs=outputs)


def raw_model_input(df: pl.DataFrame, spec: DatasetSpec) -> Any:
    """The spec's model features as pandas with the signature's dtypes (for examples and callers)."""
    from lakeloop.spec import FeatureType

    exprs = []
    for name in spec.model_features:
        f = spec.feature(name)
        if f.type == FeatureType.categorical:
            exprs.append(pl.col(name).cast(pl.Utf8))
        elif f.type == FeatureType.boolean:
            exprs.append(pl.col(name).cast(pl.Boolean))
        elif f.type == FeatureType.integer and not f.nullable:
            exprs.append(pl.col(name).cast(pl.Int64))
        else:
            exprs.append(pl.col(name).cast(pl.Float64))
    return df.select(exprs).to_pandas()


def pip_requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("mlflow", "xgboost", "pandas", "numpy", "scikit-learn")]


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

    `extra_tags` go on the run and the version from the start (e.g. `lakeloop.experiment`)."""
    s = settings or get_settings().mlflow
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
        info = _log_pyfunc(result, spec, example if example is not None else result.example)
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
                path = Path(tmp) / "oof.parquet"
                oof.write_parquet(path)
                mlflow.log_artifact(str(path), artifact_path="oof")
        if drift_report is not None:
            mlflow.log_dict(drift_report.model_dump(mode="json"), "drift/report.json")
            mlflow.log_text(drift_report.to_markdown(), "drift/report.md")

    mv = mlflow.register_model(info.model_uri, registered_name, tags=tags)
    version = str(mv.version)
    c.update_model_version(registered_name, version,
                           description=f"trained on {lineage.repository}@{lineage.commit_id[:12]} ({reason})")
    return ModelRecord(name=registered_name, run_id=run_id, model_uri=f"models:/{registered_name}/{version}",
                       version=version)


def _log_pyfunc(result: TrainResult, spec: DatasetSpec, example: pl.DataFrame | None) -> Any:
    meta = {"features": result.feature_names, "class_names": result.class_names, "positive": spec.positive,
            "threshold": spec.business_threshold}
    with tempfile.TemporaryDirectory() as tmp:
        model_path = Path(tmp) / "model.ubj"
        result.model.save_model(str(model_path))
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(json.dumps(spec.model_dump(mode="json")))
        meta_path = Path(tmp) / "meta.json"
        meta_path.write_text(json.dumps(meta))
        input_example = raw_model_input(example.head(5), spec) if example is not None else None
        return mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT_PATH,
            python_model=XGBSpecModel(),
            artifacts={"xgb_model": str(model_path), "spec": str(spec_path), "meta": str(meta_path)},
            signature=model_signature(spec),
            input_example=input_example,
            pip_requirements=pip_requirements(),
        )


def load_xgb(model_uri: str) -> Any:
    """The XGBClassifier inside a model logged by `log_training`."""
    model = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
    if not isinstance(model, XGBSpecModel):
        raise TrackingError(f"{model_uri} is not a single-XGBoost lakeloop model")
    return model.model
