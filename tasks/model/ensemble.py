"""Voted ensembles packaged as one self-contained MLflow pyfunc.

Why self-contained: a registered model must load and predict in a process that
has only its declared requirements (xgboost, scikit-learn, pandas, numpy,
mlflow) - no lakeloop code, no lookups of other runs. So the pyfunc carries its
members as artifacts (one file each), the dataset spec as a JSON artifact, and
the class itself is pickled *by value*. The runtime half of this module (the
`_rt_*` helpers and `VotingEnsemble`) therefore uses only numpy/pandas/xgboost/
pickle; it re-implements `tasks.model.features` on pandas, and a unit test pins the
two encodings together.

Voting: `hard` (members' labels, vote shares as probability), `soft` (mean of
probabilities), `weighted` (probabilities weighted by each member's
out-of-fold AUC skill, `AUC - 0.5`). Members are chosen on out-of-fold
predictions (`select_members`), so the ensemble's CV AUC is never below the
best member's.
"""

from __future__ import annotations

import os

# Passive OpenMP waiting must be set before xgboost loads libgomp (see tasks/model/train.py: spinning
# threads made multi-threaded fits ~10x slower on the shared 2-core machine).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import json
import pickle
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb
from mlflow.pyfunc import PythonModel

VOTING_MODES = ("hard", "soft", "weighted")
SPEC_ARTIFACT = "spec"
MANIFEST_ARTIFACT = "manifest"
# Files every ensemble model directory must hold (checked by the gate).
REQUIRED_MODEL_FILES = ("MLmodel", "python_model.pkl", "requirements.txt", "input_example.json")


# =====================================================================================
# Runtime: used inside the pyfunc, so only numpy / pandas / xgboost / sklearn (pickled).
# =====================================================================================
def _rt_model_features(spec: dict[str, Any]) -> list[str]:
    return [f["name"] for f in spec["features"] if not f.get("pii") and f["type"] != "string"]


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
    """The pyfunc. Everything it needs comes from its own artifacts (spec, manifest, member files)."""

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
                    model = pickle.load(fh)  # noqa: S301 - our own artifact, written by log_ensemble
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


# =====================================================================================
# Build time: selecting members, packaging, logging and registering.
# =====================================================================================
@dataclass
class EnsemblePlan:
    """Which members vote and with what weights, plus the OOF evidence for the choice."""

    names: list[str]
    weights: list[float]
    voting: str
    cv_auc: float
    best_member: str
    best_member_auc: float
    all_members_auc: float
    nested_cv_auc: float = float("nan")
    member_aucs: dict[str, float] = field(default_factory=dict)


def auc_weights(aucs: list[float]) -> list[float]:
    """Weights proportional to skill over chance (`AUC - 0.5`), normalised; a useless member gets ~0."""
    skill = np.maximum(np.asarray(aucs, dtype="float64") - 0.5, 1e-6)
    return [float(x) for x in skill / skill.sum()]


def class_order(spec: Any) -> list[str]:
    """Class names in probability-column order (binary: [negative, positive], as `encode_labels`)."""
    classes = list(spec.classes)
    if len(classes) == 2:
        return [next(c for c in classes if c != spec.positive), spec.positive]
    return classes


