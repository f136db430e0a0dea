"""Start the local lakeFS-compatible server (production points LAKEFS_ENDPOINT at a real lakeFS)."""

from __future__ import annotations

import sys
from pathlib import Path

from infra.bridge.lakefs_actions import DEFAULT_TOKEN_ENV
from infra.procs import Service, log_file, start_service

HEALTH_PATH = "/api/v1/healthcheck"


def start_lakefs(home: Path, port: int, access_key_id: str, secret_access_key: str, *,
                 hook_token: str | None = None, host: str = "127.0.0.1",
                 extra_env: dict[str, str] | None = None) -> Service:
    """State under `home/lakefs/`. `hook_token` is what the actions file's `{{ ENV.LAKEFSACTION_LAKELOOP_TOKEN }}`
    header sends to the bridge; `extra_env` adds to the server's environment (other `LAKEFSACTION_*` values)."""
    data_dir = home / "lakefs"
    return start_service(
        "lakefs",
        [sys.executable, "-m", "infra.lakefs_server", "--host", host, "--port", str(port),
         "--data-dir", str(data_dir)],
        health_url=f"http://{host}:{port}{HEALTH_PATH}",
        url=f"http://{host}:{port}",
        log_path=log_file(home, "lakefs"),
        env={"LAKEFS_ACCESS_KEY_ID": access_key_id, "LAKEFS_SECRET_ACCESS_KEY": secret_access_key,
             **({DEFAULT_TOKEN_ENV: hook_token} if hook_token else {}), **(extra_env or {})},
        cwd=Path(__file__).resolve().parents[2],
        timeout=30,
        ok_status=(200, 204),
    )
