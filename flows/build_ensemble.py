"""Search candidates, vote them into one MLflow pyfunc, and let the gate decide whether it becomes champion."""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.context import FlowContext, step
from flows.reports import gate_markdown, publish_artifact, publish_model_card
from flows.retrain import judge_and_promote
from lakeloop import events
from lakeloop.adapters import prefect_events
from lakeloop.adapters.mlflow_tracking import Lineage, log_profile, run_url
from lakeloop.outcomes import ModelRef
from tasks.data import dataset
from tasks.data.profiling import ProfileStore, dataset_profile, to_bytes
from tasks.model.candidates import build_candidates
from tasks.model.features import model_frame
from tasks.model.model_card import CARD_HTML, booster_importance, combined
from tasks.model.model_logging import log_ensemble

search = step("search-candidates", build_candidates)
package = step("log-voting-ensemble", log_ensemble)


@flow(name="build-ensemble", log_prints=True, persist_result=True)
def build_ensemble(repository: str, commit_id: str = "main", trials: int | None = None,
                   timeout_s: float | None = None) -> ModelRef:
    """`trials`/`timeout_s` override the settings' search budget for this run (a quick manual run, the demo)."""
    log = get_run_logger()
    ctx = FlowContext.load(repository)
    if commit_id in ctx.lake.branches() and ctx.branches.role(commit_id) != "watched":
        raise ValueError(f"branch {commit_id!r} is not watched ({', '.join(ctx.branches.watched)}): "
                         "an ensemble built on it could become champion")
    commit_id = ctx.lake.head(commit_id)

    data, checks = dataset.training_set(ctx.lake, ctx.spec, commit_id, ctx.object_states)
    train_rows, holdout = dataset.split_holdout(data, ctx.spec)
    lineage = Lineage(repository=ctx.settings.lakefs.repository, branch=ctx.branches.trusted,
                      commit_id=commit_id, spec_hash=ctx.spec.spec_hash())
    e = ctx.settings.ensemble
    candidates = search(train_rows, ctx.spec, lineage, n_trials=trials or e.trials,
                        timeout_s=timeout_s or e.timeout_s, n_folds=e.folds,
                        n_jobs=ctx.settings.train.n_jobs, experiment=ctx.settings.mlflow.experiment)
    run_id, _, version = package(candidates, name=ctx.model_name, voting=e.voting,
                                 description=f"voted ensemble on {lineage.repository}@{commit_id[:12]}")
    # the training profile travels with the model: once champion, it is the drift reference
    profile, _ = dataset_profile([(c.obj.checksum, c.valid_rows) for c in checks],
                                 ProfileStore.for_spec(ctx.settings.home, ctx.spec), ctx.spec)
    log_profile(run_id, to_bytes(profile))

    frame = model_frame(holdout, ctx.spec)
    importance = combined([booster_importance(m.model, frame[m.features]) for m in candidates.members
                           if m.kind == "xgboost"])

    def card(gate: str) -> str:
        publish_artifact("model", publish_model_card(ctx, version, run_id, f"voted ensemble of "
                                                     f"{len(candidates.members)} members", gate, importance))
        return run_url(run_id, CARD_HTML)
    verdict, promoted = judge_and_promote(ctx, version, holdout, commit_id, card)
    log.info("ensemble v%s: gate %s (%s)", version, "passed" if verdict.passed else "failed",
             "; ".join(verdict.reasons) or "all checks pass")
    publish_artifact("ensemble", _markdown(candidates, version, verdict.passed, verdict.reasons))
    card(gate_markdown(verdict, promoted))
    if promoted:  # not `model.registered`: that starts a relabel round, which needs a single model's OOF
        prefect_events.emit_durable(events.MODEL_PROMOTED, events.model_resource(ctx.model_name),
                    {"model_name": ctx.model_name, "version": version, "run_id": run_id, "kind": "ensemble",
                     "repository": lineage.repository, "commit_id": commit_id, "branch": lineage.branch})
    return ModelRef(name=ctx.model_name, version=version, run_id=run_id, promoted=promoted,
                    metrics={"roc_auc": float(verdict.auc or 0.0)})


def _markdown(candidates: object, version: str, passed: bool, reasons: list[str]) -> str:
    members = getattr(candidates, "members", [])
    rows = "\n".join(f"| {m.name} | {m.cv_auc:.4f} |" for m in members if hasattr(m, "cv_auc"))
    verdict = "promoted to `champion`" if passed else "stays `challenger`: " + "; ".join(reasons)
    return f"## Ensemble v{version}: {verdict}\n\n| member | CV AUC |\n|---|---:|\n{rows}\n"
