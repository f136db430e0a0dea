"""Train a new model on the data at a lakeFS commit and register it in MLflow, tagged with that commit."""

from __future__ import annotations

from prefect import flow, get_run_logger, task

from flows.context import FlowContext
from flows.reports import publish
from lakeloop import events
from tasks import dataset
from tasks.decide import ModelRef
from tasks.profiling import ProfileStore, dataset_profile, to_bytes
from tasks.tracking import Lineage, log_training, oof_frame
from tasks.train import train_xgb

load_training_set = task(name="load-training-set")(dataset.training_set)
profile_training_set = task(name="profile-training-set")(dataset_profile)
train = task(name="train-xgboost")(train_xgb)
log_model = task(name="log-to-mlflow")(log_training)


@flow(name="retrain", log_prints=True)
def retrain(repository: str, branch: str, commit_id: str, reason: str = "manual") -> ModelRef:
    log = get_run_logger()
    ctx = FlowContext.load(repository)
    commit_id = ctx.lake.head(commit_id)  # a branch name or ref expression pins to its commit now

    data, checks = load_training_set(ctx.lake, ctx.spec, commit_id)
    if data.height == 0:
        raise ValueError(f"commit {commit_id[:12]} has no valid rows to train on")
    store = ProfileStore.for_spec(ctx.settings.home, ctx.spec)
    profile, _ = profile_training_set([(c.obj.checksum, c.valid_rows) for c in checks], store, ctx.spec)

    result = train(data, ctx.spec, ctx.settings.train)
    lineage = Lineage(repository=ctx.settings.lakefs.repository, branch=branch, commit_id=commit_id,
                      spec_hash=ctx.spec.spec_hash())
    record = log_model(result, spec=ctx.spec, lineage=lineage, profile_view_bytes=to_bytes(profile),
                       drift_report=None, reason=reason, registered_name=ctx.model_name,
                       oof=oof_frame(result, data, ctx.spec))
    log.info("registered %s v%s (run %s) from %s: %s", ctx.model_name, record.version, record.run_id,
             commit_id[:12], {k: round(v, 4) for k, v in result.metrics.items() if isinstance(v, float)})

    publish("model", _model_markdown(ctx, commit_id, record.version, record.run_id, result.metrics, reason))
    events.emit(events.MODEL_REGISTERED, events.model_resource(ctx.model_name), {
        "model_name": ctx.model_name, "version": str(record.version), "run_id": record.run_id,
        "repository": lineage.repository, "branch": branch, "commit_id": commit_id, "reason": reason,
    })
    return ModelRef(name=ctx.model_name, version=str(record.version), run_id=record.run_id,
                    metrics={k: float(v) for k, v in result.metrics.items() if isinstance(v, int | float)})


def _model_markdown(ctx: FlowContext, commit_id: str, version: object, run_id: str,
                    metrics: dict[str, object], reason: str) -> str:
    mlflow_url = f"{ctx.settings.mlflow.tracking_uri}/#/models/{ctx.model_name}/versions/{version}"
    rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in metrics.items() if isinstance(v, float))
    return (f"## {ctx.model_name} v{version} ({reason})\n\n"
            f"Trained on lakeFS commit [`{commit_id[:12]}`]({ctx.commit_url(commit_id)}); "
            f"[MLflow model version]({mlflow_url}), run `{run_id}`.\n\n"
            f"| metric | value |\n|---|---:|\n{rows}\n")
