"""The one lakeloop model class: an MLflow pyfunc voting over XGBoost / logistic-regression members.

Every registered model is a `VotingEnsemble`; a single trained XGBoost classifier is an
ensemble of one (weight 1), so there is one output contract, one input encoding and one
loader. Contract: raw spec features in; out `label`, `probability` (positive class) and, for
multiclass, `probability_<class>`. Why not the `mlflow.xgboost` flavor for a single model: MLflow
schemas have no categorical type, so categoricals arrive as strings, which XGBoost (trained on
pandas `category` columns) rejects; this class re-applies the spec's fixed category lists.

Why self-contained: a registered model must load and predict in a process that has only its
declared requirements (xgboost, scikit-learn, pandas, numpy, mlflow, cloudpickle) - no
lakeloop code, no lookups of other runs. So the pyfunc carries its members as artifacts (one
file each), the dataset spec and a manifest as JSON artifacts, and this module is pickled
*by value* (`tasks.model.model_logging`). It therefore imports only numpy/pandas/xgboost/
mlflow and re-implements `tasks.model.features` on pandas; a unit test pins the two
encodings together.

Voting: `hard` (members' labels, vote shares as probability), `soft` (mean of
probabilities), `weighted` (probabilities weighted by the plan's weights, see
`tasks.model.ensemble`).
"""

from __future__ import annotations

import os

# Passive OpenMP waiting must be set before xgboost loads libgomp (see tasks/model/train.py: spinning
# threads made multi-threaded fits ~10x slower on the shared 2-core machine).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import json
import pickle
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb
from mlflow.pyfunc import PythonModel

VOTING_MODES = ("hard", "soft", "weighted")
SPEC_ARTIFACT = "spec"
MANIFEST_ARTIFACT = "manifest"


def _rt_feature_types(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in spec["features"]}


def _rt_as_float(s: pd.Series) -> np.ndarray:
    if s.dtype == object:
        s = s.map(lambda v: np.nan if v is None else v)
    return np.asarray(s.to_numpy(dtype="float64", na_value=np.nan), dtype="float64")


def _rt_codes(s: pd.Series, categories: list[str]) -> np.ndarray:
    """Category codes (-1 = null or outside `categories`, as tasks.model.features' fixed categories).

    Factorize + lookup table: one hash pass over the rows, then work per distinct value
    only (several times faster than building a Categorical against fixed categories).
    """
    if isinstance(s.dtype, pd.CategoricalDtype):
        s = s.astype(object)
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    index = {c: i for i, c in enumerate(categories)}
    keys = [u if isinstance(u, str) else (str(u).lower() if isinstance(u, bool | np.bool_) else str(u))
            for u in uniques]
    lut = np.asarray([index.get(k, -1) for k in keys] + [-1], dtype=np.int64)
    return lut[codes]  # the sentinel -1 picks the trailing -1


def rt_columns(frame: pd.DataFrame, spec: dict[str, Any], features: list[str]) -> dict[str, np.ndarray]:
    """Each feature decoded once: int codes for categoricals, float64 for the rest."""
    types = _rt_feature_types(spec)
    out: dict[str, np.ndarray] = {}
    for name in features:
        if name not in frame.columns:
            raise ValueError(f"model input is missing column {name!r}")
        f = types[name]
        out[name] = _rt_codes(frame[name], f["categories"]) if f["type"] == "categorical" else _rt_as_float(
            frame[name])
    return out


def _rt_frame(cols: dict[str, np.ndarray], spec: dict[str, Any], features: list[str]) -> pd.DataFrame:
    types = _rt_feature_types(spec)
    out: dict[str, Any] = {}
    for name in features:
        f = types[name]
        out[name] = (pd.Categorical.from_codes(cols[name], categories=f["categories"])
                     if f["type"] == "categorical" else cols[name])
    return pd.DataFrame(out, index=pd.RangeIndex(len(next(iter(cols.values()))) if cols else 0))


