"""Is the champion still fit for the data it now sees?

Three signals, each with its own evidence in the report:

* input drift      - recent features vs the training reference profile (`tasks.data.drift`);
* prediction drift - recent model outputs vs the same model's outputs on rows it never
                     trained on (`tasks.serving.prediction_reference`; KS on the
                     positive-class probability, chi-square on labels); catches shifts
                     that matter to the model even when no single feature crosses its
                     threshold;
* concept drift    - once true labels arrive: AUC now vs the AUC the model had at
                     training/promotion; decayed by more than `auc_tolerance` means
                     the mapping from features to label changed;
* estimated drop   - before labels arrive: CBPE's expected AUC on the batch vs the same
                     estimate on the reference rows (`tasks.serving.performance_estimate`).

One decision, one false-alarm budget: the p-value tests share `MonitorSettings.false_alarm_rate`
(Bonferroni over the tests that ran), and each also needs a practical effect size, so a large
batch does not flag a tiny shift.

The flow emits `lakeloop.drift.detected` when `MonitorReport.drift_detected`.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from pydantic import BaseModel

from lakeloop.settings import DriftSettings, MonitorSettings
from lakeloop.spec import DatasetSpec
from tasks.data.drift import DriftReport, detect_drift
from tasks.data.profiling import profile_frame
from tasks.data.whylogs_compat import DatasetProfileView, drift_scores
from tasks.model.evaluation import proba_matrix
from tasks.model.features import encode_labels
from tasks.model.metrics import auc_score
from tasks.serving.inference import profile_predictions
from tasks.serving.performance_estimate import Calibrator, Estimate, estimate


class OutputDrift(BaseModel):
    column: str
    algorithm: str
    statistic: float | None
    pvalue: float | None
    drifted: bool


class Performance(BaseModel):
    labelled_rows: int
    auc_now: float | None
    auc_reference: float | None
    decay: float | None
    concept_drift: bool
    detail: str
    pvalue: float | None = None  # one-sided: is the AUC now below the reference (Hanley-McNeil SE)


class Signal(BaseModel):
    """One line of the decision: what was measured, against what threshold, and whether it fired."""

    name: str
    value: float | None
    threshold: str
    fired: bool


class MonitorReport(BaseModel):
    drift_detected: bool
    reasons: list[str]
    rows: int
    input_drift: DriftReport | None = None
    output_drift: list[OutputDrift] = []
    performance: Performance | None = None
    estimate: Estimate | None = None
    signals: list[Signal] = []

    @property
    def concept_drift(self) -> bool:
        return self.performance is not None and self.performance.concept_drift


def profile_inputs(df: pl.DataFrame, spec: DatasetSpec) -> DatasetProfileView:
    """Profile of recent rows; unlabelled rows get a null label column (the label is then unscored)."""
    if spec.label_column not in df.columns:
        df = df.with_columns(pl.lit(None, dtype=pl.Utf8).alias(spec.label_column))
    return profile_frame(df, spec)


def output_drift(recent: pl.DataFrame | DatasetProfileView, reference: pl.DataFrame | DatasetProfileView,
                 *, drift_pvalue: float = 0.05, min_ks_statistic: float = 0.05) -> list[OutputDrift]:
    """Drift of prediction columns; a column drifts when p < `drift_pvalue` and (KS) D >= `min_ks_statistic`.

    Two frames are compared exactly (two-sample KS on the values): the outputs are at hand, and a
    sketch's approximation error alone gives small p-values. Profiles go through whylogs' sketches."""
    if isinstance(recent, pl.DataFrame) and isinstance(reference, pl.DataFrame):
        return _exact_output_drift(recent, reference, drift_pvalue, min_ks_statistic)
    cur = profile_predictions(recent) if isinstance(recent, pl.DataFrame) else recent
    ref = profile_predictions(reference) if isinstance(reference, pl.DataFrame) else reference
    algos = {c: ("chi-square" if c == "label" else "ks") for c in cur.get_columns()}
    out: list[OutputDrift] = []
    for col, score in drift_scores(cur, ref, algorithms=algos, drift_pvalue=drift_pvalue).items():
        if score is None:
            out.append(OutputDrift(column=col, algorithm=algos[col], statistic=None, pvalue=None, drifted=False))
            continue
        big_enough = score.algorithm != "ks" or (score.statistic or 0.0) >= min_ks_statistic
        drifted = score.pvalue is not None and score.pvalue < drift_pvalue and big_enough
        out.append(OutputDrift(column=col, algorithm=score.algorithm, statistic=score.statistic,
                               pvalue=score.pvalue, drifted=drifted))
    return out


def _exact_output_drift(recent: pl.DataFrame, reference: pl.DataFrame, drift_pvalue: float,
                        min_ks_statistic: float) -> list[OutputDrift]:
    from scipy.stats import ks_2samp

    out: list[OutputDrift] = []
    for col in [c for c in recent.columns if c.startswith("probability") and c in reference.columns]:
        a = recent.get_column(col).cast(pl.Float64).drop_nulls().to_numpy()
        b = reference.get_column(col).cast(pl.Float64).drop_nulls().to_numpy()
        if not len(a) or not len(b):
            out.append(OutputDrift(column=col, algorithm="ks", statistic=None, pvalue=None, drifted=False))
            continue
        test = ks_2samp(a, b)
        stat, pvalue = float(test.statistic), float(test.pvalue)
        out.append(OutputDrift(column=col, algorithm="ks", statistic=stat, pvalue=pvalue,
                               drifted=pvalue < drift_pvalue and stat >= min_ks_statistic))
    return out


def performance_decay(predictions: pl.DataFrame, labels: pl.DataFrame, spec: DatasetSpec,
                      auc_reference: float | None, *, auc_tolerance: float = 0.03,
                      min_rows: int = 50, alpha: float = 1.0) -> Performance:
    """AUC of the stored predictions against labels that arrived later, joined on the id column.

    A decay counts when it exceeds `auc_tolerance` and is significant at `alpha` (1.0: tolerance only)."""
    idc = spec.id_column
    for name, frame in (("predictions", predictions), ("labels", labels)):
        if idc not in frame.columns:
            raise ValueError(f"{name} frame has no id column {idc!r}")
    if spec.label_column not in labels.columns:
        raise ValueError(f"labels frame has no label column {spec.label_column!r}")
    bad = labels.filter(~pl.col(spec.label_column).cast(pl.Utf8).is_in(spec.classes)
                        | pl.col(spec.label_column).is_null())
    if bad.height:
        raise ValueError(f"labels frame: {bad.height} rows with a null or unknown {spec.label_column!r}, "
                         f"e.g. ids {bad.get_column(idc).head(5).to_list()}")
    joined = predictions.drop([c for c in ("label",) if c in predictions.columns]).join(
        labels.select(idc, spec.label_column), on=idc, how="inner")
    n = joined.height
    if n < min_rows:
        return Performance(labelled_rows=n, auc_now=None, auc_reference=auc_reference, decay=None,
                           concept_drift=False, detail=f"only {n} labelled rows (< {min_rows}); not judged")
    y = encode_labels(joined, spec)
    proba = proba_matrix(joined, spec)
    if len(np.unique(y)) < 2:
        return Performance(labelled_rows=n, auc_now=None, auc_reference=auc_reference, decay=None,
                           concept_drift=False, detail="labels have a single class; AUC undefined")
    auc_now = auc_score(y, proba)
    if auc_reference is None:
        return Performance(labelled_rows=n, auc_now=auc_now, auc_reference=None, decay=None,
                           concept_drift=False, detail=f"AUC now {auc_now:.4f}; no reference AUC to compare")
    decay = auc_reference - auc_now
    pvalue = _below_reference_pvalue(auc_now, auc_reference, int(y.sum()), int(len(y) - y.sum()))
    flagged = decay > auc_tolerance and pvalue < alpha
    return Performance(labelled_rows=n, auc_now=auc_now, auc_reference=auc_reference, decay=decay,
                       concept_drift=flagged, pvalue=pvalue,
                       detail=f"AUC now {auc_now:.4f} vs {auc_reference:.4f} at training "
                              f"(decay {decay:+.4f}, tolerance {auc_tolerance}, p={pvalue:.2g})")


def _below_reference_pvalue(auc: float, reference: float, positives: int, negatives: int) -> float:
    """P(an AUC this low | true AUC = reference), normal approximation with Hanley-McNeil's SE."""
    from scipy.stats import norm

    a = min(max(reference, 1e-6), 1 - 1e-6)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (positives - 1) * (q1 - a * a) + (negatives - 1) * (q2 - a * a)) / max(
        positives * negatives, 1)
    return float(norm.cdf((auc - reference) / max(var, 1e-12) ** 0.5))


