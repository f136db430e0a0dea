"""Who to act on after a batch is scored: the business's view of the predictions.

Why expected gain and not probability: the cost matrix says what acting is worth.
A row's gain is what acting is expected to earn over doing nothing,
p·(TP − FN) + (1 − p)·(FP − TN), so the list ranks by money, and a spec whose
false positives are cheap ranks differently from one where they are dear. The rows
listed are the ones the business acts on (`evaluation.acts`, the threshold the gate
values), so the list and the gate's business value mean the same decision.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from pydantic import BaseModel

from lakeloop.spec import DatasetSpec
from tasks.model.evaluation import acts, positive_column, proba_matrix, slice_masks


class SliceCount(BaseModel):
    slice: str
    rows: int
    to_act_on: int
    expected_gain: float


class ActionList(BaseModel):
    """The top rows to act on, and per slice how many rows the business acts on and what they are worth."""

    model_version: str
    data_commit: str
    rows: int
    to_act_on: int
    expected_gain: float
    top: list[dict[str, str | float]]
    slices: list[SliceCount]


def expected_gain(p_pos: np.ndarray, spec: DatasetSpec) -> np.ndarray:
    cm = spec.cost_matrix
    p = np.asarray(p_pos, dtype="float64")
    return p * (cm.true_positive - cm.false_negative) + (1 - p) * (cm.false_positive - cm.true_negative)


def action_list(data: pl.DataFrame, preds: pl.DataFrame, spec: DatasetSpec, *, model_version: str,
                data_commit: str, top: int = 25) -> ActionList:
    """`preds` is `predict_batch`'s output for `data`, row for row (it neither drops nor reorders rows)."""
    if data.height != preds.height:
        raise ValueError(f"action list: {data.height} data rows but {preds.height} predictions")
    p_pos = proba_matrix(preds, spec)[:, positive_column(spec)]
    gain = expected_gain(p_pos, spec)
    act = acts(p_pos, spec)
    ids = preds.get_column(spec.id_column).cast(pl.Utf8).to_list()
    order = [i for i in np.argsort(-gain, kind="stable") if act[i]][:top]
    masks = slice_masks(data, spec)
    rows = [{spec.id_column: ids[i], f"p({spec.positive})": round(float(p_pos[i]), 4),
             "expected gain": round(float(gain[i]), 2),
             "slices": ", ".join(n for n, m in masks.items() if m[i]) or "—"} for i in order]
    counts = [SliceCount(slice=name, rows=int(mask.sum()), to_act_on=int((mask & act).sum()),
                         expected_gain=round(float(gain[mask & act].sum()), 2)) for name, mask in masks.items()]
    return ActionList(model_version=model_version, data_commit=data_commit, rows=data.height,
                      to_act_on=int(act.sum()), expected_gain=round(float(gain[act].sum()), 2), top=rows,
                      slices=counts)


def action_markdown(actions: ActionList, commit_link: str) -> str:
    """The artifact's description: where the list came from, and the counts per slice."""
    lines = [f"**{actions.to_act_on}** of {actions.rows} rows are worth acting on, expected gain "
             f"**{actions.expected_gain:,.2f}**, scored by model version **v{actions.model_version}** on data "
             f"commit {commit_link}. The table lists the top {len(actions.top)} by expected gain.", ""]
    if actions.slices:
        lines += ["| slice | rows | to act on | expected gain |", "|---|---:|---:|---:|"]
        lines += [f"| {c.slice} | {c.rows} | {c.to_act_on} | {c.expected_gain:,.2f} |" for c in actions.slices]
    return "\n".join(lines) + "\n"
