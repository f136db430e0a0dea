"""Secrets: one per webhook sender, only from the environment (or a Prefect Secret block), and the published
local defaults refused wherever a server is reachable from elsewhere."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from lakeloop.adapters.secrets import block_name, reveal
from lakeloop.settings import (
    BridgeSettings,
    InsecureSecrets,
    Settings,
    check_secrets,
    configured_secrets,
    is_loopback,
)

SECRET_ENVS = ("LAKELOOP_BRIDGE_SECRET", "LAKELOOP_BRIDGE_LAKEFS_SECRET", "LAKELOOP_BRIDGE_LABEL_STUDIO_SECRET",
               "LAKEFS_SECRET_ACCESS_KEY", "LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY", "LABEL_STUDIO_API_TOKEN",
               "LABEL_STUDIO_API_KEY", "LABEL_STUDIO_PASSWORD", "LAKEFS_ENDPOINT", "LAKECTL_SERVER_ENDPOINT_URL",
               "MLFLOW_TRACKING_URI", "PREFECT_API_URL", "LAKELOOP_PREFECT_API_URL", "LABEL_STUDIO_URL",
               "LAKELOOP_BRIDGE_URL")
OWN = {"LAKEFS_SECRET_ACCESS_KEY": "a-real-lakefs-key", "LABEL_STUDIO_API_TOKEN": "a-real-ls-token",
       "LABEL_STUDIO_PASSWORD": "a-real-ls-password", "LAKELOOP_BRIDGE_LAKEFS_SECRET": "a-real-hook-secret",
       "LAKELOOP_BRIDGE_LABEL_STUDIO_SECRET": "a-real-ls-hook-secret"}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in SECRET_ENVS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env of the checkout


def test_each_sender_has_its_own_secret_by_default() -> None:
    b = BridgeSettings()
    assert b.lakefs_secret.get_secret_value() != b.label_studio_secret.get_secret_value()


def test_a_logged_settings_object_shows_no_secret() -> None:
    s = Settings()
    shown = repr(s) + str(s)
    assert [name for name, value in configured_secrets(s).items() if value in shown] == []


def test_defaults_are_fine_on_loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    check_secrets(Settings())  # the local stack: every server on 127.0.0.1
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    with pytest.raises(InsecureSecrets) as e:
        check_secrets(Settings())
    msg = str(e.value)
    assert all(name in msg for name in OWN), msg
    assert "MLFLOW_TRACKING_URI=http://mlflow.internal:5000" in msg
    assert all(v not in msg for v in configured_secrets(Settings()).values())  # names, never values
    assert pickle.loads(pickle.dumps(e.value)).args == e.value.args


def test_a_process_listening_beyond_loopback_needs_real_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InsecureSecrets, match="listening on 0.0.0.0"):
        check_secrets(Settings(), bind_hosts=("0.0.0.0",))
    for k, v in OWN.items():
        monkeypatch.setenv(k, v)
    check_secrets(Settings(), bind_hosts=("0.0.0.0",))
    monkeypatch.setenv("LAKELOOP_BRIDGE_LABEL_STUDIO_SECRET", "change-me-label-studio-hook")  # .env.example's
    with pytest.raises(InsecureSecrets, match="LAKELOOP_BRIDGE_LABEL_STUDIO_SECRET is a change-me placeholder"):
        check_secrets(Settings(), bind_hosts=("::",))


def test_the_deprecated_shared_secret_still_works_but_not_beyond_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in OWN.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("LAKELOOP_BRIDGE_LAKEFS_SECRET")
    monkeypatch.delenv("LAKELOOP_BRIDGE_LABEL_STUDIO_SECRET")
    monkeypatch.setenv("LAKELOOP_BRIDGE_SECRET", "old-shared-secret")
    s = Settings()
    assert s.bridge.lakefs_secret.get_secret_value() == s.bridge.label_studio_secret.get_secret_value() == \
        "old-shared-secret"
    check_secrets(s)
    with pytest.raises(InsecureSecrets, match="are one secret"):
        check_secrets(s, bind_hosts=("10.0.0.5",))
    monkeypatch.setenv("LAKELOOP_BRIDGE_LAKEFS_SECRET", "new-lakefs-secret")  # the new name wins
    assert Settings().bridge.lakefs_secret.get_secret_value() == "new-lakefs-secret"


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.8.0.1", True), ("localhost", True),
                                            ("::1", True), ("[::1]", True), ("0.0.0.0", False), ("::", False),
                                            ("lakefs", False), ("10.1.2.3", False), (None, False)])
def test_loopback(host: str | None, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_the_bridge_refuses_to_listen_beyond_loopback_with_published_secrets() -> None:
    from infra.bridge.__main__ import main

    with pytest.raises(InsecureSecrets, match="listening on 0.0.0.0"):
        main(["--host", "0.0.0.0", "--reconcile-interval", "0"])


def test_init_refuses_remote_servers_with_published_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    from infra.stack import init_stack

    monkeypatch.setenv("LAKEFS_ENDPOINT", "http://lakefs:8000")  # the compose stack, .env left unedited
    with pytest.raises(InsecureSecrets, match="LAKEFS_ENDPOINT=http://lakefs:8000"):
        init_stack(Settings(), wait_s=0)


def test_prefect_secret_block_references() -> None:
    assert block_name("{{ prefect.blocks.secret.lakeloop-lakefs-hook }}") == "lakeloop-lakefs-hook"
    assert block_name("{{prefect.blocks.secret.x1}}") == "x1"
    assert block_name("plain-secret") is None
    assert block_name("{{ prefect.blocks.json.x }}") is None
    assert reveal("plain-secret") == "plain-secret"


def test_the_compose_stack_publishes_ports_on_loopback_and_takes_every_secret_from_its_env_file() -> None:
    import re

    import yaml

    infra = Path(__file__).resolve().parents[1] / "infra"
    compose = yaml.safe_load((infra / "docker-compose.yml").read_text())
    ports = [p for svc in compose["services"].values() for p in svc.get("ports", [])]
    assert ports and all(p.startswith("127.0.0.1:") for p in ports), ports
    env = compose["x-lakeloop-env"]
    for name in OWN:
        if name in env:
            assert re.fullmatch(r"\$\{" + name + r":\?[^}]+\}", env[name]), (name, env[name])
    assert {"LAKELOOP_BRIDGE_LAKEFS_SECRET", "LAKELOOP_BRIDGE_LABEL_STUDIO_SECRET"} <= set(env)
    assert "LAKELOOP_BRIDGE_SECRET" not in env
    lakefs_env = compose["services"]["lakefs"]["environment"]
    # lakeFS sends the lakeFS secret, never Label Studio's
    assert lakefs_env["LAKEFSACTION_LAKELOOP_TOKEN"] == "${LAKELOOP_BRIDGE_LAKEFS_SECRET}"


def test_lakefs_serve_refuses_a_published_key_beyond_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from infra.cli import app

    monkeypatch.setenv("LAKEFS_SECRET_ACCESS_KEY", Settings().lakefs.secret_access_key)  # the published default
    result = CliRunner().invoke(app, ["lakefs", "serve", "--host", "0.0.0.0", "--port", "1"])
    said = " ".join(result.output.split())  # as rich wrapped it
    assert result.exit_code == 1 and "LAKEFS_SECRET_ACCESS_KEY is a published default" in said


def test_init_says_why_it_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from infra.cli import app
    from lakeloop.settings import get_settings

    monkeypatch.setenv("PREFECT_API_URL", "http://prefect:4200/api")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["init"])
    finally:
        get_settings.cache_clear()
    said = " ".join(result.output.split())  # as rich wrapped it
    assert result.exit_code == 1 and "refusing to start" in said and "PREFECT_API_URL=http://prefect:4200/api" in said


def test_the_scan_finds_a_planted_secret_in_every_form_and_on_a_command_line() -> None:
    """The secret-scan integration tests cannot pass by looking in the wrong way."""
    import base64
    import subprocess
    import sys

    from tests.fixtures.secret_scan import command_lines, leaks

    secret = "planted/secret+value"
    places = [("plain", f"x {secret} y"), ("quoted", "planted%2Fsecret%2Bvalue"),
              ("basic auth", "Basic " + base64.b64encode(secret.encode()).decode()), ("clean", "nothing here")]
    assert leaks({"S": secret}, places) == ["S in plain", "S in quoted", "S in basic auth"]
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "--password", secret])
    try:
        assert any(f.startswith("S in command line of pid") for f in leaks({"S": secret}, command_lines()))
    finally:
        child.kill()
        child.wait()


def test_doctor_names_the_refused_secrets_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    from infra.doctor import check_bridge

    ok = check_bridge(Settings(), timeout=0.2)[0]
    assert (ok.name, ok.status) == ("secrets", "ok")
    monkeypatch.setenv("LAKELOOP_BRIDGE_URL", "http://bridge:8765")
    bad = check_bridge(Settings(), timeout=0.2)[0]
    assert (bad.name, bad.status) == ("secrets", "fail") and "LAKELOOP_BRIDGE_LAKEFS_SECRET" in bad.fix
