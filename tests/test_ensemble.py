"""Candidates, voting and the self-contained pyfunc (ensembles, and single models as ensembles of one)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import polars as pl
import pytest
from mlflow import MlflowClient

from infra.demo.synth import synth_batch
from lakeloop.adapters.mlflow_tracking import TrackingError, load_oof
from lakeloop.settings import TrainSettings
from lakeloop.spec import DatasetSpec
from tasks.model.candidates import (
    CandidateSet,
    Member,
    build_candidates,
    predict_proba,
)
from tasks.model.candidates import MemberConfig as Cfg
from tasks.model.ensemble import select_members, single_member_plan
from tasks.model.features import model_frame, numeric_matrix
from tasks.model.folds import stratified_folds
from tasks.model.metrics import auc_score
from tasks.model.model_contract import REQUIRED_MODEL_FILES, model_input, model_signature
from tasks.model.model_logging import log_ensemble, save_ensemble, save_pyfunc
from tasks.model.pyfunc import rt_model_frame, rt_numeric_matrix, vote
from tasks.model.train import train_xgb
from tasks.model.training_run import load_xgb, xgb_member
from tests.fixtures.ensemble import make_lineage


# ---- unit ------------------------------------------------------------------------------
def test_runtime_encoding_matches_tasks_features(churn_spec: DatasetSpec) -> None:
    """The pyfunc's embedded pandas encoding equals tasks.model.features, also on messy rows."""
    df = synth_batch(600, seed=3, invalid_rate=0.2).data  # unknown categories, nulls, out-of-range values
    spec_dict = churn_spec.model_dump(mode="json")
    feats = churn_spec.model_features
    for pdf in (df.to_pandas(), model_input(df.drop("churn"), model_signature(churn_spec))):
        got = rt_model_frame(pdf, spec_dict, feats)
        want = model_frame(df, churn_spec)
        assert list(got.columns) == list(want.columns)
        for c in want.columns:
            if isinstance(want[c].dtype, pd.CategoricalDtype):
                assert list(got[c].cat.categories) == list(want[c].cat.categories)
                np.testing.assert_array_equal(got[c].cat.codes.to_numpy(), want[c].cat.codes.to_numpy())
            else:
                np.testing.assert_array_equal(got[c].to_numpy(), want[c].to_numpy())
        np.testing.assert_array_equal(rt_numeric_matrix(pdf, spec_dict, feats), numeric_matrix(df, churn_spec))
    assert (model_frame(df, churn_spec)["contract"].isna()).any(), "fixture should contain unknown categories"


def test_vote_modes() -> None:
    a = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    b = np.array([[0.7, 0.3], [0.4, 0.6], [0.2, 0.8]])
    c = np.array([[0.8, 0.2], [0.9, 0.1], [0.3, 0.7]])
    labels, p = vote([a, b, c], [1, 1, 1], "soft", 0.5)
    np.testing.assert_allclose(p[:, 1], [0.2, 0.5, 0.6333333], atol=1e-6)
    assert labels.tolist() == [0, 1, 1]
    labels, p = vote([a, b, c], [0.0, 0.0, 1.0], "weighted", 0.5)
    np.testing.assert_allclose(p, c)
    labels, p = vote([a, b, c], [1, 1, 1], "hard", 0.5)
    assert labels.tolist() == [0, 1, 1]  # votes: row 1 -> a,b yes / c no; row 2 -> b,c yes
    np.testing.assert_allclose(p[:, 1], [0.0, 2 / 3, 2 / 3])
    labels, _ = vote([a, b], [1, 1], "hard", 0.5)  # row 2: a no, b yes -> tie -> soft 0.6 >= 0.5
    assert labels.tolist() == [0, 1, 1]
    with pytest.raises(ValueError, match="weights"):
        vote([a, b], [1.0, -1.0], "weighted", 0.5)
    with pytest.raises(ValueError, match="voting"):
        vote([a], [1.0], "median", 0.5)


