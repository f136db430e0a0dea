"""Batch inference with the champion, predictions back to lakeFS, fresh-process loading, monitoring."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import polars as pl
import pytest

from infra.demo.synth import synth_batch
from lakeloop.adapters.lakefs import Lake
from lakeloop.adapters.mlflow_registry import promote
from lakeloop.settings import MonitorSettings, TrainSettings
from lakeloop.spec import DatasetSpec
from tasks.data.profiling import profile_frame
from tasks.model.candidates import CandidateSet
from tasks.model.ensemble import single_member_plan
from tasks.model.features import model_frame
from tasks.model.model_contract import model_input, model_signature
from tasks.model.model_logging import log_ensemble, save_pyfunc
from tasks.model.train import train_xgb
from tasks.model.training_run import xgb_member
from tasks.serving.inference import predict_batch, predictions_path, profile_predictions, write_predictions
from tasks.serving.monitoring import monitor, output_drift

# Loads and predicts with nothing of lakeloop (nor polars) importable: proves the pyfunc is self-contained.
FRESH_SCRIPT = textwrap.dedent("""
    import importlib.abc
    import sys

    BLOCKED = {"tasks", "lakeloop", "infra", "flows", "polars"}

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"blocked in the fresh process: {name}")
            return None

    sys.meta_path.insert(0, Block())
    import mlflow.pyfunc
    import pandas as pd
    uri, inp, out = sys.argv[1:4]
    frame = pd.read_json(inp, orient="table")
    model = mlflow.pyfunc.load_model(uri)
    model.predict(frame).to_json(out, orient="split")
    print(sorted(m for m in sys.modules if m.split(".")[0] in ("tasks", "lakeloop", "polars") and sys.modules[m]))
""")


@pytest.fixture(scope="module")
def champion(mlflow_server: str, churn_candidates: CandidateSet) -> tuple[str, str]:
    mlflow.set_tracking_uri(mlflow_server)
    mlflow.set_registry_uri(mlflow_server)
    name = f"churn-inf-{uuid.uuid4().hex[:8]}"
    _, _, version = log_ensemble(churn_candidates, name=name)
    promote(name, version)
    return name, version


def _run_fresh(python: str, uri: str, frame: pd.DataFrame, tmp: Path, env: dict[str, str]) -> pd.DataFrame:
    inp, out = tmp / "input.json", tmp / "out.json"
    frame.to_json(inp, orient="table", index=False)
    script = tmp / "fresh.py"
    script.write_text(FRESH_SCRIPT)
    proc = subprocess.run([python, "-I", str(script), uri, str(inp), str(out)], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout  # nothing of lakeloop/polars got loaded
    return pd.read_json(out, orient="split")


@pytest.mark.integration
def test_batch_inference_and_write_back(mlflow_uri: str, champion: tuple[str, str], churn_eval: pl.DataFrame,
                                        churn_spec: DatasetSpec, lake: Lake) -> None:
    name, version = champion
    preds = predict_batch(churn_eval, f"models:/{name}@champion")
    assert preds.columns == ["customer_id", "label", "probability", "model_version"]
    assert preds.schema["label"] == pl.Utf8 and set(preds.get_column("label").unique()) <= {"yes", "no"}
    assert preds.height == churn_eval.height
    assert preds.get_column("customer_id").to_list() == churn_eval.get_column("customer_id").to_list()
    assert preds.get_column("model_version").unique().to_list() == [version]
    p = preds.get_column("probability").to_numpy()
    assert ((p >= 0) & (p <= 1)).all() and p.std() > 0.05

    # write back under predictions/<short data commit>.parquet with model version + data commit in metadata
    lake.ensure_branch("main")
    lake.write_frame("main", "data/batch-0000.parquet", churn_eval)
    data_commit = lake.commit("main", "data", {"lakeloop.kind": "data"})
    commit = write_predictions(lake, "main", preds, version, data_commit, model_name=name)
    path = predictions_path(data_commit)
    assert path == f"predictions/{data_commit[:12]}.parquet"
    back = lake.read_frame(commit, path)
    assert back.equals(preds)
    meta = lake.commit_info(commit).metadata
    assert meta["lakeloop.model_version"] == version
    assert meta["lakeloop.data_commit"] == data_commit
    assert meta["lakeloop.kind"] == "predictions"
    # predictions do not land under the data prefix, so they are never mistaken for training data
    assert [o.path for o in lake.data_objects(commit)] == ["data/batch-0000.parquet"]

    view = profile_predictions(preds)
    assert set(view.get_columns()) == {"label", "probability"}

    # a missing feature column is an error naming the column, not silently dropped rows
    with pytest.raises(ValueError, match="'contract'"):
        predict_batch(churn_eval.drop("contract"), f"models:/{name}/{version}")


@pytest.mark.integration
def test_champion_loads_in_fresh_isolated_process(mlflow_uri: str, champion: tuple[str, str],
                                                  churn_eval: pl.DataFrame, tmp_path: Path) -> None:
    name, _ = champion
    uri = f"models:/{name}@champion"
    model = mlflow.pyfunc.load_model(uri)
    frame = model_input(churn_eval.head(300), model.metadata.signature)
    want = model.predict(frame)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "MLFLOW_TRACKING_URI": mlflow_uri,
           "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    got = _run_fresh(sys.executable, uri, frame, tmp_path, env)
    assert list(got["label"]) == list(want["label"])
    np.testing.assert_allclose(got["probability"].to_numpy(), want["probability"].to_numpy(), atol=1e-9)


def test_single_model_loads_in_fresh_isolated_process(churn_spec: DatasetSpec, churn_train: pl.DataFrame,
                                                      tmp_path: Path) -> None:
    """What `log_training` ships (one XGBoost member) is as self-contained as an ensemble: no lakeloop needed."""
    result = train_xgb(churn_train, churn_spec, TrainSettings(folds=3, n_estimators=40, early_stopping_rounds=5,
                                                              n_jobs=1))
    member = xgb_member(result)
    model_dir = tmp_path / "model"
    save_pyfunc(model_dir, [member], single_member_plan(member), churn_spec, result.example)
    rows = churn_train.head(300)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "MLFLOW_DISABLE_TELEMETRY": "true",
           "DO_NOT_TRACK": "true"}
    got = _run_fresh(sys.executable, str(model_dir), model_input(rows, model_signature(churn_spec)), tmp_path, env)
    want = result.model.predict_proba(model_frame(rows, churn_spec))[:, 1]
    np.testing.assert_allclose(got["probability"].to_numpy(), want, rtol=1e-6)


@pytest.mark.integration
@pytest.mark.slow
def test_champion_runs_with_only_declared_requirements(mlflow_uri: str, champion: tuple[str, str],
                                                       churn_eval: pl.DataFrame, tmp_path: Path) -> None:
    """A brand-new venv built from the model's own requirements.txt (with uv) loads and predicts."""
    uv = shutil.which("uv") or ("/tmp/uvenv/bin/uv" if Path("/tmp/uvenv/bin/uv").exists() else None)
    if uv is None:
        pytest.skip("uv not available")
    name, version = champion
    model_dir = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=str(tmp_path / "m")))
    reqs = (model_dir / "requirements.txt").read_text().split()
    assert {r.split("==")[0] for r in reqs} == {"mlflow", "xgboost", "scikit-learn", "pandas", "numpy",
                                                "cloudpickle"}
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "--python", f"{sys.version_info.major}.{sys.version_info.minor}", str(venv)],
                   check=True, capture_output=True, timeout=300)
    py = str(venv / "bin" / "python")
    subprocess.run([uv, "pip", "install", "--python", py, "-r", str(model_dir / "requirements.txt")],
                   check=True, capture_output=True, timeout=1200)
    frame = model_input(churn_eval.head(300), mlflow.pyfunc.load_model(str(model_dir)).metadata.signature)
    want = mlflow.pyfunc.load_model(str(model_dir)).predict(frame)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "MLFLOW_DISABLE_TELEMETRY": "true",
           "DO_NOT_TRACK": "true"}
    got = _run_fresh(py, str(model_dir), frame, tmp_path, env)
    np.testing.assert_allclose(got["probability"].to_numpy(), want["probability"].to_numpy(), atol=1e-9)
    (tmp_path / "fresh-venv.json").write_text(json.dumps({"requirements": reqs}))


