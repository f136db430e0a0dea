"""Batch inference with the registered champion, written back to lakeFS.

Why resolve the alias first: `models:/<name>@champion` can move while a batch
runs; the alias is resolved to a version once, that exact version is loaded, and
the version is stored with every prediction row and in the lakeFS commit, so a
prediction can always be traced to the model and the data commit it came from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import mlflow
import pandas as pd
import polars as pl
from mlflow import MlflowClient

from lakeloop.adapters.lakefs import Lake
from lakeloop.layout import PREDICTIONS_PREFIX
from lakeloop.settings import get_settings
from tasks.data.whylogs_compat import DatasetProfileView, profile_pandas
from tasks.model.model_contract import model_input

SHORT_COMMIT = 12

_ALIAS = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/]+)$")
_VERSION = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)$")


@dataclass(frozen=True)
class ResolvedModel:
    uri: str  # the exact-version URI that was loaded
    name: str | None
    version: str | None


def default_model_uri() -> str:
    return f"models:/{get_settings().mlflow.model_name}@champion"


def resolve_model_uri(model_uri: str, client: MlflowClient | None = None) -> ResolvedModel:
    """Turn an alias URI into an exact version URI; other URIs are used as given (version unknown)."""
    m = _ALIAS.match(model_uri)
    if m:
        mv = (client or MlflowClient()).get_model_version_by_alias(m["name"], m["alias"])
        return ResolvedModel(f"models:/{m['name']}/{mv.version}", m["name"], str(mv.version))
    m = _VERSION.match(model_uri)
    if m:
        return ResolvedModel(model_uri, m["name"], m["version"])
    return ResolvedModel(model_uri, None, None)


def predict_batch(
    df: pl.DataFrame,
    model_uri: str | None = None,
    *,
    id_column: str | None = None,
    model: Any = None,
    client: MlflowClient | None = None,
) -> pl.DataFrame:
    """Predict every row of `df`: id, label, probability (+ per-class columns), model_version.

    The id column is the one in the model's own spec artifact unless `id_column` is given.
    `model` lets a caller reuse an already loaded pyfunc for `model_uri` (its version is still
    resolved from the URI). Rows are neither dropped nor reordered; a missing or uncastable
    column raises naming it.
    """
    resolved = resolve_model_uri(model_uri or default_model_uri(), client)
    pyfunc = model if model is not None else mlflow.pyfunc.load_model(resolved.uri)
    idc = id_column or _model_id_column(pyfunc)
    if idc not in df.columns:
        raise ValueError(f"batch inference: id column {idc!r} missing from the input frame")
    pred: pd.DataFrame = pyfunc.predict(model_input(df, pyfunc.metadata.signature))
    if len(pred) != df.height:
        raise RuntimeError(f"model {resolved.uri} returned {len(pred)} predictions for {df.height} rows")
    out = pl.from_pandas(pred.reset_index(drop=True)).with_columns(pl.col("label").cast(pl.Utf8))
    return pl.concat([df.select(idc), out], how="horizontal").with_columns(
        pl.lit(resolved.version, dtype=pl.Utf8).alias("model_version"),
    )


def _model_id_column(pyfunc: Any) -> str:
    try:
        spec = pyfunc.unwrap_python_model().spec
        return str(spec["id_column"])
    except (AttributeError, KeyError, TypeError) as e:
        raise ValueError("the model carries no spec with an id column; pass id_column=") from e


def predictions_path(data_commit: str) -> str:
    return f"{PREDICTIONS_PREFIX}{data_commit[:SHORT_COMMIT]}.parquet"


def write_predictions(lake: Lake, branch: str, preds: pl.DataFrame, model_version: str | None,
                      data_commit: str, *, model_name: str | None = None) -> str:
    """Write `predictions/<data-commit-short>.parquet` on `branch` and commit; returns the commit id.

    The commit metadata names the model version and the data commit the predictions
    were made on (and the object carries the same as object metadata).
    """
    if preds.height == 0:
        raise ValueError("refusing to write an empty predictions frame")
    path = predictions_path(data_commit)
    meta = {
        "lakeloop.kind": "predictions",
        "lakeloop.model_version": str(model_version or "unknown"),
        "lakeloop.data_commit": data_commit,
        "lakeloop.rows": str(preds.height),
        "lakeloop.path": path,
    }
    if model_name:
        meta["lakeloop.model_name"] = model_name
    lake.write_frame(branch, path, preds, metadata={k.replace(".", "-"): v for k, v in meta.items()})
    return lake.commit(branch, f"lakeloop: predictions for {data_commit[:SHORT_COMMIT]} "
                               f"by model version {model_version}", meta)


def profile_predictions(preds: pl.DataFrame) -> DatasetProfileView:
    """whylogs profile of the model outputs (label and probability columns), for output-drift checks."""
    cols = [c for c in preds.columns if c == "label" or c.startswith("probability")]
    if not cols:
        raise ValueError("predictions frame has no label/probability columns to profile")
    pdf = pd.DataFrame({c: (pd.Series(preds.get_column(c).cast(pl.Utf8).to_list(), dtype="str") if c == "label"
                            else preds.get_column(c).cast(pl.Float64).to_numpy()) for c in cols})
    return profile_pandas(pdf)
