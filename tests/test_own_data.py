"""Your own data, end to end: `lakeloop demo --data X.csv --spec X.yaml` on a dataset that is not churn.

The dataset (generated here) has other column names, blanks in a nullable numeric column, a few truly
invalid rows and no time column. The spec alone must reach every process of the stack (worker, flow
runs, bridge), and the repository and registered model are named after it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from rich.console import Console

from infra.demo.runs import failure_line, wait_for_run
from infra.procs import free_port
from infra.stack import service_env
from lakeloop.settings import ROOT, Settings

ROWS = 600
BAD_AGES = 3  # rows whose age is out of range: the only rows the demo may quarantine
BLANKS = 40


def _loans_csv(path: Path, seed: int = 7) -> Path:
    """Loan applications: income (blank when unknown), age, region, car; the label depends on all of them."""
    rng = np.random.default_rng(seed)
    income = rng.normal(50, 15, ROWS).clip(5, 200)
    age = rng.integers(18, 80, ROWS)
    region = rng.choice(["north", "south", "east", "west"], ROWS)
    car = rng.choice(["Y", "N"], ROWS)
    logit = -0.08 * (income - 50) + 0.05 * (age - 45) + 1.2 * (region == "south") - 0.8 * (car == "Y")
    label = np.where(rng.random(ROWS) < 1 / (1 + np.exp(-logit)), "bad", "good")
    income_text = [f"{v:.2f}" for v in income]
    for i in rng.choice(ROWS, BLANKS, replace=False):
        income_text[i] = " "
    age_text = [str(a) for a in age]
    for i in rng.choice(ROWS, BAD_AGES, replace=False):
        age_text[i] = "200"
    pl.DataFrame({"applicant": [f"A{i:05d}" for i in range(ROWS)], "income_k": income_text, "age_years": age_text,
                  "region": region, "owns_car": car, "outcome": label}).write_csv(path)
    return path


def _loans_spec(path: Path, name: str) -> Path:
    path.write_text(f"""\
name: {name}
description: Will a loan applicant default?
id_column: applicant
label_column: outcome
classes: ["good", "bad"]
positive_class: "bad"
file_format: csv
features:
  - {{name: income_k, type: numeric, min: 0, max: 500, nullable: true, null_tokens: [""]}}
  - {{name: age_years, type: integer, min: 18, max: 120}}
  - {{name: region, type: categorical, categories: [north, south, east, west]}}
  - {{name: owns_car, type: boolean}}
""")
    return path


# ---- the spec reaches every process, and names the repository and model --------------------------------
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in list(os.environ):
        if k.startswith(("LAKEFS_", "MLFLOW_", "LAKELOOP_")):
            monkeypatch.delenv(k)


def test_names_come_from_the_spec_unless_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _clean_env(monkeypatch)
    churn = Settings()
    assert (churn.lakefs.repository, churn.lakefs.storage_namespace, churn.mlflow.model_name,
            churn.mlflow.experiment) == ("churn", "local://lakeloop/churn", "churn", "lakeloop-churn")
    spec = _loans_spec(tmp_path / "loans.yaml", "Loan Defaults")
    own = churn.for_spec(spec)
    assert (own.lakefs.repository, own.lakefs.storage_namespace, own.mlflow.model_name,
            own.mlflow.experiment) == ("loan-defaults", "local://lakeloop/loan-defaults", "loan-defaults",
                                       "lakeloop-loan-defaults")
    assert churn.lakefs.repository == "churn" and churn.spec_path != spec  # a copy, the original unchanged
    monkeypatch.setenv("LAKELOOP_SPEC_PATH", str(spec))
    assert Settings().mlflow.model_name == "loan-defaults"  # the spec path alone is enough
    monkeypatch.setenv("LAKEFS_REPOSITORY", "mine")
    monkeypatch.setenv("MLFLOW_MODEL_NAME", "my-model")
    explicit = Settings()
    assert (explicit.lakefs.repository, explicit.lakefs.storage_namespace, explicit.mlflow.model_name,
            explicit.mlflow.experiment) == ("mine", "local://lakeloop/mine", "my-model", "lakeloop-loan-defaults")
    assert Settings().for_spec(ROOT / "examples" / "churn" / "spec.yaml").lakefs.repository == "mine"


def test_every_process_of_the_stack_gets_the_spec_and_its_names(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker (and so every flow run) inherits `service_env`: built from it alone, settings are the demo's."""
    _clean_env(monkeypatch)
    demo = Settings().for_spec(_loans_spec(tmp_path / "loans.yaml", "loans"))
    for k, v in service_env(demo).items():
        monkeypatch.setenv(k, v)
    child = Settings()
    assert child.spec_path == demo.spec_path
    assert child.lakefs.model_dump() == demo.lakefs.model_dump()
    assert child.mlflow.model_dump() == demo.mlflow.model_dump()


# ---- waiting for a run: progress, and a failure in one line ---------------------------------------------
def _run(state: str, name: str = "brave-otter", message: str = "", **params: Any) -> dict[str, Any]:
    return {"id": "r1", "name": name, "created": "2026-01-01T00:00:00+00:00", "parameters": params,
            "state": {"type": state, "name": state.title(), "message": message}}


