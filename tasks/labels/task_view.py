"""What the labeling team sees: the Label Studio config, the instructions and one task per flagged row,
built from the dataset spec (PII columns never shown). The adapter only carries them to Label Studio."""

from __future__ import annotations

import html
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np
import polars as pl

from lakeloop.adapters.label_studio import FROM_NAME, TO_NAME, UNSURE, LabelingError, LabelStudioAdapter, SendResult
from lakeloop.spec import DatasetSpec
from tasks.labels.label_issues import row_hashes
from tasks.model.train import class_names


def shown_features(spec: DatasetSpec) -> list[str]:
    """Features the labeling team sees: everything but PII."""
    return [f.name for f in spec.features if not f.pii]


def labeling_config(spec: DatasetSpec) -> str:
    """Label Studio XML: the row's features as a table, the current label, one choice per class + unsure."""
    if UNSURE in spec.classes:
        raise LabelingError(f"spec {spec.name!r}: class name {UNSURE!r} is reserved for 'unsure' answers")
    choices = "\n".join(f"    <Choice value={quoteattr(c)}/>" for c in [*spec.classes, UNSURE])
    return (
        "<View>\n"
        f"  <Header value={quoteattr('Is the label of this ' + spec.name + ' row right?')}/>\n"
        f"  <Table name=\"{TO_NAME}\" value=\"$features\"/>\n"
        "  <Header value=\"Current label: $current_label\" size=\"5\"/>\n"
        f"  <Choices name=\"{FROM_NAME}\" toName=\"{TO_NAME}\" choice=\"single-radio\" showInline=\"true\""
        " required=\"true\">\n"
        f"{choices}\n"
        "  </Choices>\n"
        "</View>\n"
    )


def instructions(spec: DatasetSpec) -> str:
    """HTML instructions for the labeling team (`expert_instruction`)."""
    feats = "".join(
        f"<li><b>{html.escape(f.name)}</b>: {html.escape(f.description or f.type.value)}</li>"
        for f in spec.features if not f.pii
    )
    return (
        f"<h3>{html.escape(spec.name)}: label review</h3>"
        f"<p>{html.escape(spec.description)}</p>"
        "<p>A model thinks the current label of this row may be wrong. Read the features and pick the "
        f"label you believe is right: one of {', '.join(html.escape(c) for c in spec.classes)}. "
        "The pre-selected choice is the model's guess, not the answer.</p>"
        f"<p>If the row does not let you decide, choose <b>{UNSURE}</b> (or skip): the row stays flagged "
        "and its data is not changed. A label changes only when enough reviewers agree.</p>"
        f"<ul>{feats}</ul>"
    )


def _cell(v: object) -> object:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "-" if v != v else round(v, 2)
    if isinstance(v, bool | int | str):
        return v
    return str(v)


def task_payloads(rows: pl.DataFrame, spec: DatasetSpec, predictions: np.ndarray | None = None,
                  model_version: str = "", round_id: str = "") -> list[dict[str, Any]]:
    """Task JSON per row: data (id, hash, round, current label, non-PII features) + the model's prediction.

    `predictions` are class probabilities (n, k) in `train.class_names(spec)` order.
    """
    cols = [spec.id_column, spec.label_column, *shown_features(spec)]
    missing = [c for c in cols if c not in rows.columns]
    if missing:
        raise LabelingError(f"send_tasks: rows lack column(s) {missing}")
    names = class_names(spec)
    if predictions is not None and predictions.shape != (rows.height, len(names)):
        raise LabelingError(f"predictions: expected shape ({rows.height}, {len(names)}), got {predictions.shape}")
    hashes = row_hashes(rows, spec)
    shown = shown_features(spec)
    out: list[dict[str, Any]] = []
    for i, r in enumerate(rows.select(cols).iter_rows(named=True)):
        rid = str(r[spec.id_column])
        label = r[spec.label_column]
        if label is None:
            raise LabelingError(f"send_tasks: row {i} (id {rid!r}) has no {spec.label_column!r}")
        task: dict[str, Any] = {"data": {
            "row_id": rid, "row_hash": hashes[rid], "round": round_id, "current_label": str(label),
            "features": {name: _cell(r[name]) for name in shown},
        }}
        if predictions is not None:
            k = int(np.argmax(predictions[i]))
            task["predictions"] = [{
                "model_version": model_version or "unknown", "score": float(predictions[i, k]),
                "result": [{"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices",
                            "value": {"choices": [names[k]]}}],
            }]
        out.append(task)
    return out


def ensure_project(adapter: LabelStudioAdapter, spec: DatasetSpec, title: str, *,
                   annotations_per_task: int = 2) -> int:
    """The review project for `spec`, with its current config and instructions."""
    return adapter.ensure_project(title, label_config=labeling_config(spec), instructions=instructions(spec),
                                  description=spec.description, annotations_per_task=annotations_per_task)


def send_rows(adapter: LabelStudioAdapter, project_id: int, rows: pl.DataFrame, spec: DatasetSpec,
              predictions: np.ndarray | None = None, *, model_version: str = "", round_id: str = "",
              batch_size: int = 100) -> SendResult:
    """One task per row, through the adapter's outbox (idempotent by row id and row hash)."""
    payloads = task_payloads(rows, spec, predictions, model_version, round_id)
    return adapter.send_tasks(project_id, payloads, batch_size=batch_size)