def _member(name: str, oof: np.ndarray, y: np.ndarray) -> Member:
    proba = np.column_stack([1 - oof, oof])
    return Member(name=name, kind="logreg", params={}, features=[], oof=proba, cv_auc=auc_score(y, proba),
                  model=None)


def test_select_members_combines_complementary_members() -> None:
    """Two members that each see half of the signal: the weighted vote must use both and beat either."""
    rng = np.random.default_rng(0)
    n = 4000
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    y = (x1 + x2 + rng.normal(scale=0.5, size=n) > 0).astype(np.int64)
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    members = [_member("half1", sig(x1), y), _member("half2", sig(x2), y),
               _member("noise", rng.random(n), y)]
    plan = select_members(members, y, "weighted", 0.5, stratified_folds(y, 4, 0))
    assert set(plan.names) >= {"half1", "half2"}
    assert "noise" not in plan.names
    assert plan.cv_auc > plan.best_member_auc + 0.05
    assert plan.nested_cv_auc > plan.best_member_auc + 0.05
    soft = select_members(members, y, "soft", 0.5)
    assert soft.names == ["half1", "half2"] or soft.names == ["half2", "half1"]


# ---- integration -----------------------------------------------------------------------
@pytest.mark.integration
def test_candidates_share_folds_and_ensemble_beats_best_member(
    mlflow_uri: str, churn_candidates: CandidateSet
) -> None:
    cs = churn_candidates
    kinds = {m.kind for m in cs.members}
    assert kinds == {"xgboost", "logreg"}
    assert len(cs.members) >= 5
    assert len({m.name for m in cs.members}) == len(cs.members)
    assert any(len(m.features) < len(cs.spec.model_features) for m in cs.members)  # a feature-subset member
    for m in cs.members:
        assert m.oof.shape == (len(cs.y), 2)
        assert 0.7 < m.cv_auc < 0.95, (m.name, m.cv_auc)
        np.testing.assert_allclose(m.oof.sum(axis=1), 1.0, atol=1e-6)
    # OOF really is out-of-fold: a member's OOF AUC is clearly below its in-sample AUC on the same rows
    xgb = cs.member("xgb_tuned")
    cfg = Cfg(xgb.name, xgb.kind, xgb.params, tuple(xgb.features))
    in_sample = auc_score(cs.y, predict_proba(cfg, xgb.model, cs.frame, cs.spec, 2))
    assert in_sample > xgb.cv_auc + 0.01

    plan = select_members(cs.members, cs.y, "weighted", cs.spec.business_threshold, cs.folds)
    print(f"\nmembers: { {m.name: round(m.cv_auc, 4) for m in cs.members} }")
    print(f"weighted vote {plan.names} w={np.round(plan.weights, 3).tolist()} cv_auc={plan.cv_auc:.4f} "
          f"nested={plan.nested_cv_auc:.4f} best={plan.best_member} {plan.best_member_auc:.4f}")
    assert plan.cv_auc >= plan.best_member_auc
    # the selection is not an artefact of fitting weights on the OOF rows themselves
    assert plan.nested_cv_auc >= plan.best_member_auc - 0.005

    # MLflow: one parent run with the lineage, every member and the search nested under it
    client = MlflowClient()
    assert cs.parent_run_id is not None
    parent = client.get_run(cs.parent_run_id)
    lin = cs.lineage.tags()
    assert {k: parent.data.tags.get(k) for k in lin} == lin
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{cs.parent_run_id}'")
    names = sorted(r.info.run_name for r in children)
    assert names == sorted([m.name for m in cs.members] + ["optuna-xgboost"])
    for r in children:
        assert r.data.tags["lakefs.commit_id"] == cs.lineage.commit_id
    assert parent.data.metrics[f"member.{xgb.name}.cv_auc"] == pytest.approx(xgb.cv_auc)


