"""The monitor's record of past batches: what each signal measured, charted, and when it last asked for a retrain.

Why in MLflow metrics on the champion's run: the history then lives with the model it describes (a new
champion starts a new one), ML engineers see it charted in MLflow's UI, and every monitor host reads the
same record, which the retrain cooldown needs.
"""

from __future__ import annotations

import time

from tasks.serving.monitoring import MonitorReport

RETRAIN_REQUESTED = "monitor.retrain_requested"
CHARTED = {
    "monitor.input_drifted_columns": "input: features drifted",
    "monitor.output_ks": "prediction drift: KS",
    "monitor.estimated_auc": "estimated AUC (CBPE)",
    "monitor.realized_auc": "realized AUC",
    "monitor.drift": "drift detected",
}
_BARS = "▁▂▃▄▅▆▇█"


def batch_metrics(report: MonitorReport, *, retrain_requested: bool) -> dict[str, float]:
    """One batch's figures; a signal that was not measured is left out rather than charted as 0."""
    out: dict[str, float] = {"monitor.drift": float(report.drift_detected),
                             RETRAIN_REQUESTED: float(retrain_requested)}
    if report.input_drift is not None:
        out["monitor.input_drifted_columns"] = float(len(report.input_drift.drifted))
    ks = [o.statistic for o in report.output_drift if o.statistic is not None]
    if ks:
        out["monitor.output_ks"] = max(ks)
    if report.estimate is not None and report.estimate.auc is not None:
        out["monitor.estimated_auc"] = report.estimate.auc
    if report.performance is not None and report.performance.auc_now is not None:
        out["monitor.realized_auc"] = report.performance.auc_now
    return out


def in_cooldown(retrain_requests: list[tuple[int, float]], cooldown_hours: float, now: float | None = None) -> bool:
    """Was a retrain requested (value 1) less than `cooldown_hours` ago? Points are (timestamp ms, value)."""
    now_ms = (time.time() if now is None else now) * 1000
    return any(v >= 1 and now_ms - ts < cooldown_hours * 3_600_000 for ts, v in retrain_requests)


def sparkline(values: list[float]) -> str:
    """A one-line chart: enough to see a trend in a markdown table, and it renders anywhere."""
    if not values:
        return ""
    lo, hi = min(values), max(values)
    span = hi - lo
    return "".join(_BARS[0 if span == 0 else round((v - lo) / span * (len(_BARS) - 1))] for v in values)


def to_markdown(report: MonitorReport, history: dict[str, list[tuple[int, float]]]) -> str:
    """This batch's signals against their thresholds, then each figure's trend over the last batches."""
    lines = ["### Signals", "", "| signal | this batch | threshold | fired |", "|---|---:|---|---|"]
    for s in report.signals:
        value = "" if s.value is None else f"{s.value:.4g}"
        lines.append(f"| {s.name} | {value} | {s.threshold} | {'**yes**' if s.fired else 'no'} |")
    if report.estimate is not None and report.estimate.auc is not None:
        realized = (f"{report.performance.auc_now:.4f}" if report.performance is not None
                    and report.performance.auc_now is not None else "labels not yet arrived")
        lines += ["", f"Estimated AUC {report.estimate.auc:.4f} (reference rows "
                      f"{report.estimate.reference_auc or float('nan'):.4f}); realized: {realized}. "
                      f"Estimated value per row {report.estimate.value_per_row:+.3f}."]
    rows = [(CHARTED[k], [v for _, v in pts]) for k, pts in history.items() if pts and k in CHARTED]
    if rows:
        lines += ["", "### History (oldest → newest)", "", "| figure | trend | last | min | max |",
                  "|---|---|---:|---:|---:|"]
        for label, vals in rows:
            lines.append(f"| {label} | `{sparkline(vals)}` | {vals[-1]:.4g} | {min(vals):.4g} | {max(vals):.4g} |")
    return "\n".join(lines)
