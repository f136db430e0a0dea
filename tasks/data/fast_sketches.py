"""whylogs profiles fed from Arrow buffers: whylogs' own metrics and sketches, a whole column at a time.

``whylogs.log`` spends its time in per-value Python on the way into its sketches: an
``isinf`` lambda per float, an ``is_number`` lambda per null, a Python list of every
string (and a truncated copy of it) for the frequent-items and HLL sketches. Here the
same metrics, made by whylogs' own resolver for the dtype whylogs would see, are fed
straight from the polars column:

* counts and types: null counts from the Arrow validity bitmap, NaN/inf from the NumPy array,
  through whylogs' own ``columnar_update``: equal to whylogs' counts by construction;
* distribution: whylogs' KLL update and its mean/M2 formula on the non-null values as one NumPy
  array. A float column that repeats its values (HLL estimate <= rows/16) is sorted first: KLL
  takes sorted input ~4x faster and its error bound holds for any order of the stream. An integer
  column with at most one distinct value per 2048 rows gets its KLL sketch by merging doubling
  sketches of each value (merged KLL sketches keep the bound) and its mean/M2 from exact sums;
* cardinality (HLL): the distinct values in first-seen order (floats: every value, as whylogs).
  An HLL sketch does not change on a value it has seen, so this is the very sketch whylogs builds;
* frequent items: one weighted update per repeated (truncated) value, one bulk update of the
  values seen once. While the column has fewer distinct values than the sketch's map holds (768
  with whylogs' defaults) the counts are exact, like whylogs'; past that both are Misra-Gries
  estimates within the sketch's maximum error (``epsilon * rows``).

KLL sketches compact with random offsets, so no two runs (ours or whylogs') give the same
bytes: quantiles agree within the sketch's rank error. The result is a plain
``DatasetProfileView``; drift, pictures, merging and the protobuf cache read it unchanged.
The reference it must equal is ``whylogs.log(pandas=whylogs_pandas(df))`` (tests/test_profiling_fast.py).
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import numpy as np
import pandas as pd
import polars as pl
import whylogs_sketching as ds

from tasks.data.whylogs_compat import (
    ColumnProfileView,
    ColumnSchema,
    DatasetProfile,
    DatasetProfileView,
    DatasetSchema,
    Metric,
    MetricConfig,
    PreprocessedColumn,
    VarianceM2Result,
    parallel_variance_m2,
    welford_online_variance_m2,
)

Kind = Literal["fractional", "integral", "string"]

# a column with at most one distinct value per this many rows gets its KLL sketch from value counts
_ROWS_PER_DISTINCT = 2048
# a float column with at most one distinct value per this many rows is sorted before its KLL update
_ROWS_PER_DISTINCT_SORTED = 16
_INTEGERS = (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32)


def column_kind(dtype: pl.DataType) -> Kind | None:
    """How whylogs sees a polars column once `whylogs_pandas` has converted it; None: not on the fast path."""
    if dtype in (pl.Float32, pl.Float64):
        return "fractional"
    if dtype in _INTEGERS or dtype == pl.Boolean:  # booleans as 0/1 integers, whylogs' vectorised int path
        return "integral"
    if dtype in (pl.Utf8, pl.Categorical) or isinstance(dtype, pl.Enum):
        return "string"
    return None


def _string_series(col: pl.Series) -> pd.Series:
    ser = col.cast(pl.Utf8).to_pandas().reset_index(drop=True)
    if ser.dtype == object:  # older pandas: keep nulls as nulls, not the string "None"
        ser = pd.Series(col.cast(pl.Utf8).to_list(), dtype="str")
    return ser


def whylogs_pandas(df: pl.DataFrame) -> pd.DataFrame:
    """The pandas frame whylogs is given for `df` (floats with NaN, int64 or nullable Int64, `str`).

    `profile_polars(df)` equals `whylogs.log(pandas=whylogs_pandas(df))`; these conversions are the ones
    that land on whylogs' vectorised paths (no per-value lambdas for ints, booleans as 0/1)."""
    out: dict[str, pd.Series] = {}
    for name in df.columns:
        col = df.get_column(name)
        kind = column_kind(col.dtype)
        if kind == "string":
            out[name] = _string_series(col)
        elif kind == "integral":
            ints = col.cast(pl.Int64)
            out[name] = (pd.Series(ints.to_list(), dtype="Int64") if ints.null_count()
                         else pd.Series(ints.to_numpy(), dtype="int64"))
        elif kind == "fractional":
            out[name] = pd.Series(col.cast(pl.Float64).to_numpy(), dtype="float64")
        else:
            out[name] = col.to_pandas().reset_index(drop=True)
    return pd.DataFrame(out)