def test_a_failed_run_is_one_line_with_its_reason() -> None:
    from tasks.data.validate import SchemaError

    err = SchemaError("lakefs://r/abc/data/1.csv: missing required column(s) 'customer_id'", source="x")
    assert failure_line("on-commit", _run("FAILED"), err) == (
        "on-commit run brave-otter: Failed: SchemaError: lakefs://r/abc/data/1.csv: missing required column(s) "
        "'customer_id'")
    crashed = _run("CRASHED", message="Flow run infrastructure exited with non-zero status code 1.\nmore")
    assert failure_line("on-commit", crashed, None) == (
        "on-commit run brave-otter: Crashed: Flow run infrastructure exited with non-zero status code 1.")
    assert failure_line("on-commit", _run("COMPLETED"), object()) is None


def test_waiting_names_the_run_its_state_and_the_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx

    states = iter(["PENDING", "PENDING", "RUNNING", "COMPLETED"])

    def post(url: str, json: dict[str, Any], timeout: float) -> httpx.Response:
        if url.endswith("/flows/filter"):
            return httpx.Response(200, json=[{"id": "f1"}])
        return httpx.Response(200, json=[_run(next(states), commit_id="c1"), _run("COMPLETED", name="other")])

    monkeypatch.setattr(httpx, "post", post)
    monkeypatch.setattr("infra.demo.runs.time.sleep", lambda s: None)
    console = Console(record=True, width=200, force_terminal=False)
    run = wait_for_run("http://prefect/api", "on-commit", {"commit_id": "c1"}, console=console)
    assert run["name"] == "brave-otter" and run["state"]["type"] == "COMPLETED"
    lines = console.export_text().splitlines()
    assert [line.rsplit(" (", 1)[0].strip() for line in lines] == [
        "on-commit run brave-otter: Pending", "on-commit run brave-otter: Running",
        "on-commit run brave-otter: Completed"]  # one line per state change, not one per poll
    assert all(line.endswith("s)") for line in lines)


# ---- the whole demo on the loans dataset ------------------------------------------------------------------
def _cli(*args: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "infra.cli", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.integration
def test_demo_runs_your_own_dataset_to_a_model_version(tmp_path: Path, mlflow_server: str) -> None:
    from mlflow import MlflowClient

    from lakeloop.adapters.lakefs import Lake
    from lakeloop.settings import LakeFSSettings

    name = f"loans-{uuid.uuid4().hex[:6]}"
    data, spec = _loans_csv(tmp_path / "loans.csv"), _loans_spec(tmp_path / "loans.yaml", name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAKEFS_", "MLFLOW_", "LAKELOOP_", "PREFECT_",
                                                                      "LABEL_STUDIO_"))}
    env.update({
        "LAKELOOP_HOME": str(tmp_path / "home"),
        "LAKEFS_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "MLFLOW_TRACKING_URI": mlflow_server,  # the session's server: MLflow is the slowest to start
        "LAKELOOP_PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api",
        "LAKELOOP_PREFECT_WORK_POOL": f"pool-{name}",
        "LAKELOOP_BRIDGE_URL": f"http://127.0.0.1:{free_port()}",
        "LABEL_STUDIO_URL": f"http://127.0.0.1:{free_port()}",
        "LAKELOOP_TRAIN_FOLDS": "3",
        "LAKELOOP_TRAIN_N_ESTIMATORS": "60",
    })
    try:
        demo = _cli("demo", "--data", str(data), "--spec", str(spec), "--batches", "2", "--no-ensemble",
                    env=env, timeout=800)
        out = demo.stdout + demo.stderr
        assert demo.returncode == 0, out[-4000:]
        assert "Traceback" not in out and "Warning" not in out, out[-4000:]
        assert "Label Studio stays off" in out  # no true labels to simulate annotators with
        assert "label-studio" not in json.loads((tmp_path / "home" / "stack.json").read_text())
        assert "on-commit run" in out and "s)" in out  # progress lines name the run and the time waited

        # the model is named after the spec, trained on the commit of the first part
        versions = MlflowClient(mlflow_server).search_model_versions(f"name = '{name}'")
        assert [v.version for v in versions] == ["1"], out[-4000:]
        # only the out-of-range ages were quarantined: the blanks are nulls, as the spec says
        defaults = LakeFSSettings.model_fields
        lake = Lake(LakeFSSettings(endpoint=env["LAKEFS_ENDPOINT"], repository=name,
                                   access_key_id=defaults["access_key_id"].default,
                                   secret_access_key=defaults["secret_access_key"].default))
        commits = [c.id for c in lake.log("main", limit=10) if c.metadata.get("lakeloop.kind") == "data"]
        assert len(commits) == 2
        quarantined = pl.concat([lake.read_frame(b, o.path) for b in lake.branches() if b.startswith("quarantine-")
                                 for o in lake.list_objects(b, prefix="quarantine/")], how="vertical_relaxed")
        assert quarantined.height == BAD_AGES, quarantined
        assert quarantined.get_column("_reasons").str.contains("age_years=200 above max 120").all()

        lineage = _cli("lineage", f"{name}@1", env=env, timeout=120)
        assert lineage.returncode == 0, lineage.stdout + lineage.stderr
        assert "Warning" not in lineage.stdout + lineage.stderr, lineage.stdout + lineage.stderr
        assert commits[-1] in lineage.stdout  # v1 was trained on the first part
    finally:
        _cli("down", env=env, timeout=120)