@pytest.mark.integration
def test_monitoring_flags_input_output_and_concept_drift(mlflow_uri: str, champion: tuple[str, str],
                                                          churn_candidates: CandidateSet,
                                                          churn_spec: DatasetSpec) -> None:
    name, version = champion
    spec = churn_spec
    model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    uri = f"models:/{name}/{version}"
    train = churn_candidates.frame
    ref_profile = profile_frame(train, spec)
    ref_preds = predict_batch(train, uri, model=model)
    auc_ref = float(model.unwrap_python_model().manifest["cv_auc"])

    def run(batch: pl.DataFrame, labelled: bool):  # type: ignore[no-untyped-def]
        recent = batch.drop("churn")
        preds = predict_batch(recent, uri, model=model)
        labels = batch.select("customer_id", "churn") if labelled else None
        return monitor(recent, ref_profile, spec, recent_predictions=preds, reference_predictions=ref_preds,
                       labels=labels, auc_reference=auc_ref, settings=MonitorSettings(auc_tolerance=0.03))

    same = run(synth_batch(2000, seed=901, start_id=7_000_000).data, labelled=True)
    assert not same.drift_detected, same.reasons
    assert same.performance is not None and not same.performance.concept_drift
    assert same.performance.labelled_rows == 2000

    shifted = run(synth_batch(2000, seed=902, start_id=7_100_000, covariate_drift=1.5).data, labelled=False)
    assert shifted.drift_detected
    assert shifted.input_drift is not None and shifted.input_drift.decision
    assert any(r.startswith("input drift") for r in shifted.reasons)
    assert any(r.startswith("prediction drift: probability") for r in shifted.reasons), shifted.reasons
    assert shifted.performance is None

    concept = run(synth_batch(2000, seed=903, start_id=7_200_000, concept_drift=1.0).data, labelled=True)
    assert concept.concept_drift, concept.performance
    assert concept.performance is not None and concept.performance.decay is not None
    assert concept.performance.decay > 0.03
    assert any(r.startswith("concept drift") for r in concept.reasons)

    # output drift alone, on identical frames, is nothing
    assert not any(o.drifted for o in output_drift(ref_preds, ref_preds))
