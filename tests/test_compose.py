"""infra/docker-compose.yml against the code: every variable a lakeloop service sets is one the code reads.

The compose file once set PREFECT_API_URL while the settings read only LAKELOOP_PREFECT_API_URL, so the bridge
and the deployments inside the containers talked to 127.0.0.1:4200. Names the settings read are collected
from the settings classes themselves (env prefix + field name, or the field's aliases).
"""

from __future__ import annotations

import inspect
import shlex
from pathlib import Path
from typing import Any

import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from lakeloop import settings as settings_module

COMPOSE = Path(__file__).resolve().parents[1] / "infra" / "docker-compose.yml"

# Variables lakeloop's containers set for the libraries inside them, each with the reason it is there.
THIRD_PARTY = {
    "DO_NOT_TRACK": "the common telemetry opt-out (Prefect, whylogs and others honour it)",
    "MLFLOW_DISABLE_TELEMETRY": "MLflow's client telemetry",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "Prefect's analytics",
}


def settings_env_names() -> set[str]:
    """Every environment variable some settings class reads."""
    names: set[str] = set()
    for _, cls in inspect.getmembers(settings_module, inspect.isclass):
        if not issubclass(cls, BaseSettings) or cls is BaseSettings:
            continue
        prefix = str(cls.model_config.get("env_prefix", ""))
        for name, field in cls.model_fields.items():
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseSettings):
                continue  # a section: its own class reads its variables
            alias = field.validation_alias
            if isinstance(alias, AliasChoices):
                names |= {c for c in alias.choices if isinstance(c, str)}
            elif isinstance(alias, str):
                names.add(alias)
            else:
                names.add(f"{prefix}{name}")
    return {n.upper() for n in names}


def lakeloop_services() -> dict[str, dict[str, Any]]:
    """Services built from lakeloop's Dockerfile (the anchor's variables arrive through `environment`)."""
    services: dict[str, dict[str, Any]] = yaml.safe_load(COMPOSE.read_text())["services"]
    return {n: s for n, s in services.items() if "infra/Dockerfile" in str(s.get("build", ""))}


def test_every_variable_a_lakeloop_service_sets_is_read_by_the_code() -> None:
    services = lakeloop_services()
    assert {"init", "bridge", "worker"} <= set(services)
    read = settings_env_names()
    assert {"PREFECT_API_URL", "MLFLOW_TRACKING_URI", "LAKEFS_ENDPOINT", "LAKELOOP_HOME"} <= read
    unread = {f"{name}: {var}" for name, svc in services.items() for var in svc.get("environment") or {}
              if var not in read and var not in THIRD_PARTY}
    assert not unread, f"set in {COMPOSE.name} but read by no settings class: {sorted(unread)}"
    anchor = yaml.safe_load(COMPOSE.read_text())["x-lakeloop-env"]
    assert all(svc["environment"] == anchor for svc in services.values()), "one environment for all of them"


def test_init_prepares_the_servers_before_the_bridge_and_the_worker_start() -> None:
    from typer.main import get_command

    from infra.cli import app

    services = lakeloop_services()
    argv = shlex.split(services["init"]["command"])
    assert argv[:2] == ["lakeloop", "init"]
    assert "init" in get_command(app).commands  # type: ignore[attr-defined]
    for name in ("bridge", "worker"):
        assert services[name]["depends_on"]["init"] == {"condition": "service_completed_successfully"}, name
    assert "deploy" not in services["worker"]["command"], "deploying is init's job"


def test_lakeloop_state_shares_the_database_prefect_uses() -> None:
    """Bridge and worker replicas must share one state database for exactly-once to hold across hosts: the
    compose stack puts it in Prefect's PostgreSQL database (lakeloop's tables in their own schema)."""
    import sqlalchemy as sa

    compose = yaml.safe_load(COMPOSE.read_text())
    state = sa.engine.make_url(compose["x-lakeloop-env"]["LAKELOOP_STATE_URL"])
    prefect = sa.engine.make_url(compose["services"]["prefect"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"])
    assert "LAKELOOP_STATE_URL" in settings_env_names()
    assert state.get_backend_name() == "postgresql" and state.get_driver_name() == "psycopg"  # a sync driver
    assert (state.host, state.port, state.database) == (prefect.host, prefect.port, prefect.database)
    assert state.host in compose["services"]
    assert f"CREATE DATABASE {state.database};" in (COMPOSE.parent / "postgres-init.sql").read_text()
