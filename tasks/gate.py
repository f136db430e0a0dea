"""The challenger gate: checks a new model must pass before it may become champion.

Why a gate with real checks: CV scores are computed on the training data of the
challenger itself; the gate instead scores challenger *and* champion on the same
frozen evaluation commit, so the comparison is like for like and reproducible
(the commit id is stored with the result). Every check can fail:

* artifacts - the model has a description and every file it needs to load alone;
* schema    - the model signature's columns exist in the data with compatible types;
* auc       - AUC >= champion's AUC - `auc_tolerance` (no champion: >= `min_auc`);
* slices    - on each `spec.slices` subset, AUC >= champion's - `slice_tolerance`;
* business  - value per row from `spec.cost_matrix` at `spec.business_threshold`
              >= champion's - `business_tolerance` * |champion's| (optionally also
              >= the best trivial policy: act on everybody / on nobody).

Results are stored as model-version tags (`gate.*`), so the registry itself says
why a version was or was not promoted.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import polars as pl
import yaml
from mlflow import MlflowClient
from pydantic import BaseModel, Field

from lakeloop.spec import DatasetSpec
from tasks.ensemble import REQUIRED_MODEL_FILES, model_input
from tasks.features import encode_labels
from tasks.metrics import safe_auc
from tasks.registry import champion_version

TAG_VALUE_MAX = 4900


class GateConfig(BaseModel):
    auc_tolerance: float = Field(default=0.005, ge=0)
    slice_tolerance: float = Field(default=0.02, ge=0)
    business_tolerance: float = Field(default=0.02, ge=0, description="share of |champion value| a challenger may lose")
    min_auc: float = Field(default=0.55, ge=0, le=1, description="floor when there is no champion (and for slices)")
    min_slice_rows: int = Field(default=30, ge=1, description="smaller slices are reported but not gated")
    require_beats_trivial: bool = Field(
        default=False, description="also fail when acting on everybody / nobody is worth more per row "
        "(off by default: a spec whose threshold is far from its cost matrix's optimum fails every model)")
    required_files: tuple[str, ...] = REQUIRED_MODEL_FILES


class CheckResult(BaseModel):
    name: str
    passed: bool
    value: float | None = None
    baseline: float | None = None
    detail: str = ""


class SliceResult(BaseModel):
    name: str
    expr: str
    rows: int
    auc: float | None
    champion_auc: float | None
    passed: bool
    gated: bool
    detail: str = ""


class GateResult(BaseModel):
    model_name: str
    version: str
    champion_version: str | None
    eval_commit: str
    rows: int
    passed: bool
    auc: float | None = None
    champion_auc: float | None = None
    business_value: float | None = None
    champion_business_value: float | None = None
    slices: list[SliceResult] = []
    checks: list[CheckResult] = []
    reasons: list[str] = []

    def check(self, name: str) -> CheckResult:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def tags(self) -> dict[str, str]:
        """The model-version tags this result is stored as."""
        t = {
            "gate.passed": str(self.passed).lower(),
            "gate.eval_commit": self.eval_commit,
            "gate.rows": str(self.rows),
            "gate.champion_version": self.champion_version or "none",
            "gate.auc": _fmt(self.auc),
            "gate.champion_auc": _fmt(self.champion_auc),
            "gate.business_value": _fmt(self.business_value),
            "gate.champion_business_value": _fmt(self.champion_business_value),
            "gate.reasons": "; ".join(self.reasons) or "none",
        }
        for c in self.checks:
            t[f"gate.check.{c.name}"] = "pass" if c.passed else "fail"
        for s in self.slices:
            verdict = "pass" if s.passed else "fail"
            if not s.gated:
                verdict = "not gated"
            t[f"gate.slice.{_tag_key(s.name)}"] = (
                f"{verdict}: auc={_fmt(s.auc)} champion={_fmt(s.champion_auc)} rows={s.rows}"
                + (f" ({s.detail})" if s.detail else "")
            )
        return {k: v[:TAG_VALUE_MAX] for k, v in t.items()}


def _fmt(x: float | None) -> str:
    return "none" if x is None else f"{x:.6f}"


def _tag_key(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\- /]", "_", name)


# ---- pieces ------------------------------------------------------------------------
_COMPATIBLE: dict[str, tuple[str, ...]] = {
    "long": ("int",), "integer": ("int",), "double": ("int", "float"), "float": ("int", "float"),
    "boolean": ("bool",), "string": ("str",),
}


def _family(dtype: pl.DataType) -> str:
    if dtype.is_integer():
        return "int"
    if dtype.is_float():
        return "float"
    if dtype == pl.Boolean:
        return "bool"
    if dtype in (pl.Utf8, pl.Categorical) or isinstance(dtype, pl.Enum):
        return "str"
    return str(dtype)


def check_schema(signature: Any, df: pl.DataFrame, spec: DatasetSpec) -> CheckResult:
    """Signature columns present with compatible dtypes, and the label present (metrics need it)."""
    if signature is None or signature.inputs is None:
        return CheckResult(name="schema", passed=False, detail="model has no input signature")
    problems: list[str] = []
    for col in signature.inputs.inputs:
        t = col.type.name
        if col.name not in df.columns:
            if getattr(col, "required", True):
                problems.append(f"column {col.name!r} ({t}) missing from the data")
            continue
        fam = _family(df.schema[col.name])
        if fam not in _COMPATIBLE.get(t, ()):
            problems.append(f"column {col.name!r}: data dtype {df.schema[col.name]} is not compatible with {t}")
    if spec.label_column not in df.columns:
        problems.append(f"label column {spec.label_column!r} missing from the evaluation data")
    return CheckResult(name="schema", passed=not problems, detail="; ".join(problems) or "signature matches data")


def check_artifacts(model_dir: Path, description: str | None, required: tuple[str, ...]) -> CheckResult:
    """Description set, required files present, and every artifact the pyfunc declares present."""
    problems = [f"missing {f}" for f in required if not (model_dir / f).exists()]
    mlmodel = model_dir / "MLmodel"
    if mlmodel.exists():
        meta = yaml.safe_load(mlmodel.read_text()) or {}
        declared = (meta.get("flavors", {}).get("python_function", {}).get("artifacts") or {})
        for key, art in declared.items():
            rel = art.get("path") if isinstance(art, dict) else None
            if not rel or not (model_dir / rel).exists():
                problems.append(f"artifact {key!r} declared but missing")
        if meta.get("signature") is None:
            problems.append("no signature in MLmodel")
    if not (description or "").strip():
        problems.append("model version has no description")
    return CheckResult(name="artifacts", passed=not problems, detail="; ".join(problems) or "all present")


def business_value(y_pos: np.ndarray, p_pos: np.ndarray, spec: DatasetSpec) -> float:
    """Mean value per row of acting on `p >= business_threshold`, from the spec's cost matrix."""
    act = p_pos >= spec.business_threshold
    cm = spec.cost_matrix
    total = (cm.true_positive * (act & y_pos).sum() + cm.false_positive * (act & ~y_pos).sum()
             + cm.true_negative * (~act & ~y_pos).sum() + cm.false_negative * (~act & y_pos).sum())
    return float(total) / max(len(y_pos), 1)


