"""CROWDLAB consensus and annotator quality (tasks.labels.consensus) and the agreement policy's verdicts."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from bench.bench_consensus import ERROR_RATES, simulate
from infra.demo.synth import synth_batch
from lakeloop.adapters.label_studio import Annotation
from lakeloop.adapters.lakefs import Lake
from lakeloop.spec import DatasetSpec
from tasks.data.dataset import training_set
from tasks.labels.consensus import crowd_consensus
from tasks.labels.corrections import AgreementPolicy, Verdict, commit_corrections, quality_paths, resolve

NAMES = ["no", "yes"]


def test_simulated_team_is_ranked_and_each_error_estimated_within_004() -> None:
    """The done-when of issue 16 on one fixed seed: annotators erring 2%, 5%, 15%, 10% label noise."""
    batch = synth_batch(2000, seed=1, label_noise=0.1)
    truth = (batch.truth["true_label"] == "yes").cast(int).to_numpy()
    p = batch.truth["churn_prob"].to_numpy()
    proba = np.column_stack([1 - p, p])  # a calibrated model: the generator's own probabilities
    run = simulate(truth, proba, seed=1, names=NAMES)
    assert run["ranks_correctly"], run["annotators"]
    for who, true_error in ERROR_RATES.items():
        assert abs(run["annotators"][who]["estimated_error"] - true_error) <= 0.04, (who, run["annotators"][who])
    assert run["two_answers"]["consensus_accuracy"] > run["two_answers"]["majority_accuracy"]
    assert run["final"]["consensus_accuracy"] >= run["final"]["majority_accuracy"]
    assert 2 < run["final"]["annotations_per_row"] < 3  # the third annotator only where the consensus is unsure


def test_consensus_weighs_annotators_by_their_agreement() -> None:
    rng = np.random.default_rng(0)
    rates = {"good@x": 0.02, "fair@x": 0.08, "bad@x": 0.3}
    answers: dict[str, dict[str, str]] = {}
    proba: dict[str, np.ndarray] = {}
    for i, t in enumerate(rng.integers(0, 2, 400)):
        pair = rng.choice(list(rates), 2, replace=False)
        answers[f"r{i}"] = {w: NAMES[t if rng.random() > rates[w] else 1 - t] for w in pair}
        p_true = rng.uniform(0.4, 0.9)  # a weak model: right about 3 times in 4
        proba[f"r{i}"] = np.array([p_true, 1 - p_true] if t == 0 else [1 - p_true, p_true])
    answers["r-none"] = {}  # every answer was unsure: not a row of the consensus
    report = crowd_consensus(answers, NAMES, proba)
    assert report.method == "crowdlab" and report.rows.height == 400
    by = {a.annotator: a for a in report.annotators}
    assert by["good@x"].quality > by["fair@x"].quality > by["bad@x"].quality  # type: ignore[operator]
    assert by["good@x"].error_estimate < by["fair@x"].error_estimate < by["bad@x"].error_estimate
    q = report.by_row()
    split = [r for r, a in answers.items() if len(set(a.values())) == 2]
    agreed = [r for r, a in answers.items() if len(set(a.values())) == 1]
    assert max(q[r][1] for r in split) < 0.8  # two answers that disagree never settle a row: ask one more
    # two that agree weigh more; CROWDLAB averages in the model, so a model that objects keeps some below 0.8
    assert np.median([q[r][1] for r in agreed]) > np.median([q[r][1] for r in split]) + 0.1
    # on a split row the consensus sides with the more reliable annotator
    sided = [q[r][0] == max(answers[r].items(), key=lambda kv: -rates[kv[0]])[1] for r in split]
    assert np.mean(sided) > 0.9
    assert report.kappa is not None and 0 < report.kappa < 1
    m = report.metrics()
    assert m["annotator.good_x.error_estimate"] == by["good@x"].error_estimate and "kappa" in m


def test_one_answer_per_row_falls_back_to_the_model() -> None:
    report = crowd_consensus({"a": {"r@x": "yes"}, "b": {"r@x": "no"}}, NAMES,
                             {"a": np.array([0.1, 0.9]), "b": np.array([0.2, 0.8])})
    assert report.method == "model" and report.kappa is None
    q = report.by_row()
    assert q["a"] == ("yes", pytest.approx(0.9)) and q["b"] == ("no", pytest.approx(0.2))
    assert crowd_consensus({}, NAMES).rows.height == 0


def test_consensus_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="'maybe'"):
        crowd_consensus({"a": {"x": "maybe"}}, NAMES)
    with pytest.raises(ValueError, match="shape"):
        crowd_consensus({"a": {"x": "yes"}}, NAMES, {"a": np.array([1.0])})


def test_policy_verdicts() -> None:
    p = AgreementPolicy(min_annotators=2, max_annotators=3, min_quality=0.8)
    assert p.verdict(0.99, 1) is Verdict.WAIT
    assert p.verdict(0.85, 2) is Verdict.ACCEPT
    assert p.verdict(0.6, 2) is Verdict.ESCALATE
    assert p.verdict(0.6, 3) is Verdict.DISPUTED
    with pytest.raises(ValueError, match="max_annotators"):
        AgreementPolicy(min_annotators=3, max_annotators=2)


@pytest.mark.integration
def test_round_quality_is_committed_beside_its_corrections(lake: Lake) -> None:
    """The annotators' quality and each row's consensus land in the corrections commit, and the dataset reader
    (which overlays labels/corrections/ only) is not confused by them."""
    spec = DatasetSpec.from_yaml(Path(__file__).resolve().parents[1] / "examples" / "churn" / "spec.yaml")
    batch = synth_batch(20, seed=5)
    lake.write_frame("main", "data/batch.parquet", batch.data)
    lake.commit("main", "add batch", {"lakeloop.kind": "data"})
    row = batch.data["customer_id"][0]
    old = str(batch.data["churn"][0])
    new = "yes" if old == "no" else "no"
    t = datetime(2026, 3, 1, tzinfo=UTC)
    anns = [Annotation(annotation_id=k, task_id=1, project_id=1, row_id=row, row_hash="h", choice=new,
                       skipped=False, annotator=f"a{k}@x", annotator_id=k, created_at=t, updated_at=t,
                       lead_time=1.0) for k in (1, 2)]
    current = dict(zip(batch.data["customer_id"].to_list(), batch.data["churn"].cast(str).to_list(), strict=True))
    res = resolve(anns, current, AgreementPolicy(min_quality=0.0), spec, model_proba={row: np.array([0.5, 0.5])})
    assert res.corrections.height == 1 and res.consensus is not None
    merge = commit_corrections(lake, "20260301T000000Z", res.corrections, spec, consensus=res.consensus)
    rows_path, annotators_path = quality_paths("20260301T000000Z")
    annotators = lake.read_frame(merge, annotators_path)
    assert sorted(annotators["annotator"].to_list()) == ["a1@x", "a2@x"]
    assert lake.read_frame(merge, rows_path)["row_id"].to_list() == [row]
    data, _ = training_set(lake, spec, merge)
    assert data.filter(pl.col("customer_id") == row)["churn"].cast(str).item() == new