# whylogs resolves a column's metrics from its pandas dtype; these are the dtypes whylogs_pandas hands it
_STRING_PROBE = _string_series(pl.Series([None], dtype=pl.Utf8))
_DTYPES: dict[Kind, Any] = {"fractional": np.dtype("float64"), "integral": np.dtype("int64"),
                            "string": _STRING_PROBE.dtype}
# pandas 3's `str` dtype stores a missing string as NaN, which whylogs also counts as a NaN
_STRING_NULL_IS_NAN = bool(pd.api.types.is_number(_STRING_PROBE.iloc[0]))


@functools.cache
def _metric_types(kind: Kind) -> tuple[tuple[str, type[Metric]], ...]:
    """The metrics whylogs' default resolver gives a column of this kind (resolving costs ~20 ms: once)."""
    schema = DatasetSchema()
    column = ColumnSchema(dtype=_DTYPES[kind], cfg=schema.default_configs, resolver=schema.resolvers,
                          validators=schema.validators, type_mapper=schema.type_mapper)
    return tuple((namespace, type(metric)) for namespace, metric in column.get_metrics("probe").items())


def _metrics(kind: Kind, cfg: MetricConfig) -> dict[str, Metric]:
    """Fresh (zero) metrics for a column, as whylogs' resolver makes them."""
    return {namespace: cls.zero(cfg) for namespace, cls in _metric_types(kind)}


def _preprocessed(n: int, nulls: int, nans: int = 0, infs: int = 0) -> PreprocessedColumn:
    pc = PreprocessedColumn()
    pc.len, pc.null_count, pc.nan_count, pc.inf_count = n, nulls, nans, infs
    return pc


def _update(metrics: dict[str, Metric], pc: PreprocessedColumn, *namespaces: str) -> None:
    """whylogs' own vectorised update for the metrics that read only counts and NumPy arrays."""
    for namespace in namespaces:
        if namespace in metrics:
            metrics[namespace].columnar_update(pc)


Counts = tuple[pl.Series, pl.Series]  # distinct values, and how often each occurs


def _distinct(col: pl.Series, order_free: int) -> tuple[Counts, pl.Series]:
    """Counts of the distinct non-null values, and those values in an order that gives whylogs' HLL sketch.

    An HLL sketch is unchanged by a value it has seen, so the distinct values in first-seen order give
    the very sketch whylogs builds from every row. While it holds at most `order_free` values the
    sketch keeps them as a list or set, where order does not matter either (only its HLL mode's
    estimator depends on the order of new values): then the counts' own order does."""
    values = col.drop_nulls() if col.null_count() else col
    counts = values.alias("v").value_counts(name="n")
    distinct = counts.get_column("v")
    return (distinct, counts.get_column("n")), (
        distinct if distinct.len() <= order_free else values.unique(maintain_order=True))


def _int_counts(ints: pl.Series, arr: np.ndarray, lo: int, hi: int, order_free: int) -> tuple[Counts, pl.Series]:
    """`_distinct`, by a bincount when the values span a small range and few of them occur."""
    if hi - lo < 1 << 16:
        counts = np.bincount(arr - lo)
        present = np.flatnonzero(counts)
        if len(present) <= order_free:
            distinct = pl.Series("v", present + lo, dtype=pl.Int64)
            return (distinct, pl.Series("n", counts[present])), distinct
    return _distinct(ints, order_free)


def _order_free(cfg: MetricConfig) -> int:
    """How many distinct values an HLL sketch of `cfg` surely keeps as a list or set: 2^(lg_k-4), 256 at
    whylogs' lg_k=12 (datasketches turns to HLL mode at 3/4 of 2^(lg_k-3), 384)."""
    return 1 << (cfg.hll_lg_k - 4)