def select_members(members: list[Any], y: np.ndarray, voting: str = "weighted",
                   threshold: float = 0.5, folds: np.ndarray | None = None) -> EnsemblePlan:
    """Choose voters and weights from out-of-fold (OOF) predictions only.

    `weighted`: greedy forward selection with replacement (Caruana et al. 2004)
    starting from the best member (weights are thus chosen by CV AUC): a member is added (again) while it raises the
    vote's OOF AUC, and weights are the selection counts - so the weighted vote's
    OOF AUC is never below the best member's. `soft` / `hard`: the top-k members by
    OOF AUC, with the k that maximises the vote's OOF AUC (ties prefer more members).
    With `folds`, the whole selection is repeated per fold on the other folds' OOF
    rows and scored on the held-out fold (`nested_cv_auc`): a check that the
    selection itself does not overfit the OOF predictions.
    """
    from tasks.model.metrics import auc_score  # build-time only

    if not members:
        raise ValueError("no candidate members to select from")
    ranked = sorted(members, key=lambda mb: mb.cv_auc, reverse=True)
    oofs = [mb.oof for mb in ranked]
    weights = _select(oofs, y, voting, threshold, auc_score)
    keep = [i for i, w in enumerate(weights) if w > 0]
    _, proba = vote([oofs[i] for i in keep], [weights[i] for i in keep], voting, threshold)
    _, all_proba = vote(oofs, auc_weights([mb.cv_auc for mb in ranked]), voting, threshold)
    nested = float("nan")
    if folds is not None:
        nested_proba = np.zeros_like(proba)
        for f in np.unique(folds):
            tr, va = folds != f, folds == f
            w = _select([o[tr] for o in oofs], y[tr], voting, threshold, auc_score)
            used = [i for i, wi in enumerate(w) if wi > 0]
            nested_proba[va] = vote([oofs[i][va] for i in used], [w[i] for i in used], voting, threshold)[1]
        nested = auc_score(y, nested_proba)
    return EnsemblePlan(
        names=[ranked[i].name for i in keep],
        weights=[float(weights[i]) for i in keep],
        voting=voting,
        cv_auc=float(auc_score(y, proba)),
        best_member=ranked[0].name,
        best_member_auc=float(ranked[0].cv_auc),
        all_members_auc=float(auc_score(y, all_proba)),
        nested_cv_auc=nested,
        member_aucs={mb.name: float(mb.cv_auc) for mb in members},
    )


def _select(oofs: list[np.ndarray], y: np.ndarray, voting: str, threshold: float,
            auc: Any, max_steps: int = 40, init_copies: int = 4) -> list[float]:
    """Weights (zeros for members left out) over `oofs`, which are ranked best first.

    The best member starts with `init_copies` votes so that a single added vote
    weighs 1/(init_copies+1): weaker members can contribute a little without
    having to match the best one half-and-half.
    """
    m = len(oofs)
    if voting == "weighted":
        counts = np.zeros(m)
        counts[int(np.argmax([auc(y, o) for o in oofs]))] = init_copies
        total = sum(o * c for o, c in zip(oofs, counts, strict=True))
        best = auc(y, total)
        for _ in range(max_steps):
            n = counts.sum()
            scores = [auc(y, (total + o) / (n + 1)) for o in oofs]
            j = int(np.argmax(scores))
            if scores[j] <= best + 1e-6:
                break
            best, counts[j], total = scores[j], counts[j] + 1, total + oofs[j]
        return [float(c) for c in counts / counts.sum()]
    best_auc, best_k = -1.0, 1
    for k in range(1, m + 1):
        score = auc(y, vote(oofs[:k], [1.0] * k, voting, threshold)[1])
        if score >= best_auc - 1e-9:
            best_auc, best_k = score, k
    return [1.0 if i < best_k else 0.0 for i in range(m)]


def io_schemas(spec: Any) -> tuple[Any, Any]:
    """(inputs, outputs) MLflow schemas from the spec: model features in; label + probability out.

    The one model contract shared by the ensemble and the single-XGBoost pyfunc (`lakeloop.adapters.mlflow_tracking`).
    """
    from mlflow.types.schema import ColSpec, Schema

    from lakeloop.spec import FeatureType

    cols: list[Any] = []
    for name in spec.model_features:
        f = spec.feature(name)
        if f.type == FeatureType.categorical:
            t = "string"
        elif f.type == FeatureType.boolean:
            t = "boolean"
        elif f.type == FeatureType.integer and not f.nullable:
            t = "long"
        else:  # numeric, or nullable integers (nulls turn integer columns into floats in pandas)
            t = "double"
        cols.append(ColSpec(t, name))
    outputs: list[Any] = [ColSpec("string", "label"), ColSpec("double", "probability")]
    if len(spec.classes) > 2:
        outputs += [ColSpec("double", f"probability_{c}") for c in spec.classes]
    return Schema(cols), Schema(outputs)


