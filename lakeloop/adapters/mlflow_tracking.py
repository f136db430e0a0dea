"""The MLflow tracking adapter: the client, lineage tags and artifacts, and lineage queries both ways.

Every run and every registered model version carries the lakeFS repository, branch
and commit it was trained on (tags `lakefs.*`), the spec hash and the code version,
so "which models came from commit X?" and "which data made model v3?" are one search
each. What a training run logs is `tasks.model.training_run`'s business; this module only
knows MLflow.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import polars as pl
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from pydantic import BaseModel

from lakeloop.adapters.mlflow_registry import MISSING
from lakeloop.settings import MLflowSettings, get_settings

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
    """What the current model was trained on: its run, lakeFS commit and whylogs profile bytes, and the AUC it
    was accepted with (its run's `roc_auc`: cross-validated for a single model, holdout for an ensemble), which
    labelled batches are measured against."""

    run_id: str
    commit_id: str
    profile: bytes
    version: str = ""
    auc: float | None = None


class TrackingError(RuntimeError):
    pass


def client(settings: MLflowSettings | None = None) -> MlflowClient:
    uri = (settings or get_settings().mlflow).tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def experiment_id(c: MlflowClient, name: str) -> str:
    """The id of experiment `name`, created if missing (safe when two runs create it at once)."""
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


def run_url(run_id: str, artifact: str | None = None, settings: MLflowSettings | None = None,
            experiment_id: str | None = None) -> str:
    """The run's page in the MLflow UI (with `artifact` selected in its artifacts tab)."""
    s = settings or get_settings().mlflow
    exp = experiment_id or client(s).get_run(run_id).info.experiment_id
    tail = f"/artifacts/{artifact}" if artifact else ""
    return f"{s.tracking_uri.rstrip('/')}/#/experiments/{exp}/runs/{run_id}{tail}"


def read_run(run_id: str, settings: MLflowSettings | None = None) -> Any:
    """The run as MLflow stores it: `.info` (experiment id, ...) and `.data` (latest metrics, tags, params)."""
    return client(settings).get_run(run_id)


def version_url(name: str, version: str, settings: MLflowSettings | None = None) -> str:
    return f"{(settings or get_settings().mlflow).tracking_uri.rstrip('/')}/#/models/{name}/versions/{version}"


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
    log_bytes(run_id, PROFILE_ARTIFACT, profile, settings)


def download_bytes(run_id: str, artifact_path: str, settings: MLflowSettings | None = None) -> bytes:
    c = client(settings)
    with tempfile.TemporaryDirectory() as tmp:
        local = c.download_artifacts(run_id, artifact_path, tmp)
        return Path(local).read_bytes()


def stored_bytes(run_id: str, artifact_path: str, settings: MLflowSettings | None = None) -> bytes | None:
    """An artifact of the run, or None when the run has none at that path (other errors raise)."""
    c = client(settings)
    parent = str(Path(artifact_path).parent)
    listed = {f.path for f in c.list_artifacts(run_id, None if parent == "." else parent)}
    if artifact_path not in listed:
        return None
    return download_bytes(run_id, artifact_path, settings)


def log_bytes(run_id: str, artifact_path: str, data: bytes, settings: MLflowSettings | None = None) -> None:
    """Attach `data` to a finished run as `artifact_path`."""
    c = client(settings)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(artifact_path).name
        path.write_bytes(data)
        parent = str(Path(artifact_path).parent)
        c.log_artifact(run_id, str(path), artifact_path=None if parent == "." else parent)


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
    auc = read_run(mv.run_id, settings).data.metrics.get("roc_auc")
    return TrainingReference(run_id=mv.run_id, commit_id=lineage.commit_id, profile=profile,
                             version=str(mv.version), auc=None if auc is None else float(auc))


def load_oof(run_id: str, settings: MLflowSettings | None = None) -> pl.DataFrame:
    """The out-of-fold probabilities logged with a training run."""
    return pl.read_parquet(io.BytesIO(download_bytes(run_id, OOF_ARTIFACT, settings)))


def log_metrics(run_id: str, metrics: dict[str, float], settings: MLflowSettings | None = None) -> None:
    """Append one point to each metric's history on a (finished) run: the monitor's per-batch record."""
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    c = client(settings)
    step = len(c.get_metric_history(run_id, next(iter(metrics)))) if metrics else 0
    c.log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])


def log_label_round(round_id: str, metrics: dict[str, float], tags: dict[str, str],
                    settings: MLflowSettings | None = None) -> str:
    """One finished run per label review intake (`lakeloop.kind=label-round`) holding its consensus and
    annotator-quality metrics, so they chart across rounds beside the training runs; returns the run id."""
    s = settings or get_settings().mlflow
    c = client(s)
    run = c.create_run(experiment_id(c, s.experiment), run_name=f"label-round-{round_id}",
                       tags={"lakeloop.kind": "label-round", "lakeloop.round": round_id, **tags})
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    c.log_batch(run.info.run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])
    c.set_terminated(run.info.run_id)
    return str(run.info.run_id)


def metric_history(run_id: str, key: str, settings: MLflowSettings | None = None) -> list[tuple[int, float]]:
    """(timestamp ms, value) of every point of a run's metric, oldest first."""
    points = client(settings).get_metric_history(run_id, key)
    return sorted((int(m.timestamp), float(m.value)) for m in points)
