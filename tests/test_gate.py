"""The challenger gate, promotion and rollback against a real MLflow registry."""

from __future__ import annotations

import threading
from pathlib import Path

import polars as pl
import pytest
from mlflow import MlflowClient

from lakeloop.adapters.mlflow_registry import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS,
    RegistryError,
    alias_version,
    apply_gate,
    promote,
    rollback,
)
from lakeloop.spec import DatasetSpec
from lakeloop.state import Ledger
from tasks.model.candidates import CandidateSet, MemberConfig, build_candidates
from tasks.model.gate import GateConfig, check_schema, evaluate_gate, run_gate
from tasks.model.model_contract import model_signature
from tasks.model.model_logging import log_ensemble
from tasks.model.promotion import gate_and_promote
from tests.fixtures.ensemble import make_lineage

EVAL_COMMIT = "e7a1" + "0" * 60
KEY_FEATURES = {"contract", "tenure_months", "support_calls", "monthly_charges", "total_charges"}


# ---- unit ------------------------------------------------------------------------------
def test_schema_check_names_problems(churn_spec: DatasetSpec, churn_eval: pl.DataFrame) -> None:
    sig = model_signature(churn_spec)
    assert check_schema(sig, churn_eval, churn_spec).passed
    bad = churn_eval.drop("contract").with_columns(pl.col("tenure_months").cast(pl.Utf8))
    res = check_schema(sig, bad, churn_spec)
    assert not res.passed
    assert "'contract'" in res.detail and "missing" in res.detail
    assert "'tenure_months'" in res.detail and "String" in res.detail
    assert not check_schema(sig, churn_eval.drop("churn"), churn_spec).passed


# ---- integration -----------------------------------------------------------------------
def _small(df: pl.DataFrame, spec: DatasetSpec, feats: tuple[str, ...], commit: str) -> CandidateSet:
    """A cheap 2-member candidate set (one Optuna trial) for deliberately different challengers."""
    cfgs = [MemberConfig("xgb", "xgboost", {"n_estimators": 150, "max_depth": 4, "learning_rate": 0.08,
                                            "random_state": 1}, feats),
            MemberConfig("logreg", "logreg", {"C": 1.0}, feats)]
    return build_candidates(df, spec, make_lineage(spec, commit), n_trials=1, timeout_s=20, n_folds=3,
                            n_jobs=1, configs=cfgs, experiment="lakeloop-gate-tests")


