"""The synthetic churn generator: spec-shaped, deterministic, and its knobs do what they say."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from infra.demo.synth import COLUMNS, InvalidKind, synth_batch, truth_name, write_batches
from lakeloop.spec import DatasetSpec
from tasks.model.features import encode_labels, numeric_matrix

SPEC_PATH = Path(__file__).resolve().parents[1] / "examples" / "churn" / "spec.yaml"


@pytest.fixture(scope="module")
def spec() -> DatasetSpec:
    return DatasetSpec.from_yaml(SPEC_PATH)


def _fit(df: pl.DataFrame, spec: DatasetSpec) -> Pipeline:
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    return model.fit(numeric_matrix(df, spec), encode_labels(df, spec))


def test_columns_and_types_follow_the_spec(spec: DatasetSpec) -> None:
    df = synth_batch(500, seed=1).data
    assert spec.columns == COLUMNS
    assert df.columns == spec.columns
    assert df.schema["tenure_months"] == pl.Int64
    assert df.schema["monthly_charges"] == pl.Float64
    assert df.schema["senior_citizen"] == pl.Boolean
    assert df.schema["event_time"] == pl.Datetime("us", "UTC")
    for f in spec.features:
        col = df.get_column(f.name)
        if f.categories:
            assert set(col.drop_nulls().unique().to_list()) <= set(f.categories), f.name
        if f.min is not None:
            assert col.drop_nulls().min() >= f.min, f.name  # type: ignore[operator]
        if f.max is not None:
            assert col.drop_nulls().max() <= f.max, f.name  # type: ignore[operator]
        if not f.nullable:
            assert col.null_count() == 0, f.name
    assert set(df.get_column("churn").unique().to_list()) == {"no", "yes"}
    assert df.get_column("data_usage_gb").null_count() > 0  # nullable columns do get nulls


def test_same_seed_same_batch_other_seed_other_batch() -> None:
    a = synth_batch(2000, seed=7, covariate_drift=0.3, label_noise=0.1, invalid_rate=0.05)
    b = synth_batch(2000, seed=7, covariate_drift=0.3, label_noise=0.1, invalid_rate=0.05)
    c = synth_batch(2000, seed=8, covariate_drift=0.3, label_noise=0.1, invalid_rate=0.05)
    assert_frame_equal(a.data, b.data)
    assert_frame_equal(a.truth, b.truth)
    assert not a.data.equals(c.data)


def test_ids_are_unique_and_disjoint_across_batches() -> None:
    a = synth_batch(1000, seed=1, start_id=0).data.get_column("customer_id")
    b = synth_batch(1000, seed=2, start_id=1000).data.get_column("customer_id")
    assert a.n_unique() == 1000 and b.n_unique() == 1000
    assert not set(a.to_list()) & set(b.to_list())
    assert a[0] == "C00000000" and b[-1] == "C00001999"


def test_event_times_start_at_start_time_and_are_ordered() -> None:
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    t = synth_batch(1000, seed=1, start_time=t0).data.get_column("event_time")
    assert t.is_sorted()
    assert t.min() >= t0  # type: ignore[operator]
    assert (t.max() - t.min()).total_seconds() < 86_400  # type: ignore[operator,union-attr]


def test_a_good_model_reaches_realistic_auc(spec: DatasetSpec) -> None:
    train = synth_batch(20_000, seed=11).data
    test = synth_batch(10_000, seed=12).data
    model = _fit(train, spec)
    auc = roc_auc_score(encode_labels(test, spec), model.predict_proba(numeric_matrix(test, spec))[:, 1])
    assert 0.78 <= auc <= 0.90, auc
    churn_rate = (test.get_column("churn") == "yes").mean()
    assert 0.15 <= churn_rate <= 0.40  # type: ignore[operator]


def _shares(df: pl.DataFrame, col: str, value: str) -> float:
    return float((df.get_column(col) == value).mean())  # type: ignore[arg-type]


def test_covariate_drift_moves_feature_distributions() -> None:
    base = synth_batch(20_000, seed=3).data
    drifted = synth_batch(20_000, seed=3, covariate_drift=1.0).data
    assert _shares(drifted, "contract", "month-to-month") > _shares(base, "contract", "month-to-month") + 0.1
    assert _shares(drifted, "internet_service", "fiber") > _shares(base, "internet_service", "fiber") + 0.1
    assert drifted["monthly_charges"].mean() > base["monthly_charges"].mean() + 10  # type: ignore[operator]
    assert drifted["support_calls"].mean() > base["support_calls"].mean() * 1.4  # type: ignore[operator]
    assert drifted["tenure_months"].mean() < base["tenure_months"].mean()  # type: ignore[operator]
    # Drift is scaled by the knob: half the knob, part of the way.
    half = synth_batch(20_000, seed=3, covariate_drift=0.5).data
    m2m = [_shares(d, "contract", "month-to-month") for d in (base, half, drifted)]
    assert m2m[0] < m2m[1] < m2m[2]


def test_concept_drift_changes_labels_not_features(spec: DatasetSpec) -> None:
    base = synth_batch(20_000, seed=5)
    drifted = synth_batch(20_000, seed=5, concept_drift=1.0)
    features = [c for c in COLUMNS if c != "churn"]
    assert_frame_equal(base.data.select(features), drifted.data.select(features))
    # A model of the old mechanism is clearly worse on the new one than on fresh old data.
    model = _fit(base.data, spec)
    fresh_old = synth_batch(10_000, seed=6).data
    fresh_new = synth_batch(10_000, seed=6, concept_drift=1.0).data

    def auc(df: pl.DataFrame) -> float:
        return float(roc_auc_score(encode_labels(df, spec), model.predict_proba(numeric_matrix(df, spec))[:, 1]))

    assert auc(fresh_new) < auc(fresh_old) - 0.08


@pytest.mark.parametrize(("n", "rate"), [(1000, 0.1), (999, 0.037), (10, 0.05), (5000, 0.0)])
def test_label_noise_flips_exactly_the_requested_share(n: int, rate: float) -> None:
    b = synth_batch(n, seed=n, label_noise=rate, invalid_rate=0.02)
    t = b.truth
    expected = round(n * rate)
    assert t.get_column("is_noisy").sum() == expected
    flipped = t.filter(~pl.col("is_invalid") & (pl.col("observed_label") != pl.col("true_label")))
    assert flipped.height == expected
    assert flipped.get_column("is_noisy").all()
    assert not t.filter("is_noisy").get_column("is_invalid").any()  # noise only on valid rows
    assert_frame_equal(t.select(pl.col("observed_label").alias("churn")), b.data.select("churn"))


@pytest.mark.parametrize(("n", "rate"), [(1000, 0.05), (777, 0.13), (12, 0.5), (100, 0.0), (50, 1.0)])
def test_invalid_rows_are_exactly_counted(n: int, rate: float) -> None:
    t = synth_batch(n, seed=3, invalid_rate=rate).truth
    expected = round(n * rate)
    assert t.get_column("is_invalid").sum() == expected
    assert t.get_column("invalid_kind").null_count() == n - expected
    if expected >= 60:
        kinds = set(t.get_column("invalid_kind").drop_nulls().to_list())
        assert kinds == {str(k) for k in InvalidKind}


def test_bad_knobs_are_refused() -> None:
    with pytest.raises(ValueError, match="label_noise"):
        synth_batch(10, seed=0, label_noise=1.5)
    with pytest.raises(ValueError, match="concept_drift"):
        synth_batch(10, seed=0, concept_drift=-0.1)
    with pytest.raises(ValueError, match="exceed"):
        synth_batch(10, seed=0, label_noise=0.6, invalid_rate=0.6)


def test_write_batches_and_cli_write_parquet_and_truth(tmp_path: Path) -> None:
    paths = write_batches(tmp_path / "out", n=300, batches=3, seed=1, label_noise=0.1, invalid_rate=0.05)
    assert [p.name for p in paths] == ["batch-0000.parquet", "batch-0001.parquet", "batch-0002.parquet"]
    frames = [pl.read_parquet(p) for p in paths]
    assert [f.height for f in frames] == [300, 300, 300]
    truth = pl.read_parquet(tmp_path / "out" / truth_name())
    assert truth.height == 900
    assert truth.group_by("source").len().sort("source").get_column("len").to_list() == [300, 300, 300]
    # Batches start a day apart and do not share ids.
    firsts = [f.get_column("event_time").min() for f in frames]
    assert firsts[0] < firsts[1] < firsts[2]  # type: ignore[operator]
    clean_ids = truth.filter(~pl.col("is_invalid")).get_column("customer_id")
    assert clean_ids.n_unique() == clean_ids.len() == 900 - 3 * round(300 * 0.05)
    # The truth file is hidden from `batch-*` globs so it never gets uploaded as data.
    assert sorted(p.name for p in (tmp_path / "out").glob("batch-*.parquet")) == [p.name for p in paths]
    # `lakeloop data synth` with the same knobs writes the same batches.
    from typer.testing import CliRunner

    from infra.cli import app

    args = ["--out", str(tmp_path / "again"), "--rows", "300", "--batches", "3", "--seed", "1",
            "--label-noise", "0.1", "--invalid-rate", "0.05"]
    result = CliRunner().invoke(app, ["data", "synth", *args])
    assert result.exit_code == 0, result.output
    again = sorted((tmp_path / "again").glob("batch-*.parquet"))
    assert all(pl.read_parquet(a).equals(f) for a, f in zip(again, frames, strict=True))


def test_truth_probabilities_match_the_labels() -> None:
    t = synth_batch(50_000, seed=9).truth
    p = t.get_column("churn_prob").to_numpy()
    y = (t.get_column("true_label") == "yes").to_numpy()
    assert ((p > 0) & (p < 1)).all()
    assert abs(p.mean() - y.mean()) < 0.01  # labels are drawn from these probabilities
    assert np.corrcoef(p, y)[0, 1] > 0.4
