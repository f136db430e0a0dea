"""The review committee: scored on the training folds, stored in the OOF artifact, read back for ranking."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from infra.demo.synth import synth_batch
from lakeloop.settings import TrainSettings
from lakeloop.spec import DatasetSpec
from tasks.labels.label_issues import rank_label_issues
from tasks.labels.review_committee import committee_from_oof, member_columns, score_committee
from tasks.model.train import train_xgb
from tasks.model.training_run import oof_frame

SPEC = DatasetSpec.from_yaml(Path(__file__).resolve().parents[1] / "examples" / "churn" / "spec.yaml")
FAST = TrainSettings(folds=3, n_estimators=60, early_stopping_rounds=10, n_jobs=1)


@pytest.fixture(scope="module")
def trained() -> tuple[pl.DataFrame, object]:
    df = synth_batch(600, seed=3, label_noise=0.1).data
    return df, train_xgb(df, SPEC, FAST)


def test_committee_members_are_leakage_free_and_differ(trained) -> None:  # type: ignore[no-untyped-def]
    df, result = trained
    members = score_committee(result, df, SPEC)
    assert set(members) == {"xgboost", "logreg"}
    lr = members["logreg"]
    assert lr.shape == result.oof_proba.shape
    assert np.allclose(lr.sum(axis=1), 1.0)
    assert not np.allclose(lr, result.oof_proba, atol=1e-3)  # a different learner, not a copy
    # leakage-free: a linear model fitted on all rows scores its own rows differently from the OOF pass
    from tasks.model.candidates import MemberConfig, fit_model, predict_proba
    cfg = MemberConfig("logreg", "logreg", {"C": 1.0}, tuple(SPEC.model_features))
    in_sample = predict_proba(cfg, fit_model(cfg, df, result.labels, SPEC, 2), df, SPEC, 2)
    assert not np.allclose(in_sample, lr, atol=1e-4)


def test_oof_artifact_round_trip_feeds_the_ranking(trained) -> None:  # type: ignore[no-untyped-def]
    df, result = trained
    members = score_committee(result, df, SPEC)
    oof = oof_frame(result, df, SPEC).with_columns(**member_columns(members, result.class_names))
    mean, back = committee_from_oof(oof, result.class_names)
    assert len(back) == 2
    assert np.allclose(mean, (members["xgboost"] + members["logreg"]) / 2)
    issues = rank_label_issues(result.ids, result.labels, mean, member_proba=back, threshold=SPEC.business_threshold)
    assert any(i.disagreement > 0 for i in issues)


def test_artifact_without_members_falls_back_to_the_single_model(trained) -> None:  # type: ignore[no-untyped-def]
    df, result = trained
    mean, members = committee_from_oof(oof_frame(result, df, SPEC), result.class_names)
    assert np.array_equal(mean, result.oof_proba) and len(members) == 1


def test_committee_refuses_misaligned_rows(trained) -> None:  # type: ignore[no-untyped-def]
    df, result = trained
    with pytest.raises(ValueError, match="covers 600 rows"):
        score_committee(result, df.head(10), SPEC)


def test_single_blas_thread_linear_member_predicts_as_before(trained) -> None:  # type: ignore[no-untyped-def]
    """The linear member fits with one BLAS thread (fast on a shared machine); its OOF probabilities are
    those of the same pipeline fitted with the machine's BLAS threads, and the limit ends with the fit."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_info, threadpool_limits

    from tasks.model.features import numeric_matrix

    df, result = trained
    threads_before = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    fast = score_committee(result, df, SPEC)["logreg"]
    assert [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"] == threads_before
    before = np.zeros_like(fast)
    folds = result.fold_of_row
    with threadpool_limits(2, user_api="blas"):  # the path before the limit, with two threads where BLAS has them
        for f in range(int(folds.max()) + 1):
            tr, va = np.flatnonzero(folds != f), np.flatnonzero(folds == f)
            pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
            pipe.fit(numeric_matrix(df[tr], SPEC), result.labels[tr])
            before[va] = pipe.predict_proba(numeric_matrix(df[va], SPEC))
    np.testing.assert_allclose(fast, before, rtol=0, atol=1e-12)
