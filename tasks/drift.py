"""Does the new data look like the data the current model was trained on?

Compares two whylogs profiles column by column with whylogs' own drift algorithms:
KS on the KLL quantile sketch for numeric/integer features, chi-square on the
frequent-items sketch for categorical/boolean/string features (we choose by spec
type rather than by whylogs' sketch-based default, which would run KS on 0/1
booleans). The label is compared separately (label shift is a different signal
from covariate drift, and the flows decide what to do with it).
"""

from __future__ import annotations

from pydantic import BaseModel

from lakeloop.settings import DriftSettings
from lakeloop.spec import DatasetSpec, FeatureType
from tasks.profiling import profiled_columns
from tasks.whylogs_compat import DatasetProfileView, drift_scores

DRIFT = "DRIFT"
POSSIBLE_DRIFT = "POSSIBLE_DRIFT"
NO_DRIFT = "NO_DRIFT"
UNSCORED = "UNSCORED"


class ColumnDrift(BaseModel):
    column: str
    algorithm: str
    statistic: float | None = None
    pvalue: float | None = None
    category: str  # DRIFT | POSSIBLE_DRIFT | NO_DRIFT | UNSCORED

    @property
    def drifted(self) -> bool:
        return self.category == DRIFT


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
            "| column | algorithm | statistic | p-value | category |",
            "|---|---|---:|---:|---|",
        ]
        rows = list(self.columns) + ([self.label_shift] if self.label_shift else [])
        for c in rows:
            name = f"{c.column} (label)" if c is self.label_shift else c.column
            stat = "" if c.statistic is None else f"{c.statistic:.4g}"
            pv = "" if c.pvalue is None else f"{c.pvalue:.3g}"
            cat = f"**{c.category}**" if c.category == DRIFT else c.category
            lines.append(f"| {name} | {c.algorithm} | {stat} | {pv} | {cat} |")
        if self.reasons:
            lines += ["", "Reasons:", *[f"- {r}" for r in self.reasons]]
        return "\n".join(lines) + "\n"


def algorithm_for(spec: DatasetSpec, column: str) -> str:
    if column == spec.label_column:
        return "chi-square"
    ftype = spec.feature(column).type
    return "ks" if ftype in (FeatureType.numeric, FeatureType.integer) else "chi-square"


def _column_drift(spec: DatasetSpec, column: str, score: object | None, present: bool) -> ColumnDrift:
    algo = algorithm_for(spec, column)
    if score is None:
        return ColumnDrift(column=column, algorithm=algo, category=UNSCORED)
    return ColumnDrift(
        column=column,
        algorithm=getattr(score, "algorithm", algo),
        statistic=getattr(score, "statistic", None),
        pvalue=getattr(score, "pvalue", None),
        category=getattr(score, "category", None) or UNSCORED,
    )


def detect_drift(
    current: DatasetProfileView,
    reference: DatasetProfileView,
    spec: DatasetSpec,
    settings: DriftSettings | None = None,
) -> DriftReport:
    """Per-column drift of `current` against `reference` and the dataset-level retrain decision.

    Decision: at least one feature in category DRIFT, and either the drifted share of scored
    features >= `min_drifted_share` or the drifted count >= `min_drifted_columns`.
    """
    s = settings or DriftSettings()
    cols = profiled_columns(spec)
    algorithms = {c: algorithm_for(spec, c) for c in cols}
    scores = drift_scores(current, reference, algorithms=algorithms, drift_pvalue=s.drift_pvalue,
                          possible_drift_pvalue=s.possible_drift_pvalue)
    cur_cols = set(current.get_columns())
    ref_cols = set(reference.get_columns())
    reasons: list[str] = []
    features: list[ColumnDrift] = []
    label: ColumnDrift | None = None
    for col in cols:
        present = col in cur_cols and col in ref_cols
        cd = _column_drift(spec, col, scores.get(col), present)
        if not present:
            where = "current" if col not in cur_cols else "reference"
            reasons.append(f"column {col!r} is missing from the {where} profile; not scored")
        if col == spec.label_column:
            label = cd
        else:
            features.append(cd)
    scored = [c for c in features if c.category != UNSCORED]
    drifted = [c.column for c in scored if c.drifted]
    share = len(drifted) / len(scored) if scored else 0.0
    decision = bool(drifted) and (share >= s.min_drifted_share or len(drifted) >= s.min_drifted_columns)
    if drifted:
        detail = ", ".join(
            f"{c.column} ({c.algorithm} p={c.pvalue:.2g})" if c.pvalue is not None else c.column
            for c in scored
            if c.drifted
        )
        rule = (f"share {share:.0%} vs min {s.min_drifted_share:.0%}, "
                f"count {len(drifted)} vs min {s.min_drifted_columns}")
        verb = "retrain" if decision else "below retrain thresholds"
        reasons.insert(0, f"{len(drifted)} feature(s) drifted: {detail} ({rule}: {verb})")
    if label is not None and label.drifted:
        reasons.append(f"label distribution shifted ({label.algorithm} p={label.pvalue:.2g})")
    return DriftReport(columns=features, drifted=drifted, decision=decision, reasons=reasons,
                       drifted_share=share, label_shift=label)
