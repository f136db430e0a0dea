"""A card for every model version: what it scores, where it came from, what drives it, what the gate said.

Why in MLflow beside the model: an ML engineer who opens a version should not have
to assemble its story from tags, metrics and three UIs. The card is written once the
gate has judged the version, so it carries the evidence the promotion rested on.
Importance is XGBoost's own: gain per feature, and mean |SHAP| from its TreeSHAP
(`pred_contribs`), which costs one prediction pass over a sample of rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb
from markdown_it import MarkdownIt

from tasks.data.pictures import figure, inline_image

CARD_DIR = "model_card"
CARD_MARKDOWN = f"{CARD_DIR}/card.md"
CARD_HTML = f"{CARD_DIR}/card.html"
IMPORTANCE_PNG = f"{CARD_DIR}/feature_importance.png"
SHAP_SAMPLE_ROWS = 500
TOP_FEATURES = 15


@dataclass
class Importance:
    """Per feature, share of total gain and share of total mean |SHAP| (each sums to 1 over features)."""

    gain: dict[str, float] = field(default_factory=dict)
    shap: dict[str, float] = field(default_factory=dict)


def _shares(values: dict[str, float]) -> dict[str, float]:
    total = sum(values.values())
    return {k: v / total for k, v in values.items()} if total > 0 else {}


def booster_importance(booster: xgb.Booster, frame: pd.DataFrame) -> Importance:
    """Gain (total per feature) and mean |SHAP| on up to `SHAP_SAMPLE_ROWS` rows of `frame` (the model's input)."""
    scores: dict[str, Any] = booster.get_score(importance_type="total_gain")  # floats for total_gain
    gain = {k: float(v) for k, v in scores.items()}
    sample = frame.head(SHAP_SAMPLE_ROWS)
    if not len(sample):
        return Importance(gain=_shares(gain))
    contribs = np.asarray(booster.predict(xgb.DMatrix(sample, enable_categorical=True), pred_contribs=True))
    # (rows, features + bias) for binary, (rows, classes, features + bias) for multi-class
    per_feature = np.abs(contribs).mean(axis=tuple(range(contribs.ndim - 1)))[:-1]
    shap = {str(c): float(v) for c, v in zip(sample.columns, per_feature, strict=True)}
    return Importance(gain=_shares(gain), shap=_shares(shap))


def combined(importances: list[Importance]) -> Importance:
    """Mean share over an ensemble's tree members (a member that never uses a feature counts 0 for it)."""
    if not importances:
        return Importance()

    def mean(which: str) -> dict[str, float]:
        names = {n for imp in importances for n in getattr(imp, which)}
        return {n: sum(getattr(imp, which).get(n, 0.0) for imp in importances) / len(importances) for n in names}

    return Importance(gain=mean("gain"), shap=mean("shap"))


def importance_png(importance: Importance) -> bytes | None:
    panels = [(title, values) for title, values in (("share of gain", importance.gain),
                                                     ("share of mean |SHAP|", importance.shap)) if values]
    if not panels:
        return None
    order = sorted(importance.shap or importance.gain, key=lambda n: (importance.shap or importance.gain)[n],
                   reverse=True)[:TOP_FEATURES][::-1]
    with figure(1, len(panels), figsize=(5.2 * len(panels), 0.32 * len(order) + 1.4), squeeze=False) as (_, axes, png):
        for ax, (title, values) in zip(axes.flat, panels, strict=True):
            ax.barh(order, [values.get(n, 0.0) for n in order], color="#2c7fb8")
            ax.set_title(title, fontsize=10)
            ax.tick_params(axis="y", labelsize=8)
        return png()


@dataclass
class CardFacts:
    model_name: str
    version: str
    reason: str
    metrics: dict[str, float]
    links: dict[str, str]  # label -> URL: the lakeFS commit, the MLflow version and run, the Prefect run
    gate_markdown: str = ""
    importance: Importance = field(default_factory=Importance)
    notes: list[str] = field(default_factory=list)


def _metric_rows(metrics: dict[str, float]) -> list[str]:
    keep = {k: v for k, v in metrics.items() if not k.startswith(("slice.", "fold.")) and np.isfinite(v)}
    return ["| metric | value |", "|---|---:|", *[f"| {k} | {v:.4f} |" for k, v in sorted(keep.items())]]


def _slice_rows(metrics: dict[str, float]) -> list[str]:
    names = sorted({k.split(".")[1] for k in metrics if k.startswith("slice.") and k.count(".") >= 2})
    if not names:
        return []
    keys = sorted({k.split(".", 2)[2] for k in metrics if k.startswith("slice.") and k.count(".") >= 2},
                  key=lambda k: (k != "rows", k))
    head = ["| slice | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]

    def cell(name: str, key: str) -> str:
        v = metrics.get(f"slice.{name}.{key}")
        return "—" if v is None or not np.isfinite(v) else (f"{v:.0f}" if key == "rows" else f"{v:.4f}")

    return head + [f"| {n} | " + " | ".join(cell(n, k) for k in keys) + " |" for n in names]


def card_markdown(facts: CardFacts, image: str | None) -> str:
    """`image` is the importance picture's markdown reference (relative path in MLflow, inline elsewhere)."""
    lines = [f"# {facts.model_name} v{facts.version}", "", f"Trained because: {facts.reason}.", ""]
    lines += [" · ".join(f"[{label}]({url})" for label, url in facts.links.items()), ""]
    lines += ["## Metrics (cross-validated, out of fold)", "", *_metric_rows(facts.metrics), ""]
    slices = _slice_rows(facts.metrics)
    if slices:
        lines += ["## Slices", "", *slices, ""]
    lines += ["## What drives it", ""]
    if image:
        lines += [image, ""]
    top = sorted(facts.importance.shap or facts.importance.gain,
                 key=lambda n: -(facts.importance.shap or facts.importance.gain)[n])[:5]
    lines += [f"Top features: {', '.join(top)}." if top else "No tree member: no importance to show.", ""]
    if facts.gate_markdown:
        lines += ["## The gate", "", facts.gate_markdown.strip(), ""]
    lines += [f"- {n}" for n in facts.notes]
    return "\n".join(lines).rstrip() + "\n"


def card_html(facts: CardFacts, png: bytes | None) -> str:
    """The same card as one self-contained page (MLflow shows HTML artifacts rendered)."""
    image = inline_image(png, "feature importance") if png else None
    body = MarkdownIt("commonmark").enable("table").render(card_markdown(facts, image))
    style = ("body{font-family:sans-serif;max-width:60em;margin:1em auto;padding:0 1em}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px}img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{facts.model_name} v{facts.version}"
            f"</title><style>{style}</style></head><body>{body}</body></html>")
