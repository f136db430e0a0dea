"""Register lakeloop's deployments (and their triggers and schedules) from prefect.yaml.

`prefect.yaml` is the single source of truth and stays valid for the Prefect
CLI. We apply it with Prefect's Python API
(`flow.from_source(...).to_deployment(...).apply()`) instead of
`prefect deploy --all` or `flow.deploy()`: with the pinned FastAPI (<0.155) both
abort in 3.8.8 on their "any active workers?" check, which posts `limit: null`
to `/work_pools/{pool}/workers/filter` and gets a 422.

Deploying imports every flow module, so `deploy_all` runs it in a child
process (`python -m infra.deploy`) with the target `PREFECT_API_URL`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from infra.local.prefect import QUIET_ENV

_ENV_REF = re.compile(r"\{\{\s*\$(\w+)\s*\}\}")


class DeployError(RuntimeError):
    pass


@dataclass(frozen=True)
class DeployResult:
    deployments: list[str]  # "flow-name/deployment-name"
    output: str


def load_deployments(prefect_file: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    """The `deployments:` of a prefect.yaml with `{{ $VAR }}` resolved (event templates are kept)."""
    data = yaml.safe_load(prefect_file.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("deployments"), list):
        raise DeployError(f"{prefect_file}: no `deployments:` list")

    def resolve(value: Any, where: str) -> Any:
        if isinstance(value, str):
            def sub(m: re.Match[str]) -> str:
                if m.group(1) not in env:
                    raise DeployError(f"{prefect_file}: {where}: environment variable ${m.group(1)} is not set")
                return env[m.group(1)]
            return _ENV_REF.sub(sub, value)
        if isinstance(value, dict):
            return {k: resolve(v, f"{where}.{k}") for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return value

    out = []
    for i, d in enumerate(data["deployments"]):
        if not isinstance(d, dict) or not d.get("name") or not d.get("entrypoint"):
            raise DeployError(f"{prefect_file}: deployments[{i}] needs `name` and `entrypoint`")
        out.append(resolve(d, f"deployments[{i}]"))
    return out


def _schedule(cfg: dict[str, Any]) -> Any:
    from prefect.schedules import Cron, Interval

    common = {"timezone": cfg.get("timezone"), "active": cfg.get("active", True),
              "parameters": cfg.get("parameters") or {}}
    if "cron" in cfg:
        return Cron(cfg["cron"], **common)
    if "interval" in cfg:
        return Interval(float(cfg["interval"]), **common)
    raise DeployError(f"unsupported schedule {cfg!r}: use `cron` or `interval`")


def _concurrency(value: Any) -> Any:
    """`concurrency_limit: 1` or `{limit: 1, collision_strategy: CANCEL_NEW}`, as in `prefect deploy`."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig

    return ConcurrencyLimitConfig(**value) if isinstance(value, dict) else value


def apply_deployments(deployments: list[dict[str, Any]], pool: str, project_root: Path) -> list[str]:
    """Create or update each deployment in the current Prefect API; returns their ids."""
    from prefect import flow
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

    for d in deployments:
        path = project_root / str(d["entrypoint"]).split(":", 1)[0]
        if not path.exists():
            raise DeployError(f"deployment {d['name']!r}: entrypoint file {path} does not exist")
    ids = []
    for d in deployments:
        fl: Any = flow.from_source(source=str(project_root), entrypoint=d["entrypoint"])
        wp = d.get("work_pool") or {}
        deployment = fl.to_deployment(
            name=d["name"],
            work_pool_name=pool,
            work_queue_name=wp.get("work_queue_name"),
            job_variables=wp.get("job_variables") or None,
            description=d.get("description"),
            tags=d.get("tags"),
            parameters=d.get("parameters") or None,
            schedules=[_schedule(s) for s in d.get("schedules") or []],
            triggers=[DeploymentEventTrigger(**t) for t in d.get("triggers") or []],
            concurrency_limit=_concurrency(d.get("concurrency_limit")),
        )
        dep_id = deployment.apply()
        ids.append(str(dep_id))
    return ids


