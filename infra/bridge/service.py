"""Build the bridge from settings, and start it as a server process."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from infra.procs import Service, log_file, start_service
from lakeloop.settings import LakeFSSettings, Settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]
HEALTH_PATH = "/health"


def build_config(settings: Settings, *, gate: bool = True):  # type: ignore[no-untyped-def]
    """The production wiring: ledger under state_dir, events to Prefect's API, spec merge gate."""
    from infra.bridge.app import BridgeConfig
    from infra.bridge.gate import SpecMergeGate
    from lakeloop.adapters.prefect_events import post_events
    from lakeloop.adapters.secrets import reveal
    from lakeloop.branches import BranchPolicy
    from lakeloop.spec import DatasetSpec
    from lakeloop.state import Ledger

    api_url = settings.prefect.api_url
    policy = BranchPolicy.from_settings(settings)

    def emitter(event):  # type: ignore[no-untyped-def]
        post_events([event], api_url)

    def publish(events):  # type: ignore[no-untyped-def]
        post_events(events, api_url)

    return BridgeConfig(
        lakefs_secret=reveal(settings.bridge.lakefs_secret),
        label_studio_secret=reveal(settings.bridge.label_studio_secret),
        replay_window_s=settings.bridge.replay_window_s,
        ledger=Ledger.at(settings.state_dir),
        emitter=emitter,
        publish=publish,
        gate=SpecMergeGate(DatasetSpec.from_yaml(settings.spec_path), settings.lakefs,
                           experiments=policy if settings.branches.block_worse_merges else None) if gate else None,
        labels_quiet_s=settings.bridge.labels_quiet_s,
        branches=policy,
    )


def start_bridge(
    home: Path,
    port: int,
    *,
    api_url: str | None = None,
    lakefs_secret: str | None = None,
    label_studio_secret: str | None = None,
    lakefs: LakeFSSettings | None = None,
    repositories: Sequence[str] | None = None,
    reconcile_interval: float = 180.0,
    spec_path: Path | None = None,
    timeout: float = 180.0,
    experiments: Sequence[str] | None = None,
) -> Service:
    """`python -m infra.bridge` on loopback; state (ledger) under `home/state`. Each sender's secret (as
    configured: a Prefect Secret block reference stays one), else the environment's."""
    env = {"LAKELOOP_HOME": str(home)}
    if api_url:
        env["PREFECT_API_URL"] = api_url
    if lakefs_secret:
        env["LAKELOOP_BRIDGE_LAKEFS_SECRET"] = lakefs_secret
    if label_studio_secret:
        env["LAKELOOP_BRIDGE_LABEL_STUDIO_SECRET"] = label_studio_secret
    if spec_path:
        env["LAKELOOP_SPEC_PATH"] = str(spec_path)
    if experiments is not None:  # glob patterns of experiment branches (else the environment's setting)
        env["LAKELOOP_BRANCHES_EXPERIMENTS"] = ",".join(experiments)
    if lakefs is not None:
        env.update({
            "LAKEFS_ENDPOINT": lakefs.endpoint, "LAKEFS_ACCESS_KEY_ID": lakefs.access_key_id,
            "LAKEFS_SECRET_ACCESS_KEY": lakefs.secret_access_key, "LAKEFS_REPOSITORY": lakefs.repository,
            "LAKEFS_DEFAULT_BRANCH": lakefs.default_branch, "LAKEFS_DATA_PREFIX": lakefs.data_prefix,
        })
    cmd = [sys.executable, "-m", "infra.bridge", "--host", "127.0.0.1", "--port", str(port),
           "--reconcile-interval", str(reconcile_interval)]
    for r in repositories or []:
        cmd += ["--repository", r]
    return start_service(
        "bridge", cmd,
        health_url=f"http://127.0.0.1:{port}{HEALTH_PATH}",
        url=f"http://127.0.0.1:{port}",
        log_path=log_file(home, "bridge"),
        env=env, cwd=PROJECT_ROOT, timeout=timeout,
    )
