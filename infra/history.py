"""`lakeloop history`: what the loop did with each of a branch's last commits.

Joined from where each part is recorded: lakeFS (the commit and its metadata), the ledger
(did the bridge or the reconciler hand it to Prefect), the commit's `on-commit` run and its
result (the decision and the drifted columns) and MLflow (the versions trained on it, through
`lakeloop lineage`'s lookup, and the gate verdict each version carries as tags).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import httpx
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from lakeloop.settings import Settings


class ModelOutcome(BaseModel):
    name: str
    version: str
    gate: str  # passed | refused | - (no gate tags: e.g. still training)
    champion_once: bool = False


class CommitHistory(BaseModel):
    commit_id: str
    created: datetime
    message: str
    kind: str  # lakeloop.kind of the commit's metadata (data, actions, label-corrections, ...) or "-"
    relayed: str  # the ledger's state for the commit: done | skipped | claimed | - (not seen)
    run_state: str | None = None  # the on-commit run's final state, None when no run was found
    decision: str | None = None  # Decision.reason
    reasons: list[str] = []
    drifted: list[str] = []
    models: list[ModelOutcome] = []


def on_commit_runs(api_url: str, limit: int = 200, timeout: float = 10.0) -> dict[str, dict[str, Any]]:
    """commit id -> its latest on-commit flow run (raw REST with complete bodies, as infra.deploy)."""
    api = api_url.rstrip("/")
    try:
        flows = httpx.post(f"{api}/flows/filter", json={"flows": {"name": {"any_": ["on-commit"]}}, "limit": 1,
                                                         "offset": 0}, timeout=timeout).raise_for_status().json()
        if not flows:
            return {}
        runs = httpx.post(f"{api}/flow_runs/filter", json={
            "flows": {"id": {"any_": [flows[0]["id"]]}}, "sort": "EXPECTED_START_TIME_DESC", "limit": limit,
            "offset": 0}, timeout=timeout).raise_for_status().json()
    except httpx.HTTPError:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for run in runs:  # newest first: keep the first run seen per commit
        commit = (run.get("parameters") or {}).get("commit_id")
        if commit and commit not in out:
            out[str(commit)] = run
    return out


def run_outcome(api_url: str, run_id: str) -> Any:
    """The persisted result of a finished run (a CommitOutcome), or None when it cannot be read."""
    from prefect.client.orchestration import SyncPrefectClient

    try:
        with SyncPrefectClient(api_url) as client:
            state = client.read_flow_run(UUID(run_id)).state
            # _sync: a caller inside a running event loop (a browser driver, a notebook) still gets the value
            return state.result(raise_on_failure=False, _sync=True) if state is not None else None  # type: ignore[call-overload]
    except Exception:  # result storage gone or unreadable: the table shows the run's state without it
        return None


def model_outcomes(commit_id: str, settings: Settings) -> list[ModelOutcome]:
    from mlflow import MlflowClient

    from lakeloop.adapters.mlflow_registry import PROMOTED_TAG
    from lakeloop.adapters.mlflow_tracking import find_versions_for_commit

    client = MlflowClient(settings.mlflow.tracking_uri)
    out = []
    for name, version, _ in find_versions_for_commit(commit_id, settings.mlflow):
        tags = client.get_model_version(name, version).tags or {}
        gate = {"true": "passed", "false": "refused"}.get(tags.get("gate.passed", ""), "-")
        out.append(ModelOutcome(name=name, version=version, gate=gate, champion_once=PROMOTED_TAG in tags))
    return out


def commit_history(settings: Settings, branch: str | None = None, limit: int = 10) -> list[CommitHistory]:
    from lakeloop.adapters.lakefs import Lake
    from lakeloop.outcomes import CommitOutcome
    from lakeloop.state import Ledger, commit_key

    lake = Lake(settings.lakefs)
    repo = settings.lakefs.repository
    ledger = Ledger.at(settings.state_dir)
    runs = on_commit_runs(settings.prefect.api_url)
    rows = []
    for c in lake.log(branch or settings.lakefs.default_branch, limit=limit):
        if not c.parents:  # the repository's empty first commit
            continue
        delivery = ledger.get(commit_key(repo, c.id))
        row = CommitHistory(commit_id=c.id, created=c.created, message=c.message,
                            kind=c.metadata.get("lakeloop.kind", "-"), relayed=delivery.state if delivery else "-",
                            models=model_outcomes(c.id, settings))
        run = runs.get(c.id)
        if run is not None:
            row.run_state = (run.get("state") or {}).get("type", "?")
            outcome = run_outcome(settings.prefect.api_url, run["id"]) if row.run_state == "COMPLETED" else None
            if isinstance(outcome, CommitOutcome):
                row.decision, row.reasons = outcome.decision.reason, outcome.decision.reasons
                row.drifted = outcome.drifted
        rows.append(row)
    return rows


def history_table(rows: list[CommitHistory], title: str) -> Table:
    table = Table("commit", "when (UTC)", "kind", "relayed", "on-commit", "decision", "drifted", "model", "gate",
                  "message", title=title)
    for r in rows:
        models = ", ".join(f"v{m.version}" + (" promoted" if m.champion_once else "") for m in r.models) or "-"
        gates = ", ".join(m.gate for m in r.models) or "-"
        drifted = ", ".join(r.drifted[:3]) + (f" +{len(r.drifted) - 3}" if len(r.drifted) > 3 else "")
        table.add_row(r.commit_id[:12], r.created.strftime("%Y-%m-%d %H:%M"), r.kind, r.relayed,
                      r.run_state or "-", r.decision or "-", drifted or "-", models, gates, r.message[:40])
    return table


def print_history(settings: Settings, console: Console, branch: str | None, limit: int) -> None:
    b = branch or settings.lakefs.default_branch
    console.print(history_table(commit_history(settings, b, limit),
                                f"last {limit} commits of lakefs://{settings.lakefs.repository}/{b}"))