@pytest.mark.integration
def test_gate_promotes_better_refuses_degraded_and_rolls_back(
    mlflow_uri: str, churn_candidates: CandidateSet, churn_spec: DatasetSpec, churn_train: pl.DataFrame,
    churn_eval: pl.DataFrame, model_name: str,
) -> None:
    client = MlflowClient()
    spec = churn_spec
    cfg = GateConfig()

    # v1: key features dropped - weak but better than chance: the first passing challenger becomes champion
    weak_feats = tuple(f for f in spec.model_features if f not in KEY_FEATURES)
    _, _, v1 = log_ensemble(_small(churn_train, spec, weak_feats, "1" * 64), name=model_name)
    r1 = run_gate(model_name, v1, churn_eval, EVAL_COMMIT, spec, cfg)
    assert r1.passed, r1.reasons
    assert r1.champion_version is None
    assert apply_gate(r1).promoted
    assert alias_version(model_name, CHAMPION) == v1
    assert alias_version(model_name, CHALLENGER) is None

    # v2: the full ensemble is better than champion v1 on the same frozen data -> promoted, v1 -> previous
    _, _, v2 = log_ensemble(churn_candidates, name=model_name)
    # the churn spec's threshold sits at its costs' break-even: the full model beats acting on everybody/nobody
    strict = evaluate_gate(model_name, v2, churn_eval, EVAL_COMMIT, spec, GateConfig(require_beats_trivial=True))
    assert strict.check("business").passed, strict.check("business").detail
    r2 = run_gate(model_name, v2, churn_eval, EVAL_COMMIT, spec, cfg)
    print(f"\nv1 auc={r1.auc:.4f} value={r1.business_value:.2f}; v2 auc={r2.auc:.4f} value={r2.business_value:.2f}")
    assert r2.passed, r2.reasons
    assert r2.champion_version == v1
    assert r2.auc is not None and r2.champion_auc is not None and r2.auc > r2.champion_auc + 0.03
    d2 = apply_gate(r2)
    assert d2.promoted and d2.champion == v2
    assert (alias_version(model_name, CHAMPION), alias_version(model_name, PREVIOUS)) == (v2, v1)
    tags = client.get_model_version(model_name, v2).tags
    assert tags["gate.passed"] == "true"
    assert tags["gate.eval_commit"] == EVAL_COMMIT
    assert float(tags["gate.auc"]) == pytest.approx(r2.auc, abs=1e-6)
    assert {f"gate.slice.{s.name}" for s in spec.slices} <= set(tags)
    assert tags["gate.slice.month_to_month"].startswith("pass")
    assert float(tags["gate.business_value"]) == pytest.approx(r2.business_value, abs=1e-6)

    # v3: trained on shuffled labels -> refused; stays challenger with its reasons as tags
    shuffled = churn_train.with_columns(pl.col("churn").shuffle(seed=5))
    _, _, v3 = log_ensemble(_small(shuffled, spec, tuple(spec.model_features), "3" * 64), name=model_name)
    r3 = run_gate(model_name, v3, churn_eval, EVAL_COMMIT, spec, cfg)
    assert not r3.passed
    failed = {c.name for c in r3.checks if not c.passed}
    assert {"auc", "slices", "business"} <= failed, r3.reasons
    assert all(s.gated and not s.passed for s in r3.slices if s.rows >= cfg.min_slice_rows)
    d3 = apply_gate(r3)
    assert not d3.promoted and d3.champion == v2
    assert alias_version(model_name, CHALLENGER) == v3
    assert alias_version(model_name, CHAMPION) == v2
    t3 = client.get_model_version(model_name, v3).tags
    assert t3["gate.passed"] == "false"
    assert t3["gate.check.auc"] == "fail" and t3["gate.check.business"] == "fail"
    assert "auc: AUC" in t3["gate.reasons"] and f"champion v{v2}" in t3["gate.reasons"]
    assert t3["gate.slice.fiber"].startswith("fail")

    # the key-feature-less v1 is refused against champion v2 as well
    r1b = run_gate(model_name, v1, churn_eval, EVAL_COMMIT, spec, cfg)
    assert not r1b.passed and not r1b.check("auc").passed

    # a frozen evaluation set without a required column fails the schema check (no exception)
    r_schema = run_gate(model_name, v3, churn_eval.drop("contract"), EVAL_COMMIT, spec, cfg)
    assert not r_schema.passed and not r_schema.check("schema").passed
    assert "'contract'" in r_schema.check("schema").detail

    # rollback restores the previous champion; a second rollback has nothing to go back to
    rb = rollback(model_name)
    assert rb.champion == v1
    assert alias_version(model_name, CHAMPION) == v1
    assert alias_version(model_name, PREVIOUS) is None
    assert "lakeloop.rolled_back_at" in client.get_model_version(model_name, v2).tags
    with pytest.raises(RegistryError, match="previous"):
        rollback(model_name)
    # promoting the current champion again is a no-op
    assert not promote(model_name, v1).changed