@pytest.mark.integration
def test_pyfunc_roundtrip_matches_members(mlflow_uri: str, churn_candidates: CandidateSet,
                                          churn_eval: pl.DataFrame, model_name: str) -> None:
    cs = churn_candidates
    run_id, uri, version = log_ensemble(cs, name=model_name)
    client = MlflowClient()
    assert client.get_model_version_by_alias(model_name, "challenger").version == version
    mv = client.get_model_version(model_name, version)
    assert mv.tags["lakefs.commit_id"] == cs.lineage.commit_id
    assert mv.tags["lakeloop.spec_hash"] == cs.spec.spec_hash()
    assert mv.description
    assert mv.run_id == run_id == cs.parent_run_id
    # the vote's out-of-fold probabilities travel with it (the monitor calibrates an ensemble champion on them)
    oof = load_oof(run_id)
    assert oof.get_column(cs.spec.id_column).to_list() == cs.frame.get_column(cs.spec.id_column).cast(pl.Utf8).to_list()
    cv_auc = client.get_run(run_id).data.metrics["ensemble.cv_auc"]
    assert auc_score(cs.y, oof.select("proba_no", "proba_yes").to_numpy()) == pytest.approx(cv_auc)

    model = mlflow.pyfunc.load_model(uri)
    inner = model.unwrap_python_model()
    entries = inner.manifest["members"]
    assert len({e["artifact"] for e in entries}) == len(entries)
    pred = model.predict(model_input(churn_eval, model.metadata.signature))
    assert list(pred.columns) == ["label", "probability"]
    assert len(pred) == churn_eval.height
    p = pred["probability"].to_numpy()
    assert ((p >= 0) & (p <= 1)).all()
    thr = cs.spec.business_threshold
    assert (pred["label"].to_numpy() == np.where(p >= thr, "yes", "no")).all()

    # the packaged members are the trained ones: recompute the weighted vote from the in-memory models
    probas = []
    for e in entries:
        m = cs.member(e["name"])
        probas.append(predict_proba(Cfg(m.name, m.kind, m.params, tuple(m.features)), m.model, churn_eval,
                                    cs.spec, 2))
    _, want = vote(probas, [e["weight"] for e in entries], "weighted", thr)
    np.testing.assert_allclose(p, want[:, 1], atol=1e-6)

    # voting can be switched per call through the signature's params
    hard = model.predict(model_input(churn_eval.head(200), model.metadata.signature), params={"voting": "hard"})
    k = len(entries)
    assert set(np.round(hard["probability"].to_numpy() * k).astype(int)) <= set(range(k + 1))
    y = (churn_eval.get_column("churn") == "yes").to_numpy()
    auc = auc_score(y.astype(int), np.column_stack([1 - p, p]))
    assert auc > 0.75, auc


def _tiers() -> tuple[DatasetSpec, pl.DataFrame]:
    """A three-class dataset with a categorical feature (positive class = the last one, `high`)."""
    spec = DatasetSpec.model_validate({
        "name": "tiers", "id_column": "id", "label_column": "tier", "classes": ["low", "mid", "high"],
        "features": [{"name": "x1", "type": "numeric"}, {"name": "x2", "type": "numeric"},
                     {"name": "kind", "type": "categorical", "categories": ["a", "b"]}],
    })
    rng = np.random.default_rng(1)
    n = 900
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    kind = rng.choice(["a", "b"], n)
    score = x1 + 0.5 * x2 + (kind == "b") + rng.normal(scale=0.7, size=n)
    tier = np.where(score < -0.5, "low", np.where(score < 0.8, "mid", "high"))
    return spec, pl.DataFrame({"id": [f"r{i}" for i in range(n)], "x1": x1, "x2": x2, "kind": kind, "tier": tier})


