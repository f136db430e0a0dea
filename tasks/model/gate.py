"""The challenger gate: checks a new model must pass before it may become champion.

Why a gate with real checks: CV scores are computed on the training data of the
challenger itself; the gate instead scores challenger *and* champion on the same
frozen evaluation commit, so the comparison is like for like and reproducible
(the commit id is stored with the result). Every check can fail:

* artifacts - the model has a description and every file it needs to load alone;
* schema    - the model signature's columns exist in the data with compatible types;
* auc       - evidence, not a fixed tolerance: the paired-bootstrap lower bound of
              AUC(challenger) - AUC(bar) >= -`auc_margin`, where the bar is the best of
              the champion and the last `past_champions` champions on the *same rows*,
              so successive promotions cannot slide (no champion: AUC >= `min_auc`);
* slices    - on each `spec.slices` subset, AUC >= champion's - `slice_tolerance`;
* business  - value per row from `spec.cost_matrix` at `spec.business_threshold`:
              the paired lower bound of (challenger - best past champion) >=
              -`business_margin` * |its value| (optionally also >= the best trivial
              policy: act on everybody / on nobody);
* signal    - the rows new since the champion's data (`new_rows`) carry label
              signal: the challenger's AUC lower bound on them is above 0.5. Shuffled
              or garbage labels merged into a watched branch fail here, because no
              model can predict them.

The intervals are stored in the version's tags (`gate.auc_delta`, ...).

Results are stored as model-version tags (`gate.*`), so the registry itself says
why a version was or was not promoted.
"""

from __future__ import annotations

import functools
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

from lakeloop.adapters.mlflow_registry import champion_version, past_champions
from lakeloop.spec import DatasetSpec
from tasks.model.evaluation import business_value, positive_column, proba_matrix, row_values, slice_auc, slice_masks
from tasks.model.evidence import Interval, auc_difference, auc_interval, mean_difference, resample_indices
from tasks.model.features import encode_labels
from tasks.model.metrics import safe_auc
from tasks.model.model_contract import REQUIRED_MODEL_FILES, model_input

TAG_VALUE_MAX = 4900


class GateConfig(BaseModel):
    auc_margin: float = Field(default=0.01, ge=0, description="non-inferiority margin on the AUC lower bound")
    slice_tolerance: float = Field(default=0.02, ge=0)
    business_margin: float = Field(default=0.05, ge=0, description="share of |bar value| the lower bound may lose")
    confidence: float = Field(default=0.95, gt=0, lt=1)
    bootstrap_resamples: int = Field(default=1000, ge=100)
    seed: int = 20260101
    past_champions: int = Field(default=5, ge=0, description="earlier champions scored beside the current one")
    min_signal_rows: int = Field(default=100, ge=10, description="fewer new rows: the signal check is not gated")
    min_auc: float = Field(default=0.55, ge=0, le=1, description="floor when there is no champion (and for slices)")
    min_slice_rows: int = Field(default=30, ge=1, description="smaller slices are reported but not gated")
    require_beats_trivial: bool = Field(
        default=False, description="also fail when acting on everybody / nobody is worth more per row "
        "(off by default: a spec whose threshold is far from its cost matrix's optimum fails every model)")
    required_files: tuple[str, ...] = REQUIRED_MODEL_FILES

    @classmethod
    def from_settings(cls, gate: Any) -> GateConfig:
        """From `lakeloop.settings.GateSettings` (the same field names)."""
        return cls(**{k: v for k, v in gate.model_dump().items() if k in cls.model_fields})


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
    # the champion when the gate read it (even when it is `version` itself): promotion is compare-and-set on it
    champion_at_gate: str | None = None
    auc: float | None = None
    champion_auc: float | None = None
    bar_version: str | None = None  # the best champion on these rows, which the challenger must not fall below
    bar_auc: float | None = None
    auc_delta: Interval | None = None  # challenger - bar
    business_delta: Interval | None = None  # per row, challenger - best past champion
    new_rows: int = 0
    signal_auc: Interval | None = None  # challenger on the rows new since the champion's data
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
            "gate.bar_version": self.bar_version or "none",
            "gate.bar_auc": _fmt(self.bar_auc),
            "gate.new_rows": str(self.new_rows),
        }
        for key, iv in (("auc_delta", self.auc_delta), ("business_delta", self.business_delta),
                        ("signal_auc", self.signal_auc)):
            if iv is not None:
                t[f"gate.{key}"] = _fmt(iv.estimate)
                t[f"gate.{key}.ci_low"] = _fmt(iv.low)
                t[f"gate.{key}.ci_high"] = _fmt(iv.high)
                t[f"gate.{key}.confidence"] = str(iv.confidence)
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


