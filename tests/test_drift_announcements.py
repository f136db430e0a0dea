"""Drift found by on-commit is announced without starting a second retrain; the monitor's drift retrains."""

from __future__ import annotations

import yaml
from prefect.events.schemas.events import Resource, ResourceSpecification

from infra.notify import NOTIFICATIONS
from lakeloop import events
from lakeloop.settings import shipped


def _retrain_on_drift_match() -> ResourceSpecification:
    deployments = yaml.safe_load(shipped("prefect.yaml").read_text())["deployments"]
    (retrain,) = [d for d in deployments if d["name"] == "retrain"]
    (trigger,) = [t for t in retrain["triggers"] if events.DRIFT_DETECTED in t["expect"]]
    return ResourceSpecification(trigger["match"])


def test_only_requested_drift_starts_the_retrain_deployment() -> None:
    match = _retrain_on_drift_match()
    assert match.matches(Resource(events.drift_resource("churn", retrain="requested")))
    assert not match.matches(Resource(events.drift_resource("churn", retrain="inline")))


def test_every_drift_is_notified() -> None:
    (drift,) = [n for n in NOTIFICATIONS if events.DRIFT_DETECTED in n.expect]
    match = ResourceSpecification({"prefect.resource.id": drift.match})
    for retrain in ("requested", "inline"):
        assert match.matches(Resource(events.drift_resource("churn", retrain=retrain)))