def model_signature(spec: Any) -> Any:
    """Input schema from the spec (model features only); output label + probability; `voting` param."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ParamSchema, ParamSpec

    inputs, outputs = io_schemas(spec)
    return ModelSignature(
        inputs=inputs,
        outputs=outputs,
        params=ParamSchema([ParamSpec("voting", "string", "weighted")]),
    )


def model_input(df: Any, signature: Any) -> pd.DataFrame:
    """polars frame -> pandas with the signature's columns and dtypes; names the column that cannot cast."""
    import polars as pl

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


def pip_requirements() -> list[str]:
    """Pinned to the versions that trained the members (xgboost/sklearn files are version-sensitive)."""
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in ("mlflow", "xgboost", "scikit-learn", "pandas", "numpy", "cloudpickle")]


def _save_member(member: Any, directory: Path, index: int) -> tuple[str, Path]:
    key = f"member_{index}_{member.name}"
    if member.kind == "xgboost":
        path = directory / f"{key}.ubj"
        member.model.save_model(str(path))
    elif member.kind == "logreg":
        path = directory / f"{key}.pkl"
        with open(path, "wb") as fh:
            pickle.dump(member.model, fh, protocol=5)
    else:
        raise ValueError(f"member {member.name!r}: unknown kind {member.kind!r}")
    return key, path


def build_artifacts(members: list[Any], plan: EnsemblePlan, spec: Any,
                    directory: Path) -> dict[str, str]:
    """Write spec, manifest and one file per chosen member; return mlflow's `artifacts` mapping."""
    by_name = {mb.name: mb for mb in members}
    missing = [n for n in plan.names if n not in by_name]
    if missing:
        raise ValueError(f"plan names members that are not candidates: {missing}")
    directory.mkdir(parents=True, exist_ok=True)
    artifacts: dict[str, str] = {}
    entries = []
    for i, (name, weight) in enumerate(zip(plan.names, plan.weights, strict=True)):
        mb = by_name[name]
        key, path = _save_member(mb, directory, i)
        artifacts[key] = str(path)
        entries.append({"artifact": key, "name": name, "kind": mb.kind, "features": list(mb.features),
                        "weight": float(weight), "cv_auc": float(mb.cv_auc)})
    manifest = {
        "members": entries,
        "voting": plan.voting,
        "classes": class_order(spec),
        "positive": spec.positive,
        "threshold": float(spec.business_threshold) if len(spec.classes) == 2 else 0.5,
        "id_column": spec.id_column,
        "cv_auc": plan.cv_auc,
        "best_member": plan.best_member,
        "best_member_auc": plan.best_member_auc,
    }
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2))
    (directory / "spec.json").write_text(json.dumps(spec.model_dump(mode="json"), indent=2))
    artifacts[MANIFEST_ARTIFACT] = str(directory / "manifest.json")
    artifacts[SPEC_ARTIFACT] = str(directory / "spec.json")
    return artifacts


@dataclass(frozen=True)
class LoggedEnsemble:
    run_id: str
    model_uri: str
    version: str


