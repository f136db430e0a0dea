"""The retrain decision, on real validation results (no servers)."""

from __future__ import annotations

from pathlib import Path

from infra.demo.synth import synth_batch
from lakeloop.adapters.lakefs import ObjectRef
from lakeloop.spec import DatasetSpec
from tasks.data.dataset import CommitBatch, ObjectCheck
from tasks.data.drift import DriftReport
from tasks.data.validate import validate
from tasks.model.decide import decide

SPEC = DatasetSpec.from_yaml(Path(__file__).resolve().parents[1] / "examples" / "churn" / "spec.yaml")


def _batch(rows: int = 200, labels_changed: list[str] | None = None) -> CommitBatch:
    checks = []
    if rows:
        result = validate(synth_batch(rows, seed=1).data, SPEC, source="t")
        checks = [ObjectCheck(obj=ObjectRef(path="data/a.parquet", checksum="c", size=1), result=result)]
    return CommitBatch(commit_id="c" * 64, parent_id=None, checks=checks, labels_changed=labels_changed or [])


def _drift(decision: bool) -> DriftReport:
    return DriftReport(columns=[], drifted=["tenure_months"] if decision else [], decision=decision,
                       reasons=["tenure_months drifted"] if decision else [])


def test_first_data_trains_then_only_drift_or_labels_retrain() -> None:
    assert decide(_batch(), None, has_model=False).reason == "first-model"
    assert decide(_batch(), _drift(True), has_model=True).reason == "drift"
    no = decide(_batch(), _drift(False), has_model=True)
    assert not no.retrain and no.reason == "no-drift"
    labels = decide(_batch(0, ["labels/corrections/r1.parquet"]), None, has_model=True)
    assert labels.retrain and labels.reason == "labels-changed"
    assert decide(_batch(0), None, has_model=True).reason == "no-new-data"


def test_a_commit_is_never_trained_twice() -> None:
    again = decide(_batch(), _drift(True), has_model=True, trained_versions=["2"])
    assert not again.retrain and again.reason == "already-trained" and "2" in again.reasons[0]
