"""The MLflow adapter against a real tracking server: log, register, find lineage both ways, load back."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pytest

from infra.demo.synth import synth_batch
from lakeloop.adapters.mlflow_tracking import (
    Lineage,
    download_bytes,
    find_versions_for_commit,
    latest_training_reference,
    load_oof,
    version_lineage,
)
from lakeloop.settings import MLflowSettings, TrainSettings
from lakeloop.spec import DatasetSpec
from tasks.data.drift import detect_drift
from tasks.data.profiling import from_bytes, profile_frame, profile_rows, to_bytes
from tasks.model.features import model_frame
from tasks.model.model_contract import model_input
from tasks.model.train import train_xgb
from tasks.model.training_run import load_xgb, log_training, oof_frame

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def trained(churn_spec: DatasetSpec):  # type: ignore[no-untyped-def]
    data = synth_batch(1500, seed=11).data
    result = train_xgb(data, churn_spec, TrainSettings(folds=3, n_estimators=60, early_stopping_rounds=10))
    return data, result


@pytest.fixture(scope="module")
def churn_spec() -> DatasetSpec:
    from lakeloop.settings import ROOT

    return DatasetSpec.from_yaml(ROOT / "examples" / "churn" / "spec.yaml")


def test_log_register_and_lineage_both_ways(mlflow_server: str, trained, churn_spec: DatasetSpec) -> None:  # type: ignore[no-untyped-def]
    data, result = trained
    settings = MLflowSettings(tracking_uri=mlflow_server, experiment="test-tracking", model_name="tracking-churn")
    name = settings.model_name
    view = profile_frame(data, churn_spec)
    drift = detect_drift(view, view, churn_spec)
    commits = ["c0ffee" * 10 + "0001", "c0ffee" * 10 + "0002"]
    records = []
    for commit in commits:
        lineage = Lineage(repository="churn", branch="main", commit_id=commit, spec_hash=churn_spec.spec_hash())
        records.append(log_training(result, spec=churn_spec, lineage=lineage, profile_view_bytes=to_bytes(view),
                                    drift_report=drift, reason="test", registered_name=name,
                                    oof=oof_frame(result, data, churn_spec), settings=settings))
    assert [r.version for r in records] == ["1", "2"]
    rec = records[1]

    client = mlflow.MlflowClient(tracking_uri=mlflow_server)
    mv = client.get_model_version(name, rec.version)
    assert mv.tags["lakefs.repository"] == "churn"
    assert mv.tags["lakefs.branch"] == "main"
    assert mv.tags["lakefs.commit_id"] == commits[1]
    assert mv.tags["lakeloop.spec_hash"] == churn_spec.spec_hash()
    run = client.get_run(rec.run_id)
    assert run.data.tags["lakefs.commit_id"] == commits[1]
    assert run.data.tags["lakeloop.trigger"] == "test"
    assert run.data.tags["lakeloop.code_version"]
    assert run.data.metrics["roc_auc"] == pytest.approx(result.metrics["roc_auc"])

    # commit -> models, model -> commit
    assert find_versions_for_commit(commits[0], settings) == [(name, "1", records[0].run_id)]
    assert find_versions_for_commit(commits[1], settings) == [(name, "2", rec.run_id)]
    assert find_versions_for_commit("f" * 64, settings) == []
    lin = version_lineage(name, "1", settings)
    assert lin.commit_id == commits[0] and lin.repository == "churn"

    # reference for drift: only the champion. Without one, the latest version (which may be a refused
    # challenger or an experiment) is never the reference (issue 10: it used to fall back to it).
    assert latest_training_reference(name, settings) is None
    client.set_registered_model_alias(name, "champion", "2")
    ref = latest_training_reference(name, settings)
    assert ref is not None and ref.run_id == rec.run_id and ref.commit_id == commits[1]
    # labelled batches are measured against the AUC the champion was accepted with (the monitor read a
    # `metrics` key that training/summary.json never had, so it never had a reference AUC)
    assert ref.auc == pytest.approx(result.metrics["roc_auc"])
    assert profile_rows(from_bytes(ref.profile)) == data.height
    client.set_registered_model_alias(name, "champion", "1")
    ref1 = latest_training_reference(name, settings)
    assert ref1 is not None and ref1.commit_id == commits[0] and ref1.version == "1"
    assert latest_training_reference("no-such-model", settings) is None

    summary = json.loads(download_bytes(rec.run_id, "profile/summary.json", settings))
    assert summary["rows"] == data.height and "email" not in summary["columns"]
    logged_drift = json.loads(download_bytes(rec.run_id, "drift/report.json", settings))
    assert logged_drift["decision"] is False and len(logged_drift["columns"]) == len(drift.columns)

    oof = load_oof(rec.run_id, settings)
    assert oof.height == data.height
    np.testing.assert_allclose(oof["proba_yes"].to_numpy(), result.oof_proba[:, 1])

    # the registered model loads back through pyfunc (raw spec features in) and predicts like the trained one
    model = mlflow.pyfunc.load_model(rec.model_uri)
    rows = data.head(50)
    pred = model.predict(model_input(rows, model.metadata.signature))
    expected = result.model.predict_proba(model_frame(rows, churn_spec))[:, 1]
    np.testing.assert_allclose(pred["probability"].to_numpy(), expected, rtol=1e-6)
    want = np.where(expected >= churn_spec.business_threshold, "yes", "no")
    assert pred["label"].tolist() == want.tolist()
    assert model.metadata.signature is not None
    assert [c.name for c in model.metadata.signature.inputs.inputs] == churn_spec.model_features
    xgb = load_xgb(rec.model_uri)
    np.testing.assert_allclose(xgb.predict_proba(model_frame(rows, churn_spec)),
                               result.model.predict_proba(model_frame(rows, churn_spec)), rtol=1e-6)
