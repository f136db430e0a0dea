"""What would this branch do to the model? Data CI for a lakeFS branch, never a production change.

A commit on an experiment branch is validated and drift-checked against the
champion's reference, a candidate is trained on the branch's data and registered
with `lakeloop.experiment=true` (never aliased), and the candidate and the champion
are scored on the watched branch's trusted holdout. The verdict goes where the
branch's owners look: a Prefect artifact, a report on the branch itself, and the
candidate's MLflow tags.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.context import FlowContext, step
from flows.reports import publish_artifact
from flows.retrain import fit_and_register
from lakeloop.adapters.mlflow_registry import EXPERIMENT_TAG
from lakeloop.adapters.mlflow_tracking import client, latest_training_reference
from lakeloop.events import INTERNAL_KIND_KEY
from lakeloop.outcomes import ExperimentOutcome, ModelRef
from tasks.data import dataset
from tasks.data.drift import detect_drift
from tasks.data.profiling import ProfileStore, dataset_profile, from_bytes
from tasks.model.experiment_report import report_files, verdict_of
from tasks.model.gate import GateConfig, evaluate_gate, store_gate_result
from tasks.model.judge import holdout_at, rows_new_since

check_commit = step("validate-commit", dataset.commit_batch)
reference_profile = step("reference-profile", latest_training_reference)
trusted_holdout = step("trusted-holdout", holdout_at)
judge = step("judge-on-trusted-holdout", evaluate_gate)

REPORT_PREFIX = "_lakeloop/experiments"


@flow(name="experiment", log_prints=True, persist_result=True)
def experiment(repository: str, branch: str, commit_id: str) -> ExperimentOutcome:
    log = get_run_logger()
    ctx = FlowContext.load(repository)
    commit_id = ctx.lake.head(commit_id)
    trusted = ctx.branches.trusted
    if ctx.branches.role(branch) == "watched":
        raise ValueError(f"branch {branch!r} is watched: its commits go through on-commit and retrain")

    # ---- the branch's new data against what the champion learned from
    batch = check_commit(ctx.lake, ctx.spec, commit_id, ctx.object_states)
    reference = reference_profile(ctx.model_name)
    drifted: list[str] = []
    if reference is not None and batch.valid.height:
        store = ProfileStore.for_spec(ctx.settings.home, ctx.spec)
        view, _ = dataset_profile([(c.obj.checksum, c.valid_rows) for c in batch.checks], store, ctx.spec)
        drifted = detect_drift(view, from_bytes(reference.profile), ctx.spec, ctx.settings.drift).drifted

    # ---- a candidate trained on the branch, never a champion
    fitted = fit_and_register(ctx, branch, commit_id, reason=f"experiment on {branch}",
                              extra_tags={EXPERIMENT_TAG: "true", "lakeloop.experiment.branch": branch},
                              committee_oof=False)
    version = fitted.record.version

    # ---- judged on the watched branch's holdout; the branch's own new rows only for the signal check
    eval_commit = ctx.lake.head(trusted)
    holdout = trusted_holdout(ctx.lake, ctx.spec, eval_commit, ctx.object_states)
    branch_rows = rows_new_since(ctx.lake, ctx.spec, fitted.holdout, eval_commit, ctx.object_states)
    result = judge(ctx.model_name, version, holdout, eval_commit, ctx.spec,
                   GateConfig.from_settings(ctx.settings.gate), None, branch_rows)
    store_gate_result(result)
    verdict, summary = verdict_of(result)
    client().set_model_version_tag(ctx.model_name, version, "lakeloop.experiment.verdict", verdict)
    client().set_tag(fitted.record.run_id, "lakeloop.experiment.verdict", verdict)
    client().set_tag(fitted.record.run_id, "lakeloop.experiment.summary", summary[:4900])

    outcome = ExperimentOutcome(
        branch=branch, commit_id=commit_id, verdict=verdict, summary=summary, eval_commit=eval_commit,
        candidate=ModelRef(name=ctx.model_name, version=version, run_id=fitted.record.run_id, promoted=False,
                           metrics={k: float(v) for k, v in fitted.result.metrics.items()
                                    if isinstance(v, int | float)}),
        champion_version=result.champion_version, reasons=result.reasons, drifted=drifted)

    # ---- the verdict where the branch's owners look
    links = {"mlflow": f"{ctx.settings.mlflow.tracking_uri}/#/models/{ctx.model_name}/versions/{version}",
             "commit": ctx.commit_url(commit_id), "trusted_commit": ctx.commit_url(eval_commit)}
    files = report_files(outcome, result, links)
    base = f"{REPORT_PREFIX}/{commit_id[:12]}"
    for suffix, (data, content_type) in files.items():
        ctx.lake.write_bytes(branch, f"{base}{suffix}", data, content_type=content_type)
    outcome.report_paths = [f"{base}{suffix}" for suffix in files]
    outcome.report_commit = ctx.lake.commit(branch, f"lakeloop experiment report for {commit_id[:12]}: {verdict}", {
        INTERNAL_KIND_KEY: "experiment-report", "lakeloop.experiment.commit": commit_id,
        "lakeloop.experiment.verdict": verdict, "lakeloop.experiment.model_version": version})
    publish_artifact("experiment", files[".md"][0].decode())
    log.info("experiment %s@%s: %s", branch, commit_id[:12], summary)
    return outcome
