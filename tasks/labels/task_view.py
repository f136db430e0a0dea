"""What the labeling team sees: the Label Studio config, the instructions and one task per flagged row,
built from the dataset spec (PII columns never shown). The adapter only carries them to Label Studio."""

from __future__ import annotations

import html
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np
import polars as pl

from lakeloop.adapters.label_studio import (
    FROM_NAME,
    PREDICTION_VERSION,
    TO_NAME,
    UNSURE,
    LabelingError,
    LabelStudioAdapter,
    SendResult,
)
from lakeloop.spec import DatasetSpec, Feature, FeatureType
from tasks.labels.label_issues import row_hashes
from tasks.model.train import class_names


def shown_features(spec: DatasetSpec) -> list[str]:
    """Features the labeling team sees, in the spec's order: everything but PII."""
    return [f.name for f in spec.features if not f.pii]


# Label Studio's own <Table> sorts keys alphabetically, pages them 10 at a time and shows booleans as blank
# cells; an HTML table we build keeps the spec's order, every value on one screen and values readable.
_STYLE = (
    ".lakeloop-features{border-collapse:collapse;font-size:14px;margin:4px 0 8px}"
    ".lakeloop-features th,.lakeloop-features td{border-bottom:1px solid #e5e5e5;padding:3px 10px;text-align:left}"
    ".lakeloop-features td.value{font-weight:600;font-variant-numeric:tabular-nums}"
    ".lakeloop-features td.about{color:#777}"
)
# the review has no regions or relations: hide Label Studio's side panels that would stay empty
_HIDE_PANELS = (
    ".lsf-sidepanels__wrapper,.lsf-side-panels__wrapper,.lsf-outliner,.lsf-sidebar-tabs,"
    ".lsf-side-column,.lsf-relations,.lsf-entities{display:none !important}"
)


# task data the data manager hides: the hash is for deduplication, the features are read in the task itself
HIDDEN_DATA = ["row_hash", "features", "model_run"]


def labeling_config(spec: DatasetSpec) -> str:
    """Label Studio XML: the model's suggestion and round, the row's features, the current label, and
    the question "<label column>: which value is right?" answered by the label column's own values + unsure."""
    if UNSURE in spec.classes:
        raise LabelingError(f"spec {spec.name!r}: class name {UNSURE!r} is reserved for 'unsure' answers")
    choices = "\n".join(f"    <Choice value={quoteattr(c)}/>" for c in [*spec.classes, UNSURE])
    question = f"{spec.label_column}: which value is right for this row? ({' / '.join([*spec.classes, UNSURE])})"
    return (
        "<View>\n"
        f"  <Style>{_STYLE}{_HIDE_PANELS}</Style>\n"
        "  <Header value=\"Model's suggestion: $suggestion ($confidence confident) · round $round\" size=\"5\"/>\n"
        f"  <HyperText name=\"{TO_NAME}\" value=\"$features\" inline=\"true\"/>\n"
        f"  <Header value=\"Current label: {html.escape(spec.label_column)} = $current_label\" size=\"5\"/>\n"
        f"  <Header value={quoteattr(question)} size=\"4\"/>\n"
        f"  <Choices name=\"{FROM_NAME}\" toName=\"{TO_NAME}\" choice=\"single-radio\" showInline=\"true\""
        " required=\"true\">\n"
        f"{choices}\n"
        "  </Choices>\n"
        "</View>\n"
    )


def instructions(spec: DatasetSpec) -> str:
    """HTML instructions for the labeling team (`expert_instruction`)."""
    feats = "".join(
        f"<li><b>{html.escape(f.name)}</b>: {html.escape(about(f))}</li>" for f in spec.features if not f.pii
    )
    return (
        f"<h3>{html.escape(spec.name)}: label review</h3>"
        f"<p>{html.escape(spec.description)}</p>"
        "<p>A model thinks the current label of this row may be wrong. Read the features and pick the "
        f"value of <b>{html.escape(spec.label_column)}</b> you believe is right: one of "
        f"{', '.join(html.escape(c) for c in spec.classes)}. "
        "The pre-selected choice is the model's guess, not the answer.</p>"
        f"<p>If the row does not let you decide, choose <b>{UNSURE}</b> (or skip): the row stays flagged "
        "and its data is not changed. A label changes only when enough reviewers agree.</p>"
        f"<ul>{feats}</ul>"
    )


