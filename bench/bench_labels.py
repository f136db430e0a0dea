"""Label review bench: does our ranking find injected label noise, and does one round close the AUC gap?

On 5,000 synthetic churn rows with 10% flipped labels, side by side on the same folds:
* precision (share of sent tasks truly mislabeled) and recall of the noise at the budget, for
  our ranking (cleanlab + member disagreement + threshold ambiguity over an XGBoost + logistic
  ensemble), cleanlab alone (XGBoost out-of-fold, self-confidence order), random selection, and the
  oracle ceiling (ranking by the generator's true probabilities: no method can beat it on average);
* AUC on a clean held-out set (true labels) of a model trained on the noisy labels, after one round
  (reviewed rows take the simulated annotator's answer, 3% errors), and on clean labels.

Run: `python -m bench.bench_labels [--rows 5000 --budget 300]`.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import polars as pl
from cleanlab.filter import find_label_issues
from sklearn.metrics import roc_auc_score

from bench.results_io import record
from infra.demo.synth import synth_batch
from lakeloop.settings import TrainSettings
from lakeloop.spec import DatasetSpec
from tasks.labels.label_issues import rank_label_issues
from tasks.labels.review_committee import score_committee
from tasks.model.features import model_frame
from tasks.model.train import train_xgb

SPEC = DatasetSpec.from_yaml(Path(__file__).resolve().parents[1] / "examples" / "churn" / "spec.yaml")
ANNOTATOR_ERROR = 0.03


def _auc_on_clean(train: pl.DataFrame, test: pl.DataFrame, test_truth: np.ndarray, settings: TrainSettings) -> float:
    model = train_xgb(train, SPEC, settings).model
    proba = model.predict_proba(model_frame(test, SPEC))[:, 1]
    return float(roc_auc_score(test_truth, proba))


def _relabel(df: pl.DataFrame, ids: list[str], truth: dict[str, str], seed: int) -> pl.DataFrame:
    """Reviewed rows get the annotator's answer: the true label, wrong with probability ANNOTATOR_ERROR."""
    rng = np.random.default_rng(seed)
    answers = {}
    for i in ids:
        t = truth[i]
        answers[i] = t if rng.random() >= ANNOTATOR_ERROR else ("no" if t == "yes" else "yes")
    fix = pl.DataFrame({"customer_id": list(answers), "__new": list(answers.values())})
    return (df.join(fix, on="customer_id", how="left", maintain_order="left")
            .with_columns(pl.coalesce("__new", "churn").alias("churn")).drop("__new"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--budget", type=int, default=300)
    ap.add_argument("--noise", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    t0 = time.perf_counter()
    settings = TrainSettings(folds=5, n_jobs=2, seed=a.seed)

    batch = synth_batch(a.rows, seed=a.seed, label_noise=a.noise)
    df, truth = batch.data, batch.truth
    test = synth_batch(20_000, seed=a.seed + 1000, start_id=10_000_000)
    test_y = (test.truth["true_label"] == SPEC.positive).cast(pl.Int64).to_numpy()
    true_label = dict(zip(truth["customer_id"].to_list(), truth["true_label"].to_list(), strict=True))
    noisy = set(truth.filter(pl.col("is_noisy"))["customer_id"].to_list())
    churn_prob = dict(zip(truth["customer_id"].to_list(), truth["churn_prob"].to_list(), strict=True))

    # the product's review committee (flows/retrain.py): XGBoost + a linear model on the same folds
    xgb = train_xgb(df, SPEC, settings)
    ids, y = xgb.ids, xgb.labels
    members = list(score_committee(xgb, df, SPEC).values())
    ensemble = np.mean(members, axis=0)

    B = a.budget
    t_rank = time.perf_counter()
    ours = [i.id for i in rank_label_issues(ids, y, ensemble, member_proba=members,
                                            threshold=SPEC.business_threshold)]
    rank_s = time.perf_counter() - t_rank
    cl_idx = find_label_issues(y, xgb.oof_proba, return_indices_ranked_by="self_confidence", n_jobs=1)
    cleanlab_only = [ids[k] for k in cl_idx]
    random_pick = list(np.random.default_rng(a.seed).choice(ids, B, replace=False))
    p_given = np.array([churn_prob[i] if y[k] == 1 else 1 - churn_prob[i] for k, i in enumerate(ids)])
    oracle = [ids[k] for k in np.argsort(p_given, kind="stable")]

    def prec(sel: list[str], b: int = B) -> float:
        s = sel[:b]
        return round(float(np.mean([i in noisy for i in s])) if s else 0.0, 4)

    def rec(sel: list[str], b: int = B) -> float:
        return round(len(set(sel[:b]) & noisy) / len(noisy), 4)

    methods = {"ours": ours, "cleanlab": cleanlab_only, "random": random_pick, "oracle": oracle}
    auc_noisy = _auc_on_clean(df, test.data, test_y, settings)
    auc_clean = _auc_on_clean(df.with_columns(pl.Series("churn", [true_label[i] for i in df["customer_id"]])),
                              test.data, test_y, settings)
    after = {m: _auc_on_clean(_relabel(df, sel[:B], true_label, a.seed), test.data, test_y, settings)
             for m, sel in methods.items() if m != "oracle"}

    figures = {
        "rows": a.rows, "noise": a.noise, "budget": B, "noisy_rows": len(noisy),
        "precision_at_budget": prec(ours),
        "recall_at_budget": rec(ours),
        "baseline_cleanlab_precision_at_budget": prec(cleanlab_only),
        "baseline_cleanlab_recall_at_budget": rec(cleanlab_only),
        "baseline_random_precision_at_budget": prec(random_pick),
        "baseline_random_recall_at_budget": rec(random_pick),
        "oracle_precision_at_budget": prec(oracle),
        "precision_vs_oracle": round(prec(ours) / max(prec(oracle), 1e-9), 3),
        "precision_vs_random": round(prec(ours) / max(prec(random_pick), 1e-9), 2),
        "precision_at": {str(b): {m: prec(s, b) for m, s in methods.items()} for b in (50, 100, 200, 300, 500)},
        "auc_noisy_labels": round(auc_noisy, 4),
        "auc_after_round": round(after["ours"], 4),
        "auc_clean_labels": round(auc_clean, 4),
        "auc_gap_to_clean": round(auc_clean - after["ours"], 4),
        "auc_gap_to_clean_before": round(auc_clean - auc_noisy, 4),
        "baseline_cleanlab_auc_gap_to_clean": round(auc_clean - after["cleanlab"], 4),
        "baseline_random_auc_gap_to_clean": round(auc_clean - after["random"], 4),
        "annotator_error_rate": ANNOTATOR_ERROR,
        "rank_s": round(rank_s, 3),
        "total_s": round(time.perf_counter() - t0, 1),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "cores": os.cpu_count(),
    }
    for k, v in figures.items():
        print(f"{k:40s} {v}")
    print(f"recorded in {record('labels', figures)}")


if __name__ == "__main__":
    main()
