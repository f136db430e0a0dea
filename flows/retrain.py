"""Train a new model on the data at a lakeFS commit and register it in MLflow, tagged with that commit."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import polars as pl
from prefect import flow, get_run_logger

from flows.approval import ask_for_approval
from flows.context import FlowContext, run_owner, step
from flows.reports import gate_markdown, publish_artifact, publish_model_card
from lakeloop import events
from lakeloop.adapters import prefect_events
from lakeloop.adapters.mlflow_registry import Approval
from lakeloop.adapters.mlflow_tracking import (
    Lineage,
    ModelRecord,
    reference_version,
    run_url,
    trained_versions,
    version_lineage,
)
from lakeloop.outcomes import ModelRef
from lakeloop.state import Ledger
from tasks.data import dataset
from tasks.data.profiling import ProfileStore, dataset_profile, to_bytes
from tasks.labels.review_committee import member_columns, score_committee
from tasks.model.features import model_frame
from tasks.model.gate import GateConfig, GateResult
from tasks.model.judge import rows_new_since
from tasks.model.model_card import CARD_HTML, booster_importance
from tasks.model.promotion import gate_and_promote
from tasks.model.train import TrainResult, train_xgb
from tasks.model.training_run import log_training, oof_frame

load_training_set = step("load-training-set", dataset.training_set)
profile_training_set = step("profile-training-set", dataset_profile)
train = step("train-xgboost", train_xgb)
log_model = step("log-to-mlflow", log_training)
gate = step("challenger-gate", gate_and_promote)
committee = step("score-review-committee", score_committee)

RETRAIN_LEASE_S = 6 * 3600.0  # a claim outlives any training; a crashed run's claim expires after it
PROMOTION_LOCK_TIMEOUT_S = 600.0  # a gate run loads a handful of models; waiting longer means a stuck peer


@flow(name="retrain", log_prints=True, persist_result=True)
def retrain(repository: str, branch: str, commit_id: str, reason: str = "manual",
            force: bool = True) -> ModelRef | None:
    """`force=False` (event-driven runs) trains a commit at most once: on-commit and the monitor can
    both react to the same drifted commit, and only the first one trains (None for the other).
    Only a watched branch trains a production model; any other branch is refused (None)."""
    log = get_run_logger()
    ctx = FlowContext.load(repository)
    if ctx.branches.role(branch) != "watched":
        log.warning("branch %r is not watched (%s): it never trains a production model; experiment branches "
                    "run `on-commit`'s experiment instead", branch, ", ".join(ctx.branches.watched))
        return None
    commit_id = ctx.lake.head(commit_id)  # a branch name or ref expression pins to its commit now
    if not ctx.lake.is_on_branch(commit_id, branch):  # a side branch's commit passed off as the watched one
        raise ValueError(f"commit {commit_id[:12]} is not in the history of watched branch {branch!r}; "
                         "merge it first, or run it as an experiment")
    if force:
        return _train(ctx, branch, commit_id, reason)
    key = f"retrain:{ctx.settings.lakefs.repository}:{ctx.model_name}:{commit_id}"
    trained = trained_versions(ctx.model_name, commit_id)
    models: list[ModelRef] = []
    if not trained:
        Ledger.at(ctx.settings.state_dir, lease_seconds=RETRAIN_LEASE_S).run_once(
            key, "retrain", run_owner(), lambda: models.append(_train(ctx, branch, commit_id, reason)),
            {"reason": reason})
    if not models:
        log.info("commit %s is already trained or training (%s): nothing to do", commit_id[:12],
                 f"{ctx.model_name} v{', v'.join(trained)}" if trained else "claimed by another run")
        return None
    return models[0]


@dataclass
class Fitted:
    """A model trained on a commit and registered, with the holdout rows it never saw."""

    record: ModelRecord
    result: TrainResult
    holdout: pl.DataFrame
    lineage: Lineage


def fit_and_register(ctx: FlowContext, branch: str, commit_id: str, reason: str,
                     extra_tags: dict[str, str] | None = None, committee_oof: bool = True) -> Fitted:
    """Train on every valid row at `commit_id` but its holdout, and register the model with its lineage."""
    log = get_run_logger()
    data, checks = load_training_set(ctx.lake, ctx.spec, commit_id, ctx.object_states)
    if data.height == 0:
        raise ValueError(f"commit {commit_id[:12]} has no valid rows to train on")
    train_rows, holdout = dataset.split_holdout(data, ctx.spec)
    store = ProfileStore.for_spec(ctx.settings.home, ctx.spec)
    profile, _ = profile_training_set([(c.obj.checksum, c.valid_rows) for c in checks], store, ctx.spec)

    result = train(train_rows, ctx.spec, ctx.settings.train)
    oof = oof_frame(result, train_rows, ctx.spec)
    if committee_oof:  # for the label review after registration
        members = committee(result, train_rows, ctx.spec)
        oof = oof.with_columns(**member_columns(members, result.class_names))
    lineage = Lineage(repository=ctx.settings.lakefs.repository, branch=branch, commit_id=commit_id,
                      spec_hash=ctx.spec.spec_hash())
    record = log_model(result, spec=ctx.spec, lineage=lineage, profile_view_bytes=to_bytes(profile),
                       drift_report=None, reason=reason, registered_name=ctx.model_name, oof=oof,
                       extra_tags=extra_tags)
    log.info("registered %s v%s (run %s) from %s: %s", ctx.model_name, record.version, record.run_id,
             commit_id[:12], {k: round(v, 4) for k, v in result.metrics.items() if isinstance(v, float)})
    return Fitted(record=record, result=result, holdout=holdout, lineage=lineage)


def promotion_lock(ctx: FlowContext) -> Callable[[], AbstractContextManager[None]]:
    """One promotion of this model at a time, across every worker sharing the stack's state."""
    key = f"promote:{ctx.settings.lakefs.repository}:{ctx.model_name}"
    return lambda: Ledger.at(ctx.settings.state_dir).lock(key, run_owner(), timeout=PROMOTION_LOCK_TIMEOUT_S)


