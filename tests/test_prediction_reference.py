"""Prediction drift compares like with like: the champion's outputs on new rows against the same model's
outputs on rows it never trained on (its holdout), not against the fold models' out-of-fold outputs.

Reproduces issue 15's false alarm with the product's own training and drift check on stationary data:
with noisy labels (as in real churn tables; the issue measured it on one), the out-of-fold comparison
fires on batches drawn from the training population, the like-for-like reference does not, and a real
covariate shift still shows.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import polars as pl
import pytest

from infra.demo.synth import synth_batch
from lakeloop.settings import TrainSettings
from lakeloop.spec import DatasetSpec
from tasks.data.dataset import split_holdout
from tasks.model.ensemble import single_member_plan
from tasks.model.model_logging import save_pyfunc
from tasks.model.train import train_xgb
from tasks.model.training_run import xgb_member
from tasks.serving import prediction_reference
from tasks.serving.inference import predict_batch
from tasks.serving.monitoring import output_drift

NOISE = 0.3
SPEC = DatasetSpec.from_yaml(Path(__file__).resolve().parents[1] / "examples" / "churn" / "spec.yaml")


@pytest.fixture(scope="module")
def champion(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    data = synth_batch(6000, seed=41, label_noise=NOISE).data
    train_rows, holdout = split_holdout(data, SPEC)
    result = train_xgb(train_rows, SPEC, TrainSettings())  # what retrain fits
    member = xgb_member(result)
    path = tmp_path_factory.mktemp("champion") / "model"
    save_pyfunc(path, [member], single_member_plan(member), SPEC, result.example)
    model = mlflow.pyfunc.load_model(str(path))
    oof = pl.DataFrame({"probability": result.oof_proba[:, result.class_names.index(SPEC.positive)]})
    return str(path), model, holdout, oof


def outputs(champion, batch: pl.DataFrame) -> pl.DataFrame:  # type: ignore[no-untyped-def]
    uri, model, _, _ = champion
    return predict_batch(batch, uri, id_column=SPEC.id_column, model=model).select("probability")


def drifted(recent: pl.DataFrame, reference: pl.DataFrame) -> bool:
    return any(o.drifted for o in output_drift(recent, reference, drift_pvalue=0.01) if o.column == "probability")


def test_stationary_batches_raise_no_prediction_drift_against_the_models_own_holdout(champion) -> None:  # type: ignore[no-untyped-def]
    uri, model, holdout, oof = champion
    reference = prediction_reference.holdout_outputs(holdout, uri, id_column=SPEC.id_column, model=model)
    assert reference.height == holdout.height >= 500
    stationary = [outputs(champion, synth_batch(5000, seed=500 + k, start_id=9_000_000 + k * 10_000,
                                                label_noise=NOISE).data) for k in range(4)]
    # today's comparison: out-of-fold outputs of the fold models vs the final model's -> false alarms
    assert sum(drifted(batch, oof) for batch in stationary) >= 3
    # like for like: the same model on rows it never trained on
    assert not any(drifted(batch, reference.select("probability")) for batch in stationary)
    shifted = outputs(champion, synth_batch(5000, seed=600, start_id=9_900_000, covariate_drift=1.0,
                                           label_noise=NOISE).data)
    assert drifted(shifted, reference.select("probability"))


def test_a_tiny_holdout_is_no_reference(champion) -> None:  # type: ignore[no-untyped-def]
    uri, model, holdout, _ = champion
    with pytest.raises(prediction_reference.ReferenceError, match="holdout rows"):
        prediction_reference.holdout_outputs(holdout.head(10), uri, id_column=SPEC.id_column, model=model)


def test_the_reference_round_trips_as_parquet(champion) -> None:  # type: ignore[no-untyped-def]
    uri, model, holdout, _ = champion
    reference = prediction_reference.holdout_outputs(holdout, uri, id_column=SPEC.id_column, model=model)
    assert prediction_reference.from_bytes(prediction_reference.to_bytes(reference)).equals(reference)
