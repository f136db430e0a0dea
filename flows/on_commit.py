"""A lakeFS commit arrived: check it, profile it, compare it with what the current model learned from."""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.context import FlowContext, step
from flows.experiment import experiment
from flows.reports import decision_markdown, drift_pictures_markdown, publish_artifact, validation_markdown
from flows.retrain import retrain
from lakeloop import events
from lakeloop.adapters import prefect_events
from lakeloop.adapters.mlflow_tracking import latest_training_reference, log_bytes, trained_versions
from lakeloop.outcomes import CommitOutcome, Decision
from tasks.data import dataset, quarantine_branch
from tasks.data.drift import DriftReport, detect_drift
from tasks.data.drift_pictures import DRIFT_PICTURE_ARTIFACT, drift_figure_png
from tasks.data.profiling import ProfileStore, dataset_profile, from_bytes
from tasks.model import decide

check_commit = step("validate-commit", dataset.commit_batch)
quarantine_rows = step("quarantine-invalid-rows", quarantine_branch.quarantine_invalid)
profile_batch = step("profile-batch", dataset_profile)
reference_profile = step("reference-profile", latest_training_reference)
compare = step("detect-drift", detect_drift)


@flow(name="on-commit", log_prints=True, persist_result=True)
def on_commit(repository: str, branch: str, commit_id: str) -> CommitOutcome:
    log = get_run_logger()
    ctx = FlowContext.load(repository)
    role = ctx.branches.role(branch)
    if role != "watched":  # the trust boundary: only watched branches change production
        return _off_production(ctx, repository, branch, commit_id, role)

    batch = check_commit(ctx.lake, ctx.spec, commit_id, ctx.object_states)
    quarantined = quarantine_rows(ctx.lake, ctx.spec, batch)
    publish_artifact("validation", validation_markdown(ctx, batch, quarantined))

    reference = reference_profile(ctx.model_name)
    drift, picture = None, None
    if reference is not None and batch.valid.height:
        store = ProfileStore.for_spec(ctx.settings.home, ctx.spec)
        view, _ = profile_batch([(c.obj.checksum, c.valid_rows) for c in batch.checks], store, ctx.spec)
        reference_view = from_bytes(reference.profile)
        drift = compare(view, reference_view, ctx.spec, ctx.settings.drift)
        picture = drift_figure_png(view, reference_view, ctx.spec, drift)
        if picture is not None:
            publish_artifact("drift-pictures", drift_pictures_markdown(ctx, commit_id, picture))

    trained = trained_versions(ctx.model_name, commit_id)
    decision = decide.decide(batch, drift, has_model=reference is not None, trained_versions=trained)
    publish_artifact("decision", decision_markdown(ctx, commit_id, decision, drift))
    log.info("commit %s: %s", commit_id[:12], decision.summary)

    if drift is not None and drift.decision:
        _announce_drift(ctx, repository, branch, commit_id, drift)
    model = None
    if decision.retrain:
        model = retrain(repository=repository, branch=branch, commit_id=commit_id, reason=decision.reason,
                        force=False)
        if model is not None and picture is not None:  # the run the drift caused shows what moved
            log_bytes(model.run_id, DRIFT_PICTURE_ARTIFACT, picture)
    return CommitOutcome(commit_id=commit_id, branch=branch, decision=decision, batch_rows=batch.n_rows,
                                invalid_rows=batch.n_invalid, quarantine=quarantined, model=model,
                                drifted=drift.drifted if drift else [])


def _announce_drift(ctx: FlowContext, repository: str, branch: str, commit_id: str, drift: DriftReport) -> None:
    """Tell the team (notifications) that this commit drifted; the retrain it needs runs right here."""
    prefect_events.emit_durable(
        events.DRIFT_DETECTED, events.drift_resource(repository, retrain="inline"),
        events.DriftPayload(repository=repository, branch=branch, commit_id=commit_id, reasons=drift.reasons,
                            drifted_columns=drift.drifted, source="on-commit"))


def _off_production(ctx: FlowContext, repository: str, branch: str, commit_id: str,
                    role: str) -> CommitOutcome:
    """A commit on an experiment branch runs an experiment; on any other branch, nothing."""
    if role == "experiment":
        result = experiment(repository=repository, branch=branch, commit_id=commit_id)
        decision = Decision(retrain=False, reason="experiment", reasons=[result.summary])
    else:
        result = None
        decision = Decision(retrain=False, reason="not-watched", reasons=[
            f"branch {branch!r} is neither watched ({', '.join(ctx.branches.watched)}) nor an experiment "
            f"({', '.join(ctx.branches.experiments) or 'no patterns'}): nothing changes"])
    publish_artifact("decision", decision_markdown(ctx, commit_id, decision, None))
    get_run_logger().info("commit %s on %s: %s", commit_id[:12], branch, decision.summary)
    return CommitOutcome(commit_id=commit_id, branch=branch, decision=decision, batch_rows=0, invalid_rows=0,
                                experiment=result, drifted=result.drifted if result else [])
