"""The labeling team answered: apply the agreed corrections as a lakeFS commit, which restarts the loop."""

from __future__ import annotations

import polars as pl
from prefect import flow, get_run_logger

from flows.context import FlowContext
from flows.reports import publish_artifact
from lakeloop.adapters.label_studio import LabelStudioAdapter
from lakeloop.outcomes import LabelIntake
from tasks.data import dataset
from tasks.data.label_overlay import apply_corrections
from tasks.labels.corrections import AgreementPolicy, AppliedLedger, commit_corrections, new_round_id, resolve
from tasks.labels.label_issues import ReviewLedger, row_hashes
from tasks.labels.task_view import ensure_project


@flow(name="ingest-labels", log_prints=True, persist_result=True)
def ingest_labels(project_id: int | None = None, repository: str | None = None, force: bool = False) -> LabelIntake:
    """Also the polling fallback: it sends tasks queued while Label Studio was away and reads every answer,
    so a missed webhook only delays a correction. Answers are applied once (ledger keyed by annotation)."""
    log = get_run_logger()
    ctx = FlowContext.load(repository)
    ls = LabelStudioAdapter.from_settings(ctx.settings)
    project = project_id or ensure_project(ls, ctx.spec, ctx.settings.labeling.project_title)
    ls.flush_outbox(project)

    annotations = ls.fetch_annotations(project)
    main = ctx.settings.lakefs.default_branch
    data, _ = dataset.training_set(ctx.lake, ctx.spec, main, ctx.object_states)
    current = dict(zip(data.get_column(ctx.spec.id_column).cast(pl.Utf8).to_list(),
                       data.get_column(ctx.spec.label_column).cast(pl.Utf8).to_list(), strict=True))
    applied = AppliedLedger.at(ctx.settings.state_dir)
    policy = AgreementPolicy(min_annotators=ctx.settings.labeling.min_annotators,
                             trusted_reviewers=ctx.settings.labeling.trusted_reviewers)
    known = [a for a in annotations if a.row_id in current]
    if len(known) < len(annotations):
        log.warning("%d answer(s) name rows no longer on %s; kept in Label Studio, not applied",
                    len(annotations) - len(known), main)
    res = resolve(known, current, policy, ctx.spec, ledger=applied)

    round_id = new_round_id()
    merge = None
    held = 0 < res.corrections.height < ctx.settings.labeling.min_corrections_per_commit and not force
    if held:  # not marked applied: the next intake sees these answers again
        log.info("holding %d correction(s) until %d gathered (or a forced intake)", res.corrections.height,
                 ctx.settings.labeling.min_corrections_per_commit)
        return LabelIntake(project_id=project, annotations=len(annotations), corrections=0, held=res.corrections.height,
                           confirmed=len(res.confirmed), pending=len(res.pending), unsure=len(res.unsure))
    if res.corrections.height:
        merge = commit_corrections(ctx.lake, round_id, res.corrections, ctx.spec,
                                   {"lakeloop.label_studio_project": str(project)})
        # a corrected row has a new hash: record it as reviewed so the next round does not send it again
        ids = res.corrections.get_column("id")
        corrected = apply_corrections(data.filter(pl.col(ctx.spec.id_column).cast(pl.Utf8).is_in(ids.implode())),
                                      res.corrections, ctx.spec)
        ReviewLedger.at(ctx.settings.state_dir).mark(row_hashes(corrected, ctx.spec), round_id)
    applied.mark(res.decided, round_id)  # only after the commit landed: a crash before this re-applies, never loses
    log.info("project %d: %d answers, %d corrections, %d confirmed, %d pending, %d unsure",
             project, len(annotations), res.corrections.height, len(res.confirmed), len(res.pending), len(res.unsure))
    publish_artifact("label-intake", _markdown(ctx, res.corrections, merge, len(res.pending), len(res.unsure)))
    return LabelIntake(project_id=project, annotations=len(annotations), corrections=res.corrections.height,
                       confirmed=len(res.confirmed), pending=len(res.pending), unsure=len(res.unsure),
                       merge_commit=merge)


def _markdown(ctx: FlowContext, corrections: pl.DataFrame, merge: str | None, pending: int, unsure: int) -> str:
    head = (f"## {corrections.height} label correction(s) merged as "
            f"[`{merge[:12]}`]({ctx.commit_url(merge)})" if merge else "## No label changes this time")
    lines = [head, "", f"{pending} row(s) wait for more answers; {unsure} marked unsure stay flagged.", ""]
    if corrections.height:
        lines += ["| id | old | new | annotators |", "|---|---|---|---|"]
        for r in corrections.head(25).iter_rows(named=True):
            lines.append(f"| {r['id']} | {r['old_label']} | {r['new_label']} | {r['annotators']} |")
    return "\n".join(lines) + "\n"