def _proba_matrix(pred: Any, spec: DatasetSpec) -> np.ndarray:
    if len(spec.classes) == 2:
        p = pred["probability"].to_numpy(dtype="float64")
        return np.column_stack([1.0 - p, p])
    return np.column_stack([pred[f"probability_{c}"].to_numpy(dtype="float64") for c in spec.classes])


def _slice_masks(df: pl.DataFrame, spec: DatasetSpec) -> dict[str, np.ndarray]:
    masks: dict[str, np.ndarray] = {}
    for s in spec.slices:
        try:
            col = df.select(pl.sql_expr(s.expr).alias("m")).get_column("m")
        except Exception as e:  # polars raises several error types for bad SQL
            raise ValueError(f"slice {s.name!r}: expression {s.expr!r} does not evaluate on the data: {e}") from e
        if col.dtype != pl.Boolean:
            raise ValueError(f"slice {s.name!r}: expression {s.expr!r} is {col.dtype}, not boolean")
        masks[s.name] = col.fill_null(False).to_numpy()
    return masks


# ---- the gate ----------------------------------------------------------------------
def evaluate_gate(
    name: str,
    version: str,
    eval_df: pl.DataFrame,
    eval_commit: str,
    spec: DatasetSpec,
    config: GateConfig | None = None,
    client: MlflowClient | None = None,
) -> GateResult:
    """Score challenger `version` (and the current champion, if any) on the frozen evaluation data."""
    cfg = config or GateConfig()
    c = client or MlflowClient()
    version = str(version)
    mv = c.get_model_version(name, version)
    champ = champion_version(name, c)
    if champ == version:
        champ = None  # re-gating the champion compares it with the floors only
    if spec.label_column in eval_df.columns and eval_df.get_column(spec.label_column).null_count():
        raise ValueError(f"evaluation data (commit {eval_commit}): {eval_df.get_column(spec.label_column).null_count()}"
                         f" rows have a null {spec.label_column!r}; the gate needs labelled rows")
    checks: list[CheckResult] = []
    res = GateResult(model_name=name, version=version, champion_version=champ, eval_commit=eval_commit,
                     rows=eval_df.height, passed=False)
    with tempfile.TemporaryDirectory(prefix="lakeloop-gate-") as tmp:
        model_dir = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=tmp))
        checks.append(check_artifacts(model_dir, mv.description, cfg.required_files))
        try:
            model = mlflow.pyfunc.load_model(str(model_dir))
        except Exception as e:  # any load failure is a gate failure, with its reason
            checks.append(CheckResult(name="load", passed=False, detail=f"model does not load: {e}"))
            return _finish(res, checks)
        signature = model.metadata.signature
        schema = check_schema(signature, eval_df, spec)
        checks.append(schema)
        if not schema.passed:
            return _finish(res, checks)
        pred = model.predict(model_input(eval_df, signature))
    champ_pred = None
    if champ is not None:
        champ_model = mlflow.pyfunc.load_model(f"models:/{name}/{champ}")
        champ_pred = champ_model.predict(model_input(eval_df, champ_model.metadata.signature))

    y = encode_labels(eval_df, spec)
    proba = _proba_matrix(pred, spec)
    champ_proba = _proba_matrix(champ_pred, spec) if champ_pred is not None else None

    # overall AUC
    res.auc = safe_auc(y, proba)
    res.champion_auc = safe_auc(y, champ_proba) if champ_proba is not None else None
    if res.auc is None:
        checks.append(CheckResult(name="auc", passed=False, detail="evaluation data has a single class"))
    elif res.champion_auc is not None:
        ok = res.auc >= res.champion_auc - cfg.auc_tolerance
        checks.append(CheckResult(name="auc", passed=ok, value=res.auc, baseline=res.champion_auc, detail=(
            f"AUC {res.auc:.4f} vs champion v{champ} {res.champion_auc:.4f} (tolerance {cfg.auc_tolerance})")))
    else:
        ok = res.auc >= cfg.min_auc
        checks.append(CheckResult(name="auc", passed=ok, value=res.auc, baseline=cfg.min_auc,
                                  detail=f"AUC {res.auc:.4f} vs floor {cfg.min_auc} (no champion)"))

    # slices
    masks = _slice_masks(eval_df, spec)
    for s in spec.slices:
        mask = masks[s.name]
        n = int(mask.sum())
        a = safe_auc(y[mask], proba[mask]) if n else None
        b = safe_auc(y[mask], champ_proba[mask]) if (n and champ_proba is not None) else None
        if n < cfg.min_slice_rows or a is None:
            why = f"{n} rows (< {cfg.min_slice_rows})" if n < cfg.min_slice_rows else "one class only"
            res.slices.append(SliceResult(name=s.name, expr=s.expr, rows=n, auc=a, champion_auc=b, passed=True,
                                          gated=False, detail=f"not gated: {why}"))
            continue
        floor = (b - cfg.slice_tolerance) if b is not None else cfg.min_auc
        ok = a >= floor
        detail = (f"AUC {a:.4f} vs champion {b:.4f} (tolerance {cfg.slice_tolerance})" if b is not None
                  else f"AUC {a:.4f} vs floor {cfg.min_auc}")
        res.slices.append(SliceResult(name=s.name, expr=s.expr, rows=n, auc=a, champion_auc=b, passed=ok,
                                      gated=True, detail=detail))
    failed = [s for s in res.slices if not s.passed]
    checks.append(CheckResult(name="slices", passed=not failed, detail="; ".join(
        f"slice {s.name}: {s.detail}" for s in (failed or res.slices))))

    # business value (binary: positive class vs the rest)
    pos = spec.label_index(spec.positive) if len(spec.classes) > 2 else 1
    y_pos = y == pos
    res.business_value = business_value(y_pos, proba[:, pos], spec)
    trivial = max(business_value(y_pos, np.ones(len(y)), spec), business_value(y_pos, np.zeros(len(y)), spec))
    problems: list[str] = []
    notes: list[str] = []
    if res.business_value < trivial:
        msg = f"value {res.business_value:.3f}/row is below the best trivial policy {trivial:.3f}/row"
        (problems if cfg.require_beats_trivial else notes).append(msg)
    baseline = trivial
    if champ_proba is not None:
        res.champion_business_value = business_value(y_pos, champ_proba[:, pos], spec)
        baseline = res.champion_business_value
        floor = res.champion_business_value - cfg.business_tolerance * abs(res.champion_business_value)
        if res.business_value < floor:
            problems.append(f"value {res.business_value:.3f}/row is below champion's "
                            f"{res.champion_business_value:.3f}/row (tolerance {cfg.business_tolerance:.0%})")
    checks.append(CheckResult(name="business", passed=not problems, value=res.business_value, baseline=baseline,
                              detail="; ".join(problems + notes) or (
                                  f"value {res.business_value:.3f}/row at threshold {spec.business_threshold}"
                                  f" (baseline {baseline:.3f}/row)")))
    return _finish(res, checks)


def _finish(res: GateResult, checks: list[CheckResult]) -> GateResult:
    res.checks = checks
    res.passed = all(c.passed for c in checks)
    res.reasons = [f"{c.name}: {c.detail}" for c in checks if not c.passed]
    return res


def store_gate_result(result: GateResult, client: MlflowClient | None = None) -> None:
    """Write the result as tags on the model version (overwriting an earlier gate run's tags)."""
    c = client or MlflowClient()
    for k, v in result.tags().items():
        c.set_model_version_tag(result.model_name, result.version, k, v)


def run_gate(
    name: str,
    version: str,
    eval_df: pl.DataFrame,
    eval_commit: str,
    spec: DatasetSpec,
    config: GateConfig | None = None,
    client: MlflowClient | None = None,
) -> GateResult:
    """`evaluate_gate` + `store_gate_result`; promotion is `tasks.registry.apply_gate`."""
    result = evaluate_gate(name, version, eval_df, eval_commit, spec, config, client)
    store_gate_result(result, client)
    return result
