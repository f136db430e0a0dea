"""The one module that imports whylogs; everything else goes through these functions.

whylogs 1.6.4 is the last release and needs two small shims to run here:

* NumPy 2 removed ``np.unicode_``, which ``whylogs.core.datatypes`` still uses when it
  maps string columns to types. ``np.str_`` is the same type under its NumPy 2 name,
  so we alias it before importing whylogs.
* The drift algorithms (KS, chi-square, Hellinger) live in
  ``whylogs.viz.drift.column_drift_algorithms``. Importing that runs
  ``whylogs.viz.__init__``, which imports IPython and the notebook renderers
  (the ``whylogs[viz]`` extra, which we do not install). The algorithms themselves
  need only scipy and whylogs core, so we register a bare package module for
  ``whylogs.viz`` (with the real ``__path__``) in ``sys.modules`` first: Python then
  finds the submodules on disk without executing the package's ``__init__``.

Profiling speed: whylogs' pandas path runs a Python lambda per float value (an
``isinf`` check) and six per boolean value. For float columns we hand whylogs the
finite values through its *homogeneous column* schema path (a straight
``astype(float)`` into the KLL sketch), and the few NaN/inf values through the normal
path, then merge the two profiles, which gives the same counts and sketches.
Booleans are profiled as 0/1 integers (whylogs' vectorised int path). The product's
profiles no longer take this path: ``tasks.data.fast_sketches`` feeds whylogs' metrics
(exported here) from polars columns directly, measured by ``bench/bench_profile.py``.
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

if not hasattr(np, "unicode_"):  # NumPy 2: whylogs.core.datatypes still refers to np.unicode_
    np.unicode_ = np.str_  # type: ignore[attr-defined]

import whylogs  # noqa: E402
from whylogs.core import DatasetProfile, DatasetProfileView, DatasetSchema  # noqa: E402
from whylogs.core.metrics import Metric  # noqa: E402
from whylogs.core.metrics.maths import (  # noqa: E402
    VarianceM2Result,
    parallel_variance_m2,
    welford_online_variance_m2,
)
from whylogs.core.metrics.metrics import MetricConfig  # noqa: E402
from whylogs.core.preprocessing import ColumnProperties, PreprocessedColumn  # noqa: E402
from whylogs.core.schema import ColumnSchema  # noqa: E402
from whylogs.core.view import ColumnProfileView  # noqa: E402


def _import_drift_algorithms() -> types.ModuleType:
    """Import whylogs' drift algorithms without running ``whylogs.viz.__init__`` (IPython)."""
    name = "whylogs.viz"
    if name not in sys.modules:
        pkg = types.ModuleType(name)
        pkg.__path__ = [str(Path(whylogs.__file__).parent / "viz")]
        pkg.__package__ = name
        sys.modules[name] = pkg
    return importlib.import_module("whylogs.viz.drift.column_drift_algorithms")


_cda = _import_drift_algorithms()
_drift_configs = importlib.import_module("whylogs.viz.drift.configs")

KS = _cda.KS
ChiSquare = _cda.ChiSquare
KSTestConfig = _drift_configs.KSTestConfig
ChiSquareConfig = _drift_configs.ChiSquareConfig
DriftThresholds = _drift_configs.DriftThresholds

__all__ = [
    "DatasetProfileView",
    # whylogs' own building blocks, for tasks.data.fast_sketches
    "ColumnProfileView",
    "ColumnSchema",
    "DatasetProfile",
    "DatasetSchema",
    "Metric",
    "MetricConfig",
    "PreprocessedColumn",
    "VarianceM2Result",
    "parallel_variance_m2",
    "welford_online_variance_m2",
    "ColumnScore",
    "profile_pandas",
    "serialize_view",
    "deserialize_view",
    "merge_views",
    "empty_view",
    "drift_scores",
    "view_summary",
]


# ---- profiling ---------------------------------------------------------------
def profile_pandas(df: pd.DataFrame, *, fast_numeric: bool = True) -> DatasetProfileView:
    """Profile a pandas frame; float columns take the vectorised path unless `fast_numeric=False`."""
    if not fast_numeric:
        return whylogs.log(pandas=df).view()
    prepared = df.copy()
    for col in prepared.columns:
        s = prepared[col]
        if pd.api.types.is_bool_dtype(s.dtype):
            prepared[col] = s.astype("int64") if not s.hasnans else s.astype("Int64")
    float_cols = [c for c in prepared.columns if pd.api.types.is_float_dtype(prepared[c].dtype)]
    other_cols = [c for c in prepared.columns if c not in float_cols]

    schema = DatasetSchema(types={c: (float, ColumnProperties.homogeneous) for c in float_cols})
    fast = DatasetProfile(schema=schema)
    rest = DatasetProfile()
    if other_cols:
        rest.track(pandas=prepared[other_cols])
    for col in float_cols:
        values = prepared[col].to_numpy(dtype="float64", na_value=np.nan)
        finite = np.isfinite(values)
        if finite.any():
            fast.track(pandas=pd.DataFrame({col: values[finite]}))
        if not finite.all():
            # NaN and +/-inf go through whylogs' normal path so null/nan/inf counts are kept.
            rest.track(pandas=pd.DataFrame({col: values[~finite]}))
    return fast.view().merge(rest.view())


def empty_view() -> DatasetProfileView:
    return DatasetProfile().view()


def serialize_view(view: DatasetProfileView) -> bytes:
    """whylogs' protobuf bytes, readable by any whylogs 1.x."""
    data: bytes = view.serialize()
    return data


