"""Register lakeloop's deployments (and their triggers) from prefect.yaml.

`prefect.yaml` stays the single source of truth; this runs Prefect's own
`prefect --no-prompt deploy --all` against it, so what `lakeloop up` deploys is
exactly what a user running the Prefect CLI would get.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from lakeloop.services.prefect import QUIET_ENV


class DeployError(RuntimeError):
    pass


@dataclass(frozen=True)
class DeployResult:
    deployments: list[str]
    output: str


def deploy_all(
    api_url: str,
    pool: str,
    project_root: Path,
    prefect_file: Path | None = None,
    timeout: float = 600.0,
    home: Path | None = None,
) -> DeployResult:
    """Deploy every deployment in `prefect_file` (default `<project_root>/prefect.yaml`) to `pool`."""
    import os

    from prefect.client.orchestration import SyncPrefectClient

    project_root = Path(project_root).resolve()
    pfile = Path(prefect_file).resolve() if prefect_file else project_root / "prefect.yaml"
    if not pfile.exists():
        raise DeployError(f"{pfile}: no such prefect.yaml")
    env = {
        **os.environ,
        **QUIET_ENV,
        "PREFECT_API_URL": api_url,
        "LAKELOOP_PROJECT_ROOT": str(project_root),
        "LAKELOOP_PREFECT_WORK_POOL": pool,
    }
    if home is not None:
        env["PREFECT_HOME"] = str(home / "prefect")
    cmd = [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all", "--prefect-file", str(pfile)]
    proc = subprocess.run(cmd, cwd=project_root, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise DeployError(f"`{' '.join(cmd[2:])}` failed with code {proc.returncode}:\n{output[-4000:]}")
    with SyncPrefectClient(api_url) as client:
        names = sorted(f"{client.read_flow(d.flow_id).name}/{d.name}" for d in client.read_deployments())
    return DeployResult(deployments=names, output=output)
