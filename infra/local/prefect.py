"""Start a local Prefect server and a process worker, tuned for event-driven latency.

Prefect OSS evaluates reactive deployment triggers as events arrive; what adds
latency afterwards is the worker's polling for scheduled runs (default 10 s),
so the worker polls every second. Proactive triggers ("expect none within")
are evaluated every `PREFECT_SERVER_EVENTS_PROACTIVE_GRANULARITY` seconds.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from infra.procs import Service, free_port, log_file, start_service
from lakeloop.settings import shipped

PROJECT_ROOT = Path(__file__).resolve().parents[2]

HEALTH_PATH = "/health"  # below the API URL
TELEMETRY_OFF = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
}
# Telemetry, promotional content and prompts off everywhere a Prefect process starts.
QUIET_ENV = {
    **TELEMETRY_OFF,
    "PREFECT_CLI_PROMPT": "false",
    "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",
    "DO_NOT_TRACK": "1",
}


def prefect_client_env(api_url: str, home: Path) -> dict[str, str]:
    """Environment for any Prefect client process (CLI, worker, bench) of this stack."""
    return {
        **QUIET_ENV,
        "PREFECT_API_URL": api_url,
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_PROFILES_PATH": str(home / "prefect" / "profiles.toml"),
    }


def start_prefect_server(home: Path, port: int, *, ui: bool = True, timeout: float = 300.0,
                         extra_env: dict[str, str] | None = None) -> Service:
    """`prefect server start` on loopback with its SQLite database under `home`.

    The first start migrates a new database: minutes on a busy 2-core machine, hence the long `timeout` (a
    server that dies fails at once: the wait watches the process)."""
    api_url = f"http://127.0.0.1:{port}/api"
    data = home / "prefect"
    data.mkdir(parents=True, exist_ok=True)
    env = {
        **prefect_client_env(api_url, home),
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{data / 'prefect.db'}",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_UI_ENABLED": "true" if ui else "false",
        "PREFECT_SERVER_EVENTS_PROACTIVE_GRANULARITY": "PT1S",
        "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "true",
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "10",
        **(extra_env or {}),
    }
    return start_service(
        "prefect-server",
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        health_url=f"{api_url}{HEALTH_PATH}",
        url=api_url,
        log_path=log_file(home, "prefect-server"),
        env=env,
        cwd=PROJECT_ROOT,
        timeout=timeout,
    )


def ensure_work_pool(api_url: str, name: str) -> None:
    """Create the process work pool `name` with Prefect's default job template unless it exists."""
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    with SyncPrefectClient(api_url) as client:
        try:
            client.read_work_pool(name)
            return
        except ObjectNotFound:
            pass
        client.create_work_pool(
            WorkPoolCreate(
                name=name,
                type="process",
                base_job_template=ProcessWorker.get_default_base_job_template(),
            )
        )


def start_worker(api_url: str, pool: str, home: Path, *, limit: int | None = None,
                 timeout: float = 180.0) -> Service:
    """`prefect worker start --type process`; healthy once its healthcheck server answers."""
    hport = free_port()
    env = {
        **prefect_client_env(api_url, home),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "5",
        "PREFECT_WORKER_HEARTBEAT_SECONDS": "10",
        "PREFECT_WORKER_WEBSERVER_HOST": "127.0.0.1",
        "PREFECT_WORKER_WEBSERVER_PORT": str(hport),
    }
    cmd = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", "process",
           "--with-healthcheck"]
    if limit is not None:
        cmd += ["--limit", str(limit)]
    name = f"prefect-worker-{pool}"
    return start_service(
        name,
        cmd,
        health_url=f"http://127.0.0.1:{hport}/health",
        url=api_url,
        log_path=log_file(home, name),
        env=env,
        cwd=PROJECT_ROOT,
        timeout=timeout,
    )


# Server loops that a check of the event wiring never relies on: they only add SQLite writers (the
# scheduler would fill ~220 future runs from the hourly/daily schedules; late-runs and foreman rewrite
# states). Triggers, events and the API stay on.
QUIET_SERVICES = {
    "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_FOREMAN_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_ENABLED": "false",
}
STUB_FLOWS = "examples/stub_flows.py"


def stub_prefect_file(dest: Path, source: Path | None = None, stub: str = STUB_FLOWS) -> Path:
    """A copy of prefect.yaml (default the shipped one) whose entrypoints point at same-named trivial flows
    (`stub`), so the triggers, schedules and parameters that ship can be exercised without running the pipelines."""
    source = source or shipped("prefect.yaml")
    text = re.sub(r"entrypoint:\s*flows/\w+\.py:(\w+)", rf"entrypoint: {stub}:\1", source.read_text())
    dest.write_text(text)
    return dest
