"""Whether a commit retrains the model, and why, as data the flow can show and return."""

from __future__ import annotations

from pydantic import BaseModel

from tasks.dataset import CommitBatch
from tasks.drift import DriftReport


class Decision(BaseModel):
    retrain: bool
    reason: str  # first-model | drift | labels-changed | no-drift | no-new-data
    reasons: list[str]

    @property
    def summary(self) -> str:
        return f"{'retrain' if self.retrain else 'keep model'} ({self.reason}): " + "; ".join(self.reasons)


class ModelRef(BaseModel):
    name: str
    version: str
    run_id: str
    promoted: bool = False
    metrics: dict[str, float] = {}


class QuarantineRecord(BaseModel):
    branch: str
    commit_id: str | None
    objects: list[str]
    rows: int


class ExperimentOutcome(BaseModel):
    """What a branch would do to the model: a candidate judged on the watched branch's trusted holdout."""

    branch: str
    commit_id: str
    verdict: str  # better | not-worse | worse
    summary: str
    candidate: ModelRef | None = None
    champion_version: str | None = None
    eval_commit: str = ""
    reasons: list[str] = []
    drifted: list[str] = []
    report_paths: list[str] = []  # on the branch, at `report_commit`
    report_commit: str | None = None


class CommitOutcome(BaseModel):
    commit_id: str
    branch: str
    decision: Decision
    batch_rows: int
    invalid_rows: int
    quarantine: QuarantineRecord | None = None
    model: ModelRef | None = None
    drifted: list[str] = []
    experiment: ExperimentOutcome | None = None


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
        why = "no valid rows in this commit" if batch.checks else "no data objects changed"
        return Decision(retrain=False, reason="no-new-data", reasons=[why])
    if not has_model:
        return Decision(retrain=True, reason="first-model", reasons=["no model trained yet"])
    assert drift is not None
    if drift.decision:
        return Decision(retrain=True, reason="drift", reasons=drift.reasons)
    return Decision(retrain=False, reason="no-drift",
                    reasons=drift.reasons or [f"no feature drifted ({len(drift.columns)} compared)"])
