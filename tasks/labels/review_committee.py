"""A review committee: a linear model scored on the training run's own folds beside XGBoost.

Why: cleanlab's ranking trusts one model's out-of-fold probabilities. A second
learner with a different inductive bias, scored on the *same* folds (so still
leakage-free), tells apart rows that only the trees find odd from rows every view
finds odd, and its disagreement with XGBoost marks the ambiguous rows. The label
bench measures what it adds over cleanlab alone (`labels` in bench/results.json).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from lakeloop.spec import DatasetSpec
from tasks.model.candidates import MemberConfig, oof_proba
from tasks.model.train import TrainResult

MEMBER_PREFIX = "member_"


def score_committee(result: TrainResult, data: pl.DataFrame, spec: DatasetSpec) -> dict[str, np.ndarray]:
    """Out-of-fold probabilities of every committee member, aligned with `data` (the rows `result` trained on)."""
    if len(result.fold_of_row) != data.height:
        raise ValueError(f"training result covers {len(result.fold_of_row)} rows, frame has {data.height}")
    linear = MemberConfig("logreg", "logreg", {"C": 1.0}, tuple(spec.model_features))
    return {
        "xgboost": result.oof_proba,
        "logreg": oof_proba(linear, data, result.labels, result.fold_of_row, spec, len(result.class_names)),
    }


def member_columns(members: dict[str, np.ndarray], class_names: list[str]) -> dict[str, pl.Series]:
    """Columns `member_<name>_proba_<class>` for the OOF artifact."""
    return {f"{MEMBER_PREFIX}{name}_proba_{c}": pl.Series(p[:, i].astype(np.float64))
            for name, p in members.items() for i, c in enumerate(class_names)}


def committee_from_oof(oof: pl.DataFrame, class_names: list[str]) -> tuple[np.ndarray, list[np.ndarray]]:
    """(mean probabilities, per-member probabilities) from an OOF artifact.

    Artifacts written before the committee existed have only `proba_<class>`: the
    single model is then the whole committee.
    """
    single = oof.select([f"proba_{c}" for c in class_names]).to_numpy()
    names = sorted({c[len(MEMBER_PREFIX):].rsplit("_proba_", 1)[0] for c in oof.columns
                    if c.startswith(MEMBER_PREFIX)})
    members = [oof.select([f"{MEMBER_PREFIX}{n}_proba_{c}" for c in class_names]).to_numpy() for n in names]
    if len(members) < 2:
        return single, [single]
    return np.mean(members, axis=0), members


def oof_proba_by_row(oof: pl.DataFrame, spec: DatasetSpec, class_names: list[str]) -> dict[str, np.ndarray]:
    """Row id -> the committee's mean out-of-fold probabilities: the model's opinion the consensus weighs."""
    mean, _ = committee_from_oof(oof, class_names)
    return dict(zip(oof.get_column(spec.id_column).cast(pl.Utf8).to_list(), mean, strict=True))
