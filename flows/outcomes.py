"""What flows return. Kept in an importable module: results are pickled by the worker, which loads flow
files by path, and read back by other processes (the demo, `lakeloop lineage`)."""

from __future__ import annotations

from pydantic import BaseModel

from tasks.decide import CommitOutcome, Decision, ExperimentOutcome, ModelRef, QuarantineRecord

__all__ = ["CommitOutcome", "Decision", "ExperimentOutcome", "InferenceOutcome", "LabelIntake", "ModelRef",
           "QuarantineRecord", "RelabelRequest"]


class RelabelRequest(BaseModel):
    round_id: str
    project_id: int
    candidates: int
    selected: int
    created: int
    existing: int
    queued: int
    open_before: int = 0  # unfinished tasks already waiting for the team when the round started


class LabelIntake(BaseModel):
    project_id: int
    annotations: int
    corrections: int
    confirmed: int
    pending: int
    unsure: int
    held: int = 0
    merge_commit: str | None = None


class InferenceOutcome(BaseModel):
    data_commit: str
    predictions_commit: str
    model_version: str
    rows: int
