"""Without Label Studio in the deployment, a registered model's review round is skipped with its reason
(issue 17: `demo --data` started no Label Studio, and request-relabel then failed after every model)."""

from __future__ import annotations

import pytest

from lakeloop.settings import Settings, get_settings


def test_a_review_round_without_label_studio_is_skipped_not_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.request_relabel import request_relabel

    monkeypatch.setenv("LAKELOOP_LABELING_ENABLED", "false")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing answers: the flow must not ask
    get_settings.cache_clear()
    try:
        out = request_relabel.fn(repository="churn", commit_id="c" * 64, run_id="r" * 32)
    finally:
        get_settings.cache_clear()
    assert out.skipped and "LAKELOOP_LABELING_ENABLED" in out.skipped and out.created == 0


def test_the_stack_without_label_studio_tells_its_flows(monkeypatch: pytest.MonkeyPatch) -> None:
    from infra.stack import service_env

    assert service_env(Settings())["LAKELOOP_LABELING_ENABLED"] == "true"
    off = Settings().model_copy(update={"labeling": Settings().labeling.model_copy(update={"enabled": False})})
    assert service_env(off)["LAKELOOP_LABELING_ENABLED"] == "false"
