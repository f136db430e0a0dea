"""Prefect artifacts: what a person reads in the Prefect UI about each run."""

from __future__ import annotations

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.context import get_run_context

from flows.context import FlowContext
from lakeloop.adapters.mlflow_tracking import TAG_COMMIT, log_bytes, read_run, run_url, version_url
from lakeloop.outcomes import Decision, QuarantineRecord
from tasks.data.dataset import CommitBatch
from tasks.data.drift import DriftReport
from tasks.data.drift_pictures import inline_image
from tasks.model.gate import GateResult
from tasks.model.model_card import (
    CARD_HTML,
    CARD_MARKDOWN,
    IMPORTANCE_PNG,
    CardFacts,
    Importance,
    card_html,
    card_markdown,
    importance_png,
)


def _in_a_run() -> bool:
    """Outside a run (plain-function use, tests) there is nothing to attach an artifact to."""
    try:
        get_run_context()
    except RuntimeError:
        return False
    return True


def publish_artifact(key: str, markdown: str, description: str | None = None) -> None:
    """A markdown artifact on the current run (keys are lowercase-dashed, as Prefect requires)."""
    if not _in_a_run():
        return
    create_markdown_artifact(markdown=markdown, key=key.lower().replace("_", "-"), description=description)


def publish_table(key: str, rows: list[dict[str, str | float]], description: str) -> None:
    """A table artifact on the current run: Prefect renders it sortable, with the markdown description above."""
    if not _in_a_run():
        return
    create_table_artifact(table=rows, key=key.lower().replace("_", "-"), description=description)


def validation_markdown(ctx: FlowContext, batch: CommitBatch, quarantined: QuarantineRecord | None) -> str:
    lines = [
        f"### Validation of commit [`{batch.commit_id[:12]}`]({ctx.commit_url(batch.commit_id)})",
        "",
        "| object | rows | valid | invalid |",
        "|---|---:|---:|---:|",
    ]
    for c in batch.checks:
        lines.append(f"| `{c.obj.path}` | {c.n_rows} | {c.result.valid.height} | {c.result.invalid.height} |")
    for u in batch.unreadable:
        lines.append(f"| `{u.obj.path}` | unreadable | 0 | whole object |")
    if not batch.checks and not batch.unreadable:
        lines.append("| (no data objects changed) | | | |")
    if quarantined:
        lines += ["", f"{quarantined.rows} invalid row(s) quarantined on branch `{quarantined.branch}`:"]
        lines += [f"- `{p}`" for p in quarantined.objects]
        if batch.unreadable:
            lines += ["", "Quarantined whole (no reader could open them):"]
            lines += [f"- `{u.obj.path}`: {u.reason}" for u in batch.unreadable]
        reasons: dict[str, int] = {}
        for c in batch.checks:
            for k, v in c.result.report.checks.items():
                reasons[k] = reasons.get(k, 0) + v
        if reasons:
            lines += ["", "| check | rows failing |", "|---|---:|"]
            lines += [f"| {k} | {v} |" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1]) if v]
    if batch.labels_changed:
        lines += ["", "Label corrections in this commit:", *[f"- `{p}`" for p in batch.labels_changed]]
    return "\n".join(lines) + "\n"


def decision_markdown(ctx: FlowContext, commit_id: str, decision: Decision, drift: DriftReport | None) -> str:
    head = f"## {'Retrain' if decision.retrain else 'Keep the current model'} ({decision.reason})\n\n"
    body = "\n".join(f"- {r}" for r in decision.reasons) + "\n\n"
    return head + body + (drift.to_markdown() if drift else "")


def drift_pictures_markdown(ctx: FlowContext, commit_id: str, png: bytes) -> str:
    return (f"### What moved in commit [`{commit_id[:12]}`]({ctx.commit_url(commit_id)})\n\n"
            "Each drifted column: the reference (the data the current model learned from, grey) beside this "
            "batch (orange), from their whylogs sketches.\n\n" + inline_image(png, "drifted columns") + "\n")


def gate_markdown(result: GateResult, promoted: bool) -> str:
    head = "promoted to `champion`" if promoted else "stays `challenger`"
    rows = "\n".join(f"| {c.name} | {'pass' if c.passed else '**fail**'} | {c.detail} |" for c in result.checks)
    evidence = f"AUC {result.auc} vs champion {result.champion_auc}"
    if result.auc_delta is not None:
        evidence += (f"; difference to the bar (v{result.bar_version}) {result.auc_delta} at "
                     f"{result.auc_delta.confidence:.0%}")
    return (f"\n### Gate on holdout rows of `{result.eval_commit[:12]}`: {head}\n\n{evidence}\n\n"
            f"| check | result | detail |\n|---|---|---|\n{rows}\n")


def publish_model_card(ctx: FlowContext, version: str, run_id: str, reason: str, gate: str,
                       importance: Importance) -> str:
    """Log the version's card to its MLflow run (markdown + picture, and one self-contained HTML page);
    returns the card with the picture inline, for the Prefect artifact."""
    name, run = ctx.model_name, read_run(run_id)
    links = {"MLflow version": version_url(name, version),
             "MLflow run": run_url(run_id, experiment_id=run.info.experiment_id),
             **({"lakeFS commit": ctx.commit_url(commit)} if (commit := run.data.tags.get(TAG_COMMIT)) else {})}
    prefect_run = _flow_run_url()
    if prefect_run:
        links["Prefect run"] = prefect_run
    metrics = {k: float(v) for k, v in run.data.metrics.items()}
    facts = CardFacts(model_name=name, version=str(version), reason=reason, metrics=metrics,
                      links=links, gate_markdown=gate, importance=importance)
    png = importance_png(importance)
    log_bytes(run_id, CARD_MARKDOWN, card_markdown(facts, "![feature importance](feature_importance.png)"
                                                   if png else None).encode())
    if png:
        log_bytes(run_id, IMPORTANCE_PNG, png)
    log_bytes(run_id, CARD_HTML, card_html(facts, png).encode())
    return card_markdown(facts, inline_image(png, "feature importance") if png else None)


def _flow_run_url() -> str | None:
    from prefect.runtime import flow_run
    from prefect.utilities.urls import url_for

    return url_for("flow-run", obj_id=flow_run.id) if flow_run.id else None
