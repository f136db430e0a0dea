"""What flows return, in one place. Kept in an importable module: results are pickled by the worker, which
loads flow files by path, and read back by other processes (the demo, `lakeloop lineage`). Tasks build
some of them (a quarantine record, an experiment verdict), so they sit below the tasks, with the vocabulary."""

from __future__ import annotations

from pydantic import BaseModel


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
    unreadable: list[str] = []  # data objects quarantined whole (no reader could open them)


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


class RelabelRequest(BaseModel):
    round_id: str
    project_id: int
    candidates: int
    selected: int
    created: int
    existing: int
    queued: int
    open_before: int = 0  # unfinished tasks already waiting for the team when the round started
    skipped: str = ""  # why no round was sent (labeling disabled)

    @classmethod
    def skip(cls, reason: str) -> RelabelRequest:
        return cls(round_id="", project_id=0, candidates=0, selected=0, created=0, existing=0, queued=0,
                   skipped=reason)


class LabelIntake(BaseModel):
    project_id: int
    annotations: int
    corrections: int
    confirmed: int
    pending: int
    unsure: int
    held: int = 0
    disputed: int = 0  # consensus still unsure at the cap of annotators: stays flagged
    escalated: int = 0  # tasks sent to one more annotator this intake
    kappa: float | None = None  # mean pairwise Cohen's kappa of the annotators
    merge_commit: str | None = None


class InferenceOutcome(BaseModel):
    data_commit: str
    predictions_commit: str
    model_version: str
    rows: int
