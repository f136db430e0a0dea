"""One consensus label per row, and how reliable each annotator is, from every answer and the model (CROWDLAB).

Why not count votes: a count treats a careless annotator like a careful one and ignores the model. cleanlab's
CROWDLAB (`cleanlab.multiannotator`) weighs each annotator by how often they agree with the others and the
model by how often it agrees with the annotators, and returns a consensus label per row with a quality score
(roughly the probability that the consensus is right) and a quality per annotator. An annotator's error is
estimated as their disagreement with the consensus: the consensus is far more accurate than any one of them
(`labels.consensus_vs_majority` in bench/results.json checks the estimate against simulated truth).

Agreement between annotators is Cohen's kappa (scikit-learn) per pair of annotators on the rows both
answered, averaged with the shared rows as weights.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import polars as pl
from cleanlab.multiannotator import get_label_quality_multiannotator
from pydantic import BaseModel, ConfigDict
from sklearn.metrics import cohen_kappa_score

# row id -> {annotator -> class name}: each annotator's latest decisive answer (unsure answers left out)
Answers = Mapping[str, Mapping[str, str]]

CONSENSUS_SCHEMA: dict[str, pl.DataType] = {
    "row_id": pl.Utf8(), "consensus_label": pl.Utf8(), "quality": pl.Float64(),
    "answers": pl.Int64(), "agreement": pl.Float64(),
}


class AnnotatorQuality(BaseModel):
    """How one annotator did over every row they answered."""

    model_config = ConfigDict(extra="forbid")

    annotator: str
    answered: int
    quality: float | None  # CROWDLAB's annotator quality (0-1, higher is better); None if it cannot be estimated
    agreement_with_consensus: float
    error_estimate: float  # 1 - agreement with the consensus
    worst_class: str | None = None


@dataclass
class ConsensusReport:
    rows: pl.DataFrame  # CONSENSUS_SCHEMA, one row per answered row
    annotators: list[AnnotatorQuality]
    kappa: float | None  # mean pairwise Cohen's kappa; None without a pair sharing two rows
    model_weight: float | None  # CROWDLAB's trust in the model relative to the annotators
    method: str  # "crowdlab", or "model" when one answer per row leaves nothing to compare

    def by_row(self) -> dict[str, tuple[str, float]]:
        """row id -> (consensus label, quality)."""
        return {r: (c, q) for r, c, q in self.rows.select("row_id", "consensus_label", "quality").iter_rows()}

    def metrics(self) -> dict[str, float]:
        """Flat figures for MLflow: per annotator `annotator.<name>.<figure>`, and the round's overall ones."""
        out: dict[str, float] = {"rows": float(self.rows.height), "annotators": float(len(self.annotators))}
        if self.rows.height:
            out["consensus_quality_mean"] = float(self.rows["quality"].mean())  # type: ignore[arg-type]
        if self.kappa is not None:
            out["kappa"] = self.kappa
        if self.model_weight is not None:
            out["model_weight"] = self.model_weight
        for a in self.annotators:
            key = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in a.annotator)
            out[f"annotator.{key}.answered"] = float(a.answered)
            out[f"annotator.{key}.error_estimate"] = a.error_estimate
            if a.quality is not None:
                out[f"annotator.{key}.quality"] = a.quality
        return out

    def annotator_frame(self) -> pl.DataFrame:
        return pl.DataFrame([a.model_dump() for a in self.annotators],
                            schema={"annotator": pl.Utf8, "answered": pl.Int64, "quality": pl.Float64,
                                    "agreement_with_consensus": pl.Float64, "error_estimate": pl.Float64,
                                    "worst_class": pl.Utf8})


