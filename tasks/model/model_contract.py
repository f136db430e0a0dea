"""What every lakeloop model promises: its MLflow signature, its requirements, its files, its input.

Why one home: the single-model training run, the ensemble build, the gate and batch inference
all ship or consume the same pyfunc (`tasks.model.pyfunc`), so they must agree on the columns
and dtypes it takes, what it returns and what it needs installed to load.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import polars as pl

from lakeloop.spec import DatasetSpec, FeatureType

# Files every model directory must hold (checked by the gate).
REQUIRED_MODEL_FILES = ("MLmodel", "python_model.pkl", "requirements.txt", "input_example.json")
# What the pickled-by-value pyfunc needs to load; pinned (xgboost/sklearn files are version-sensitive).
REQUIREMENTS = ("mlflow", "xgboost", "scikit-learn", "pandas", "numpy", "cloudpickle")


def model_signature(spec: DatasetSpec) -> Any:
    """Model features in (MLflow types from the spec); `label` + `probability` out; `voting` param.

    Categoricals are strings (MLflow schemas have no categorical type; the pyfunc re-applies the
    spec's categories). Nullable integers are doubles, as nulls turn them into floats in pandas.
    """
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    cols: list[Any] = []
    for name in spec.model_features:
        f = spec.feature(name)
        if f.type == FeatureType.categorical:
            t = "string"
        elif f.type == FeatureType.boolean:
            t = "boolean"
        elif f.type == FeatureType.integer and not f.nullable:
            t = "long"
        else:
            t = "double"
        cols.append(ColSpec(t, name))
    outputs: list[Any] = [ColSpec("string", "label"), ColSpec("double", "probability")]
    if len(spec.classes) > 2:
        outputs += [ColSpec("double", f"probability_{c}") for c in spec.classes]
    return ModelSignature(inputs=Schema(cols), outputs=Schema(outputs),
                          params=ParamSchema([ParamSpec("voting", "string", "weighted")]))


def pip_requirements() -> list[str]:
    """`REQUIREMENTS` pinned to the versions installed here, i.e. the ones that trained the members."""
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in REQUIREMENTS]


def model_input(df: pl.DataFrame, signature: Any) -> pd.DataFrame:
    """polars frame -> pandas with the signature's columns and dtypes; names the column that cannot cast."""
    casts = {"long": pl.Int64, "double": pl.Float64, "boolean": pl.Boolean, "string": pl.Utf8,
             "integer": pl.Int32, "float": pl.Float32}
    exprs = []
    for col in signature.inputs.inputs:
        if col.name not in df.columns:
            if getattr(col, "required", True):
                raise ValueError(f"model input is missing column {col.name!r} required by the model signature")
            continue
        exprs.append(pl.col(col.name).cast(casts[col.type.name], strict=True))
    try:
        selected = df.select(exprs)
    except pl.exceptions.PolarsError as e:
        raise ValueError(f"model input does not cast to the model signature: {e}") from e
    return selected.to_pandas()