def deploy_all(
    api_url: str,
    pool: str,
    project_root: Path,
    prefect_file: Path | None = None,
    timeout: float = 600.0,
    home: Path | None = None,
    only: Sequence[str] | None = None,
) -> DeployResult:
    """Deploy the deployments of `prefect_file` (default: the prefect.yaml lakeloop ships) to `pool`.

    `project_root` is where the entrypoints (`flows/...py`) resolve: `lakeloop.settings.ROOT`, the checkout
    or, installed, site-packages, which is also the flow runs' working directory (prefect.yaml's pull step).

    `only`: deployment names to apply (default all). Raises `DeployError` with the
    deploy process's output when anything fails or a deployment is missing afterwards.
    """
    from lakeloop.settings import get_settings, shipped

    project_root = Path(project_root).resolve()
    pfile = Path(prefect_file).resolve() if prefect_file else shipped("prefect.yaml")
    if not pfile.exists():
        raise DeployError(f"{pfile}: no such prefect.yaml")

    env = {**os.environ, **QUIET_ENV, "PREFECT_API_URL": api_url,
           "LAKELOOP_PROJECT_ROOT": str(project_root), "LAKELOOP_PREFECT_WORK_POOL": pool,
           "LAKEFS_REPOSITORY": get_settings().lakefs.repository}  # scheduled runs' repository
    if home is not None:
        env["PREFECT_HOME"] = str(home / "prefect")
    cmd = [sys.executable, "-m", "infra.deploy", "--pool", pool, "--project-root", str(project_root),
           "--prefect-file", str(pfile)]
    for name in only or []:
        cmd += ["--only", name]
    proc = subprocess.run(cmd, cwd=project_root, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise DeployError(f"deploying {pfile} failed (exit {proc.returncode}):\n{output[-4000:]}")
    try:
        names: list[str] = json.loads(proc.stdout.strip().splitlines()[-1])["deployments"]
    except (IndexError, ValueError, KeyError) as e:
        raise DeployError(f"deploying {pfile}: no result from the deploy process:\n{output[-4000:]}") from e
    wanted = set(only) if only else {d["name"] for d in load_deployments(pfile, env)}
    missing = wanted - {n.split("/", 1)[1] for n in names}
    if missing:
        raise DeployError(f"deploying {pfile}: deployments {sorted(missing)} not found afterwards")
    return DeployResult(deployments=names, output=output)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Apply prefect.yaml with Prefect's Python API")
    ap.add_argument("--pool", required=True)
    ap.add_argument("--project-root", type=Path, required=True)
    ap.add_argument("--prefect-file", type=Path, required=True)
    ap.add_argument("--only", action="append", default=None, help="deployment name (repeatable)")
    args = ap.parse_args(argv)
    env = {**os.environ, "LAKELOOP_PROJECT_ROOT": str(args.project_root.resolve()),
           "LAKELOOP_PREFECT_WORK_POOL": args.pool}
    deployments = load_deployments(args.prefect_file, env)
    if args.only:
        unknown = set(args.only) - {d["name"] for d in deployments}
        if unknown:
            raise DeployError(f"{args.prefect_file}: no deployment(s) named {sorted(unknown)}")
        deployments = [d for d in deployments if d["name"] in args.only]
    apply_deployments(deployments, args.pool, args.project_root.resolve())
    _notifications()
    print(json.dumps({"deployments": deployment_names()}))


def _notifications() -> None:
    """The notification automations, when a webhook is configured (LAKELOOP_NOTIFY_WEBHOOK_URL)."""
    from infra.notify import apply_notifications
    from lakeloop.settings import get_settings

    url = get_settings().notify.webhook_url
    if url:
        apply_notifications(url)


def read_deployments(api_url: str | None = None, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Every deployment as the API returns it (`name`, `flow_id`, `work_pool_name`, ...).

    Raw REST with complete bodies: the 3.8.8 client's `read_flows`/`read_deployments`
    send explicit nulls that FastAPI 0.154 rejects with 422.
    """
    import httpx
    from prefect.settings import PREFECT_API_URL

    url = (api_url or PREFECT_API_URL.value() or "").rstrip("/")
    body = {"limit": 200, "offset": 0, "sort": "NAME_ASC"}
    deps: list[dict[str, Any]] = httpx.post(f"{url}/deployments/filter", json=body,
                                            timeout=timeout).raise_for_status().json()
    return deps


def deployment_names(api_url: str | None = None) -> list[str]:
    """ "flow-name/deployment-name" of every deployment (raw REST, as `read_deployments`)."""
    import httpx
    from prefect.settings import PREFECT_API_URL

    url = (api_url or PREFECT_API_URL.value() or "").rstrip("/")
    body = {"limit": 200, "offset": 0, "sort": "NAME_ASC"}
    deps = read_deployments(url)
    flows = httpx.post(f"{url}/flows/filter", json=body, timeout=30).raise_for_status().json()
    names = {f["id"]: f["name"] for f in flows}
    return sorted(f"{names.get(d['flow_id'], '?')}/{d['name']}" for d in deps)


if __name__ == "__main__":
    main()