def log_ensemble(
    candidates: Any,
    *,
    name: str,
    voting: str = "weighted",
    description: str | None = None,
    plan: EnsemblePlan | None = None,
    example_rows: int = 5,
) -> tuple[str, str, str]:
    """Package the selected members as a pyfunc in the candidates' parent run and register it.

    `candidates` is a `tasks.model.candidates.CandidateSet`. The new version gets alias
    `challenger`, the lineage tags of the data it was trained on, and its CV evidence.
    Returns (run_id, model_uri `models:/<name>/<version>`, version).
    """
    import cloudpickle
    import mlflow
    from mlflow import MlflowClient

    spec = candidates.spec
    plan = plan or select_members(candidates.members, candidates.y, voting, _threshold(spec), candidates.folds)
    signature = model_signature(spec)
    example = model_input(candidates.frame.head(example_rows), signature)
    tags = {**candidates.lineage.tags(), "lakeloop.kind": "ensemble", "ensemble.voting": plan.voting,
            "ensemble.members": ",".join(plan.names)}
    desc = description or (
        f"{plan.voting} vote of {len(plan.names)} members ({', '.join(plan.names)}); "
        f"OOF CV AUC {plan.cv_auc:.4f} vs best member {plan.best_member} {plan.best_member_auc:.4f}; "
        f"data {candidates.lineage.repository}@{candidates.lineage.commit_id[:12]}"
    )
    client = MlflowClient()
    module = sys.modules[__name__]
    with tempfile.TemporaryDirectory(prefix="lakeloop-ensemble-") as tmp:
        artifacts = build_artifacts(candidates.members, plan, spec, Path(tmp))
        if candidates.parent_run_id:
            # resuming a run needs its experiment active (another build may have switched experiments)
            mlflow.set_experiment(experiment_id=client.get_run(candidates.parent_run_id).info.experiment_id)
            run_ctx = mlflow.start_run(run_id=candidates.parent_run_id)
        else:
            run_ctx = mlflow.start_run(run_name="ensemble", tags=tags)
        with run_ctx as run:
            mlflow.log_metrics({"ensemble.cv_auc": plan.cv_auc, "ensemble.best_member_auc": plan.best_member_auc,
                                "ensemble.all_members_auc": plan.all_members_auc,
                                "ensemble.nested_cv_auc": plan.nested_cv_auc})
            mlflow.log_dict(plan.__dict__, "ensemble_plan.json")
            cloudpickle.register_pickle_by_value(module)
            try:
                info = mlflow.pyfunc.log_model(
                    name="ensemble",
                    python_model=VotingEnsemble(plan.voting),
                    artifacts=artifacts,
                    signature=signature,
                    input_example=example,
                    pip_requirements=pip_requirements(),
                    tags=tags,
                )
            finally:
                cloudpickle.unregister_pickle_by_value(module)
            run_id = run.info.run_id
    mv = mlflow.register_model(info.model_uri, name, tags={
        **tags, "ensemble.cv_auc": f"{plan.cv_auc:.6f}", "ensemble.best_member_auc": f"{plan.best_member_auc:.6f}",
        "ensemble.nested_cv_auc": f"{plan.nested_cv_auc:.6f}",
    }, await_registration_for=0)
    _wait_ready(client, name, mv.version)
    client.update_model_version(name, mv.version, description=desc)
    client.set_registered_model_alias(name, "challenger", mv.version)
    return run_id, f"models:/{name}/{mv.version}", str(mv.version)


def save_ensemble(candidates: Any, path: str | Path, *, voting: str = "weighted",
                  plan: EnsemblePlan | None = None, example_rows: int = 5) -> EnsemblePlan:
    """Write the same pyfunc `log_ensemble` logs to a local directory (no tracking server); for benches."""
    import cloudpickle
    import mlflow

    spec = candidates.spec
    plan = plan or select_members(candidates.members, candidates.y, voting, _threshold(spec), candidates.folds)
    signature = model_signature(spec)
    module = sys.modules[__name__]
    with tempfile.TemporaryDirectory(prefix="lakeloop-ensemble-") as tmp:
        artifacts = build_artifacts(candidates.members, plan, spec, Path(tmp))
        cloudpickle.register_pickle_by_value(module)
        try:
            mlflow.pyfunc.save_model(
                str(path), python_model=VotingEnsemble(plan.voting), artifacts=artifacts, signature=signature,
                input_example=model_input(candidates.frame.head(example_rows), signature),
                pip_requirements=pip_requirements(),
            )
        finally:
            cloudpickle.unregister_pickle_by_value(module)
    return plan


def _threshold(spec: Any) -> float:
    return float(spec.business_threshold) if len(spec.classes) == 2 else 0.5


def _wait_ready(client: Any, name: str, version: str, timeout: float = 120.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        mv = client.get_model_version(name, version)
        if mv.status == "READY":
            return
        if mv.status == "FAILED_REGISTRATION":
            raise RuntimeError(f"model {name} version {version} failed to register: {mv.status_message}")
        time.sleep(0.2)
    raise TimeoutError(f"model {name} version {version} not READY after {timeout:.0f}s")