@pytest.mark.integration
def test_gate_bar_is_the_best_champion_on_the_same_rows_and_new_rows_must_carry_signal(
    mlflow_uri: str, churn_candidates: CandidateSet, churn_spec: DatasetSpec, churn_train: pl.DataFrame,
    churn_eval: pl.DataFrame, model_name: str,
) -> None:
    """Issue 10: each promotion could lose up to the tolerance against the *previous* champion (a ratchet),
    and garbage labels scored on their own rows passed. Now the bar is the best champion on these rows."""
    spec = churn_spec
    _, _, v_full = log_ensemble(churn_candidates, name=model_name)
    assert apply_gate(run_gate(model_name, v_full, churn_eval, EVAL_COMMIT, spec)).promoted
    weak = tuple(f for f in spec.model_features if f not in KEY_FEATURES)
    _, _, v_weak = log_ensemble(_small(churn_train, spec, weak, "4" * 64), name=model_name)
    promote(model_name, v_weak)  # by hand: the champion is now worse than an earlier one
    mid = tuple(f for f in spec.model_features if f not in {"contract", "tenure_months"})
    _, _, v_mid = log_ensemble(_small(churn_train, spec, mid, "5" * 64), name=model_name)

    r = run_gate(model_name, v_mid, churn_eval, EVAL_COMMIT, spec)
    assert r.champion_version == v_weak and r.bar_version == v_full
    assert r.auc is not None and r.champion_auc is not None and r.auc > r.champion_auc  # beats today's champion
    assert not r.passed and not r.check("auc").passed, r.reasons  # ... but not the best one
    assert r.auc_delta is not None and r.auc_delta.high < 0
    assert f"best champion v{v_full}" in r.check("auc").detail
    tags = MlflowClient().get_model_version(model_name, v_mid).tags
    assert tags["gate.bar_version"] == v_full
    low, mid_, high = (float(tags[f"gate.auc_delta{k}"]) for k in (".ci_low", "", ".ci_high"))
    assert low <= mid_ <= high
    assert tags["gate.auc_delta.confidence"] == "0.95"

    # rows new since the champion's data: real labels carry signal, shuffled ones do not
    fresh = churn_eval.head(600)
    ok = evaluate_gate(model_name, v_full, churn_eval, EVAL_COMMIT, spec, new_rows=fresh)
    assert ok.check("signal").passed and ok.signal_auc is not None and ok.signal_auc.low > 0.5
    shuffled = fresh.with_columns(pl.col("churn").shuffle(seed=11))
    bad = evaluate_gate(model_name, v_full, churn_eval, EVAL_COMMIT, spec, new_rows=shuffled)
    assert not bad.passed and not bad.check("signal").passed
    assert "carry no signal" in bad.check("signal").detail


@pytest.mark.integration
def test_promotion_is_compare_and_set_and_concurrent_gates_leave_one_compared_champion(
    mlflow_uri: str, churn_candidates: CandidateSet, churn_spec: DatasetSpec, churn_train: pl.DataFrame,
    churn_eval: pl.DataFrame, model_name: str, tmp_path: Path,
) -> None:
    """Issue 10: the gate read the champion and `promote` re-read and overwrote it, so two retrains that
    finished together both won."""
    spec = churn_spec
    feats = tuple(spec.model_features)
    _, _, v_a = log_ensemble(churn_candidates, name=model_name)
    _, _, v_b = log_ensemble(_small(churn_train, spec, feats, "6" * 64), name=model_name)
    ra = run_gate(model_name, v_a, churn_eval, EVAL_COMMIT, spec)
    rb = run_gate(model_name, v_b, churn_eval, EVAL_COMMIT, spec)
    assert ra.passed and rb.passed and ra.champion_at_gate is None and rb.champion_at_gate is None
    assert apply_gate(ra).promoted
    stale = apply_gate(rb)  # compared against "no champion"; the champion is v_a now
    assert stale.stale and not stale.promoted
    assert alias_version(model_name, CHAMPION) == v_a

    # two challengers gated and promoted at once, one lock: exactly one champion, whose gate compared it
    # against the version it replaced
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    _, _, v_c = log_ensemble(_small(churn_train, spec, feats, "7" * 64), name=model_name)
    _, _, v_d = log_ensemble(_small(churn_train, spec, feats, "8" * 64), name=model_name)
    loose = GateConfig(auc_margin=0.5, business_margin=5.0)  # both pass on their own: the race is the point
    results: dict[str, object] = {}

    def run(v: str) -> None:
        results[v] = gate_and_promote(model_name, v, churn_eval, EVAL_COMMIT, spec, config=loose,
                                      lock=lambda: ledger.lock(f"promote:{model_name}", f"worker-{v}", timeout=120))

    threads = [threading.Thread(target=run, args=(v,)) for v in (v_c, v_d)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(results) == {v_c, v_d}
    champion = alias_version(model_name, CHAMPION)
    previous = alias_version(model_name, PREVIOUS)
    assert champion in (v_c, v_d)
    tags = MlflowClient().get_model_version(model_name, champion).tags
    assert tags["gate.champion_version"] == previous  # it was judged against the version it replaced
    promoted = [v for v, (_, d) in results.items() if d.promoted]  # type: ignore[misc]
    assert champion in promoted