def about(f: Feature) -> str:
    """What a feature means: the spec's description, else its type and range."""
    if f.description:
        return f.description
    if f.type == FeatureType.categorical and f.categories:
        return f"one of {', '.join(f.categories)}"
    if f.min is not None and f.max is not None:
        return f"{f.type.value}, {f.min:g} to {f.max:g}"
    return "yes or no" if f.type == FeatureType.boolean else f.type.value


def cell_text(v: object) -> str:
    """A value as a person reads it: yes/no for booleans, thousands separators, two decimals, '–' for none."""
    if v is None or (isinstance(v, float) and v != v):
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.2f}"
    return str(v)


def features_html(spec: DatasetSpec, row: dict[str, Any]) -> str:
    """The non-PII features of one row as an HTML table in the spec's order, with what each one means."""
    cells = "".join(
        f"<tr><th title={quoteattr(about(f))}>{html.escape(f.name)}</th>"
        f"<td class=\"value\">{html.escape(cell_text(row[f.name]))}</td>"
        f"<td class=\"about\">{html.escape(about(f))}</td></tr>"
        for f in spec.features if not f.pii
    )
    return f"<table class=\"lakeloop-features\">{cells}</table>"


def task_payloads(rows: pl.DataFrame, spec: DatasetSpec, predictions: np.ndarray | None = None,
                  model_version: str = "", round_id: str = "") -> list[dict[str, Any]]:
    """Task JSON per row: data (id, hash, round, current label, the model's suggestion, non-PII features)
    + the model's prediction as a pre-annotation.

    `predictions` are class probabilities (n, k) in `train.class_names(spec)` order; `model_version` is the
    run that made them (shown in the task). The pre-annotation itself carries the adapter's fixed
    `PREDICTION_VERSION`: Label Studio pre-selects only predictions of the project's `model_version`.
    """
    cols = [spec.id_column, spec.label_column, *shown_features(spec)]
    missing = [c for c in cols if c not in rows.columns]
    if missing:
        raise LabelingError(f"send_tasks: rows lack column(s) {missing}")
    names = class_names(spec)
    if predictions is not None and predictions.shape != (rows.height, len(names)):
        raise LabelingError(f"predictions: expected shape ({rows.height}, {len(names)}), got {predictions.shape}")
    hashes = row_hashes(rows, spec)
    out: list[dict[str, Any]] = []
    for i, r in enumerate(rows.select(cols).iter_rows(named=True)):
        rid = str(r[spec.id_column])
        label = r[spec.label_column]
        if label is None:
            raise LabelingError(f"send_tasks: row {i} (id {rid!r}) has no {spec.label_column!r}")
        k = int(np.argmax(predictions[i])) if predictions is not None else -1
        task: dict[str, Any] = {"data": {  # in the data manager's column order: what a reviewer scans first
            "row_id": rid, "current_label": str(label), "suggestion": names[k] if k >= 0 else "none",
            "confidence": f"{predictions[i, k]:.0%}" if predictions is not None else "–",
            "round": round_id or "–", "row_hash": hashes[rid], "model_run": model_version,
            "features": features_html(spec, r),
        }}
        if predictions is not None:
            task["predictions"] = [{
                "model_version": PREDICTION_VERSION, "score": float(predictions[i, k]),
                "result": [{"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices",
                            "value": {"choices": [names[k]]}}],
            }]
        out.append(task)
    return out


def ensure_project(adapter: LabelStudioAdapter, spec: DatasetSpec, title: str, *,
                   annotations_per_task: int = 2) -> int:
    """The review project for `spec`, with its current config and instructions."""
    return adapter.ensure_project(title, label_config=labeling_config(spec), instructions=instructions(spec),
                                  description=spec.description, annotations_per_task=annotations_per_task,
                                  hidden_data=HIDDEN_DATA)


def send_rows(adapter: LabelStudioAdapter, project_id: int, rows: pl.DataFrame, spec: DatasetSpec,
              predictions: np.ndarray | None = None, *, model_version: str = "", round_id: str = "",
              batch_size: int = 100) -> SendResult:
    """One task per row, through the adapter's outbox (idempotent by row id and row hash)."""
    payloads = task_payloads(rows, spec, predictions, model_version, round_id)
    return adapter.send_tasks(project_id, payloads, batch_size=batch_size)
