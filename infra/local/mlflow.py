"""Start a local MLflow tracking server (production points MLFLOW_TRACKING_URI at a shared one).

SQLite backend and proxied artifacts (`--serve-artifacts`): clients in other processes
(Prefect workers, the CLI, tests) log artifacts over HTTP to the server, so nothing
depends on sharing a filesystem path with it. Sized for a small machine: one uvicorn
worker, and the server-side job runner (huey consumer + periodic tasks, used for
GenAI features lakeloop does not need) is switched off.
"""

from __future__ import annotations

import sys
from pathlib import Path

from infra.procs import Service, log_file, start_service

TELEMETRY_OFF = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
HEALTH_PATH = "/health"


def mlflow_env() -> dict[str, str]:
    """Environment for the server process (and for any MLflow client lakeloop starts)."""
    return {
        **TELEMETRY_OFF,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_SERVER_JOB_ENABLE_PERIODIC_TASKS": "false",
    }


def start_mlflow(home: Path, port: int, host: str = "127.0.0.1", timeout: float = 300.0) -> Service:
    """Run `mlflow server` with state under `home/mlflow/`; blocks until `/health` answers."""
    root = Path(home) / "mlflow"
    artifacts = root / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "mlflow", "server",
        "--host", host,
        "--port", str(port),
        "--backend-store-uri", f"sqlite:///{(root / 'mlflow.db').resolve()}",
        "--serve-artifacts",
        "--artifacts-destination", str(artifacts.resolve()),
        "--workers", "1",
    ]
    return start_service(
        "mlflow",
        cmd,
        health_url=f"http://{host}:{port}{HEALTH_PATH}",
        url=f"http://{host}:{port}",
        log_path=log_file(home, "mlflow"),
        env=mlflow_env(),
        timeout=timeout,
    )
