"""The MLflow adapter: log a training with its lakeFS lineage, and find lineage both ways.

Every run and every registered model version carries the lakeFS repository, branch
and commit it was trained on (tags `lakefs.*`), the spec hash and the code version,
so "which models came from commit X?" and "which data made model v3?" are one search
each. The whylogs profile of the training set is stored with the run: it is the
reference the next commits are compared with for drift.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import mlflow
import mlflow.pyfunc
import numpy as np
import polars as pl
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import PythonModel
from pydantic import BaseModel

from lakeloop.settings import ROOT, MLflowSettings, get_settings
from lakeloop.spec import DatasetSpec
from tasks.drift import DriftReport
from tasks.ensemble import io_schemas
from tasks.profiling import from_bytes, summarize
from tasks.registry import MISSING
from tasks.train import TrainResult

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

TAG_REPOSITORY = "lakefs.repository"
TAG_BRANCH = "lakefs.branch"
TAG_COMMIT = "lakefs.commit_id"
TAG_SPEC_HASH = "lakeloop.spec_hash"
TAG_CODE_VERSION = "lakeloop.code_version"
TAG_TRIGGER = "lakeloop.trigger"

MODEL_ARTIFACT_PATH = "model"
PROFILE_ARTIFACT = "profile/profile.bin"
OOF_ARTIFACT = "oof/oof.parquet"
CHAMPION = "champion"


class Lineage(BaseModel):
    repository: str
    branch: str
    commit_id: str
    spec_hash: str

    def tags(self) -> dict[str, str]:
        return {TAG_REPOSITORY: self.repository, TAG_BRANCH: self.branch, TAG_COMMIT: self.commit_id,
                TAG_SPEC_HASH: self.spec_hash}


class ModelRecord(BaseModel):
    name: str
    run_id: str
    model_uri: str  # models:/<name>/<version>
    version: str


class TrainingReference(NamedTuple):
    """What the current model was trained on: its run, lakeFS commit and whylogs profile bytes."""

    run_id: str
    commit_id: str
    profile: bytes
    version: str = ""


class TrackingError(RuntimeError):
    pass


class XGBSpecModel(PythonModel):  # type: ignore[misc]
    """pyfunc over one XGBoost classifier that takes the spec's raw features.

    Why not the plain `mlflow.xgboost` flavor: its pyfunc enforces the signature, and MLflow
    schemas have no categorical type, so categoricals arrive as strings and XGBoost (trained on
    pandas `category` columns) rejects them. This wrapper re-applies the spec's fixed category
    lists (the same encoding as `tasks.features.model_frame`) and returns the same columns as
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


def client(settings: MLflowSettings | None = None) -> MlflowClient:
    uri = (settings or get_settings().mlflow).tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@lru_cache(maxsize=1)
