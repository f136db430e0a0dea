"""The labeling team answered: apply the agreed corrections as a lakeFS commit, which restarts the loop."""

from __future__ import annotations

import numpy as np
import polars as pl
from mlflow.exceptions import MlflowException
from prefect import flow, get_run_logger

from flows.context import FlowContext
from flows.reports import publish_artifact, publish_table
from lakeloop.adapters.label_studio import LabelStudioAdapter
from lakeloop.adapters.mlflow_tracking import (
    TAG_COMMIT,
    TAG_REPOSITORY,
    TrackingError,
    load_oof,
    log_label_round,
    reference_version,
)
from lakeloop.outcomes import LabelIntake
from tasks.data import dataset
from tasks.data.label_overlay import apply_corrections
from tasks.labels.consensus import AnnotatorQuality
from tasks.labels.corrections import (
    AgreementPolicy,
    AppliedLedger,
    Resolution,
    commit_corrections,
    new_round_id,
    resolve,
)
from tasks.labels.label_issues import ReviewLedger, row_hashes
from tasks.labels.review_committee import oof_proba_by_row
from tasks.labels.task_view import ensure_project
from tasks.model.train import class_names


@flow(name="ingest-labels", log_prints=True, persist_result=True)
def ingest_labels(project_id: int | None = None, repository: str | None = None, force: bool = False) -> LabelIntake:
    """Also the polling fallback: it sends tasks queued while Label Studio was away and reads every answer,
    so a missed webhook only delays a correction. Answers are applied once (ledger keyed by annotation)."""
    log = get_run_logger()
    ctx = FlowContext.load(repository)
    ls = LabelStudioAdapter.from_settings(ctx.settings)
    labeling = ctx.settings.labeling
    project = project_id or ensure_project(ls, ctx.spec, labeling.project_title,
                                           annotations_per_task=labeling.min_annotators)
    ls.flush_outbox(project)

    annotations = ls.fetch_annotations(project)
    main = ctx.settings.lakefs.default_branch
    data, _ = dataset.training_set(ctx.lake, ctx.spec, main, ctx.object_states)
    current = dict(zip(data.get_column(ctx.spec.id_column).cast(pl.Utf8).to_list(),
                       data.get_column(ctx.spec.label_column).cast(pl.Utf8).to_list(), strict=True))
    applied = AppliedLedger.at(ctx.settings.state_dir)
    policy = AgreementPolicy(min_annotators=labeling.min_annotators, max_annotators=labeling.max_annotators,
                             min_quality=labeling.min_consensus_quality, trusted_reviewers=labeling.trusted_reviewers)
    known = [a for a in annotations if a.row_id in current]
    if len(known) < len(annotations):
        log.warning("%d answer(s) name rows no longer on %s; kept in Label Studio, not applied",
                    len(annotations) - len(known), main)
    res = resolve(known, current, policy, ctx.spec, ledger=applied, model_proba=_model_proba(ctx))
    escalated = ls.request_more_answers(res.escalate) if res.escalate else 0  # one more annotator each

    round_id = new_round_id()
    merge = None
    outcome = LabelIntake(project_id=project, annotations=len(annotations), corrections=0,
                          confirmed=len(res.confirmed), pending=len(res.pending), unsure=len(res.unsure),
                          disputed=len(res.disputed), escalated=escalated,
                          kappa=res.consensus.kappa if res.consensus else None)
    held = 0 < res.corrections.height < labeling.min_corrections_per_commit and not force
    if held:  # not marked applied: the next intake sees these answers again
        log.info("holding %d correction(s) until %d gathered (or a forced intake)", res.corrections.height,
                 labeling.min_corrections_per_commit)
        _report_quality(ctx, res, round_id, None, project)
        return outcome.model_copy(update={"held": res.corrections.height})
    if res.corrections.height:
        merge = commit_corrections(ctx.lake, round_id, res.corrections, ctx.spec,
                                   {"lakeloop.label_studio_project": str(project)}, consensus=res.consensus)
        # a corrected row has a new hash: record it as reviewed so the next round does not send it again
        ids = res.corrections.get_column("id")
        corrected = apply_corrections(data.filter(pl.col(ctx.spec.id_column).cast(pl.Utf8).is_in(ids.implode())),
                                      res.corrections, ctx.spec)
        ReviewLedger.at(ctx.settings.state_dir).mark(row_hashes(corrected, ctx.spec), round_id)
    applied.mark(res.decided, round_id)  # only after the commit landed: a crash before this re-applies, never loses
    log.info("project %d: %d answers, %d corrections, %d confirmed, %d pending (%d sent to one more annotator), "
             "%d disputed, %d unsure", project, len(annotations), res.corrections.height, len(res.confirmed),
             len(res.pending), escalated, len(res.disputed), len(res.unsure))
    publish_artifact("label-intake", _markdown(ctx, res.corrections, merge, len(res.pending), len(res.unsure)))
    _report_quality(ctx, res, round_id, merge, project)
    return outcome.model_copy(update={"corrections": res.corrections.height, "merge_commit": merge})