def judge_and_promote(ctx: FlowContext, version: str, holdout: pl.DataFrame, commit_id: str,
                      card: Callable[[str], str] | None = None) -> tuple[GateResult, bool]:
    """Gate on the commit's holdout (a watched branch's rows), with the rows new since the champion's data
    checked for label signal; promote compare-and-set. Under the approval policy, `card(gate_text)` publishes
    the challenger's model card before the pause and gives its page, for the approver."""
    champion = reference_version(ctx.model_name)
    since = version_lineage(ctx.model_name, champion.version).commit_id if champion is not None else None
    fresh = rows_new_since(ctx.lake, ctx.spec, holdout, since, ctx.object_states) if since else None
    def ask(v: GateResult) -> Approval:
        return ask_for_approval(ctx, v, card(gate_markdown(v, False) + "\n\n**Awaiting approval.**")
                                if card else None)
    approve = ask if ctx.settings.gate.promotion_policy == "approval" else None
    verdict, decision = gate(ctx.model_name, version, holdout, commit_id, ctx.spec,
                             config=GateConfig.from_settings(ctx.settings.gate), new_rows=fresh,
                             lock=promotion_lock(ctx), approve=approve)
    if not decision.promoted:  # a notification: the loop goes on with the champion it has
        prefect_events.emit_durable(events.GATE_REFUSED, events.model_resource(ctx.model_name), {
            "repository": ctx.settings.lakefs.repository, "model_name": ctx.model_name, "version": str(version),
            "reasons": decision.reasons, "champion": decision.champion})
    return verdict, decision.promoted


def _train(ctx: FlowContext, branch: str, commit_id: str, reason: str) -> ModelRef:
    fitted = fit_and_register(ctx, branch, commit_id, reason)
    record, result, lineage = fitted.record, fitted.result, fitted.lineage
    importance = booster_importance(result.model.get_booster(), model_frame(fitted.holdout, ctx.spec))

    def card(gate: str) -> str:
        publish_artifact("model", publish_model_card(ctx, record.version, record.run_id, reason, gate, importance))
        return run_url(record.run_id, CARD_HTML)
    verdict, promoted = judge_and_promote(ctx, record.version, fitted.holdout, commit_id, card)
    card(gate_markdown(verdict, promoted))
    prefect_events.emit_durable(events.MODEL_REGISTERED, events.model_resource(ctx.model_name), {
        "model_name": ctx.model_name, "version": str(record.version), "run_id": record.run_id,
        "repository": lineage.repository, "branch": branch, "commit_id": commit_id, "reason": reason,
    })
    if promoted:  # a new champion: refresh the predictions it serves
        prefect_events.emit_durable(events.MODEL_PROMOTED, events.model_resource(ctx.model_name), {
            "model_name": ctx.model_name, "version": str(record.version), "run_id": record.run_id, "kind": "model",
            "repository": lineage.repository, "branch": branch, "commit_id": commit_id,
        })
    return ModelRef(name=ctx.model_name, version=str(record.version), run_id=record.run_id, promoted=promoted,
                    metrics={k: float(v) for k, v in result.metrics.items() if isinstance(v, int | float)})
