"""Prefect artifacts: what a person reads in the Prefect UI about each run."""

from __future__ import annotations

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.context import get_run_context

from flows.context import FlowContext
from lakeloop.outcomes import Decision, QuarantineRecord
from tasks.data.dataset import CommitBatch
from tasks.data.drift import DriftReport
from tasks.data.drift_pictures import inline_image


def publish_artifact(key: str, markdown: str, description: str | None = None) -> None:
    """A markdown artifact on the current run (keys are lowercase-dashed, as Prefect requires)."""
    try:
        get_run_context()
    except RuntimeError:  # called outside a run (plain-function use, tests): nothing to attach to
        return
    create_markdown_artifact(markdown=markdown, key=key.lower().replace("_", "-"), description=description)


def publish_table(key: str, rows: list[dict[str, str | float]], description: str) -> None:
    """A table artifact on the current run: Prefect renders it sortable, with the markdown description above."""
    try:
        get_run_context()
    except RuntimeError:
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
    if not batch.checks:
        lines.append("| (no data objects changed) | | | |")
    if quarantined:
        lines += ["", f"{quarantined.rows} invalid row(s) quarantined on branch `{quarantined.branch}`:"]
        lines += [f"- `{p}`" for p in quarantined.objects]
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
