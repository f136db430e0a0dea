"""Which rows should a human look at next, and why.

Input is leakage-free: out-of-fold probabilities (each row scored by a model
that never saw it), so a memorised wrong label cannot hide its own error.
cleanlab's confident learning flags rows whose given label disagrees with the
estimated noise structure (`find_label_issues`) and scores every label's
quality (`get_label_quality_scores`); we add two signals cleanlab does not see:
disagreement among ensemble members (a row the models cannot agree on is worth
a look) and ambiguity near the business decision threshold (where a wrong label
changes decisions). Every row gets an expected-value score, roughly "expected
label errors found per task", and the budget goes to the highest scores first.

`ReviewLedger` remembers what the labeling team already saw, keyed by row id
and a hash of the row's features and label, so a row is only sent again when
its data or its label changed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from enum import StrEnum

import numpy as np
import polars as pl
import sqlalchemy as sa
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores
from pydantic import BaseModel, ConfigDict, Field

from lakeloop.spec import DatasetSpec
from lakeloop.state_db import StateTable, insert_new


class LabelIssueError(ValueError):
    """Inputs that cannot be ranked; the message names the argument and the row."""


class IssueReason(StrEnum):
    likely_mislabeled = "likely_mislabeled"  # cleanlab: given label contradicts the out-of-fold evidence
    ambiguous = "ambiguous"  # probability close to the decision threshold (multi-class: small top-2 margin)
    members_disagree = "members_disagree"  # ensemble members disagree on the row


class IssueWeights(BaseModel):
    """How the signals combine into one expected-value score (all >= 0)."""

    model_config = ConfigDict(extra="forbid")

    # extra weight on P(label wrong) when cleanlab flags the row: its flag accounts for class noise rates
    flagged_bonus: float = Field(default=0.5, ge=0)
    # weight of member disagreement (normalised std of member probabilities, 0..1)
    disagreement: float = Field(default=0.25, ge=0)
    # weight of closeness to the decision threshold (0..1)
    ambiguity: float = Field(default=0.1, ge=0)
    # |p_positive - threshold| under this counts as ambiguous (multi-class: top-2 margin under it)
    ambiguity_band: float = Field(default=0.1, gt=0, lt=1)
    # normalised member disagreement above this counts as `members_disagree`
    disagreement_min: float = Field(default=0.3, gt=0, le=1)


class LabelIssue(BaseModel):
    """One row worth reviewing; `score` ranks rows (higher first)."""

    id: str
    given_label: int
    suggested_label: int
    p_given: float = Field(description="out-of-fold probability of the given label")
    p_suggested: float
    quality: float = Field(description="cleanlab label quality score (low = suspicious)")
    flagged: bool = Field(description="cleanlab's find_label_issues flagged the row")
    disagreement: float
    ambiguity: float
    score: float
    reasons: list[IssueReason]

    @property
    def reason(self) -> IssueReason:
        """The main reason, in order of evidence strength."""
        return self.reasons[0]


def _check_inputs(ids: Sequence[str], labels: np.ndarray, proba: np.ndarray,
                  members: Sequence[np.ndarray] | None) -> None:
    n = len(ids)
    if proba.ndim != 2 or proba.shape[0] != n:
        raise LabelIssueError(f"oof_proba: expected shape ({n}, k), got {proba.shape}")
    if labels.shape != (n,):
        raise LabelIssueError(f"labels: expected {n} class indices, got shape {labels.shape}")
    k = proba.shape[1]
    if k < 2:
        raise LabelIssueError("oof_proba: needs at least 2 class columns")
    bad = np.flatnonzero((labels < 0) | (labels >= k))
    if bad.size:
        raise LabelIssueError(f"labels: row {bad[0]} (id {ids[bad[0]]!r}) has class index {labels[bad[0]]}, "
                              f"expected 0..{k - 1}")
    nonfinite = np.flatnonzero(~np.isfinite(proba).all(axis=1))
    if nonfinite.size:
        raise LabelIssueError(f"oof_proba: row {nonfinite[0]} (id {ids[nonfinite[0]]!r}) is not finite")
    off = np.flatnonzero(np.abs(proba.sum(axis=1) - 1.0) > 1e-3)
    if off.size:
        raise LabelIssueError(f"oof_proba: row {off[0]} (id {ids[off[0]]!r}) does not sum to 1")
    if len(set(ids)) != n:
        dup = next(i for i in ids if list(ids).count(i) > 1)
        raise LabelIssueError(f"ids: duplicate id {dup!r}")
    for j, m in enumerate(members or []):
        if m.shape != proba.shape:
            raise LabelIssueError(f"member_proba[{j}]: expected shape {proba.shape}, got {m.shape}")


def member_disagreement(members: Sequence[np.ndarray]) -> np.ndarray:
    """Per row, 0 (members agree) .. 1 (maximal disagreement).

    The max of two views: the std of member probabilities (largest over classes,
    scaled by 0.5, the largest possible std of a probability) and the normalised
    entropy of the members' votes.
    """
    if len(members) < 2:
        n = members[0].shape[0] if members else 0
        return np.zeros(n)
    stack = np.stack(members)  # (m, n, k)
    std = np.clip(stack.std(axis=0).max(axis=1) / 0.5, 0.0, 1.0)
    k = stack.shape[2]
    votes = stack.argmax(axis=2)  # (m, n)
    counts = np.stack([(votes == c).sum(axis=0) for c in range(k)], axis=1) / stack.shape[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.nansum(np.where(counts > 0, counts * np.log(counts), 0.0), axis=1)
    vote_entropy = ent / np.log(min(k, stack.shape[0]))
    return np.asarray(np.maximum(std, vote_entropy))


def threshold_ambiguity(proba: np.ndarray, threshold: float, positive_index: int = 1) -> np.ndarray:
    """Per row, 1 at the decision threshold falling to 0 at the far end (multi-class: 1 - top-2 margin)."""
    if proba.shape[1] == 2:
        p = proba[:, positive_index]
        span = np.where(p >= threshold, 1.0 - threshold, threshold)
        return np.asarray(1.0 - np.abs(p - threshold) / span)
    top2 = np.sort(proba, axis=1)[:, -2:]
    return np.asarray(1.0 - (top2[:, 1] - top2[:, 0]))


def rank_label_issues(
    ids: Sequence[str],
    labels: np.ndarray,
    oof_proba: np.ndarray,
    *,
    member_proba: Sequence[np.ndarray] | None = None,
    threshold: float = 0.5,
    positive_index: int = 1,
    weights: IssueWeights | None = None,
) -> list[LabelIssue]:
    """Every row with at least one reason, highest expected value first.

    `labels` are class indices into the columns of `oof_proba` (see
    `features.encode_labels`); `member_proba` are the members' out-of-fold
    probabilities, same shape. `threshold` is the business threshold on the
    positive column (binary only).
    """
    w = weights or IssueWeights()
    labels = np.asarray(labels).astype(np.int64)
    proba = np.asarray(oof_proba, dtype=np.float64)
    members = [np.asarray(m, dtype=np.float64) for m in (member_proba or [])]
    _check_inputs(ids, labels, proba, members)
    n = len(ids)
    if n == 0:
        return []

    quality = get_label_quality_scores(labels, proba, method="self_confidence")
    present = np.unique(labels)
    flagged = np.zeros(n, dtype=bool)
    if len(present) == proba.shape[1]:  # cleanlab needs every class present to estimate noise rates
        flagged = find_label_issues(labels, proba, filter_by="prune_by_noise_rate", n_jobs=1)
    else:
        flagged = quality < 0.5 * (1.0 / proba.shape[1])

    p_given = proba[np.arange(n), labels]
    suggested = proba.argmax(axis=1)
    dis = member_disagreement(members) if members else np.zeros(n)
    amb = threshold_ambiguity(proba, threshold, positive_index)
    band_amb = 1.0 - w.ambiguity_band / (max(threshold, 1 - threshold) if proba.shape[1] == 2 else 1.0)

    p_wrong = 1.0 - p_given
    score = p_wrong * (1.0 + w.flagged_bonus * flagged) + w.disagreement * dis + w.ambiguity * amb

    issues: list[LabelIssue] = []
    for i in range(n):
        reasons: list[IssueReason] = []
        if flagged[i]:
            reasons.append(IssueReason.likely_mislabeled)
        if dis[i] >= w.disagreement_min:
            reasons.append(IssueReason.members_disagree)
        if amb[i] >= band_amb:
            reasons.append(IssueReason.ambiguous)
        if not reasons:
            continue
        issues.append(LabelIssue(
            id=str(ids[i]), given_label=int(labels[i]), suggested_label=int(suggested[i]),
            p_given=float(p_given[i]), p_suggested=float(proba[i, suggested[i]]), quality=float(quality[i]),
            flagged=bool(flagged[i]), disagreement=float(dis[i]), ambiguity=float(amb[i]),
            score=float(score[i]), reasons=reasons,
        ))
    issues.sort(key=lambda x: (-x.score, x.id))
    return issues


def select_budget(
    issues: Sequence[LabelIssue],
    budget: int,
    *,
    ledger: ReviewLedger | None = None,
    row_hashes: dict[str, str] | None = None,
) -> list[LabelIssue]:
    """The `budget` highest-value issues not already reviewed in their current state.

    With a ledger, `row_hashes` (id -> `row_hash`) must cover every issue: a row
    is skipped only when the ledger saw the same id with the same hash.
    """
    if budget < 0:
        raise LabelIssueError(f"budget must be >= 0, got {budget}")
    ordered = sorted(issues, key=lambda x: (-x.score, x.id))
    if ledger is not None:
        if row_hashes is None:
            raise LabelIssueError("select_budget: a ledger needs row_hashes to know which rows changed")
        missing = [i.id for i in ordered if i.id not in row_hashes]
        if missing:
            raise LabelIssueError(f"row_hashes: no hash for id {missing[0]!r} ({len(missing)} ids missing)")
        seen = ledger.reviewed({i.id: row_hashes[i.id] for i in ordered})
        ordered = [i for i in ordered if i.id not in seen]
    return list(ordered[:budget])


# ---- row identity ----------------------------------------------------------
def row_hashes(df: pl.DataFrame, spec: DatasetSpec, label_column: str | None = None) -> dict[str, str]:
    """id -> sha256 (16 hex) of the row's feature values and label; changes when data or label change."""
    label = label_column or spec.label_column
    cols = [spec.id_column, *spec.feature_names, label]
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise LabelIssueError(f"row_hashes: frame lacks column(s) {missing}")
    out: dict[str, str] = {}
    for row in df.select(cols).iter_rows():
        payload = json.dumps([_jsonable(v) for v in row[1:]], separators=(",", ":"))
        out[str(row[0])] = hashlib.sha256(payload.encode()).hexdigest()[:16]
    return out