# ---- the gate ----------------------------------------------------------------------
def evaluate_gate(
    name: str,
    version: str,
    eval_df: pl.DataFrame,
    eval_commit: str,
    spec: DatasetSpec,
    config: GateConfig | None = None,
    client: MlflowClient | None = None,
    new_rows: pl.DataFrame | None = None,
    *,
    store: bool = False,
) -> GateResult:
    """Score challenger `version`, the champion and earlier champions on the same frozen evaluation rows.

    `eval_df` must be rows neither model trained on, from a watched branch (the trusted holdout).
    `new_rows`: held-out rows that are new since the champion's data (the signal check; None: none).
    `store`: also write the result as the version's tags (`store_gate_result`), whichever check ended it.
    """
    cfg = config or GateConfig()
    c = client or MlflowClient()
    store_in = c if store else None
    version = str(version)
    mv = c.get_model_version(name, version)
    at_gate = champion_version(name, c)
    champ = None if at_gate == version else at_gate  # re-gating the champion compares it with the floors only
    if spec.label_column in eval_df.columns and eval_df.get_column(spec.label_column).null_count():
        raise ValueError(f"evaluation data (commit {eval_commit}): {eval_df.get_column(spec.label_column).null_count()}"
                         f" rows have a null {spec.label_column!r}; the gate needs labelled rows")
    checks: list[CheckResult] = []
    res = GateResult(model_name=name, version=version, champion_version=champ, champion_at_gate=at_gate,
                     eval_commit=eval_commit, rows=eval_df.height, passed=False)
    with tempfile.TemporaryDirectory(prefix="lakeloop-gate-") as tmp:
        model_dir = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=tmp))
        checks.append(check_artifacts(model_dir, mv.description, cfg.required_files))
        try:
            model = mlflow.pyfunc.load_model(str(model_dir))
        except Exception as e:  # any load failure is a gate failure, with its reason
            checks.append(CheckResult(name="load", passed=False, detail=f"model does not load: {e}"))
            return _finish(res, checks, store_in)
        signature = model.metadata.signature
        schema = check_schema(signature, eval_df, spec)
        checks.append(schema)
        if not schema.passed:
            return _finish(res, checks, store_in)
        proba = proba_matrix(model.predict(model_input(eval_df, signature)), spec)
        new_proba = (proba_matrix(model.predict(model_input(new_rows, signature)), spec)
                     if new_rows is not None and new_rows.height else None)
    # the champion first, then earlier champions: the best of them on these rows is the bar
    rivals: dict[str, np.ndarray] = {}
    for v in ([champ] if champ else []) + (past_champions(name, c, cfg.past_champions, exclude={version})
                                           if champ else []):
        if v not in rivals:
            rivals[v] = _score(name, v, eval_df, spec)
    champ_proba = rivals.get(champ) if champ else None

    y = encode_labels(eval_df, spec)
    pos = positive_column(spec)
    y_pos = y == pos
    idx = resample_indices(len(y), cfg.bootstrap_resamples, cfg.seed)

    # overall AUC: non-inferior to the best champion on the same rows, with evidence
    res.auc = safe_auc(y, proba)
    res.champion_auc = safe_auc(y, champ_proba) if champ_proba is not None else None
    rival_auc = {v: safe_auc(y, p) for v, p in rivals.items()}
    scored = {v: a for v, a in rival_auc.items() if a is not None}
    if scored:
        res.bar_version = max(scored, key=lambda v: scored[v])
        res.bar_auc = scored[res.bar_version]
    if res.auc is None:
        checks.append(CheckResult(name="auc", passed=False, detail="evaluation data has a single class"))
    elif res.bar_version is not None:
        res.auc_delta = auc_difference(y_pos, proba[:, pos], rivals[res.bar_version][:, pos], idx, cfg.confidence)
        ok = res.auc_delta.low >= -cfg.auc_margin
        bar = (f"champion v{champ}" if res.bar_version == champ
               else f"best champion v{res.bar_version} (champion v{champ})")
        checks.append(CheckResult(name="auc", passed=ok, value=res.auc, baseline=res.bar_auc, detail=(
            f"AUC {res.auc:.4f} vs {bar} {res.bar_auc:.4f}: difference {res.auc_delta} at "
            f"{cfg.confidence:.0%}, lower bound must be >= -{cfg.auc_margin}")))
    else:
        ok = res.auc >= cfg.min_auc
        checks.append(CheckResult(name="auc", passed=ok, value=res.auc, baseline=cfg.min_auc,
                                  detail=f"AUC {res.auc:.4f} vs floor {cfg.min_auc} (no champion)"))

    # slices
    masks = slice_masks(eval_df, spec)
    for s in spec.slices:
        mask = masks[s.name]
        n = int(mask.sum())
        a = slice_auc(y, proba, mask)
        b = slice_auc(y, champ_proba, mask) if champ_proba is not None else None
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

    checks.append(_business_check(res, y_pos, proba[:, pos], {v: p[:, pos] for v, p in rivals.items()}, champ,
                                  idx, spec, cfg))
    y_new = encode_labels(new_rows, spec) == pos if new_proba is not None and new_rows is not None else y_pos[:0]
    checks.append(_signal_check(res, y_new, new_proba[:, pos] if new_proba is not None else proba[:0, pos], cfg))
    return _finish(res, checks, store_in)


