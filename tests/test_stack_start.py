"""`lakeloop up` starts the independent servers side by side: the demo's wall clock was their sum."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from infra import stack
from infra.procs import Service, read_pidfile
from lakeloop.settings import Settings

SERVERS = ("lakefs", "mlflow", "prefect", "label-studio")


def _fake(name: str, barrier: threading.Barrier | None = None, fail: bool = False) -> Service:
    if barrier is not None:
        barrier.wait(timeout=10)  # breaks (and raises) unless every server is starting at once
    if fail:
        raise RuntimeError(f"{name} would not start")
    return Service(name=name, proc=cast(subprocess.Popen, SimpleNamespace(pid=1)), url=f"http://{name}",
                   log_path=Path("/dev/null"))


@pytest.fixture
def quiet_stack(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    monkeypatch.setenv("LAKELOOP_HOME", str(tmp_path))
    # start_stack exports the stack's environment for its children: undone after the test (it made Label
    # Studio look configured to the doctor's tests that ran later)
    monkeypatch.setattr(stack.os, "environ", dict(os.environ))
    monkeypatch.setattr(stack, "_healthy", lambda url: False)
    monkeypatch.setattr(stack, "deploy_flows", lambda s: [])
    monkeypatch.setattr(stack.prefect, "start_worker", lambda *a, **k: _fake("worker"))
    monkeypatch.setattr(stack.bridge, "start_bridge", lambda *a, **k: _fake("bridge"))
    monkeypatch.setattr(stack.label_studio, "ensure_venv", lambda root: None)
    monkeypatch.setattr(stack, "prepare_lake", lambda s: None)
    return Settings()


def _patch_servers(monkeypatch: pytest.MonkeyPatch, barrier: threading.Barrier | None,
                   failing: str | None = None) -> None:
    for module, func, name in ((stack.lakefs, "start_lakefs", "lakefs"), (stack.mlflow, "start_mlflow", "mlflow"),
                               (stack.prefect, "start_prefect_server", "prefect"),
                               (stack.label_studio, "start_label_studio", "label-studio")):
        monkeypatch.setattr(module, func, lambda *a, _n=name, **k: _fake(_n, barrier, fail=_n == failing))


def test_the_four_servers_start_at_once(monkeypatch: pytest.MonkeyPatch, quiet_stack: Settings) -> None:
    _patch_servers(monkeypatch, threading.Barrier(len(SERVERS)))
    started = stack.start_stack(quiet_stack)
    assert set(started) == {*SERVERS, "worker", "bridge"}
    assert set(read_pidfile(quiet_stack.home / "stack.json")) == {*SERVERS, "worker", "bridge"}


def test_one_failing_server_is_raised_after_the_others_are_recorded(monkeypatch: pytest.MonkeyPatch,
                                                                     quiet_stack: Settings) -> None:
    _patch_servers(monkeypatch, None, failing="mlflow")
    with pytest.raises(RuntimeError, match="mlflow would not start"):
        stack.start_stack(quiet_stack)
    # `lakeloop down` finds every server that did start
    assert set(read_pidfile(quiet_stack.home / "stack.json")) == {"lakefs", "prefect", "label-studio"}
