"""Turn the labeling team's answers into label corrections, and into a lakeFS commit.

A single annotator can be wrong, so a label changes only under an agreement
policy: every answer so far and the model's out-of-fold probabilities make a
CROWDLAB consensus per row (`tasks.labels.consensus`); it is accepted when its
quality clears a threshold, otherwise the row goes to one more annotator, up to
a cap. One trusted reviewer's answer settles a row alone. "Unsure"/skipped
answers keep the row flagged and change no data.

How corrected labels live in the lake: the data objects stay as ingested;
each round adds `labels/corrections/<round>.parquet` (id, old/new label, who,
when, consensus quality) and, beside it, the round's annotator quality in
`labels/quality/<round>-annotators.parquet`. The dataset reader overlays every
corrections object at a ref (last correction per id wins), so any ref -
including an old one - reads with exactly the corrections committed up to it,
and a correction is reverted like any other commit.

`AppliedLedger` records every annotation (id + its update time) once it has
been committed, so an annotation is never applied twice and an edited
annotation is seen again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

import numpy as np
import polars as pl
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, model_validator

from lakeloop.adapters.label_studio import UNSURE, Annotation
from lakeloop.adapters.lakefs import Lake
from lakeloop.layout import CORRECTIONS_PREFIX, LABEL_QUALITY_PREFIX
from lakeloop.spec import DatasetSpec
from lakeloop.state_db import StateTable, insert_new
from tasks.data.label_overlay import CORRECTIONS_SCHEMA, CorrectionError, empty_corrections
from tasks.labels.consensus import ConsensusReport, crowd_consensus
from tasks.model.train import class_names


class Verdict(StrEnum):
    ACCEPT = "accept"  # the consensus replaces (or confirms) the label
    WAIT = "wait"  # fewer answers than Label Studio's overlap asks for: more are on their way
    ESCALATE = "escalate"  # consensus too unsure: one more annotator
    DISPUTED = "disputed"  # still unsure at the cap: stays flagged, the data unchanged


class AgreementPolicy(BaseModel):
    """When does the labeling team's answer replace a label?

    The row's CROWDLAB consensus (`tasks.labels.consensus`) is accepted once the row has `min_annotators`
    answers and the consensus quality reaches `min_quality`; below it the row goes to one more annotator,
    up to `max_annotators`, and then stays flagged (disputed). A trusted reviewer's answer settles a row alone.
    """

    model_config = ConfigDict(extra="forbid")

    min_annotators: int = Field(default=2, ge=1, description="answers a row gathers before its consensus is judged")
    max_annotators: int = Field(default=3, ge=1, description="cap on the answers asked for one row")
    min_quality: float = Field(default=0.7, ge=0.0, le=1.0, description="consensus quality that accepts it")
    trusted_reviewers: list[str] = Field(default_factory=list,
                                         description="annotators (e-mail) whose single answer suffices")

    @model_validator(mode="after")
    def _cap_covers_floor(self) -> AgreementPolicy:
        if self.max_annotators < self.min_annotators:
            raise ValueError(f"max_annotators ({self.max_annotators}) < min_annotators ({self.min_annotators})")
        return self

    def verdict(self, quality: float, answers: int) -> Verdict:
        """What to do with a row whose consensus has this quality after this many answers (unsure included)."""
        if answers < self.min_annotators:
            return Verdict.WAIT
        if quality >= self.min_quality:
            return Verdict.ACCEPT
        return Verdict.ESCALATE if answers < self.max_annotators else Verdict.DISPUTED


@dataclass
class Resolution:
    corrections: pl.DataFrame  # CORRECTIONS_SCHEMA; rows whose label changes
    confirmed: list[str] = field(default_factory=list)  # the consensus is the current label
    pending: list[str] = field(default_factory=list)  # waiting for more answers (the overlap, or one more annotator)
    unsure: list[str] = field(default_factory=list)  # only unsure/skipped answers: stays flagged
    disputed: list[str] = field(default_factory=list)  # consensus still unsure at the cap: stays flagged
    escalate: dict[int, int] = field(default_factory=dict)  # task id -> answers it now needs (one more annotator)
    decided: list[Annotation] = field(default_factory=list)  # annotations consumed by corrections/confirmations
    consensus: ConsensusReport | None = None  # every answered row and annotator, for the round's report

    @property
    def decided_ids(self) -> list[int]:
        return [a.annotation_id for a in self.decided]


def resolve(
    annotations: Sequence[Annotation],
    current_labels: dict[str, str],
    policy: AgreementPolicy,
    spec: DatasetSpec,
    ledger: AppliedLedger | None = None,
    model_proba: Mapping[str, np.ndarray] | None = None,
) -> Resolution:
    """Group answers per row (each annotator's latest answer counts) and apply the policy.

    The consensus and the annotators' quality use every answer, applied or not (the more answers, the
    better CROWDLAB knows each annotator); only rows with an answer not yet in `ledger` are decided.
    `model_proba`: row id -> out-of-fold probabilities in `class_names(spec)` order (rows without them
    get no model opinion). Every annotated row must be in `current_labels` (id -> current class name).
    """
    fresh = list(annotations) if ledger is None else ledger.unapplied(annotations)
    to_decide = {a.row_id for a in fresh}
    by_row: dict[str, dict[int, Annotation]] = {}
    for a in sorted(annotations, key=lambda a: (a.updated_at, a.annotation_id)):
        if not a.unsure and a.choice not in spec.classes:
            raise CorrectionError(f"annotation {a.annotation_id} (task {a.task_id}, row {a.row_id!r}): "
                                  f"choice {a.choice!r} is not one of {spec.classes} or {UNSURE!r}")
        if a.row_id not in current_labels:
            raise CorrectionError(f"annotations for row {a.row_id!r}, which is not in the current dataset")
        by_row.setdefault(a.row_id, {})[a.annotator_id] = a  # latest per annotator wins
    report = crowd_consensus({r: {a.annotator: str(a.choice) for a in answers.values() if not a.unsure}
                              for r, answers in by_row.items()}, class_names(spec), model_proba)
    consensus = report.by_row()
    trusted = set(policy.trusted_reviewers)
    rows: list[dict[str, object]] = []
    res = Resolution(corrections=empty_corrections(), consensus=report)
    for row_id in sorted(to_decide):
        answers = list(by_row[row_id].values())
        decisive = [a for a in answers if not a.unsure]
        trusted_answers = [a for a in decisive if a.annotator in trusted]
        if trusted_answers:
            new_label = str(max(trusted_answers, key=lambda a: (a.updated_at, a.annotation_id)).choice)
            quality = consensus[row_id][1]
        elif not decisive:
            res.unsure.append(row_id)
            continue
        else:
            new_label, quality = consensus[row_id]
            verdict = policy.verdict(quality, len(answers))
            if verdict is Verdict.DISPUTED:
                res.disputed.append(row_id)
                continue
            if verdict is not Verdict.ACCEPT:
                res.pending.append(row_id)
                if verdict is Verdict.ESCALATE:
                    latest = max(answers, key=lambda a: (a.updated_at, a.annotation_id))
                    res.escalate[latest.task_id] = len(answers) + 1
                continue
        res.decided.extend(answers)
        old = current_labels[row_id]
        if new_label == old:
            res.confirmed.append(row_id)
            continue
        agreeing = [a for a in decisive if a.choice == new_label]
        times = [a.updated_at for a in agreeing]
        rows.append({
            "id": row_id, "old_label": old, "new_label": new_label,
            "annotators": sorted({a.annotator for a in agreeing}),
            "annotation_ids": sorted(a.annotation_id for a in agreeing),
            "task_id": agreeing[-1].task_id,
            "first_annotated_at": min(times), "last_annotated_at": max(times),
            "consensus_quality": float(quality),
        })
    if rows:
        res.corrections = pl.DataFrame(rows, schema=CORRECTIONS_SCHEMA)
    return res


# ---- lakeFS ----------------------------------------------------------------
def new_round_id(now: datetime | None = None) -> str:
    """Round ids sort in time order, so corrections objects list oldest first."""
    return (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")


def corrections_path(round_id: str) -> str:
    return f"{CORRECTIONS_PREFIX}{round_id}.parquet"


def quality_paths(round_id: str) -> tuple[str, str]:
    """(per-row consensus, per-annotator quality) objects of a round, beside its corrections."""
    return (f"{LABEL_QUALITY_PREFIX}{round_id}-rows.parquet", f"{LABEL_QUALITY_PREFIX}{round_id}-annotators.parquet")


def commit_corrections(lake: Lake, round_id: str, corrections: pl.DataFrame, spec: DatasetSpec,
                       metadata: dict[str, str] | None = None, consensus: ConsensusReport | None = None) -> str:
    """Write the round's corrections (and its consensus report) on branch `relabel-<round>`, commit, merge
    into the default branch.

    Returns the merge commit id. (lakeFS branch names cannot contain '/'.)
    """
    if corrections.height == 0:
        raise CorrectionError(f"round {round_id!r}: no corrections to commit")
    main = lake.settings.default_branch
    branch = f"relabel-{round_id}"
    lake.ensure_branch(branch, main)
    meta = {
        "lakeloop.kind": "label-corrections",
        "lakeloop.round": round_id,
        "lakeloop.corrections": str(corrections.height),
        "lakeloop.dataset": spec.name,
        **(metadata or {}),
    }
    lake.write_frame(branch, corrections_path(round_id), corrections, metadata={"round": round_id})
    if consensus is not None:
        rows_path, annotators_path = quality_paths(round_id)
        lake.write_frame(branch, rows_path, consensus.rows, metadata={"round": round_id})
        lake.write_frame(branch, annotators_path, consensus.annotator_frame(), metadata={"round": round_id})
        if consensus.kappa is not None:
            meta["lakeloop.kappa"] = f"{consensus.kappa:.4f}"
    lake.commit(branch, f"labels: {corrections.height} corrections from review round {round_id}", meta)
    merged = lake.merge(branch, main, message=f"Merge label corrections of round {round_id}", metadata=meta)
    lake.delete_branch(branch)
    return merged


# ---- applied-annotations ledger -------------------------------------------
class AppliedLedger(StateTable):
    """Annotations already applied, keyed by (annotation id, update time), in lakeloop's state database."""

    schema = ("CREATE TABLE IF NOT EXISTS applied (annotation_id INTEGER NOT NULL, "
              "updated_at TEXT NOT NULL, row_id TEXT NOT NULL, round TEXT NOT NULL, "
              "applied_at TEXT NOT NULL, PRIMARY KEY (annotation_id, updated_at))")
    filename = "label_applied.sqlite"

    def unapplied(self, annotations: Iterable[Annotation]) -> list[Annotation]:
        with self.db.read() as c:
            done = {(int(i), str(u)) for i, u in c.execute(sa.text("SELECT annotation_id, updated_at FROM applied"))}
        return [a for a in annotations if (a.annotation_id, a.updated_at.isoformat()) not in done]

    def mark(self, annotations: Iterable[Annotation], round_id: str) -> int:
        """Record annotations as applied (call after the commit landed); returns how many were new."""
        now = datetime.now(UTC).isoformat()
        with self.db.write() as c:
            return insert_new(c, "INSERT INTO applied VALUES (:a, :u, :r, :round, :now) ON CONFLICT DO NOTHING",
                              [{"a": a.annotation_id, "u": a.updated_at.isoformat(), "r": a.row_id,
                                "round": round_id, "now": now} for a in annotations])

    def count(self) -> int:
        with self.db.read() as c:
            return int(c.execute(sa.text("SELECT COUNT(*) FROM applied")).scalar_one())