def test_multiclass_ensemble_saves_loads_and_predicts(tmp_path: Path) -> None:
    """Three classes end to end without a server: folds, members, vote, per-class columns."""
    spec, df = _tiers()
    n, tier = df.height, df.get_column("tier").to_numpy()
    feats = tuple(spec.model_features)
    cfgs = [Cfg("xgb", "xgboost", {"n_estimators": 60, "max_depth": 3, "random_state": 0}, feats),
            Cfg("logreg", "logreg", {"C": 1.0}, feats)]
    cs = build_candidates(df, spec, make_lineage(spec), n_trials=1, timeout_s=20, n_folds=3, n_jobs=1,
                          configs=cfgs, log_to_mlflow=False)
    assert all(m.oof.shape == (n, 3) and m.cv_auc > 0.75 for m in cs.members)
    plan = save_ensemble(cs, tmp_path / "model", voting="soft")
    assert plan.cv_auc >= plan.best_member_auc
    model = mlflow.pyfunc.load_model(str(tmp_path / "model"))
    pred = model.predict(model_input(df, model.metadata.signature))
    assert list(pred.columns) == ["label", "probability", "probability_low", "probability_mid",
                                  "probability_high"]
    per_class = pred[["probability_low", "probability_mid", "probability_high"]].to_numpy()
    np.testing.assert_allclose(per_class.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(pred["probability"], pred["probability_high"])  # positive = last class
    assert (pred["label"].astype(str).to_numpy() == np.array(spec.classes)[per_class.argmax(axis=1)]).all()
    assert (pred["label"].astype(str).to_numpy() == tier).mean() > 0.6
    with pytest.raises(TrackingError, match="not a single-XGBoost"):  # two members: no one classifier to hand out
        load_xgb(str(tmp_path / "model"))


@pytest.mark.parametrize("dataset", ["churn", "tiers"])
def test_single_model_is_an_ensemble_of_one(tmp_path: Path, churn_spec: DatasetSpec, dataset: str) -> None:
    """What `log_training` ships: the trained classifier as the only member, predicting exactly like it."""
    if dataset == "churn":
        spec, df = churn_spec, synth_batch(800, seed=5).data
        rows = synth_batch(400, seed=6).data.with_row_index("i").with_columns(  # an unknown category, nulls
            pl.when(pl.col("i") < 20).then(pl.lit("weekly")).when(pl.col("i") < 40).then(None)
            .otherwise(pl.col("contract")).alias("contract")).drop("i")
    else:
        spec, df = _tiers()
        rows = df.head(400)
    result = train_xgb(df, spec, TrainSettings(folds=3, n_estimators=30, early_stopping_rounds=5, n_jobs=1))
    member = xgb_member(result)
    plan = single_member_plan(member)
    assert plan.names == ["xgboost"] and plan.weights == [1.0] and plan.cv_auc == result.metrics["roc_auc"]
    save_pyfunc(tmp_path / "model", [member], plan, spec, result.example)
    assert all((tmp_path / "model" / f).exists() for f in REQUIRED_MODEL_FILES)

    model = mlflow.pyfunc.load_model(str(tmp_path / "model"))
    assert [c.name for c in model.metadata.signature.inputs.inputs] == spec.model_features
    pred = model.predict(model_input(rows, model.metadata.signature))
    want = result.model.predict_proba(model_frame(rows, spec))
    classes = result.class_names
    positive = classes.index(spec.positive)
    np.testing.assert_allclose(pred["probability"].to_numpy(), want[:, positive], rtol=1e-6)
    if len(classes) == 2:
        assert list(pred.columns) == ["label", "probability"]
        expected = np.where(want[:, positive] >= spec.business_threshold, spec.positive, classes[1 - positive])
    else:
        assert list(pred.columns) == ["label", "probability"] + [f"probability_{c}" for c in spec.classes]
        np.testing.assert_allclose(pred[[f"probability_{c}" for c in classes]].to_numpy(), want, rtol=1e-6)
        expected = np.asarray(classes)[want.argmax(axis=1)]
    assert pred["label"].astype(str).tolist() == expected.tolist()

    xgb = load_xgb(str(tmp_path / "model"))
    np.testing.assert_allclose(xgb.predict_proba(model_frame(rows, spec)), want, rtol=1e-6)
