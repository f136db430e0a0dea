"""Fault: MLflow goes down while a training run logs. MLflow's client retries (few, short, here), then
log_training fails with a TrackingError naming the model and the commit; once MLflow is back, no version
was registered for that commit and the champion alias has not moved. A server of its own (stopped here)."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

from infra.demo.synth import synth_batch
from infra.local.mlflow import start_mlflow
from infra.procs import Service, free_port
from lakeloop.adapters.mlflow_tracking import Lineage, TrackingError
from lakeloop.settings import MLflowSettings, TrainSettings
from tasks.data.profiling import profile_frame, to_bytes
from tasks.model import training_run
from tasks.model.train import train_xgb
from tests.test_object_state import SPEC

pytestmark = pytest.mark.integration


@pytest.fixture
def own_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[list[Service], int]]:
    for k, v in {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}.items():
        monkeypatch.setenv(k, v)
    port = free_port()
    services = [start_mlflow(tmp_path, port)]
    try:
        yield services, port
    finally:
        for svc in services:
            svc.stop(timeout=5)


def test_mlflow_down_while_logging_fails_clearly_and_registers_nothing(
        own_mlflow: tuple[list[Service], int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    services, port = own_mlflow
    uri = services[0].url
    settings = MLflowSettings(tracking_uri=uri, experiment="fault", model_name="fault-churn")
    data = synth_batch(300, seed=3, invalid_rate=0.0).data
    result = train_xgb(data, SPEC, TrainSettings(folds=2, n_estimators=10, early_stopping_rounds=5))
    view = to_bytes(profile_frame(data, SPEC))

    def log(commit: str):  # type: ignore[no-untyped-def]
        lineage = Lineage(repository="churn", branch="main", commit_id=commit, spec_hash=SPEC.spec_hash())
        return training_run.log_training(result, spec=SPEC, lineage=lineage, profile_view_bytes=view,
                                         drift_report=None, reason="test", registered_name="fault-churn",
                                         settings=settings)

    first = log("a" * 64)
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.set_registered_model_alias("fault-churn", "champion", first.version)

    real = training_run.log_pyfunc

    def dies_midway(*args, **kwargs):  # type: ignore[no-untyped-def]
        services.pop().stop(timeout=10)  # params and metrics are logged; the model is not yet
        return real(*args, **kwargs)

    monkeypatch.setattr(training_run, "log_pyfunc", dies_midway)
    with pytest.raises(TrackingError) as caught:
        log("b" * 64)
    message = str(caught.value)
    assert "'fault-churn'" in message and "churn@bbbbbbbbbbbb" in message and uri in message
    assert str(pickle.loads(pickle.dumps(caught.value))) == message

    services.append(start_mlflow(tmp_path, port))  # back, same store
    versions = client.search_model_versions("name='fault-churn'")
    assert [v.version for v in versions] == [first.version]  # nothing half-registered
    assert client.get_model_version_by_alias("fault-churn", "champion").version == first.version