def _rt_matrix(cols: dict[str, np.ndarray], spec: dict[str, Any], features: list[str], n: int) -> np.ndarray:
    types = _rt_feature_types(spec)
    width = sum(len(types[f]["categories"]) if types[f]["type"] == "categorical" else 1 for f in features)
    out = np.empty((n, width), dtype="float64", order="F")  # column-major: every write below is contiguous
    j = 0
    for name in features:
        f = types[name]
        if f["type"] == "categorical":
            codes = cols[name]
            for k in range(len(f["categories"])):
                np.equal(codes, k, out=out[:, j + k], casting="unsafe")
            j += len(f["categories"])
        else:
            c = cols[name]
            np.copyto(out[:, j], c)
            out[np.isnan(c), j] = 0.0
            j += 1
    return out


def _rt_xgb_matrix(cols: dict[str, np.ndarray], spec: dict[str, Any], features: list[str], n: int) -> np.ndarray:
    """Dense float32 input for a categorical-aware Booster: category codes as numbers, NaN when missing.

    The booster stores which columns are categorical (trained on `model_frame`'s pandas
    categoricals, whose codes are the spec's category positions), so the codes can be passed
    as plain numbers: identical predictions, without building pandas categoricals per call.
    """
    types = _rt_feature_types(spec)
    parts: list[np.ndarray] = []
    for name in features:
        c = cols[name]
        if types[name]["type"] == "categorical":
            parts.append(np.where(c < 0, np.nan, c).astype("float32"))
        else:
            parts.append(c.astype("float32"))
    return np.column_stack(parts) if parts else np.empty((n, 0), dtype="float32")


def rt_model_frame(frame: pd.DataFrame, spec: dict[str, Any], features: list[str]) -> pd.DataFrame:
    """pandas twin of `tasks.model.features.model_frame` (categoricals with the spec's fixed categories)."""
    return _rt_frame(rt_columns(frame, spec, features), spec, features)


def rt_numeric_matrix(frame: pd.DataFrame, spec: dict[str, Any], features: list[str]) -> np.ndarray:
    """pandas twin of `tasks.model.features.numeric_matrix` (one-hot categoricals, NaN -> 0)."""
    return _rt_matrix(rt_columns(frame, spec, features), spec, features, len(frame))


def rt_member_proba(kind: str, model: Any, cols: dict[str, np.ndarray], spec: dict[str, Any],
                    features: list[str], n_classes: int, n_rows: int) -> np.ndarray:
    """Class-probability matrix (n, k) of one member, from columns decoded by `rt_columns`."""
    if kind == "xgboost":
        raw = np.asarray(model.inplace_predict(_rt_xgb_matrix(cols, spec, features, n_rows)), dtype="float64")
    elif kind == "logreg":
        raw = np.asarray(model.predict_proba(_rt_matrix(cols, spec, features, n_rows)), dtype="float64")
    else:
        raise ValueError(f"unknown member kind {kind!r}")
    return rt_as_matrix(raw, n_classes)


def rt_as_matrix(raw: np.ndarray, n_classes: int) -> np.ndarray:
    """(n,) positive-class probabilities or (n, k) matrices -> (n, k)."""
    if raw.ndim == 1:
        return np.column_stack([1.0 - raw, raw])
    if raw.shape[1] != n_classes:
        raise ValueError(f"member returned {raw.shape[1]} classes, expected {n_classes}")
    return raw


