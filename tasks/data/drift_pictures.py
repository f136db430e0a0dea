"""What moved, drawn: each drifted column's reference distribution beside the batch's.

Why from the whylogs sketches and not the rows: the reference is the training
profile stored with the champion, and its rows may be gone or large. The KLL sketch
gives each side's share of rows per bin over a shared range (histograms for
numbers), the frequent-items sketch each value's share (bars for categories), which
is what the KS and chi-square tests compared.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lakeloop.spec import DatasetSpec
from tasks.data.drift import DriftReport, algorithm_for
from tasks.data.pictures import figure, inline_image
from tasks.data.whylogs_compat import DatasetProfileView, frequent_values, numeric_histograms

__all__ = ["DRIFT_PICTURE_ARTIFACT", "drift_figure_png", "inline_image"]

DRIFT_PICTURE_ARTIFACT = "drift/drifted_columns.png"
MAX_COLUMNS = 12  # a picture of every column of a wide table helps nobody; the report lists the rest
MAX_CATEGORIES = 15
REFERENCE, BATCH = "#7f8c8d", "#e67e22"


def _numeric(ax: Any, current: DatasetProfileView, reference: DatasetProfileView, column: str) -> bool:
    hist = numeric_histograms([reference, current], column)
    if hist is None:
        return False
    edges, (ref, cur) = hist
    width = np.diff(edges)
    ax.bar(edges[:-1], ref, width=width, align="edge", color=REFERENCE, alpha=0.55, label="reference")
    ax.bar(edges[:-1], cur, width=width, align="edge", color=BATCH, alpha=0.55, label="this batch")
    ax.set_ylabel("share of rows")
    return True


def _categorical(ax: Any, current: DatasetProfileView, reference: DatasetProfileView, column: str,
                 boolean: bool) -> bool:
    ref, cur = frequent_values(reference, column), frequent_values(current, column)
    if not ref and not cur:
        return False
    total_ref, total_cur = max(sum(ref.values()), 1), max(sum(cur.values()), 1)
    values = sorted(set(ref) | set(cur), key=lambda v: -(ref.get(v, 0) / total_ref + cur.get(v, 0) / total_cur))
    values = values[:MAX_CATEGORIES]
    x = np.arange(len(values))
    ax.bar(x - 0.2, [ref.get(v, 0) / total_ref for v in values], width=0.4, color=REFERENCE, label="reference")
    ax.bar(x + 0.2, [cur.get(v, 0) / total_cur for v in values], width=0.4, color=BATCH, label="this batch")
    names = [{"0": "false", "1": "true"}.get(v, v) if boolean else v for v in values]
    ax.set_xticks(x, names, rotation=30 if len(values) > 4 else 0, ha="right" if len(values) > 4 else "center")
    ax.set_ylabel("share of rows")
    return True


def drift_figure_png(current: DatasetProfileView, reference: DatasetProfileView, spec: DatasetSpec,
                     report: DriftReport) -> bytes | None:
    """One panel per drifted column (the label too, when it shifted); None when nothing drifted."""
    columns = [c for c in report.columns if c.drifted][:MAX_COLUMNS]
    if report.label_shift is not None and report.label_shift.drifted:
        columns.append(report.label_shift)
    if not columns:
        return None
    ncols = min(len(columns), 3)
    nrows = -(-len(columns) // ncols)
    with figure(nrows, ncols, figsize=(4.6 * ncols, 3.4 * nrows), squeeze=False) as (_, axes, png):
        for ax, cd in zip(axes.flat, columns, strict=False):
            feature = spec.feature(cd.column) if cd.column != spec.label_column else None
            boolean = feature is not None and feature.type == "boolean"
            drawn = (_numeric(ax, current, reference, cd.column) if algorithm_for(spec, cd.column) == "ks"
                     else _categorical(ax, current, reference, cd.column, boolean))
            effect = "" if cd.effect is None else f", effect {cd.effect:.2f}"
            name = f"{cd.column} (label)" if feature is None else cd.column
            ax.set_title(f"{name} ({cd.algorithm} p={cd.pvalue:.1g}{effect})" if drawn
                         else f"{name}: no sketch to draw", fontsize=10)
            if drawn:
                ax.legend(fontsize=8)
            else:
                ax.set_axis_off()
        for ax in list(axes.flat)[len(columns):]:
            ax.set_axis_off()
        return png()
