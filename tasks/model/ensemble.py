"""Which members vote, and with what weights: the voting plan, chosen on out-of-fold predictions.

Members are chosen on out-of-fold (OOF) predictions only (`select_members`), so the
ensemble's CV AUC is never below the best member's. A single trained model is the plan
of one member (`single_member_plan`); packaging a plan as the pyfunc is
`tasks.model.model_logging`, the vote itself `tasks.model.pyfunc.vote`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tasks.model.metrics import auc_score
from tasks.model.pyfunc import vote


@dataclass
class EnsemblePlan:
    """Which members vote and with what weights, plus the OOF evidence for the choice."""

    names: list[str]
    weights: list[float]
    voting: str
    cv_auc: float
    best_member: str
    best_member_auc: float
    all_members_auc: float
    nested_cv_auc: float = float("nan")
    member_aucs: dict[str, float] = field(default_factory=dict)


def auc_weights(aucs: list[float]) -> list[float]:
    """Weights proportional to skill over chance (`AUC - 0.5`), normalised; a useless member gets ~0."""
    skill = np.maximum(np.asarray(aucs, dtype="float64") - 0.5, 1e-6)
    return [float(x) for x in skill / skill.sum()]


def single_member_plan(member: Any) -> EnsemblePlan:
    """One member with all the weight: how a single trained model ships as the one pyfunc class.

    Its CV AUC is the member's own, so the manifest and the plan read the same as an ensemble's.
    """
    auc = float(member.cv_auc)
    return EnsemblePlan(names=[member.name], weights=[1.0], voting="weighted", cv_auc=auc,
                        best_member=member.name, best_member_auc=auc, all_members_auc=auc,
                        member_aucs={member.name: auc})


def select_members(members: list[Any], y: np.ndarray, voting: str = "weighted",
                   threshold: float = 0.5, folds: np.ndarray | None = None) -> EnsemblePlan:
    """Choose voters and weights from out-of-fold (OOF) predictions only.

    `weighted`: greedy forward selection with replacement (Caruana et al. 2004)
    starting from the best member (weights are thus chosen by CV AUC): a member is added (again) while it raises the
    vote's OOF AUC, and weights are the selection counts - so the weighted vote's
    OOF AUC is never below the best member's. `soft` / `hard`: the top-k members by
    OOF AUC, with the k that maximises the vote's OOF AUC (ties prefer more members).
    With `folds`, the whole selection is repeated per fold on the other folds' OOF
    rows and scored on the held-out fold (`nested_cv_auc`): a check that the
    selection itself does not overfit the OOF predictions.
    """
    if not members:
        raise ValueError("no candidate members to select from")
    ranked = sorted(members, key=lambda mb: mb.cv_auc, reverse=True)
    oofs = [mb.oof for mb in ranked]
    weights = _select(oofs, y, voting, threshold, auc_score)
    keep = [i for i, w in enumerate(weights) if w > 0]
    _, proba = vote([oofs[i] for i in keep], [weights[i] for i in keep], voting, threshold)
    _, all_proba = vote(oofs, auc_weights([mb.cv_auc for mb in ranked]), voting, threshold)
    nested = float("nan")
    if folds is not None:
        nested_proba = np.zeros_like(proba)
        for f in np.unique(folds):
            tr, va = folds != f, folds == f
            w = _select([o[tr] for o in oofs], y[tr], voting, threshold, auc_score)
            used = [i for i, wi in enumerate(w) if wi > 0]
            nested_proba[va] = vote([oofs[i][va] for i in used], [w[i] for i in used], voting, threshold)[1]
        nested = auc_score(y, nested_proba)
    return EnsemblePlan(
        names=[ranked[i].name for i in keep],
        weights=[float(weights[i]) for i in keep],
        voting=voting,
        cv_auc=float(auc_score(y, proba)),
        best_member=ranked[0].name,
        best_member_auc=float(ranked[0].cv_auc),
        all_members_auc=float(auc_score(y, all_proba)),
        nested_cv_auc=nested,
        member_aucs={mb.name: float(mb.cv_auc) for mb in members},
    )


def plan_oof(members: list[Any], plan: EnsemblePlan, threshold: float = 0.5) -> np.ndarray:
    """The vote's out-of-fold probabilities: what the packaged ensemble would have said of each training row
    had it not seen it (members share folds). The monitor calibrates an ensemble champion on them."""
    by_name = {mb.name: mb for mb in members}
    return vote([by_name[n].oof for n in plan.names], plan.weights, plan.voting, threshold)[1]


def _select(oofs: list[np.ndarray], y: np.ndarray, voting: str, threshold: float,
            auc: Any, max_steps: int = 40, init_copies: int = 4) -> list[float]:
    """Weights (zeros for members left out) over `oofs`, which are ranked best first.

    The best member starts with `init_copies` votes so that a single added vote
    weighs 1/(init_copies+1): weaker members can contribute a little without
    having to match the best one half-and-half.
    """
    m = len(oofs)
    if voting == "weighted":
        counts = np.zeros(m)
        counts[int(np.argmax([auc(y, o) for o in oofs]))] = init_copies
        total = sum(o * c for o, c in zip(oofs, counts, strict=True))
        best = auc(y, total)
        for _ in range(max_steps):
            n = counts.sum()
            scores = [auc(y, (total + o) / (n + 1)) for o in oofs]
            j = int(np.argmax(scores))
            if scores[j] <= best + 1e-6:
                break
            best, counts[j], total = scores[j], counts[j] + 1, total + oofs[j]
        return [float(c) for c in counts / counts.sum()]
    best_auc, best_k = -1.0, 1
    for k in range(1, m + 1):
        score = auc(y, vote(oofs[:k], [1.0] * k, voting, threshold)[1])
        if score >= best_auc - 1e-9:
            best_auc, best_k = score, k
    return [1.0 if i < best_k else 0.0 for i in range(m)]
