"""Waiting for the demo's flow runs through Prefect's REST API, and reading their results."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from rich.console import Console

RUN_TIMEOUT = 600.0
FINAL_STATES = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
QUIET_LINE_S = 30.0  # without a terminal, a line this often while nothing changes


class _Progress:
    """What the wait looks like: a live status line on a terminal; elsewhere (CI, logs) one line per state
    change and one every QUIET_LINE_S seconds, each naming the run, its state and the time waited."""

    def __init__(self, console: Console | None, flow_name: str) -> None:
        self.console, self.flow_name = console, flow_name
        self.start = time.monotonic()
        self.last: tuple[str, str] | None = None
        self.last_line = self.start
        self.status: Any = None

    def text(self, run: dict[str, Any] | None) -> str:
        waited = f"{time.monotonic() - self.start:.0f}s"
        if run is None:
            return f"waiting for the {self.flow_name} run to be created ({waited})"
        return f"{self.flow_name} run {run['name']}: {state_name(run)} ({waited})"

    def update(self, run: dict[str, Any] | None) -> None:
        if self.console is None:
            return
        if self.status is not None:
            self.status.update(self.text(run))
            return
        key = (run["name"], state_name(run)) if run else ("", "")
        now = time.monotonic()
        if key != self.last or now - self.last_line >= QUIET_LINE_S:
            self.console.print(f"  {self.text(run)}", highlight=False)
            self.last, self.last_line = key, now


@contextmanager
def _progress(console: Console | None, flow_name: str) -> Iterator[_Progress]:
    p = _Progress(console, flow_name)
    if console is not None and console.is_terminal:
        with console.status(p.text(None)) as status:
            p.status = status
            yield p
    else:
        yield p


def state_name(run: dict[str, Any]) -> str:
    state = run.get("state") or {}
    return str(state.get("name") or state.get("type") or "?")


def wait_for_run(api_url: str, flow_name: str, match: dict[str, Any], timeout: float = RUN_TIMEOUT,
                 created_after: datetime | None = None, console: Console | None = None) -> dict[str, Any]:
    """Poll Prefect until a run of `flow_name` with these parameters (created after `created_after`) finishes;
    with a `console`, show which run it is, its state and the time waited."""
    import httpx

    deadline = time.monotonic() + timeout
    api = api_url.rstrip("/")
    with _progress(console, flow_name) as progress:
        while time.monotonic() < deadline:
            try:
                flows = httpx.post(f"{api}/flows/filter", json={"flows": {"name": {"any_": [flow_name]}}},
                                   timeout=30).json()
                runs = httpx.post(f"{api}/flow_runs/filter", json={
                    "flows": {"id": {"any_": [flows[0]["id"]]}}, "sort": "START_TIME_DESC", "limit": 50,
                }, timeout=30).json() if flows else []
            except httpx.HTTPError:  # a busy server answers late; keep waiting (and showing the last state)
                time.sleep(1.0)
                continue
            mine = [run for run in runs
                    if (created_after is None or datetime.fromisoformat(run["created"]) > created_after)
                    and all((run.get("parameters") or {}).get(k) == v for k, v in match.items())]
            done = [run for run in mine if (run.get("state") or {}).get("type") in FINAL_STATES]
            progress.update(done[0] if done else mine[0] if mine else None)
            if done:
                return dict(done[0])
            time.sleep(1.0)
    raise TimeoutError(f"no finished {flow_name} run with {match} after {timeout:.0f}s")


def run_result(run: dict[str, Any]) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import FlowRun

    with get_client(sync_client=True) as client:
        fr: FlowRun = client.read_flow_run(run["id"])
    assert fr.state is not None
    return fr.state.result(raise_on_failure=False, _sync=True)  # type: ignore[call-overload]  # value even in a loop


def failure_line(flow_name: str, run: dict[str, Any], result: Any) -> str | None:
    """One line for a run that did not complete: its state and why (the exception, else Prefect's message);
    None for a completed run. No traceback: the run's logs in the Prefect UI have it."""
    state = run.get("state") or {}
    if state.get("type") == "COMPLETED":
        return None
    if isinstance(result, BaseException):
        reason = f"{type(result).__name__}: {result}"
    else:
        reason = str(state.get("message") or "no reason given")
    first = reason.strip().splitlines()[0] if reason.strip() else "no reason given"
    return f"{flow_name} run {run['name']}: {state_name(run)}: {first}"