def monitor(
    recent: pl.DataFrame,
    reference_profile: DatasetProfileView,
    spec: DatasetSpec,
    *,
    recent_predictions: pl.DataFrame | None = None,
    reference_predictions: pl.DataFrame | DatasetProfileView | None = None,
    labels: pl.DataFrame | None = None,
    auc_reference: float | None = None,
    calibrator: Calibrator | None = None,
    drift_settings: DriftSettings | None = None,
    settings: MonitorSettings | None = None,
) -> MonitorReport:
    """Compare recent inputs/outputs with the references, estimate performance, and with labels measure it.

    The tests that ran share the false-alarm budget; the estimated drop has no p-value and counts
    on its threshold alone (its false alarms are in the measured rate, `bench/bench_monitor.py`)."""
    ms = settings or MonitorSettings()
    with_outputs = recent_predictions is not None and reference_predictions is not None
    if labels is not None and recent_predictions is None:
        raise ValueError("labels given without recent_predictions: performance needs both")
    alpha = ms.false_alarm_rate / (1 + int(with_outputs) + int(labels is not None))
    base = drift_settings or DriftSettings()
    input_settings = base.model_copy(update={"drift_pvalue": min(base.drift_pvalue, alpha)})
    reasons: list[str] = []
    signals: list[Signal] = []
    inputs = detect_drift(profile_inputs(recent, spec), reference_profile, spec, input_settings)
    signals.append(Signal(name="input drift (features drifted)", value=float(len(inputs.drifted)),
                          threshold=f">= {base.min_drifted_columns} or {base.min_drifted_share:.0%} "
                                    f"(Holm at {alpha:.3g})", fired=inputs.decision))
    if inputs.decision:
        reasons.extend(f"input drift: {r}" for r in inputs.reasons)
    outputs: list[OutputDrift] = []
    if recent_predictions is not None and reference_predictions is not None:
        outputs = output_drift(recent_predictions, reference_predictions, drift_pvalue=alpha,
                               min_ks_statistic=ms.min_output_ks)
        for o in outputs:
            signals.append(Signal(name=f"prediction drift ({o.column} KS)", value=o.statistic,
                                  threshold=f">= {ms.min_output_ks} and p < {alpha:.3g}", fired=o.drifted))
            if o.drifted:
                reasons.append(f"prediction drift: {o.column} ({o.algorithm} statistic={o.statistic:.3g}, "
                               f"p={o.pvalue:.2g})")
    perf = None
    if labels is not None and recent_predictions is not None:
        perf = performance_decay(recent_predictions, labels, spec, auc_reference, auc_tolerance=ms.auc_tolerance,
                                 alpha=alpha)
        signals.append(Signal(name="realized AUC drop", value=perf.decay,
                              threshold=f"> {ms.auc_tolerance} and p < {alpha:.3g}", fired=perf.concept_drift))
        if perf.concept_drift:
            reasons.append(f"concept drift: {perf.detail}")
    est = None
    if calibrator is not None and recent_predictions is not None and len(spec.classes) == 2:
        ref_p = (reference_predictions.get_column("probability").to_numpy()
                 if isinstance(reference_predictions, pl.DataFrame) else None)
        est = estimate(recent_predictions.get_column("probability").to_numpy(), calibrator, spec, ref_p)
        drop = est.auc_drop
        fired = drop is not None and drop > ms.auc_tolerance
        signals.append(Signal(name="estimated AUC drop (CBPE)", value=drop, threshold=f"> {ms.auc_tolerance}",
                              fired=fired))
        if fired:
            reasons.append(f"estimated performance drop: expected AUC {est.auc:.4f} vs {est.reference_auc:.4f} "
                           f"on the reference rows (drop {drop:+.4f}, tolerance {ms.auc_tolerance})")
    detected = any(s.fired for s in signals)
    return MonitorReport(drift_detected=detected, reasons=reasons, rows=recent.height, input_drift=inputs,
                         output_drift=outputs, performance=perf, estimate=est, signals=signals)
