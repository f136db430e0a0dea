"""After training: send the rows whose labels look wrong or ambiguous to the labeling team."""

from __future__ import annotations

import numpy as np
import polars as pl
from prefect import flow, get_run_logger

from flows.context import FlowContext, run_owner, step
from flows.reports import publish_artifact
from lakeloop.adapters.label_studio import LabelStudioAdapter, SendResult
from lakeloop.adapters.mlflow_tracking import load_oof
from lakeloop.adapters.secrets import reveal
from lakeloop.events import WEBHOOK_TOKEN_HEADER
from lakeloop.outcomes import RelabelRequest
from lakeloop.state import Ledger
from tasks.data import dataset
from tasks.labels.corrections import new_round_id
from tasks.labels.label_issues import LabelIssue, ReviewLedger, rank_label_issues, row_hashes, select_budget
from tasks.labels.relabel_round import top_up
from tasks.labels.review_committee import committee_from_oof
from tasks.labels.task_view import ensure_project, send_rows
from tasks.model.train import class_names

load_training_set = step("load-training-set", dataset.training_set)
rank = step("rank-label-issues", rank_label_issues)
RELABEL_LOCK_TIMEOUT_S = 900.0  # a round reads, ranks and sends a budget; longer means a stuck peer


@flow(name="request-relabel", log_prints=True, persist_result=True)
def request_relabel(repository: str, commit_id: str, run_id: str, budget: int | None = None) -> RelabelRequest:
    ctx = FlowContext.load(repository)
    if not ctx.settings.labeling.enabled:
        reason = "labeling is disabled (LAKELOOP_LABELING_ENABLED=false): no Label Studio in this deployment"
        print(f"request-relabel for {commit_id[:12]}: skipped, {reason}")
        return RelabelRequest.skip(reason)
    log = get_run_logger()
    budget = ctx.settings.labeling.budget if budget is None else budget

    oof = load_oof(run_id)  # leakage-free: each row scored by a model that never saw it
    data, _ = load_training_set(ctx.lake, ctx.spec, commit_id, ctx.object_states)
    names = class_names(ctx.spec)
    proba_cols = [f"proba_{c}" for c in names]
    mean, members = committee_from_oof(oof, names)
    ids = oof.get_column(ctx.spec.id_column).to_list()
    issues = rank(ids, oof.get_column("label_index").to_numpy(), mean, member_proba=members,
                  threshold=ctx.spec.business_threshold)

    ls = LabelStudioAdapter.from_settings(ctx.settings)
    project = ensure_project(ls, ctx.spec, ctx.settings.labeling.project_title)
    # Label Studio's own secret: its admins can read it in the webhook settings, so it opens no lakeFS endpoint
    ls.register_webhook(project, f"{ctx.settings.bridge.url}/label-studio/events",
                        {WEBHOOK_TOKEN_HEADER: reveal(ctx.settings.bridge.label_studio_secret)})
    hashes = row_hashes(data, ctx.spec)
    ledger = ReviewLedger.at(ctx.settings.state_dir)
    round_id = new_round_id()
    chosen: list[LabelIssue] = []
    sent: list[SendResult] = []

    def send(room: int) -> int:
        chosen.extend(select_budget(issues, room, ledger=ledger, row_hashes=hashes))
        rows, predictions = _rows_for(chosen, data, oof, proba_cols, ctx.spec.id_column)
        sent.append(send_rows(ls, project, rows, ctx.spec, predictions, model_version=run_id, round_id=round_id))
        ledger.mark({i.id: hashes[i.id] for i in chosen if i.id in hashes}, round_id)
        return len(chosen)

    # every registered model asks for a round: top the team's queue up, one round at a time, never pile
    # rounds on it. The lock's lease outlives the wait, so a slow round is never taken over mid-send.
    rounds = Ledger.at(ctx.settings.state_dir, lease_seconds=RELABEL_LOCK_TIMEOUT_S)
    lock = rounds.lock(f"relabel:{ctx.settings.lakefs.repository}:{project}", run_owner(),
                       timeout=RELABEL_LOCK_TIMEOUT_S)
    open_before, _ = top_up(ls, project, budget, ctx.settings.labeling.max_open_tasks, send, lock)
    (sent_round,) = sent
    log.info("round %s: %d candidates, %d open tasks before, %d sent to project %d (%d queued while "
             "Label Studio is away)", round_id, len(issues), open_before, len(sent_round.created), project,
             sent_round.queued)

    publish_artifact("label-review", _markdown(ctx, project, chosen, round_id, open_before))
    return RelabelRequest(round_id=round_id, project_id=project, candidates=len(issues), selected=len(chosen),
                          created=len(sent_round.created), existing=len(sent_round.existing),
                          queued=sent_round.queued,
                          open_before=open_before)


def _rows_for(chosen: list[LabelIssue], data: pl.DataFrame, oof: pl.DataFrame, proba_cols: list[str],
              id_column: str) -> tuple[pl.DataFrame, np.ndarray]:
    """The chosen rows (in ranking order) and their out-of-fold probabilities as pre-annotations."""
    order = pl.DataFrame({id_column: [i.id for i in chosen], "_rank": list(range(len(chosen)))},
                         schema={id_column: pl.Utf8, "_rank": pl.Int64})
    rows = order.join(data.with_columns(pl.col(id_column).cast(pl.Utf8)), on=id_column, how="inner")
    rows = rows.join(oof.select([id_column, *proba_cols]), on=id_column, how="left").sort("_rank")
    return rows.drop(["_rank", *proba_cols]), rows.select(proba_cols).to_numpy()


def _markdown(ctx: FlowContext, project: int, chosen: list[LabelIssue], round_id: str, open_before: int) -> str:
    url = f"{ctx.settings.label_studio.url}/projects/{project}/data"
    lines = [f"## Label review round `{round_id}`: {len(chosen)} rows sent", "",
             f"{open_before} earlier task(s) were still open. [Open the project in Label Studio]({url})", "",
             "| id | given | suggested | p(given) | score | reasons |", "|---|---|---|---:|---:|---|"]
    for i in chosen[:25]:
        lines.append(f"| {i.id} | {i.given_label} | {i.suggested_label} | {i.p_given:.2f} | {i.score:.3f} | "
                     f"{', '.join(str(r) for r in i.reasons)} |")
    if len(chosen) > 25:
        lines.append(f"| … {len(chosen) - 25} more | | | | | |")
    return "\n".join(lines) + "\n"
