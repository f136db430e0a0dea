"""Consensus bench: does CROWDLAB over the team's answers beat majority vote, and does it know who errs?

Synthetic churn (5,000 rows, 10% flipped labels) and the product's XGBoost out-of-fold probabilities; the
rows the product's ranking flags first are answered (--answered 1000, about three rounds of the default
budget) by three simulated annotators who err 2%, 5% and 15% of the time. As the product's agreement
policy asks: each row first gets answers from two of the three (Label Studio's overlap of 2), then every
row whose consensus quality is below the threshold gets the third. Side by side on the same answers:
* accuracy vs the true labels of the CROWDLAB consensus and of majority vote (cleanlab's, ties broken by
  the model), on the two-answer first pass (the headline) and on the final answers;
* each annotator's estimated error (1 - agreement with the consensus) and quality vs the true error rate;
* annotations spent per row, vs asking all three (whose majority vote is also reported).

Run: `python -m bench.bench_consensus [--rows 5000 --answered 1000 --seeds 7 8 9]`.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from cleanlab.multiannotator import get_majority_vote_label

from bench.results_io import record
from infra.demo.synth import synth_batch
from lakeloop.settings import TrainSettings
from lakeloop.spec import DatasetSpec
from tasks.labels.consensus import ConsensusReport, crowd_consensus
from tasks.labels.corrections import AgreementPolicy, Verdict
from tasks.labels.label_issues import rank_label_issues
from tasks.model.train import class_names, train_xgb

SPEC = DatasetSpec.from_yaml(Path(__file__).resolve().parents[1] / "examples" / "churn" / "spec.yaml")
ERROR_RATES = {"careful": 0.02, "steady": 0.05, "hasty": 0.15}


def _consensus(wide: np.ndarray, proba: np.ndarray, names: list[str]) -> ConsensusReport:
    people = list(ERROR_RATES)
    answers = {f"r{i:06d}": {people[j]: names[int(v)] for j, v in enumerate(row) if not np.isnan(v)}
               for i, row in enumerate(wide)}
    return crowd_consensus(answers, names, {f"r{i:06d}": p for i, p in enumerate(proba)})


def _accuracy(labels: Sequence[str] | np.ndarray, truth: np.ndarray, names: list[str]) -> float:
    idx = np.array([names.index(str(c)) for c in labels]) if len(labels) and isinstance(labels[0], str) \
        else np.asarray(labels)
    return float(np.mean(idx == truth))


def simulate(truth: np.ndarray, proba: np.ndarray, seed: int, policy: AgreementPolicy | None = None,
             names: list[str] | None = None) -> dict[str, Any]:
    """One simulated review of rows with true class indices `truth` and model probabilities `proba`."""
    policy = policy or AgreementPolicy(min_annotators=2, max_annotators=3)
    names = names or class_names(SPEC)
    rng = np.random.default_rng(seed)
    rates = np.array(list(ERROR_RATES.values()))
    n, m = len(truth), len(rates)
    wrong = rng.random((n, m)) < rates
    full = np.where(wrong, (truth[:, None] + 1 + rng.integers(0, len(names) - 1, (n, m))) % len(names),
                    truth[:, None]).astype(float)
    asked = np.zeros((n, m), dtype=bool)
    for i in range(n):  # Label Studio's overlap: the first `min_annotators` free annotators answer
        asked[i, rng.choice(m, policy.min_annotators, replace=False)] = True
    first = np.where(asked, full, np.nan)
    first_report = _consensus(first, proba, names)
    while True:  # the policy: one more annotator for each row whose consensus is still unsure
        report = _consensus(np.where(asked, full, np.nan), proba, names)
        q = report.rows["quality"].to_numpy()
        more = [i for i in range(n) if policy.verdict(q[i], int(asked[i].sum())) is Verdict.ESCALATE]
        if not more:
            break
        for i in more:
            asked[i, rng.choice(np.flatnonzero(~asked[i]))] = True
    final = np.where(asked, full, np.nan)
    q = report.rows["quality"].to_numpy()
    verdicts = np.array([policy.verdict(q[i], int(asked[i].sum())) for i in range(n)])
    accepted = verdicts == Verdict.ACCEPT
    consensus_idx = np.array([names.index(c) for c in report.rows["consensus_label"].to_list()])
    stats = {a.annotator: a for a in report.annotators}
    people = list(ERROR_RATES)
    est = [stats[p].error_estimate for p in people]
    quality = [stats[p].quality or 0.0 for p in people]
    realized = [float(wrong[asked[:, j], j].mean()) for j in range(m)]
    return {
        "seed": seed, "rows": n,
        "two_answers": {
            "consensus_accuracy": _accuracy(first_report.rows["consensus_label"].to_list(), truth, names),
            "majority_accuracy": _accuracy(get_majority_vote_label(first, proba, verbose=False), truth, names),
        },
        "final": {
            "consensus_accuracy": _accuracy(report.rows["consensus_label"].to_list(), truth, names),
            "majority_accuracy": _accuracy(get_majority_vote_label(final, proba, verbose=False), truth, names),
            "annotations_per_row": float(asked.sum() / n),
            "escalated_share": float((asked.sum(axis=1) > policy.min_annotators).mean()),
            "accepted_share": float(accepted.mean()),  # rows whose label the policy settles
            "accepted_accuracy": float(np.mean(consensus_idx[accepted] == truth[accepted])) if accepted.any() else 0.0,
            "disputed_share": float((verdicts == Verdict.DISPUTED).mean()),  # still unsure at the cap: flagged
        },
        "all_three_majority_accuracy": _accuracy(get_majority_vote_label(full, proba, verbose=False), truth, names),
        "annotators": {p: {"true_error": ERROR_RATES[p], "realized_error": round(realized[j], 4),
                           "estimated_error": round(est[j], 4), "quality": round(quality[j], 4)}
                       for j, p in enumerate(people)},
        "ranks_correctly": bool(np.all(np.diff(quality) < 0)),  # ERROR_RATES is listed best first
        "max_abs_error_gap": round(max(abs(e - t) for e, t in zip(est, rates, strict=True)), 4),
        "kappa": report.kappa, "model_weight": report.model_weight,
    }


def flagged_rows(rows: int, answered: int, seed: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """True class indices and out-of-fold probabilities of the `answered` rows the product's ranking sends first."""
    batch = synth_batch(rows, seed=seed, label_noise=noise)
    trained = train_xgb(batch.data, SPEC, TrainSettings(folds=5, n_jobs=2, seed=seed))
    names = class_names(SPEC)
    truth_of = dict(zip(batch.truth["customer_id"].to_list(), batch.truth["true_label"].to_list(), strict=True))
    issues = rank_label_issues(trained.ids, trained.labels, trained.oof_proba, threshold=SPEC.business_threshold)
    pos = {r: k for k, r in enumerate(trained.ids)}
    k = np.array([pos[i.id] for i in issues[:answered]])
    return np.array([names.index(truth_of[trained.ids[j]]) for j in k]), trained.oof_proba[k]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--answered", type=int, default=1000)
    ap.add_argument("--noise", type=float, default=0.1)
    ap.add_argument("--seeds", type=int, nargs="+", default=[7, 8, 9])
    a = ap.parse_args()
    t0 = time.perf_counter()
    runs = []
    for seed in a.seeds:
        truth, proba = flagged_rows(a.rows, a.answered, seed, a.noise)
        runs.append(simulate(truth, proba, seed))

    def mean(path: str) -> float:
        vals = []
        for r in runs:
            v: Any = r
            for part in path.split("."):
                v = v[part]
            vals.append(float(v))
        return round(float(np.mean(vals)), 4)

    cons, maj = mean("two_answers.consensus_accuracy"), mean("two_answers.majority_accuracy")
    gains = [r["two_answers"]["consensus_accuracy"] - r["two_answers"]["majority_accuracy"] for r in runs]
    figures = {
        "consensus_minus_majority": round(cons - maj, 4),
        "consensus_accuracy": cons, "majority_accuracy": maj,
        "consensus_minus_majority_spread": round(float(np.std(gains)), 4),
        "final_consensus_accuracy": mean("final.consensus_accuracy"),
        "final_majority_accuracy": mean("final.majority_accuracy"),
        "all_three_majority_accuracy": mean("all_three_majority_accuracy"),
        "annotations_per_row": mean("final.annotations_per_row"),
        "escalated_share": mean("final.escalated_share"),
        "accepted_share": mean("final.accepted_share"),
        "accepted_accuracy": mean("final.accepted_accuracy"),
        "disputed_share": mean("final.disputed_share"),
        "annotator_error": {p: {"true": t, "estimated": mean(f"annotators.{p}.estimated_error"),
                                "realized": mean(f"annotators.{p}.realized_error"),
                                "quality": mean(f"annotators.{p}.quality")} for p, t in ERROR_RATES.items()},
        "ranks_correctly_all_seeds": all(r["ranks_correctly"] for r in runs),
        "max_abs_error_gap": max(r["max_abs_error_gap"] for r in runs),
        "runs": runs,
        "seeds": a.seeds, "rows": a.rows, "answered_rows": a.answered, "noise": a.noise,
        "min_quality": AgreementPolicy().min_quality,
        "total_s": round(time.perf_counter() - t0, 1),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "cores": os.cpu_count(),
    }
    for k, v in figures.items():
        if k != "runs":
            print(f"{k:32s} {v}")
    print(pd.DataFrame([{"seed": r["seed"], **r["two_answers"], "max_gap": r["max_abs_error_gap"],
                         "ranks": r["ranks_correctly"]} for r in runs]).to_string(index=False))
    record("labels.consensus", figures)  # the detail; the issue's figure is the accuracy difference itself
    print(f"recorded in {record('labels', {'consensus_vs_majority': figures['consensus_minus_majority']})}")


if __name__ == "__main__":
    main()
