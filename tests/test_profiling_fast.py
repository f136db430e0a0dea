"""The fast profiler gives whylogs.log's profile, column by column, on awkward data.

Bounds, and why:
- counts (n, null, NaN, inf, true), types, int min/max, distribution n/min/max: equal exactly
  (plain counting; KLL tracks min and max exactly).
- mean and stddev: equal exactly for floats (NumPy's mean/var of the same array, merged by whylogs'
  formula); within 1e-12 for integers, whose few-valued columns are summed exactly from value counts.
- cardinality (HLL) estimate and bounds: equal exactly: an HLL sketch does not change on a value it
  has seen, and the distinct values reach it in first-seen order (or sorted while the sketch is in
  list/set mode, where order does not matter).
- frequent items: equal exactly while a column has fewer distinct values than the sketch's map holds
  (768); beyond, each reported estimate brackets the true count ([lower, upper]) and every value
  heavier than twice the sketch's maximum error (epsilon x rows) is reported by both.
- quantiles (KLL, k=1024, random compaction): the true rank of each reported quantile is within
  2 x the sketch's normalized rank error (0.27% at 99% confidence for a single sketch; twice that
  so that the dozens of checks here do not flake) of the asked rank, for whylogs' sketch and ours.
  Below ~k rows a KLL sketch is exact and the quantiles are equal.
"""

from __future__ import annotations

import math
from datetime import date
from typing import Any

import numpy as np
import polars as pl
import pytest
import whylogs_sketching as ds

from infra.demo.synth import synth_batch
from lakeloop.settings import ROOT
from lakeloop.spec import DatasetSpec
from tasks.data.fast_sketches import profile_polars, whylogs_pandas
from tasks.data.profiling import frame_for_profile, from_bytes, profile_frame, to_bytes
from tasks.data.whylogs_compat import DatasetProfileView, merge_views, profile_pandas

QUANTILES = [0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99]
RANK_SLACK = 2 * ds.kll_doubles_sketch.get_normalized_rank_error(1024, False)
EXACT_FREQUENT = 768  # 0.75 x 2^fi_lg_max_k: whylogs' frequent-items map holds this many values exactly


def whylogs_log(df: pl.DataFrame) -> DatasetProfileView:
    return profile_pandas(whylogs_pandas(df), fast_numeric=False)  # whylogs.log(pandas=...).view()


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def _is_int(series: Any) -> bool:
    return series.dtype.kind in "iu"


def _true_counts(values: pl.Series, max_item: int = 128) -> dict[str, int]:
    s = values.drop_nulls()
    s = s.cast(pl.Int64).cast(pl.Utf8) if s.dtype.is_integer() or s.dtype == pl.Boolean else s.cast(pl.Utf8)
    vc = s.str.slice(0, max_item).value_counts()
    return dict(zip(vc.to_series(0).to_list(), vc.get_column("count").to_list(), strict=True))


def _check_quantiles(name: str, fast: Any, ref: Any, data: np.ndarray) -> None:
    fk, rk = fast.kll.value, ref.kll.value
    assert fk.get_n() == rk.get_n() == len(data), name
    if not len(data):
        return
    assert fk.get_min_value() == rk.get_min_value() and fk.get_max_value() == rk.get_max_value(), name
    ordered = np.sort(data)
    for q, fq, rq in zip(QUANTILES, fk.get_quantiles(QUANTILES), rk.get_quantiles(QUANTILES), strict=True):
        if not rk.is_estimation_mode():
            assert _same(fq, rq), (name, q, fq, rq)  # both exact
        for got in (fq, rq):
            below = np.searchsorted(ordered, got, side="left") / len(data)
            upto = np.searchsorted(ordered, got, side="right") / len(data)
            assert below - RANK_SLACK <= q <= upto + RANK_SLACK, (name, q, got, below, upto)


def _check_frequent(name: str, fast: Any, ref: Any, column: pl.Series) -> None:
    f_items = {i.value: (i.est, i.lower, i.upper) for i in fast.to_summary_dict()["frequent_strings"]}
    r_items = {i.value: (i.est, i.lower, i.upper) for i in ref.to_summary_dict()["frequent_strings"]}
    truth = _true_counts(column)
    if len(truth) <= EXACT_FREQUENT:
        assert f_items == r_items, name
        return
    for items in (f_items, r_items):
        for value, (_, lower, upper) in items.items():
            assert lower <= truth[value] <= upper, (name, value)
    sketches = (fast.frequent_strings.value, ref.frequent_strings.value)
    heavy = max(2 * s.get_sketch_epsilon() * s.get_total_weight() for s in sketches)
    for value, count in truth.items():
        if count > heavy:
            assert value in f_items and value in r_items, (name, value, count)


def assert_same_profile(fast: DatasetProfileView, ref: DatasetProfileView, df: pl.DataFrame) -> None:
    fcols, rcols = fast.get_columns(), ref.get_columns()
    assert sorted(fcols) == sorted(rcols)  # a deserialized profile lists its columns sorted
    pdf = whylogs_pandas(df)
    for name, rcol in rcols.items():
        fm, rm = fcols[name].get_metrics(), rcol.get_metrics()
        assert sorted(m.namespace for m in fm) == sorted(m.namespace for m in rm), name
        fmetric = {m.namespace: m for m in fm}
        for metric in rm:
            ns = metric.namespace
            mine = fmetric[ns]
            if ns == "frequent_items":
                _check_frequent(name, mine, metric, df.get_column(name))
                continue
            got, want = mine.to_summary_dict(), metric.to_summary_dict()
            if ns == "distribution":
                series = pdf[name]
                data = (series.dropna().to_numpy(dtype="float64") if series.dtype.kind in "fiu" or
                        str(series.dtype) == "Int64" else np.array([]))
                _check_quantiles(name, mine, metric, data)
                got = {k: v for k, v in got.items() if not k.startswith("q_") and k != "median"}
                want = {k: v for k, v in want.items() if not k.startswith("q_") and k != "median"}
            assert got.keys() == want.keys(), (name, ns)
            for key in want:
                if ns == "distribution" and key in ("mean", "stddev") and _is_int(pdf[name]):
                    # integer columns of few values: exact integer sums, not NumPy's float ones
                    assert got[key] == pytest.approx(want[key], rel=1e-12, nan_ok=True), (name, key)
                else:
                    assert _same(got[key], want[key]), (name, ns, key, got[key], want[key])


