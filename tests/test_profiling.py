"""Profiles per object, cached by checksum, merged for the dataset; the float fast path matches whylogs'."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest

from infra.demo.synth import synth_batch
from lakeloop.settings import ROOT
from lakeloop.spec import DatasetSpec
from tasks.data.profiling import (
    ProfileStore,
    dataset_profile,
    from_bytes,
    profile_frame,
    profile_rows,
    profiled_columns,
    summarize,
    to_bytes,
)
from tasks.data.whylogs_compat import profile_pandas


@pytest.fixture(scope="module")
def spec() -> DatasetSpec:
    return DatasetSpec.from_yaml(ROOT / "examples" / "churn" / "spec.yaml")


def test_profile_excludes_pii_and_covers_features_and_label(spec: DatasetSpec) -> None:
    df = synth_batch(2000, seed=1).data
    view = profile_frame(df, spec)
    cols = set(view.get_columns())
    assert "email" not in cols and spec.id_column not in cols
    assert cols == set(profiled_columns(spec))
    assert spec.label_column in cols
    summary = summarize(view)
    assert summary.rows == 2000
    mc = summary.columns["monthly_charges"]
    assert mc["counts/n"] == 2000
    assert mc["distribution/mean"] == pytest.approx(df["monthly_charges"].mean(), rel=1e-9)
    nulls = df["data_usage_gb"].null_count()
    assert summary.columns["data_usage_gb"]["counts/null"] == nulls


def test_fast_numeric_path_matches_whylogs_pandas_path() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=20_000)
    x[::97] = np.nan
    x[5] = np.inf
    df = pd.DataFrame({"x": x, "k": rng.integers(0, 5, 20_000), "b": rng.random(20_000) < 0.3})
    fast = profile_pandas(df).to_pandas()
    slow = profile_pandas(df, fast_numeric=False).to_pandas()
    for key in ["counts/n", "counts/null", "counts/nan", "counts/inf", "distribution/n", "distribution/mean",
                "distribution/max", "types/fractional"]:
        assert fast.loc["x", key] == pytest.approx(slow.loc["x", key]), key
    assert fast.loc["k", "distribution/mean"] == pytest.approx(slow.loc["k", "distribution/mean"])
    # booleans are profiled as 0/1 integers: same mean (share of True), same count
    assert fast.loc["b", "distribution/mean"] == pytest.approx(df["b"].mean())
    assert fast.loc["b", "counts/n"] == 20_000


def test_dataset_profile_reuses_cached_objects(spec: DatasetSpec, tmp_path) -> None:  # type: ignore[no-untyped-def]
    a, b = synth_batch(1000, seed=1).data, synth_batch(1500, seed=2, start_id=1000).data
    calls: list[str] = []

    def loader(name: str, frame: pl.DataFrame):  # type: ignore[no-untyped-def]
        def load() -> pl.DataFrame:
            calls.append(name)
            return frame
        return load

    store = ProfileStore.for_spec(tmp_path, spec)
    view, stats = dataset_profile([("sum-a", loader("a", a)), ("sum-b", loader("b", b))], store, spec)
    assert (stats.profiled, stats.reused) == (2, 0) and calls == ["a", "b"]
    assert profile_rows(view) == 2500
    assert store.path("sum-a").exists() and store.path("sum-a").parent.name == spec.spec_hash()

    c = synth_batch(500, seed=3, start_id=2500).data
    view2, stats2 = dataset_profile([("sum-a", loader("a", a)), ("sum-b", loader("b", b)),
                                     ("sum-c", loader("c", c))], store, spec)
    assert (stats2.profiled, stats2.reused) == (1, 2) and calls == ["a", "b", "c"]
    assert profile_rows(view2) == 3000
    # merged profile equals the profile of the concatenated data for exact metrics
    whole = summarize(profile_frame(pl.concat([a, b, c]), spec))
    merged = summarize(view2)
    for col in ["monthly_charges", "tenure_months", "contract", "churn"]:
        assert merged.columns[col]["counts/n"] == whole.columns[col]["counts/n"]
    assert merged.columns["monthly_charges"]["distribution/mean"] == pytest.approx(
        whole.columns["monthly_charges"]["distribution/mean"], rel=1e-9)


def test_bytes_roundtrip_and_odd_checksums(spec: DatasetSpec, tmp_path) -> None:  # type: ignore[no-untyped-def]
    view = profile_frame(synth_batch(300, seed=5).data, spec)
    back = from_bytes(to_bytes(view))
    assert summarize(back) == summarize(view)
    store = ProfileStore(tmp_path)
    store.put('"a/b:c"', view)  # quoted etag with path characters: hashed to a safe file name
    assert store.get('"a/b:c"') is not None
    assert store.path('"a/b:c"').parent == tmp_path
    assert store.get("missing") is None


def test_missing_spec_column_is_named(spec: DatasetSpec) -> None:
    df = synth_batch(50, seed=1).data.drop("contract")
    with pytest.raises(ValueError, match="contract"):
        profile_frame(df, spec)
