"""Does the new data look like the data the current model was trained on?

Compares two whylogs profiles column by column with whylogs' own drift algorithms:
KS on the KLL quantile sketch for numeric/integer features, chi-square on the
frequent-items sketch for categorical/boolean/string features (we choose by spec
type rather than by whylogs' sketch-based default, which would run KS on 0/1
booleans). The label is compared separately (label shift is a different signal
from covariate drift, and the flows decide what to do with it).
"""

from __future__ import annotations

import math

from pydantic import BaseModel

from lakeloop.settings import DriftSettings
from lakeloop.spec import DatasetSpec, FeatureType
from tasks.data.profiling import profiled_columns
from tasks.data.whylogs_compat import ColumnScore, DatasetProfileView, drift_scores

DRIFT = "DRIFT"
POSSIBLE_DRIFT = "POSSIBLE_DRIFT"
NO_DRIFT = "NO_DRIFT"
UNSCORED = "UNSCORED"



class ColumnDrift(BaseModel):
    column: str
    algorithm: str
    statistic: float | None = None
    pvalue: float | None = None
    category: str  # whylogs' category on the raw p-value: DRIFT | POSSIBLE_DRIFT | NO_DRIFT | UNSCORED
    effect: float | None = None  # KS D, or Cohen's w for chi-square
    drifted: bool = False  # counts for the decision: Holm-significant and a practical effect size


class DriftReport(BaseModel):
    columns: list[ColumnDrift]
    drifted: list[str]
    decision: bool
    reasons: list[str]
    drifted_share: float = 0.0
    label_shift: ColumnDrift | None = None

    @property
    def label_shifted(self) -> bool:
        return self.label_shift is not None and self.label_shift.drifted

    def to_markdown(self) -> str:
        verdict = "**drift: retrain**" if self.decision else "no dataset drift"
        lines = [
            f"### Drift report: {verdict}",
            "",
            f"{len(self.drifted)} of {len(self.columns)} features drifted ({self.drifted_share:.0%}).",
            "",
            "| column | algorithm | statistic | p-value | effect | whylogs category | drifted |",
            "|---|---|---:|---:|---:|---|---|",
        ]
        rows = list(self.columns) + ([self.label_shift] if self.label_shift else [])
        for c in rows:
            name = f"{c.column} (label)" if c is self.label_shift else c.column
            stat = "" if c.statistic is None else f"{c.statistic:.4g}"
            pv = "" if c.pvalue is None else f"{c.pvalue:.3g}"
            eff = "" if c.effect is None else f"{c.effect:.3g}"
            mark = "**yes**" if c.drifted else "no"
            lines.append(f"| {name} | {c.algorithm} | {stat} | {pv} | {eff} | {c.category} | {mark} |")
        if self.reasons:
            lines += ["", "Reasons:", *[f"- {r}" for r in self.reasons]]
        return "\n".join(lines) + "\n"


def algorithm_for(spec: DatasetSpec, column: str) -> str:
    if column == spec.label_column:
        return "chi-square"
    ftype = spec.feature(column).type
    return "ks" if ftype in (FeatureType.numeric, FeatureType.integer) else "chi-square"


def _effect(score: ColumnScore) -> float | None:
    if score.statistic is None:
        return None
    if score.algorithm == "ks":
        return float(score.statistic)
    if score.n_target <= 0:
        return None
    return math.sqrt(score.statistic / score.n_target) if math.isfinite(score.statistic) else math.inf


def _column_drift(spec: DatasetSpec, column: str, score: ColumnScore | None) -> ColumnDrift:
    algo = algorithm_for(spec, column)
    if score is None:
        return ColumnDrift(column=column, algorithm=algo, category=UNSCORED)
    return ColumnDrift(
        column=column,
        algorithm=score.algorithm,
        statistic=score.statistic,
        pvalue=score.pvalue,
        category=score.category or UNSCORED,
        effect=_effect(score),
    )


def holm_reject(pvalues: list[float], alpha: float) -> list[bool]:
    """Holm's step-down procedure: which hypotheses are rejected at family-wise error `alpha`."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    m = len(pvalues)
    reject = [False] * m
    for rank, i in enumerate(order):
        if pvalues[i] <= alpha / (m - rank):
            reject[i] = True
        else:
            break
    return reject


def _mark_drifted(columns: list[ColumnDrift], alpha: float, min_ks: float, min_w: float) -> None:
    scored = [c for c in columns if c.pvalue is not None]
    rejected = holm_reject([float(c.pvalue) for c in scored if c.pvalue is not None], alpha)
    for c, rej in zip(scored, rejected, strict=True):
        floor = min_ks if c.algorithm == "ks" else min_w
        c.drifted = rej and c.effect is not None and c.effect >= floor


def detect_drift(
    current: DatasetProfileView,
    reference: DatasetProfileView,
    spec: DatasetSpec,
    settings: DriftSettings | None = None,
) -> DriftReport:
    """Per-column drift of `current` against `reference` and the dataset-level retrain decision.

    Decision: at least one feature drifted (see module docstring), and either the drifted share of
    scored features >= `min_drifted_share` or the drifted count >= `min_drifted_columns`.
    """
    s = settings or DriftSettings()
    min_ks = s.min_ks_statistic
    min_w = s.min_chi2_effect
    # model inputs and the label: free-text columns are profiled but drift by nature, and are no model input
    cols = [c for c in profiled_columns(spec) if c in spec.model_features or c == spec.label_column]
    algorithms = {c: algorithm_for(spec, c) for c in cols}
    scores = drift_scores(current, reference, algorithms=algorithms, drift_pvalue=s.drift_pvalue,
                          possible_drift_pvalue=s.possible_drift_pvalue)
    cur_cols = set(current.get_columns())
    ref_cols = set(reference.get_columns())
    reasons: list[str] = []
    features: list[ColumnDrift] = []
    label: ColumnDrift | None = None
    for col in cols:
        cd = _column_drift(spec, col, scores.get(col))
        if col not in cur_cols or col not in ref_cols:
            where = "current" if col not in cur_cols else "reference"
            reasons.append(f"column {col!r} is missing from the {where} profile; not scored")
        if col == spec.label_column:
            label = cd
        else:
            features.append(cd)
    _mark_drifted(features, s.drift_pvalue, min_ks, min_w)
    if label is not None:
        _mark_drifted([label], s.drift_pvalue, min_ks, min_w)
    scored = [c for c in features if c.category != UNSCORED]
    drifted = [c.column for c in scored if c.drifted]
    share = len(drifted) / len(scored) if scored else 0.0
    decision = bool(drifted) and (share >= s.min_drifted_share or len(drifted) >= s.min_drifted_columns)
    if drifted:
        detail = ", ".join(f"{c.column} ({c.algorithm} p={c.pvalue:.2g}, effect={c.effect:.3g})"
                           for c in scored if c.drifted)
        rule = (f"share {share:.0%} vs min {s.min_drifted_share:.0%}, "
                f"count {len(drifted)} vs min {s.min_drifted_columns}")
        verb = "retrain" if decision else "below retrain thresholds"
        reasons.insert(0, f"{len(drifted)} feature(s) drifted: {detail} ({rule}: {verb})")
    if label is not None and label.drifted:
        reasons.append(f"label distribution shifted ({label.algorithm} p={label.pvalue:.2g})")
    return DriftReport(columns=features, drifted=drifted, decision=decision, reasons=reasons,
                       drifted_share=share, label_shift=label)