def _score(name: str, version: str, eval_df: pl.DataFrame, spec: DatasetSpec) -> np.ndarray:
    model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    return proba_matrix(model.predict(model_input(eval_df, model.metadata.signature)), spec)


def _business_check(res: GateResult, y_pos: np.ndarray, p_pos: np.ndarray, rivals: dict[str, np.ndarray],
                    champ: str | None, idx: np.ndarray, spec: DatasetSpec, cfg: GateConfig) -> CheckResult:
    """Value per row, paired against the best champion by value on the same rows."""
    values = row_values(y_pos, p_pos, spec)
    res.business_value = float(values.mean())
    trivial = max(business_value(y_pos, np.ones(len(y_pos)), spec), business_value(y_pos, np.zeros(len(y_pos)), spec))
    problems: list[str] = []
    notes: list[str] = []
    if res.business_value < trivial:
        msg = f"value {res.business_value:.3f}/row is below the best trivial policy {trivial:.3f}/row"
        (problems if cfg.require_beats_trivial else notes).append(msg)
    baseline = trivial
    if rivals:
        rival_values = {v: row_values(y_pos, p, spec) for v, p in rivals.items()}
        if champ in rival_values:
            res.champion_business_value = float(rival_values[champ].mean())
        best = max(rival_values, key=lambda v: rival_values[v].mean())
        baseline = float(rival_values[best].mean())
        res.business_delta = mean_difference(values, rival_values[best], idx, cfg.confidence)
        floor = -cfg.business_margin * abs(baseline)
        if res.business_delta.low < floor:
            problems.append(f"value {res.business_value:.3f}/row vs best champion v{best} {baseline:.3f}/row: "
                            f"difference {res.business_delta} at {cfg.confidence:.0%}, lower bound must be >= "
                            f"{floor:.3f} ({cfg.business_margin:.0%} of |{baseline:.3f}|)")
    return CheckResult(name="business", passed=not problems, value=res.business_value, baseline=baseline,
                       detail="; ".join(problems + notes) or (
                           f"value {res.business_value:.3f}/row at threshold {spec.business_threshold}"
                           f" (baseline {baseline:.3f}/row"
                           + (f", difference {res.business_delta}" if res.business_delta else "") + ")"))


def _signal_check(res: GateResult, yy: np.ndarray, pp: np.ndarray, cfg: GateConfig) -> CheckResult:
    """Rows new since the champion's data must carry label signal the challenger found."""
    res.new_rows = n = len(yy)
    if n < cfg.min_signal_rows or yy.all() or not yy.any():
        why = f"{n} new rows (< {cfg.min_signal_rows})" if n < cfg.min_signal_rows else "new rows hold one class"
        return CheckResult(name="signal", passed=True, detail=f"not gated: {why}")
    res.signal_auc = auc_interval(yy, pp, resample_indices(n, cfg.bootstrap_resamples, cfg.seed + 1), cfg.confidence)
    ok = res.signal_auc.low > 0.5
    return CheckResult(name="signal", passed=ok, value=res.signal_auc.estimate, baseline=0.5, detail=(
        f"AUC on the {n} holdout rows new since the champion's data: {res.signal_auc.estimate:.4f} "
        f"[{res.signal_auc.low:.4f}, {res.signal_auc.high:.4f}]"
        + ("" if ok else "; their labels carry no signal a model can find (shuffled or wrong labels?)")))


def _finish(res: GateResult, checks: list[CheckResult], store_in: MlflowClient | None) -> GateResult:
    res.checks = checks
    res.passed = all(c.passed for c in checks)
    res.reasons = [f"{c.name}: {c.detail}" for c in checks if not c.passed]
    if store_in is not None:
        store_gate_result(res, store_in)
    return res


def store_gate_result(result: GateResult, client: MlflowClient | None = None) -> None:
    """Write the result as tags on the model version (overwriting an earlier gate run's tags)."""
    c = client or MlflowClient()
    for k, v in result.tags().items():
        c.set_model_version_tag(result.model_name, result.version, k, v)


# `evaluate_gate` + `store_gate_result`; promotion is `lakeloop.adapters.mlflow_registry.apply_gate`.
run_gate = functools.partial(evaluate_gate, store=True)