def _model_proba(ctx: FlowContext) -> dict[str, np.ndarray] | None:
    """The champion's out-of-fold committee probabilities per row: the model's say in the consensus.

    Without a champion (or its artifact) the consensus weighs the annotators alone."""
    try:
        mv = reference_version(ctx.model_name, ctx.settings.mlflow)
        if mv is None or not mv.run_id:
            return None
        oof = load_oof(mv.run_id, ctx.settings.mlflow)
    except (TrackingError, MlflowException, OSError) as e:
        get_run_logger().warning("no model probabilities for the consensus (%s); annotators alone decide", e)
        return None
    return oof_proba_by_row(oof, ctx.spec, class_names(ctx.spec))


def _report_quality(ctx: FlowContext, res: Resolution, round_id: str, merge: str | None, project: int) -> None:
    """The round's annotator quality and agreement: a Prefect artifact and an MLflow run (the lakeFS copy
    travels with the corrections commit). MLflow being away loses no label: it only logs a warning."""
    report = res.consensus
    if report is None or report.rows.height == 0:
        return
    summary = f"Round `{round_id}`: consensus of {report.rows.height} row(s) by {report.method}"
    if report.kappa is not None:
        summary += f"; Cohen's kappa {report.kappa:.3f}"
    publish_table("label-quality", [_annotator_row(a) for a in report.annotators], summary)
    metrics = {**report.metrics(), "corrections": float(res.corrections.height),
               "confirmed": float(len(res.confirmed)), "pending": float(len(res.pending)),
               "disputed": float(len(res.disputed)), "escalated": float(len(res.escalate))}
    tags = {"lakeloop.label_studio_project": str(project), TAG_REPOSITORY: ctx.settings.lakefs.repository}
    if merge:
        tags[TAG_COMMIT] = merge
    try:
        log_label_round(round_id, metrics, tags, ctx.settings.mlflow)
    except (MlflowException, OSError) as e:
        get_run_logger().warning("round %s: annotator quality not logged to MLflow: %s", round_id, e)


def _annotator_row(a: AnnotatorQuality) -> dict[str, str | float]:
    return {"annotator": a.annotator, "answered": a.answered,
            "quality": round(a.quality, 4) if a.quality is not None else "-",
            "estimated error": round(a.error_estimate, 4), "worst class": a.worst_class or "-"}


def _markdown(ctx: FlowContext, corrections: pl.DataFrame, merge: str | None, pending: int, unsure: int) -> str:
    head = (f"## {corrections.height} label correction(s) merged as "
            f"[`{merge[:12]}`]({ctx.commit_url(merge)})" if merge else "## No label changes this time")
    lines = [head, "", f"{pending} row(s) wait for more answers; {unsure} marked unsure stay flagged.", ""]
    if corrections.height:
        lines += ["| id | old | new | annotators | consensus quality |", "|---|---|---|---|---:|"]
        for r in corrections.head(25).iter_rows(named=True):
            q = r.get("consensus_quality")
            lines.append(f"| {r['id']} | {r['old_label']} | {r['new_label']} | {r['annotators']} | "
                         f"{'-' if q is None else f'{q:.3f}'} |")
    return "\n".join(lines) + "\n"
