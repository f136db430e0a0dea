"""`lakeloop lineage`: from a commit to the runs and models it caused, and from a model back to its commit."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from lakeloop.settings import Settings

_MODEL_REF = re.compile(r"^(?P<name>[^@]+)@(?P<version>\d+|[A-Za-z][\w-]*)$")


class FlowRunRef(BaseModel):
    id: str
    name: str
    flow: str
    state: str
    url: str


class CommitLineage(BaseModel):
    commit_id: str
    message: str
    metadata: dict[str, str]
    models: list[tuple[str, str, str]]  # (name, version, run_id)
    flow_runs: list[FlowRunRef]


class ModelLineage(BaseModel):
    name: str
    version: str
    run_id: str
    repository: str
    branch: str
    commit_id: str
    spec_hash: str
    commit_message: str | None = None


def commit_lineage(commit_id: str, settings: Settings) -> CommitLineage:
    from lakeloop.adapters.lakefs import Lake
    from lakeloop.adapters.mlflow_tracking import find_versions_for_commit

    lake = Lake(settings.lakefs)
    info = lake.commit_info(commit_id)
    models = [(str(n), str(v), str(r)) for n, v, r in find_versions_for_commit(info.id)]
    return CommitLineage(commit_id=info.id, message=info.message, metadata=info.metadata, models=models,
                         flow_runs=flow_runs_for_commit(info.id, settings))


def model_lineage(name: str, version: str, settings: Settings) -> ModelLineage:
    from mlflow import MlflowClient

    from lakeloop.adapters.lakefs import Lake
    from lakeloop.adapters.mlflow_tracking import version_lineage

    client = MlflowClient(settings.mlflow.tracking_uri)
    if not version.isdigit():
        version = str(client.get_model_version_by_alias(name, version).version)
    mv = client.get_model_version(name, version)
    lin = version_lineage(name, version)
    message = None
    try:
        message = Lake(settings.lakefs).commit_info(lin.commit_id).message
    except Exception:  # the lake may be unreachable; the MLflow side still answers
        message = None
    return ModelLineage(name=name, version=version, run_id=mv.run_id or "", repository=lin.repository,
                        branch=lin.branch, commit_id=lin.commit_id, spec_hash=lin.spec_hash,
                        commit_message=message)


def flow_runs_for_commit(commit_id: str, settings: Settings) -> list[FlowRunRef]:
    """Prefect flow runs whose parameters name this commit (on-commit, retrain, ...)."""
    import httpx

    api = settings.prefect.api_url.rstrip("/")
    try:
        r = httpx.post(f"{api}/flow_runs/filter", json={"limit": 200, "sort": "START_TIME_DESC"}, timeout=10)
        r.raise_for_status()
        flows = {f["id"]: f["name"] for f in httpx.post(f"{api}/flows/filter", json={}, timeout=10).json()}
    except httpx.HTTPError:
        return []
    ui = api.removesuffix("/api")
    out = []
    for run in r.json():
        params: dict[str, Any] = run.get("parameters") or {}
        if params.get("commit_id") == commit_id or params.get("ref") == commit_id:
            state = (run.get("state") or {}).get("type", "?")
            out.append(FlowRunRef(id=run["id"], name=run["name"], flow=flows.get(run["flow_id"], "?"),
                                  state=state, url=f"{ui}/runs/flow-run/{run['id']}"))
    return out


def print_lineage(target: str, settings: Settings, console: Console) -> None:
    m = _MODEL_REF.match(target)
    if m:
        lin = model_lineage(m["name"], m["version"], settings)
        table = Table(title=f"{lin.name} v{lin.version}", show_header=False)
        for k, v in lin.model_dump().items():
            table.add_row(k, str(v))
        console.print(table)
        return
    cl = commit_lineage(target, settings)
    console.print(f"[bold]commit {cl.commit_id}[/]  {cl.message}")
    models = Table("model", "version", "MLflow run", title="models trained on this commit")
    for name, version, run_id in cl.models:
        models.add_row(name, version, run_id)
    console.print(models)
    runs = Table("flow", "run", "state", "url", title="Prefect runs for this commit")
    for fr in cl.flow_runs:
        runs.add_row(fr.flow, fr.name, fr.state, fr.url)
    console.print(runs)