def vote(probas: list[np.ndarray], weights: list[float] | np.ndarray, voting: str,
         threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Combine member probability matrices; returns (class indices, (n, k) probabilities).

    Binary: class 1 is the positive class and the label is `p >= threshold`.
    `hard`: each member votes its own label; probability = share of (unweighted) votes;
    an exact tie falls back to the soft probability.
    """
    if voting not in VOTING_MODES:
        raise ValueError(f"voting must be one of {VOTING_MODES}, got {voting!r}")
    if not probas:
        raise ValueError("an ensemble needs at least one member")
    stack = np.stack(probas)  # (m, n, k)
    m, _, k = stack.shape
    w = np.ones(m) if voting != "weighted" else np.asarray(weights, dtype="float64")
    if voting == "weighted" and (w.shape != (m,) or w.sum() <= 0 or (w < 0).any()):
        raise ValueError(f"weights must be {m} non-negative numbers with a positive sum, got {list(w)}")
    soft = np.tensordot(w / w.sum(), stack, axes=1)  # (n, k)
    if voting != "hard":
        return _rt_decide(soft, threshold), soft
    member_labels = np.stack([_rt_decide(p, threshold) for p in probas])  # (m, n)
    shares = np.stack([(member_labels == c).mean(axis=0) for c in range(k)], axis=1)  # (n, k)
    top = shares.max(axis=1, keepdims=True)
    tied = (shares == top).sum(axis=1) > 1
    labels = shares.argmax(axis=1)
    if tied.any():
        labels[tied] = _rt_decide(soft[tied], threshold)
    return labels, shares


def _rt_decide(proba: np.ndarray, threshold: float) -> np.ndarray:
    if proba.shape[1] == 2:
        return (proba[:, 1] >= threshold).astype(np.int64)
    return np.asarray(proba.argmax(axis=1), dtype=np.int64)


class VotingEnsemble(PythonModel):
    """The pyfunc (ensemble or single model). Everything it needs comes from its own artifacts.

    Artifacts: the spec, the manifest (members with kind, features and weight; class order,
    positive class, threshold) and one file per member (.ubj Booster or pickled sklearn model).
    """

    def __init__(self, voting: str = "weighted") -> None:
        if voting not in VOTING_MODES:
            raise ValueError(f"voting must be one of {VOTING_MODES}, got {voting!r}")
        self.voting = voting
        self.spec: dict[str, Any] = {}
        self.manifest: dict[str, Any] = {}
        self.members: list[tuple[dict[str, Any], Any]] = []

    def load_context(self, context: Any) -> None:
        arts = context.artifacts
        with open(arts[SPEC_ARTIFACT]) as fh:
            self.spec = json.load(fh)
        with open(arts[MANIFEST_ARTIFACT]) as fh:
            self.manifest = json.load(fh)
        self.members = []
        for entry in self.manifest["members"]:
            path = arts[entry["artifact"]]
            if entry["kind"] == "xgboost":
                booster = xgb.Booster()
                booster.load_model(path)
                booster.set_param({"nthread": 0})
                model: Any = booster
            else:
                with open(path, "rb") as fh:
                    model = pickle.load(fh)  # noqa: S301 - our own artifact (tasks.model.model_logging)
            self.members.append((entry, model))

    # the positional names follow mlflow's PythonModel.predict
    def predict(self, context: Any, model_input, params: dict[str, Any] | None = None) -> Any:  # type: ignore[no-untyped-def]
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        frame = frame.reset_index(drop=True)
        voting = (params or {}).get("voting") or self.voting
        man = self.manifest
        k = len(man["classes"])
        needed = list(dict.fromkeys(f for e, _ in self.members for f in e["features"]))
        cols = rt_columns(frame, self.spec, needed)  # decode each column once for all members
        probas = [rt_member_proba(e["kind"], mdl, cols, self.spec, e["features"], k, len(frame))
                  for e, mdl in self.members]
        labels, proba = vote(probas, [e["weight"] for e, _ in self.members], voting, man["threshold"])
        classes = man["classes"]
        out = pd.DataFrame({
            "label": pd.Categorical.from_codes(labels, categories=classes),
            "probability": proba[:, classes.index(man["positive"])],
        })
        if k > 2:
            for i, c in enumerate(classes):
                out[f"probability_{c}"] = proba[:, i]
        return out