def code_version() -> str:
    """git sha of the checkout (with `+dirty` when modified), else the installed package version."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        if sha:
            return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        from importlib.metadata import version

        return "lakeloop-" + version("lakeloop")
    except Exception:
        return "unknown"


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


def _experiment_id(c: MlflowClient, name: str) -> str:
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        return str(exp.experiment_id)
    try:
        return str(c.create_experiment(name))
    except MlflowException:  # created concurrently
        exp = c.get_experiment_by_name(name)
        if exp is None:
            raise
        return str(exp.experiment_id)


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
    exp_id = _experiment_id(c, s.experiment)
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


def _quote(value: str) -> str:
    if "'" in value:
        raise ValueError(f"quote in search value {value!r}")
    return f"'{value}'"


def find_versions_for_commit(commit_id: str, settings: MLflowSettings | None = None) -> list[tuple[str, str, str]]:
    """(model name, version, run id) of every registered version trained on `commit_id`."""
    c = client(settings)
    found: dict[tuple[str, str], str] = {}
    for mv in c.search_model_versions(f"tags.`{TAG_COMMIT}` = {_quote(commit_id)}"):
        found[(mv.name, str(mv.version))] = mv.run_id or ""
    # also through runs, for versions registered without tags by other tools
    exps = [e.experiment_id for e in c.search_experiments()]
    if exps:
        runs = c.search_runs(exps, filter_string=f"tags.`{TAG_COMMIT}` = {_quote(commit_id)}", max_results=1000)
        for r in runs:
            for mv in c.search_model_versions(f"run_id = {_quote(r.info.run_id)}"):
                found.setdefault((mv.name, str(mv.version)), r.info.run_id)
    return sorted(((n, v, rid) for (n, v), rid in found.items()), key=lambda t: (t[0], int(t[1])))


def trained_versions(model_name: str, commit_id: str, settings: MLflowSettings | None = None) -> list[str]:
    """Versions of `model_name` already trained on `commit_id` (oldest first)."""
    return [v for n, v, _ in find_versions_for_commit(commit_id, settings) if n == model_name]


def version_lineage(name: str, version: str | int, settings: MLflowSettings | None = None) -> Lineage:
    """The lakeFS lineage of a model version (version tags, falling back to its run's tags)."""
    c = client(settings)
    mv = c.get_model_version(name, str(version))
    tags = dict(mv.tags or {})
    if TAG_COMMIT not in tags and mv.run_id:
        tags = {**c.get_run(mv.run_id).data.tags, **tags}
    missing = [t for t in (TAG_REPOSITORY, TAG_BRANCH, TAG_COMMIT) if t not in tags]
    if missing:
        raise TrackingError(f"model {name} v{version} has no lakeFS lineage tags {missing}")
    return Lineage(repository=tags[TAG_REPOSITORY], branch=tags[TAG_BRANCH], commit_id=tags[TAG_COMMIT],
                   spec_hash=tags.get(TAG_SPEC_HASH, ""))


def reference_version(name: str, settings: MLflowSettings | None = None) -> Any | None:
    """The version new data is compared with: the current `champion`; None when there is none yet.

    Never a fallback to the latest version: that may be a refused challenger or an experiment, whose
    data must not become the reference. Any other MLflow error is raised, not taken for "no model".
    """
    c = client(settings)
    try:
        return c.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as e:
        if e.error_code in MISSING:
            return None
        raise TrackingError(f"model {name}: cannot read the champion alias: {e}") from e


def log_profile(run_id: str, profile: bytes, settings: MLflowSettings | None = None) -> None:
    """Attach a training-data profile to a run (any model that may become champion needs one)."""
    c = client(settings)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(PROFILE_ARTIFACT).name
        path.write_bytes(profile)
        c.log_artifact(run_id, str(path), artifact_path=str(Path(PROFILE_ARTIFACT).parent))


def download_bytes(run_id: str, artifact_path: str, settings: MLflowSettings | None = None) -> bytes:
    c = client(settings)
    with tempfile.TemporaryDirectory() as tmp:
        local = c.download_artifacts(run_id, artifact_path, tmp)
        return Path(local).read_bytes()


def latest_training_reference(name: str, settings: MLflowSettings | None = None) -> TrainingReference | None:
    """Run, commit and training profile of the current champion; None if there is no champion yet."""
    mv = reference_version(name, settings)
    if mv is None:
        return None
    if not mv.run_id:
        raise TrackingError(f"model {name} v{mv.version} has no run; cannot find its training profile")
    lineage = version_lineage(name, mv.version, settings)
    try:
        profile = download_bytes(mv.run_id, PROFILE_ARTIFACT, settings)
    except (MlflowException, OSError) as e:
        raise TrackingError(f"model {name} v{mv.version}: run {mv.run_id} has no {PROFILE_ARTIFACT}: {e}") from e
    return TrainingReference(run_id=mv.run_id, commit_id=lineage.commit_id, profile=profile,
                             version=str(mv.version))


def load_oof(run_id: str, settings: MLflowSettings | None = None) -> pl.DataFrame:
    """The out-of-fold probabilities logged with a training run."""
    return pl.read_parquet(io.BytesIO(download_bytes(run_id, OOF_ARTIFACT, settings)))


def load_training_summary(run_id: str, settings: MLflowSettings | None = None) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(download_bytes(run_id, "training/summary.json", settings))
    return data