def deserialize_view(data: bytes) -> DatasetProfileView:
    return DatasetProfileView.deserialize(data)


def merge_views(views: list[DatasetProfileView]) -> DatasetProfileView:
    """Merge profiles of disjoint row sets (sketches are mergeable); empty list -> empty profile."""
    if not views:
        return empty_view()
    merged = views[0]
    for v in views[1:]:
        merged = merged.merge(v)
    return merged


def view_columns(view: DatasetProfileView) -> list[str]:
    return list(view.get_columns().keys())


def view_summary(view: DatasetProfileView) -> dict[str, dict[str, Any]]:
    """Per-column summary (counts, mean, quantiles, ...) as plain JSON-able values."""
    if not view.get_columns():
        return {}
    frame = view.to_pandas()
    out: dict[str, dict[str, Any]] = {}
    for col, row in frame.iterrows():
        entry: dict[str, Any] = {}
        for key, value in row.items():
            if key == "type" or key.startswith("frequent_items"):
                continue
            if isinstance(value, np.generic):
                value = value.item()
            if isinstance(value, float) and not np.isfinite(value):
                continue
            if isinstance(value, int | float | str):
                entry[str(key)] = value
        out[str(col)] = entry
    return out


# ---- drift -------------------------------------------------------------------
class ColumnScore:
    """One column's drift score as whylogs computed it."""

    __slots__ = ("column", "algorithm", "statistic", "pvalue", "category", "n_target", "n_reference")

    def __init__(self, column: str, algorithm: str, statistic: float | None, pvalue: float | None,
                 category: str | None, n_target: int = 0, n_reference: int = 0) -> None:
        self.n_target = n_target
        self.n_reference = n_reference
        self.column = column
        self.algorithm = algorithm
        self.statistic = statistic
        self.pvalue = pvalue
        self.category = category


def _thresholds(drift_pvalue: float, possible_pvalue: float) -> Any:
    return DriftThresholds(NO_DRIFT=(possible_pvalue, 1), POSSIBLE_DRIFT=(drift_pvalue, possible_pvalue),
                           DRIFT=(0, drift_pvalue))


def drift_scores(
    target: DatasetProfileView,
    reference: DatasetProfileView,
    *,
    algorithms: dict[str, str] | None = None,
    drift_pvalue: float = 0.05,
    possible_drift_pvalue: float = 0.15,
) -> dict[str, ColumnScore | None]:
    """Drift of each column of `target` present in `reference`.

    `algorithms` maps column -> "ks" | "chi-square"; unmapped columns get whylogs' default
    choice (KS when the column has a distribution sketch, else chi-square on frequent items).
    None for a column means whylogs could not score it (e.g. an empty sketch).
    """
    th = _thresholds(drift_pvalue, possible_drift_pvalue)
    factories = {
        "ks": lambda: KS(KSTestConfig(thresholds=th)),
        "chi-square": lambda: ChiSquare(ChiSquareConfig(thresholds=th)),
    }
    target_cols = target.get_columns()
    reference_cols = reference.get_columns()
    out: dict[str, ColumnScore | None] = {}
    for col, tview in target_cols.items():
        rview = reference_cols.get(col)
        if rview is None:
            continue
        name = (algorithms or {}).get(col)
        if name is not None:
            if name not in factories:
                raise ValueError(f"column {col!r}: unknown drift algorithm {name!r} (ks | chi-square)")
            score = factories[name]().calculate(tview, rview, with_thresholds=True)
        else:
            score = factories["ks"]().calculate(tview, rview, with_thresholds=True) or factories[
                "chi-square"
            ]().calculate(tview, rview, with_thresholds=True)
        out[col] = (
            None
            if score is None
            else ColumnScore(
                column=col,
                algorithm=score.algorithm,
                statistic=None if score.statistic is None else float(score.statistic),
                pvalue=None if score.pvalue is None else float(score.pvalue),
                category=score.drift_category,
                n_target=_count(tview),
                n_reference=_count(rview),
            )
        )
    return out


def _count(column_view: Any) -> int:
    counts = column_view.get_metric("counts")
    return 0 if counts is None else int(counts.n.value - counts.null.value)


# ---- distributions, for pictures ---------------------------------------------
def numeric_histograms(views: list[DatasetProfileView], column: str, bins: int = 20
                       ) -> tuple[list[float], list[list[float]]] | None:
    """Shared bin edges over every view's range, and each view's share of rows per bin, from its KLL sketch.

    None when no view has a non-empty distribution sketch for `column`."""
    sketches = []
    for view in views:
        cv = view.get_columns().get(column)
        metric = None if cv is None else cv.get_metric("distribution")
        sketches.append(None if metric is None or metric.kll.value.is_empty() else metric.kll.value)
    present = [k for k in sketches if k is not None]
    if not present:
        return None
    lo = min(k.get_min_value() for k in present)
    hi = max(k.get_max_value() for k in present)
    if hi <= lo:
        hi = lo + 1.0
    edges = [float(x) for x in np.linspace(lo, hi, bins + 1)]
    masses = [[0.0] * bins if k is None else [float(m) for m in k.get_pmf(edges[1:-1])] for k in sketches]
    return edges, masses


def frequent_values(view: DatasetProfileView, column: str) -> dict[str, int]:
    """Estimated count of each frequent value of `column` (its frequent-items sketch); {} when it has none."""
    cv = view.get_columns().get(column)
    metric = None if cv is None else cv.get_metric("frequent_items")
    if metric is None:
        return {}
    return {str(item.value): int(item.est) for item in metric.to_summary_dict()["frequent_strings"]}
