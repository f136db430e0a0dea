"""Whether a commit retrains the model, and why, as data the flow can show and return."""

from __future__ import annotations

from lakeloop.outcomes import Decision
from tasks.data.dataset import CommitBatch
from tasks.data.drift import DriftReport


def decide(batch: CommitBatch, drift: DriftReport | None, *, has_model: bool,
           trained_versions: list[str] | None = None) -> Decision:
    """First data trains; later commits retrain on dataset drift or on changed labels, nothing else.

    A commit that already has a model (a redelivered event, a manual re-run) is never trained twice."""
    if trained_versions:
        return Decision(retrain=False, reason="already-trained",
                        reasons=[f"this commit already trained version(s) {', '.join(trained_versions)}"])
    if batch.labels_changed:
        return Decision(retrain=True, reason="labels-changed",
                        reasons=[f"label corrections changed: {', '.join(batch.labels_changed)}"])
    if not batch.valid.height:
        why = "no valid rows in this commit" if batch.checks or batch.unreadable else "no data objects changed"
        return Decision(retrain=False, reason="no-new-data", reasons=[why])
    if not has_model:
        return Decision(retrain=True, reason="first-model", reasons=["no model trained yet"])
    assert drift is not None
    if drift.decision:
        return Decision(retrain=True, reason="drift", reasons=drift.reasons)
    return Decision(retrain=False, reason="no-drift",
                    reasons=drift.reasons or [f"no feature drifted ({len(drift.columns)} compared)"])
