"""Watch the champion: input drift against its training data, prediction drift against its own outputs on
rows it never trained on, and decay once labels arrive."""

from __future__ import annotations

import io

import polars as pl
from prefect import flow, get_run_logger

from flows.context import FlowContext, step
from flows.reports import publish_artifact
from lakeloop import events
from lakeloop.adapters import prefect_events
from lakeloop.adapters.mlflow_tracking import (
    OOF_ARTIFACT,
    TrainingReference,
    latest_training_reference,
    log_bytes,
    log_metrics,
    metric_history,
    stored_bytes,
)
from tasks.data import dataset
from tasks.data.profiling import from_bytes
from tasks.model.judge import holdout_at
from tasks.serving import monitor_history, prediction_reference
from tasks.serving.inference import predict_batch
from tasks.serving.monitoring import MonitorReport
from tasks.serving.monitoring import monitor as compare
from tasks.serving.performance_estimate import CALIBRATOR_ARTIFACT, CalibrationError, Calibrator

check = step("compare-with-training", compare)


def reference_outputs(ctx: FlowContext, reference: TrainingReference) -> pl.DataFrame | None:
    """The champion's outputs on its training commit's holdout, scored once and stored with its run.

    None (prediction drift is then not judged) when that holdout is too small to compare with."""
    stored = stored_bytes(reference.run_id, prediction_reference.REFERENCE_ARTIFACT)
    if stored is not None:
        return prediction_reference.from_bytes(stored)
    holdout = holdout_at(ctx.lake, ctx.spec, reference.commit_id, ctx.object_states)
    try:
        outputs = prediction_reference.holdout_outputs(holdout, f"models:/{ctx.model_name}/{reference.version}",
                                                       id_column=ctx.spec.id_column)
    except prediction_reference.ReferenceError as e:
        get_run_logger().warning("prediction drift not judged: %s", e)
        return None
    log_bytes(reference.run_id, prediction_reference.REFERENCE_ARTIFACT, prediction_reference.to_bytes(outputs))
    return outputs


reference_step = step("score-prediction-reference", reference_outputs)


def champion_calibrator(ctx: FlowContext, reference: TrainingReference) -> Calibrator | None:
    """Isotonic calibration of the champion's probabilities on its run's out-of-fold predictions, fitted
    once and stored with the run; None (performance is then not estimated) for a run without them."""
    stored = stored_bytes(reference.run_id, CALIBRATOR_ARTIFACT)
    if stored is not None:
        return Calibrator.model_validate_json(stored)
    oof_bytes = stored_bytes(reference.run_id, OOF_ARTIFACT)
    if oof_bytes is None:  # a run logged before OOF was stored with every model: estimate nothing, say why
        get_run_logger().warning("performance not estimated: run %s has no %s", reference.run_id, OOF_ARTIFACT)
        return None
    oof = pl.read_parquet(io.BytesIO(oof_bytes))
    positive = f"proba_{ctx.spec.positive}"
    if len(ctx.spec.classes) != 2 or positive not in oof.columns:
        return None
    try:
        calibrator = Calibrator.fit(oof.get_column(positive).to_numpy(),
                                    (oof.get_column(ctx.spec.label_column) == ctx.spec.positive).to_numpy())
    except CalibrationError as e:
        get_run_logger().warning("performance not estimated: %s", e)
        return None
    log_bytes(reference.run_id, CALIBRATOR_ARTIFACT, calibrator.model_dump_json().encode())
    return calibrator


calibrate_step = step("calibrate-champion", champion_calibrator)


@flow(name="monitor", log_prints=True, persist_result=True)
def monitor(repository: str, ref: str = "main") -> MonitorReport:
    """`recent` is the batch the latest commit at `ref` brought; its labels, when present, measure decay."""
    log = get_run_logger()
    ctx = FlowContext.load(repository)
    commit = ctx.lake.head(ref)
    reference = latest_training_reference(ctx.model_name)
    if reference is None:
        raise RuntimeError(f"no {ctx.model_name} model yet: nothing to monitor")
    recent = dataset.commit_batch(ctx.lake, ctx.spec, commit, ctx.object_states).valid
    if recent.height == 0:
        recent, _ = dataset.training_set(ctx.lake, ctx.spec, commit, ctx.object_states)

    preds = predict_batch(recent, f"models:/{ctx.model_name}/{reference.version}", id_column=ctx.spec.id_column)
    reference_preds = reference_step(ctx, reference)
    labels = recent.select([ctx.spec.id_column, ctx.spec.label_column]).drop_nulls()

    report = check(recent, from_bytes(reference.profile), ctx.spec,
                   recent_predictions=preds.select([ctx.spec.id_column, "probability"]),
                   reference_predictions=None if reference_preds is None else reference_preds.select("probability"),
                   labels=labels if labels.height else None, auc_reference=reference.auc,
                   calibrator=calibrate_step(ctx, reference), drift_settings=ctx.settings.drift,
                   settings=ctx.settings.monitor)
    log.info("monitor %s v%s on %s: %s", ctx.model_name, reference.version, commit[:12],
             "; ".join(report.reasons) or "no drift")
    settings = ctx.settings.monitor
    past_alarms = metric_history(reference.run_id, monitor_history.RETRAIN_REQUESTED)
    cooling = monitor_history.in_cooldown(past_alarms, settings.cooldown_hours)
    request = report.drift_detected and not cooling
    log_metrics(reference.run_id, monitor_history.batch_metrics(report, retrain_requested=request))
    history = {key: metric_history(reference.run_id, key)[-settings.history:]
               for key in monitor_history.CHARTED}
    headline = "**drift detected**" if report.drift_detected else "no drift"
    if report.drift_detected and cooling:
        headline += f" (retrain already requested within {settings.cooldown_hours:g} h: cooling down)"
    publish_artifact("monitor", f"## Monitor: {headline}\n\n" + "\n".join(f"- {r}" for r in report.reasons)
                     + "\n\n" + monitor_history.to_markdown(report, history)
                     + "\n\n" + (report.input_drift.to_markdown() if report.input_drift else ""))
    if request:
        prefect_events.emit_durable(events.DRIFT_DETECTED,
                                    events.drift_resource(ctx.settings.lakefs.repository, retrain="requested"),
                            {"repository": ctx.settings.lakefs.repository,
                             "branch": ctx.settings.lakefs.default_branch, "commit_id": commit,
                             "reasons": report.reasons, "source": "monitor"})
    return report