def _jsonable(v: object) -> object:
    if isinstance(v, float):
        return None if v != v else round(v, 9)  # NaN -> null; round away float formatting noise
    if isinstance(v, str | int | bool) or v is None:
        return v
    return str(v)


# ---- review ledger -----------------------------------------------------------
class ReviewLedger(StateTable):
    """Durable record of rows sent for review: (id, row hash) -> round, time (lakeloop's state database)."""

    schema = ("CREATE TABLE IF NOT EXISTS reviewed (id TEXT NOT NULL, row_hash TEXT NOT NULL, "
              "round TEXT NOT NULL, reviewed_at TEXT NOT NULL, PRIMARY KEY (id, row_hash))")

    filename = "label_review.sqlite"

    def reviewed(self, rows: dict[str, str]) -> set[str]:
        """Ids in `rows` (id -> hash) already reviewed with that same hash."""
        if not rows:
            return set()
        query = sa.text("SELECT id, row_hash FROM reviewed WHERE id IN :ids").bindparams(
            sa.bindparam("ids", expanding=True))
        ids = list(rows)
        hits: set[str] = set()
        with self.db.read() as c:
            for start in range(0, len(ids), 500):  # bounded IN lists (SQLite's variable limit)
                hits.update(i for i, h in c.execute(query, {"ids": ids[start:start + 500]}) if rows[i] == h)
        return hits

    def mark(self, rows: dict[str, str], round_id: str) -> int:
        """Record rows (id -> hash) as reviewed in `round_id`; returns how many were new."""
        now = datetime.now(UTC).isoformat()
        with self.db.write() as c:
            return insert_new(c, "INSERT INTO reviewed VALUES (:i, :h, :round, :now) ON CONFLICT DO NOTHING",
                              [{"i": i, "h": h, "round": round_id, "now": now} for i, h in rows.items()])

    def count(self) -> int:
        with self.db.read() as c:
            return int(c.execute(sa.text("SELECT COUNT(*) FROM reviewed")).scalar_one())


def issues_frame(issues: Iterable[LabelIssue], spec: DatasetSpec | None = None) -> pl.DataFrame:
    """Issues as a frame (for reports and MLflow artifacts); class names when a spec is given."""
    rows = [i.model_dump() for i in issues]
    for r in rows:
        r["reasons"] = ",".join(str(x) for x in r["reasons"])
    schema = {"id": pl.Utf8, "given_label": pl.Int64, "suggested_label": pl.Int64, "p_given": pl.Float64,
              "p_suggested": pl.Float64, "quality": pl.Float64, "flagged": pl.Boolean,
              "disagreement": pl.Float64, "ambiguity": pl.Float64, "score": pl.Float64, "reasons": pl.Utf8}
    df = pl.DataFrame(rows, schema=schema)
    if spec is not None:
        from tasks.model.train import class_names

        names = class_names(spec)
        df = df.with_columns(
            pl.col("given_label").map_elements(lambda i: names[i], return_dtype=pl.Utf8).alias("given_class"),
            pl.col("suggested_label").map_elements(lambda i: names[i], return_dtype=pl.Utf8)
            .alias("suggested_class"),
        )
    return df