def _kll_of_counts(k: int, values: list[float], weights: list[int]) -> Any:
    """A KLL sketch of each value repeated its count times, built by merging doubling sketches.

    Merged KLL sketches keep the sketch's rank-error guarantee, and a sketch of one repeated value is
    exact, so this is the sketch of the column within KLL error, in O(distinct x log rows) merges
    instead of one update per row."""
    out = ds.kll_doubles_sketch(k)
    block = 2 * k  # below this many copies direct updates are as cheap as merges
    for value, weight in zip(values, weights, strict=True):
        if weight % block:
            out.update(array=np.full(weight % block, float(value)))
        times = weight // block
        if not times:
            continue
        power = ds.kll_doubles_sketch(k)
        power.update(array=np.full(block, float(value)))
        while True:
            if times & 1:
                out.merge(power)
            times >>= 1
            if not times:
                break
            doubled = ds.kll_doubles_sketch.deserialize(power.serialize())
            doubled.merge(power)
            power = doubled
    return out


def _update_distribution(metric: Metric | None, arr: np.ndarray, counts: Counts | None = None,
                         kll_feed: np.ndarray | None = None) -> None:
    """whylogs' DistributionMetric update (KLL, then mean and M2 by the parallel algorithm), but the KLL
    sketch, mean and M2 come from value counts when an integer column holds few distinct values."""
    if metric is None or not len(arr):
        return
    kll, mean, m2 = metric.kll, metric.mean, metric.m2  # type: ignore[attr-defined]
    first = VarianceM2Result(n=kll.value.get_n(), mean=mean.value, m2=m2.value)
    n = len(arr)
    if counts is not None and counts[0].len() * _ROWS_PER_DISTINCT <= n:
        values, weights = counts[0].to_list(), counts[1].to_list()
        kll.value.merge(_kll_of_counts(kll.value.get_k(), values, weights))
        # integer sums, exact: the mean is NumPy's (exact below 2^53), M2 within rounding of it
        total = sum(v * w for v, w in zip(values, weights, strict=True))
        squares = sum(v * v * w for v, w in zip(values, weights, strict=True))
        second = VarianceM2Result(n=n, mean=total / n, m2=(n * squares - total * total) / n)
    else:
        kll.value.update(array=arr if kll_feed is None else kll_feed)
        second = VarianceM2Result(n=n, mean=arr.mean(), m2=arr.var(ddof=1) * (n - 1) if n > 1 else 0.0)
    if n > 1:
        first = parallel_variance_m2(first=first, second=second)
    else:
        first = welford_online_variance_m2(existing=first, new_value=arr[0])
    mean.set(first.mean)
    m2.set(first.m2)


def _update_frequent(metric: Metric | None, counts: Counts) -> None:
    """One weighted update per repeated value (exact counts while they fit in the sketch's map), and
    the values seen once in one bulk update, as whylogs feeds them."""
    if metric is None:
        return
    sketch = metric.frequent_strings.value  # type: ignore[attr-defined]
    values, weights = counts
    once = weights == 1
    repeated = values.filter(~once)
    texts = repeated.to_list() if values.dtype == pl.Utf8 else [str(v) for v in repeated.to_list()]
    for value, weight in zip(texts, weights.filter(~once).to_list(), strict=True):
        sketch.update(value, weight)
    single = values.filter(once)
    if single.len():
        if values.dtype == pl.Utf8:
            sketch.update_str_list(single.to_list())
        else:
            sketch.update_np(single.to_numpy())


def _fractional(col: pl.Series, metrics: dict[str, Metric]) -> None:
    arr = col.cast(pl.Float64).to_numpy()  # nulls become NaN, as in the pandas column whylogs reads
    missing = np.isnan(arr)
    if missing.any():
        arr = arr[~missing]
    nulls = col.len() - len(arr)  # whylogs counts a pandas NaN both as null and as NaN
    pc = _preprocessed(col.len(), nulls, nans=nulls, infs=int(np.isinf(arr).sum()))
    pc.numpy.floats = arr
    _update(metrics, pc, "counts", "types")
    feed = arr
    if "cardinality" in metrics and len(arr):
        hll = metrics["cardinality"].hll.value  # type: ignore[attr-defined]
        hll.update_np(arr)
        if hll.get_estimate() * _ROWS_PER_DISTINCT_SORTED <= len(arr):
            # KLL takes sorted input ~4x faster, and polars sorts a column of repeated values cheaply; KLL's
            # error bound holds for any order of the stream (its randomness is in its compactions)
            feed = pl.Series(arr).sort().to_numpy()
    _update_distribution(metrics.get("distribution"), arr, kll_feed=feed)


