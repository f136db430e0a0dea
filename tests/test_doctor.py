"""`lakeloop doctor`: all green on a wired-up stack; a stopped service is named with its fix and exit 1."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from infra.bridge.lakefs_actions import ACTIONS_FILE, settings_actions_yaml
from infra.cli import app
from infra.doctor import LAKEFS_PINNED, _worker_polls, check_label_studio, check_spec
from infra.local.mlflow import start_mlflow
from infra.procs import free_port
from lakeloop.settings import ROOT, Settings, get_settings
from tests.fixtures.loop_env import MakeLoopEnv
from tests.fixtures.prefect import PrefectStack


def test_the_pinned_lakefs_version_is_the_one_docker_compose_runs() -> None:
    compose = (ROOT / "infra" / "docker-compose.yml").read_text()
    assert re.search(r"image: treeverse/lakefs:(\S+)", compose)[1] == LAKEFS_PINNED  # type: ignore[index]


def test_an_unparsable_spec_fails_with_the_field_and_a_fix(tmp_path: Path) -> None:
    bad = tmp_path / "spec.yaml"
    bad.write_text("name: x\nid_column: id\nlabel_column: y\nclasses: [a]\nfeatures: []\n")
    [check] = check_spec(Settings(spec_path=bad))
    assert check.status == "fail" and "classes" in check.detail and "lakeloop spec infer" in check.fix
    [good] = check_spec(Settings())
    assert good.status == "ok"


def test_label_studio_is_skipped_unless_configured_and_fails_fast_when_down(tmp_path: Path) -> None:
    s = Settings(home=tmp_path)
    [skipped] = check_label_studio(s)
    assert skipped.status == "skip" and "not configured" in skipped.detail
    down = Settings(home=tmp_path, label_studio={"url": f"http://127.0.0.1:{free_port()}"})  # type: ignore[arg-type]
    [check] = check_label_studio(down, timeout=1.0)
    assert check.status == "fail" and "LABEL_STUDIO_URL" in check.fix


def test_a_worker_without_a_recent_heartbeat_does_not_count() -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    assert _worker_polls({"status": "ONLINE", "last_heartbeat_time": now.isoformat()})
    assert not _worker_polls({"status": "ONLINE", "last_heartbeat_time": (now - timedelta(hours=1)).isoformat()})
    assert not _worker_polls({"status": "OFFLINE", "last_heartbeat_time": now.isoformat()})


@pytest.mark.integration
def test_doctor_is_green_on_a_wired_stack_and_names_a_stopped_mlflow_with_its_fix(
        make_loop_env: MakeLoopEnv, prefect_server: PrefectStack, tmp_path: Path) -> None:
    from infra.bridge.service import start_bridge

    mlflow = start_mlflow(tmp_path / "mlflow", free_port())  # its own server: this test stops it
    bridge_port = free_port()
    try:
        lake = make_loop_env("doctor", lambda repo: {
            "MLFLOW_TRACKING_URI": mlflow.url, "LAKELOOP_PREFECT_API_URL": prefect_server.api_url,
            "LAKELOOP_PREFECT_WORK_POOL": prefect_server.pool,
            "LAKELOOP_BRIDGE_URL": f"http://127.0.0.1:{bridge_port}"})
        s = get_settings()
        bridge = start_bridge(s.home, bridge_port, api_url=prefect_server.api_url, lakefs=s.lakefs,
                              repositories=[s.lakefs.repository], reconcile_interval=3600)
        try:
            runner = CliRunner()
            missing = runner.invoke(app, ["doctor", "--no-label-studio"])
            assert missing.exit_code == 1 and "actions file on main" in missing.output, missing.output
            lake.install_actions("main", ACTIONS_FILE, settings_actions_yaml(s))  # as `lakeloop up` does

            green = runner.invoke(app, ["doctor", "--no-label-studio"])
            assert green.exit_code == 0, green.output
            assert "✗" not in green.output and "all checks passed" in green.output
            for line in ("lakeFS credentials", "lakeFS actions file on main", "MLflow version", "Prefect worker",
                         "Prefect deployments", "bridge reachable", "spec parses"):
                assert f"✓ {line}" in green.output, green.output

            mlflow.stop(timeout=10)
            red = runner.invoke(app, ["doctor", "--no-label-studio"])
            assert red.exit_code == 1, red.output
            failed = [ln for ln in red.output.splitlines() if ln.startswith("✗")]
            assert failed == [ln for ln in failed if ln.startswith("✗ MLflow reachable")] and failed, red.output
            assert "fix: start MLflow" in red.output and "MLFLOW_TRACKING_URI" in red.output
        finally:
            bridge.stop(timeout=10)
    finally:
        mlflow.stop(timeout=10)
