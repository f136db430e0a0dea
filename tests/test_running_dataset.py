"""A command typed in a new shell answers about the dataset the running stack serves (issue 17: `lakeloop
lineage` after `demo --spec` fell back to the worked example's names)."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra import running_dataset
from lakeloop.settings import ROOT, get_settings


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LAKELOOP_HOME", str(tmp_path))
    monkeypatch.delenv("LAKELOOP_SPEC_PATH", raising=False)
    for name in ("MLFLOW_MODEL_NAME", "MLFLOW_EXPERIMENT", "LAKEFS_REPOSITORY"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def _spec(tmp_path: Path, name: str) -> Path:
    text = (ROOT / "examples/churn/spec.yaml").read_text().replace("name: churn", f"name: {name}", 1)
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def test_commands_follow_the_running_stacks_dataset(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert running_dataset.command_settings().mlflow.model_name == "churn"  # no stack: the worked example
    running_dataset.remember(get_settings().for_spec(_spec(home, "telco")))
    s = running_dataset.command_settings()
    assert (s.mlflow.model_name, s.lakefs.repository, s.mlflow.experiment) == ("telco", "telco", "lakeloop-telco")

    monkeypatch.setenv("LAKELOOP_SPEC_PATH", str(_spec(home, "bank")))  # the environment always wins
    get_settings.cache_clear()
    assert running_dataset.command_settings().mlflow.model_name == "bank"

    monkeypatch.delenv("LAKELOOP_SPEC_PATH")
    get_settings.cache_clear()
    running_dataset.forget(get_settings())  # `lakeloop down`
    assert running_dataset.command_settings().mlflow.model_name == "churn"


def test_a_spec_that_is_gone_falls_back(home: Path) -> None:
    spec = _spec(home, "telco")
    running_dataset.remember(get_settings().for_spec(spec))
    spec.unlink()
    assert running_dataset.command_settings().mlflow.model_name == "churn"