def _integral(col: pl.Series, metrics: dict[str, Metric], cfg: MetricConfig) -> None:
    ints = col.cast(pl.Int64)
    arr = (ints.drop_nulls() if ints.null_count() else ints).to_numpy()
    pc = _preprocessed(col.len(), ints.null_count())
    pc.numpy.ints = arr
    _update(metrics, pc, "counts", "types")
    if not len(arr):
        return
    lo, hi = int(arr.min()), int(arr.max())
    if "ints" in metrics:
        metrics["ints"].max.set(max(metrics["ints"].max.value, hi))  # type: ignore[attr-defined]
        metrics["ints"].min.set(min(metrics["ints"].min.value, lo))  # type: ignore[attr-defined]
    counts, hll_feed = _int_counts(ints, arr, lo, hi, _order_free(cfg))
    _update_distribution(metrics.get("distribution"), arr, counts)
    if "cardinality" in metrics:
        metrics["cardinality"].hll.value.update_np(hll_feed.to_numpy())  # type: ignore[attr-defined]
    _update_frequent(metrics.get("frequent_items"), counts)


def _string(col: pl.Series, metrics: dict[str, Metric], cfg: MetricConfig) -> None:
    nulls = col.null_count()
    present = col.len() - nulls
    pc = _preprocessed(col.len(), nulls, nans=nulls if _STRING_NULL_IS_NAN else 0)
    _update(metrics, pc, "counts", "types", "distribution")
    if "types" in metrics:
        string = metrics["types"].string  # type: ignore[attr-defined]
        string.set(string.value + present)
    if not present:
        return
    (values, weights), hll_feed = _distinct(col.cast(pl.Utf8), _order_free(cfg))
    if "cardinality" in metrics:
        metrics["cardinality"].hll.value.update_str_list(hll_feed.to_list())  # type: ignore[attr-defined]
    max_item = cfg.max_frequent_item_size
    if (values.str.len_chars().max() or 0) > max_item:  # type: ignore[operator]
        # whylogs keeps the first `max_item` characters of a frequent item: count the cut values together
        cut = pl.DataFrame({"v": values, "n": weights}).group_by(pl.col("v").str.slice(0, max_item),
                                                                 maintain_order=True).agg(pl.col("n").sum())
        values, weights = cut.get_column("v"), cut.get_column("n")
    _update_frequent(metrics.get("frequent_items"), (values, weights))


def profile_polars(df: pl.DataFrame) -> DatasetProfileView:
    """whylogs profile of every column of `df`, equal to `whylogs.log(pandas=whylogs_pandas(df))`."""
    base = DatasetProfile()
    cfg = DatasetSchema().default_configs
    kinds = {name: kind for name in df.columns if (kind := column_kind(df.schema[name])) is not None}
    columns: dict[str, ColumnProfileView] = {}
    for name, kind in kinds.items():
        col = df.get_column(name)
        metrics = _metrics(kind, cfg)
        if kind == "fractional":
            _fractional(col, metrics)
        elif kind == "integral":
            _integral(col, metrics, cfg)
        else:
            _string(col, metrics, cfg)
        columns[name] = ColumnProfileView(metrics=metrics)
    others = [name for name in df.columns if name not in kinds]
    if others:  # dates, lists, ...: whylogs' own path for these columns
        rest = DatasetProfile()
        rest.track(pandas=whylogs_pandas(df.select(others)))
        columns.update(rest.view().get_columns())
    view = base.view()
    return DatasetProfileView(columns={name: columns[name] for name in df.columns if name in columns},
                              dataset_timestamp=view.dataset_timestamp,
                              creation_timestamp=view.creation_timestamp, metadata=view.metadata)