def crowd_consensus(answers: Answers, classes: Sequence[str],
                    model_proba: Mapping[str, np.ndarray] | None = None) -> ConsensusReport:
    """Consensus of `answers` given the model's out-of-fold probabilities (`classes` order) per row id.

    Rows the model did not score get uniform probabilities: CROWDLAB then gives the model no say on them.
    """
    row_ids = sorted(r for r, a in answers.items() if a)
    classes = list(classes)
    index = {c: k for k, c in enumerate(classes)}
    people = sorted({who for r in row_ids for who in answers[r]})
    wide = np.full((len(row_ids), len(people)), np.nan)
    col = {p: j for j, p in enumerate(people)}
    for i, r in enumerate(row_ids):
        for who, choice in answers[r].items():
            if choice not in index:
                raise ValueError(f"row {r!r}: {who} answered {choice!r}, not one of {classes}")
            wide[i, col[who]] = index[choice]
    proba = _model_matrix(row_ids, len(classes), model_proba)
    if not row_ids:
        return ConsensusReport(pl.DataFrame(schema=CONSENSUS_SCHEMA), [], None, None, "crowdlab")
    counts = (~np.isnan(wide)).sum(axis=1)
    if len(people) < 2 or not _any_clear_majority(wide):
        return _model_only(row_ids, people, wide, proba, classes)
    state = np.random.get_state()  # cleanlab breaks exact ties at random: the same answers, the same decision
    np.random.seed(0)
    try:
        with warnings.catch_warnings():  # it warns on small overlaps; the report says how much was compared
            warnings.simplefilter("ignore")
            res = get_label_quality_multiannotator(pd.DataFrame(wide, columns=people), proba, verbose=False,
                                                   return_weights=True)
    finally:
        np.random.set_state(state)
    lq = res["label_quality"]
    consensus = lq["consensus_label"].to_numpy().astype(int)
    rows = pl.DataFrame({
        "row_id": row_ids, "consensus_label": [classes[k] for k in consensus],
        "quality": lq["consensus_quality_score"].to_numpy().astype(float),
        "answers": counts.astype(np.int64), "agreement": lq["annotator_agreement"].to_numpy().astype(float),
    }, schema=CONSENSUS_SCHEMA)
    stats = res["annotator_stats"]
    annotators = [
        AnnotatorQuality(annotator=str(who), answered=int(s["num_examples_labeled"]),
                         quality=_finite(s["annotator_quality"]),
                         agreement_with_consensus=float(s["agreement_with_consensus"]),
                         error_estimate=1.0 - float(s["agreement_with_consensus"]),
                         worst_class=classes[int(s["worst_class"])])
        for who, s in stats.iterrows()
    ]
    return ConsensusReport(rows, sorted(annotators, key=lambda a: a.annotator), _mean_pairwise_kappa(wide),
                           float(res["model_weight"]), "crowdlab")


def _finite(v: object) -> float | None:
    """CROWDLAB gives NaN for an annotator who shares no row with another: no estimate, not a number."""
    f = float(v)  # type: ignore[arg-type]
    return f if np.isfinite(f) else None


def _model_matrix(row_ids: Sequence[str], k: int, model_proba: Mapping[str, np.ndarray] | None) -> np.ndarray:
    out = np.full((len(row_ids), k), 1.0 / k)
    for i, r in enumerate(row_ids):
        p = None if model_proba is None else model_proba.get(r)
        if p is not None:
            p = np.asarray(p, dtype=float)
            if p.shape != (k,):
                raise ValueError(f"row {r!r}: model probabilities have shape {p.shape}, expected ({k},)")
            out[i] = p
    return out


def _any_clear_majority(wide: np.ndarray) -> bool:
    """Some row with two or more answers has a single most frequent answer: CROWDLAB has something to learn from
    (without one, cleanlab's tie-breaking fails)."""
    for row in wide:
        given = row[~np.isnan(row)]
        if len(given) > 1:
            counts = np.unique(given, return_counts=True)[1]
            if (counts == counts.max()).sum() == 1:
                return True
    return False


def _model_only(row_ids: list[str], people: list[str], wide: np.ndarray, proba: np.ndarray,
                classes: list[str]) -> ConsensusReport:
    """Nothing to weigh annotators by (one answer per row, one annotator, or every row split evenly): a row's
    consensus is the answer the model finds most likely, its quality the model's probability of that answer
    times the answer's share of the row's answers. No annotator's quality can be estimated."""
    labels, quality, agreement = [], [], []
    for i, row in enumerate(wide):
        given = row[~np.isnan(row)].astype(int)
        best = max(np.unique(given), key=lambda k: (np.sum(given == k), proba[i, k]))
        share = float(np.mean(given == best))
        labels.append(classes[int(best)])
        quality.append(float(proba[i, best]) * share)
        agreement.append(share)
    rows = pl.DataFrame({"row_id": row_ids, "consensus_label": labels, "quality": quality,
                         "answers": (~np.isnan(wide)).sum(axis=1), "agreement": agreement}, schema=CONSENSUS_SCHEMA)
    index = {c: k for k, c in enumerate(classes)}
    annotators = []
    for j, p in enumerate(people):
        mine = ~np.isnan(wide[:, j])
        agree = float(np.mean([wide[i, j] == index[labels[i]] for i in np.flatnonzero(mine)]))
        annotators.append(AnnotatorQuality(annotator=p, answered=int(mine.sum()), quality=None,
                                           agreement_with_consensus=agree, error_estimate=1.0 - agree))
    return ConsensusReport(rows, annotators, _mean_pairwise_kappa(wide), None, "model")


def _mean_pairwise_kappa(wide: np.ndarray) -> float | None:
    """Cohen's kappa per pair of annotators on the rows both answered, averaged weighted by those rows."""
    total, weight = 0.0, 0
    for a, b in itertools.combinations(range(wide.shape[1]), 2):
        both = ~np.isnan(wide[:, a]) & ~np.isnan(wide[:, b])
        if both.sum() < 2:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            k = cohen_kappa_score(wide[both, a], wide[both, b])
        if np.isfinite(k):
            total += float(k) * int(both.sum())
            weight += int(both.sum())
    return total / weight if weight else None
