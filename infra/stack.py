"""`lakeloop up` / `down`: the local stack, on loopback, each service a real server.

lakeFS, MLflow, Prefect and Label Studio depend on nothing and start side by side
(Label Studio's first start alone takes ~30 s). Then, in order: the deployments and
a worker (need Prefect), the bridge (needs Prefect to emit events), and last the
lakeFS actions file that points lakeFS at the bridge.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import httpx
from rich.console import Console

from infra import running_dataset
from infra.bridge import service as bridge
from infra.local import label_studio, lakefs, mlflow, prefect
from infra.procs import Service, read_pidfile, record_service, stop_pid
from lakeloop.adapters.secrets import reveal
from lakeloop.settings import ROOT, Settings, check_secrets

# every product's telemetry switch, as its launcher sets it for its own server
TELEMETRY_OFF = {**mlflow.TELEMETRY_OFF, **prefect.TELEMETRY_OFF, **label_studio.TELEMETRY_OFF}


class StackNotReady(RuntimeError):
    """A service the command needs did not answer in time."""


def _port(url: str) -> int:
    port = urlparse(url).port
    if port is None:
        raise ValueError(f"{url}: the local stack needs an explicit port")
    return port


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code < 500
    except httpx.HTTPError:
        return False


def health_urls(s: Settings) -> dict[str, str]:
    return {
        "lakefs": f"{s.lakefs.endpoint}{lakefs.HEALTH_PATH}",
        "mlflow": f"{s.mlflow.tracking_uri}{mlflow.HEALTH_PATH}",
        "prefect": f"{s.prefect.api_url}{prefect.HEALTH_PATH}",
        "bridge": f"{s.bridge.url}{bridge.HEALTH_PATH}",
        "label-studio": f"{s.label_studio.url}{label_studio.HEALTH_PATH}",
    }


def service_env(s: Settings) -> dict[str, str]:
    """Environment every lakeloop process (worker, flows, CLI) shares."""
    return {
        **TELEMETRY_OFF,
        # XGBoost's OpenMP threads spin while idle; on a shared 2-core box that makes a 2-thread fit ~10x slower.
        "OMP_WAIT_POLICY": "PASSIVE",
        "PREFECT_API_URL": s.prefect.api_url,
        # flow results (the outcome models the demo and `lakeloop lineage` read) persist where every process sees them
        "PREFECT_LOCAL_STORAGE_PATH": str(s.home / "prefect-results"),
        "MLFLOW_TRACKING_URI": s.mlflow.tracking_uri,
        "LAKEFS_ENDPOINT": s.lakefs.endpoint,
        "LAKEFS_ACCESS_KEY_ID": s.lakefs.access_key_id,
        "LAKEFS_SECRET_ACCESS_KEY": s.lakefs.secret_access_key,
        "LAKEFS_REPOSITORY": s.lakefs.repository,
        "LAKEFS_STORAGE_NAMESPACE": s.lakefs.storage_namespace,
        "LAKEFS_DEFAULT_BRANCH": s.lakefs.default_branch,
        "LAKEFS_DATA_PREFIX": s.lakefs.data_prefix,
        # the dataset: every flow run validates, trains and registers against this spec and these names
        "LAKELOOP_SPEC_PATH": str(s.spec_path),
        "MLFLOW_EXPERIMENT": s.mlflow.experiment,
        "MLFLOW_MODEL_NAME": s.mlflow.model_name,
        "LABEL_STUDIO_URL": s.label_studio.url,
        "LABEL_STUDIO_API_TOKEN": s.label_studio.api_token,
        "LAKELOOP_BRIDGE_URL": s.bridge.url,
        # as configured (a Prefect Secret block reference stays one); the worker's flows register the Label Studio
        # webhook with the Label Studio secret, and nothing of lakeloop's but the bridge needs lakeFS's
        "LAKELOOP_BRIDGE_LABEL_STUDIO_SECRET": s.bridge.label_studio_secret.get_secret_value(),
        "LAKELOOP_LABELING_ENABLED": str(s.labeling.enabled).lower(),
        "LAKELOOP_HOME": str(s.home),
    }


def export_env(env: dict[str, str]) -> None:
    """Set `env` for this process and its children. Prefect reads its settings once, when it is imported
    (and `lakeloop.events` imports it early), so its settings are refreshed too: otherwise this process's
    Prefect client would miss PREFECT_API_URL and start a temporary server of its own."""
    os.environ.update(env)
    if "prefect" in sys.modules:
        from prefect.context import refresh_global_settings_context

        refresh_global_settings_context()


def start_stack(s: Settings, with_label_studio: bool = True) -> dict[str, Service | str]:
    """Start whatever is not already answering; returns name -> Service (or URL if it was already up).

    Every server it starts binds to loopback; `InsecureSecrets` when the settings point at a server elsewhere
    while a secret is still a published default."""
    check_secrets(s)
    if not with_label_studio:  # the flows then skip review rounds rather than fail on a server that isn't there
        s = s.model_copy(update={"labeling": s.labeling.model_copy(update={"enabled": False})})
    export_env(service_env(s))
    s.home.mkdir(parents=True, exist_ok=True)
    pidfile = s.home / "stack.json"
    result: dict[str, Service | str] = {}
    health = health_urls(s)

    recording = threading.Lock()

    def ensure(name: str, url: str, starter: Callable[[], Service], config: str | None = None) -> None:
        """Start `name` unless it answers; one this stack started for another `config` (say another dataset
        spec) is restarted, so no process keeps working on the previous dataset."""
        with recording:  # another server's thread may be rewriting the stack file
            entry = read_pidfile(pidfile).get(name, {})
        up = _healthy(health[name]) if name in health else _pid_alive(entry.get("pid"))
        if up and config is not None and entry.get("config", config) != config and _pid_alive(entry.get("pid")):
            stop_pid(int(str(entry["pid"])))
            up = False
        if up:
            result[name] = url
            return
        svc = starter()
        with recording:  # the stack file is read-modify-write
            record_service(pidfile, svc, key=name, config=config)
            result[name] = svc

    def start_label_studio_in_its_venv() -> Service:
        label_studio.ensure_venv(label_studio.venv_root(s.home))
        return label_studio.start_label_studio(s.home, _port(s.label_studio.url), reveal(s.label_studio.api_token),
                                               s.label_studio.username, reveal(s.label_studio.password))

    servers: list[tuple[str, str, Callable[[], Service]]] = [
        ("lakefs", s.lakefs.endpoint, lambda: lakefs.start_lakefs(
            s.home, _port(s.lakefs.endpoint), s.lakefs.access_key_id, reveal(s.lakefs.secret_access_key),
            hook_token=reveal(s.bridge.lakefs_secret))),
        ("mlflow", s.mlflow.tracking_uri, lambda: mlflow.start_mlflow(s.home, _port(s.mlflow.tracking_uri))),
        ("prefect", s.prefect.api_url, lambda: prefect.start_prefect_server(s.home, _port(s.prefect.api_url))),
    ]
    if with_label_studio:
        servers.append(("label-studio", s.label_studio.url, start_label_studio_in_its_venv))
    with ThreadPoolExecutor(max_workers=len(servers), thread_name_prefix="start") as pool:
        started = [pool.submit(ensure, *server) for server in servers]
    for future in started:  # every server has had its chance (and is in the stack file) before the first error
        future.result()

    deploy_flows(s)
    # the worker's flow runs inherit its environment: a worker started for another dataset is replaced
    config = hashlib.sha256(json.dumps(service_env(s), sort_keys=True).encode()).hexdigest()[:16]
    ensure("worker", s.prefect.api_url, lambda: prefect.start_worker(s.prefect.api_url, s.prefect.work_pool, s.home),
           config=config)
    ensure("bridge", s.bridge.url, lambda: bridge.start_bridge(
        s.home, _port(s.bridge.url), api_url=s.prefect.api_url, lakefs=s.lakefs,
        lakefs_secret=s.bridge.lakefs_secret.get_secret_value(),
        label_studio_secret=s.bridge.label_studio_secret.get_secret_value(),
        repositories=[s.lakefs.repository], spec_path=s.spec_path), config=config)
    prepare_lake(s)
    running_dataset.remember(s)
    return result


def init_stack(s: Settings, wait_s: float = 0.0) -> list[str]:
    """`lakeloop init`, for servers that run elsewhere (the compose stack's init service): the repository if
    it is missing, the actions file, the work pool and the deployments. Idempotent; returns the deployments.

    `wait_s`: how long lakeFS and Prefect may take to answer first (containers start together).
    `InsecureSecrets` first when a published default secret would reach servers elsewhere."""
    check_secrets(s)
    wait_healthy(s, ["lakefs", "prefect"], wait_s)
    prepare_lake(s)
    return deploy_flows(s)


def wait_healthy(s: Settings, names: list[str], timeout: float, poll_s: float = 1.0) -> None:
    """Until each named service answers its health URL; `StackNotReady` naming the silent ones after `timeout`."""
    urls = {n: health_urls(s)[n] for n in names}
    deadline = time.monotonic() + timeout
    while silent := [n for n, url in urls.items() if not _healthy(url)]:
        if time.monotonic() >= deadline:
            raise StackNotReady(", ".join(f"{n} ({urls[n]})" for n in silent) + f" not answering after {timeout:.0f}s")
        time.sleep(poll_s)


def deploy_flows(s: Settings) -> list[str]:
    """The work pool (unless it exists) and every deployment of the shipped prefect.yaml, from the installed code."""
    from infra.deploy import deploy_all

    prefect.ensure_work_pool(s.prefect.api_url, s.prefect.work_pool)
    return deploy_all(s.prefect.api_url, s.prefect.work_pool, ROOT).deployments


def prepare_lake(s: Settings) -> None:
    """Repository, and the actions file that sends the watched and experiment branches' commits and merges to
    the bridge, and gates merges into the watched branches (experiment branches inherit it from main)."""
    from infra.bridge.lakefs_actions import ACTIONS_FILE, settings_actions_yaml
    from lakeloop.adapters.lakefs import Lake

    lake = Lake(s.lakefs)
    lake.ensure_repository()
    lake.install_actions(s.lakefs.default_branch, ACTIONS_FILE, settings_actions_yaml(s))


def _pid_alive(pid: object) -> bool:
    try:
        os.kill(int(str(pid)), 0)
    except (ValueError, ProcessLookupError, PermissionError):
        return False
    return True


def stop_stack(s: Settings) -> list[str]:
    pidfile = s.home / "stack.json"
    stopped = []
    # worker first so no run starts against a server that is going away
    entries = read_pidfile(pidfile)
    for name in sorted(entries, key=lambda n: "worker" not in n):
        stop_pid(int(str(entries[name]["pid"])))
        stopped.append(name)
    pidfile.unlink(missing_ok=True)
    running_dataset.forget(s)
    return stopped


def stack_status(s: Settings) -> dict[str, tuple[str, bool]]:
    return {name: (url, _healthy(url)) for name, url in health_urls(s).items()}


def print_urls(stack: dict[str, Service | str], console: Console) -> None:
    ui = {"lakefs": "/", "mlflow": "/", "prefect": "/", "label-studio": "/", "bridge": "/health"}
    for name, svc in stack.items():
        url = svc if isinstance(svc, str) else svc.url
        console.print(f"[bold]{name:13}[/] {url.removesuffix('/api')}{ui.get(name, '')}")
