"""Waiting for the demo's flow runs through Prefect's REST API, and reading their results."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

RUN_TIMEOUT = 600.0


def wait_for_run(api_url: str, flow_name: str, match: dict[str, Any], timeout: float = RUN_TIMEOUT,
                 created_after: datetime | None = None) -> dict[str, Any]:
    """Poll Prefect until a run of `flow_name` with these parameters (created after `created_after`) finishes."""
    import httpx

    deadline = time.monotonic() + timeout
    api = api_url.rstrip("/")
    while time.monotonic() < deadline:
        try:
            flows = httpx.post(f"{api}/flows/filter", json={"flows": {"name": {"any_": [flow_name]}}},
                               timeout=30).json()
            runs = httpx.post(f"{api}/flow_runs/filter", json={
                "flows": {"id": {"any_": [flows[0]["id"]]}}, "sort": "START_TIME_DESC", "limit": 50,
            }, timeout=30).json() if flows else []
        except httpx.HTTPError:  # a busy server answers late; keep waiting
            runs = []
        if runs:
            for run in runs:
                params = run.get("parameters") or {}
                if created_after is not None and datetime.fromisoformat(run["created"]) <= created_after:
                    continue
                if all(params.get(k) == v for k, v in match.items()):
                    state = (run.get("state") or {}).get("type")
                    if state in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                        return dict(run)
        time.sleep(1.0)
    raise TimeoutError(f"no finished {flow_name} run with {match} after {timeout:.0f}s")


def run_result(run: dict[str, Any]) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import FlowRun

    with get_client(sync_client=True) as client:
        fr: FlowRun = client.read_flow_run(run["id"])
    assert fr.state is not None
    return fr.state.result(raise_on_failure=False)