def awkward_frame(n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    floats = rng.normal(0, 1e3, n)
    specials = np.array([np.nan, np.inf, -np.inf, 1e308, -1e308, 5e-324, -0.0, 1e-300, 0.0])
    pick = rng.random(n) < 0.05
    floats[pick] = rng.choice(specials, pick.sum())
    float_nulls = rng.random(n) < 0.03
    ints = rng.integers(-(2**62), 2**62, n)
    ints[: min(n, 3)] = [np.iinfo(np.int64).max, np.iinfo(np.int64).min, 0][: min(n, 3)]
    words = ["a", "", "é", "日本語", "🙂‍↔️", "ש", "e\u0301", "1", "2.5", "nan", "inf", "None", "x" * 200,
             "x" * 128 + "tail", "y" * 129]
    strings = rng.choice(np.array(words, dtype=object), n)
    many = [f"user-{i}@exämple.org" for i in rng.integers(0, n // 3 + 1, n)]
    return pl.DataFrame({
        "float": pl.Series(floats).set(pl.Series(float_nulls), None),
        "float32": pl.Series(rng.normal(size=n), dtype=pl.Float32),
        "float_levels": pl.Series(np.round(rng.normal(size=n), 1)),  # few values: KLL fed sorted
        "int_huge": pl.Series(ints).set(pl.Series(rng.random(n) < 0.02), None),
        "int_small": pl.Series(rng.integers(0, 4, n), dtype=pl.Int32),  # KLL from counts (>= 2048 rows a value)
        "int_wide": pl.Series(rng.integers(0, 5_000, n), dtype=pl.UInt16),  # bincount, HLL needs first-seen order
        "int_negative": pl.Series(rng.integers(-1, 2, n)).set(pl.Series(rng.random(n) < 0.1), None),
        "bool": pl.Series(rng.random(n) < 0.3).set(pl.Series(rng.random(n) < 0.1), None),
        "bool_full": pl.Series(rng.random(n) < 0.7),
        "text": pl.Series(strings.tolist(), dtype=pl.Utf8).set(pl.Series(rng.random(n) < 0.05), None),
        "many_strings": pl.Series(many),  # past the frequent-items map: estimates within error
        "category": pl.Series(rng.choice(["dsl", "fiber", "none"], n)).cast(pl.Categorical),
        "single": pl.Series([7.5] * n),
        "all_null_float": pl.Series([None] * n, dtype=pl.Float64),
        "all_null_int": pl.Series([None] * n, dtype=pl.Int64),
        "all_null_text": pl.Series([None] * n, dtype=pl.Utf8),
        "all_null_bool": pl.Series([None] * n, dtype=pl.Boolean),
        "day": pl.Series([date(2024, 1, 1 + i % 28) for i in range(n)]),  # no fast path: whylogs' own
    })


def test_awkward_columns_match_whylogs_log() -> None:
    df = awkward_frame(10_000, seed=1)
    assert_same_profile(profile_polars(df), whylogs_log(df), df)


@pytest.mark.parametrize("rows", [0, 1, 2])
def test_empty_and_tiny_frames_match_whylogs_log(rows: int) -> None:
    df = awkward_frame(rows, seed=2)
    assert_same_profile(profile_polars(df), whylogs_log(df), df)


def test_random_small_frames_match_exactly() -> None:
    """Seeded fuzz: below KLL's first compaction every sketch is exact, so every figure is equal."""
    for seed in range(12):
        rng = np.random.default_rng(100 + seed)
        df = awkward_frame(int(rng.integers(0, 400)), seed=seed)
        df = df.select(rng.permutation(df.columns)[: int(rng.integers(1, len(df.columns) + 1))].tolist())
        assert_same_profile(profile_polars(df), whylogs_log(df), df)


@pytest.fixture(scope="module")
def spec() -> DatasetSpec:
    return DatasetSpec.from_yaml(ROOT / "examples" / "churn" / "spec.yaml")


def test_spec_profile_matches_whylogs_and_feeds_the_product(spec: DatasetSpec) -> None:
    data = synth_batch(10_000, seed=3).data
    fast, ref = profile_frame(data, spec), profile_frame(data, spec, fast=False)
    assert_same_profile(fast, ref, frame_for_profile(data, spec))
    back = from_bytes(to_bytes(fast))  # the cache's protobuf round trip
    assert_same_profile(back, ref, frame_for_profile(data, spec))
    # a fast profile merges with a whylogs one (cached profiles of other objects) like two whylogs profiles
    more = synth_batch(2_000, seed=4, start_id=10_000).data
    mixed = merge_views([fast, profile_frame(more, spec, fast=False)]).get_columns()
    plain = merge_views([ref, profile_frame(more, spec, fast=False)]).get_columns()
    for name, column in plain.items():
        assert mixed[name].get_metric("counts").to_summary_dict() == column.get_metric("counts").to_summary_dict()
