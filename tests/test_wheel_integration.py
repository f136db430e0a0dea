"""The built wheel is the product: installed (not editable) into a fresh venv outside the repository and
configured from the environment only, it runs the loop from a lakeFS commit to a `champion` in MLflow.

`lakeloop up` in that venv reuses the servers the fixtures started (the session's lakeFS and MLflow, and a
Prefect server of this module's own, as its deployments are the real flows rather than the session's stubs)
and, from the installed package, deploys the flows and starts the worker and the bridge; `lakeloop init`
(the compose stack's init step) then runs against the live stack. A commit on main reaches the bridge through
the actions file the stack installed; the on-commit deployment runs on the worker from site-packages and
promotes the first model.

Fast on purpose (CI runs it): the venv gets the locked dependencies from uv's cache (hardlinks; not `--offline`:
uv's own wheel is in the lock but never in the cache when pip bootstrapped the same version)
and the wheel with `--no-deps`; `uv pip check` proves the wheel's own requirements are met by the lock.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra.demo.synth import synth_batch
from infra.local.mlflow import mlflow_env
from infra.local.prefect import QUIET_SERVICES, start_prefect_server
from infra.procs import Service, free_port
from lakeloop.adapters.lakefs import Lake
from tests.fixtures.lake import lake_settings
from tests.fixtures.lakefs import HOOK_TOKEN, LakeFSServer

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[1]
UV = str(Path(sys.executable).parent / "uv")
ROWS = 1500
# variables of the test process (the session fixtures set some) that must not leak into the product's
CONFIG_PREFIXES = ("LAKELOOP_", "LAKEFS_", "LAKECTL_", "MLFLOW_", "PREFECT_", "LABEL_STUDIO_")


@dataclass
class Installed:
    venv: Path
    site_packages: Path
    seconds: float

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)


def _run(cmd: list[str], timeout: float = 300, **kw: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)  # type: ignore[call-overload]
    assert proc.returncode == 0, \
        f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """`uv build --wheel`, then a fresh venv (same interpreter) with the lock's packages and the wheel."""
    t0 = time.monotonic()
    tmp = tmp_path_factory.mktemp("wheel")
    _run([UV, "build", "--wheel", "-q", "-o", str(tmp / "dist"), str(REPO_ROOT)])
    (wheel,) = (tmp / "dist").glob("lakeloop-*.whl")
    venv = tmp / "venv"
    _run([UV, "venv", "-q", "--python", sys.executable, str(venv)])
    py = str(venv / "bin" / "python")
    _run([UV, "pip", "sync", "-q", "--python", py, str(REPO_ROOT / "requirements.lock")])
    _run([UV, "pip", "install", "-q", "--offline", "--no-deps", "--python", py, str(wheel)])
    _run([UV, "pip", "check", "-q", "--python", py])  # the wheel's declared dependencies are all met
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    return Installed(venv, site, time.monotonic() - t0)


@pytest.fixture(scope="module")
def own_prefect(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A Prefect server for the real deployments (scheduler off: only the triggers matter here)."""
    svc = start_prefect_server(tmp_path_factory.mktemp("wheel-prefect"), free_port(), ui=False, timeout=180,
                               extra_env=QUIET_SERVICES)
    try:
        yield svc
    finally:
        svc.stop(timeout=15)


def product_env(installed: Installed, home: Path, **config: str) -> dict[str, str]:
    """The test process's environment without any lakeloop or service configuration, plus `config`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(CONFIG_PREFIXES) and k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return {**env, **mlflow_env(), "PATH": f"{installed.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
            "HOME": str(home), **config}


def test_the_wheel_ships_what_the_product_reads(installed: Installed, tmp_path: Path) -> None:
    code = """
import json, flows, infra, lakeloop, tasks
from lakeloop.settings import IN_CHECKOUT, ROOT, get_settings, shipped
s = get_settings()
print(json.dumps({"modules": [m.__file__ for m in (flows, infra, lakeloop, tasks)], "in_checkout": IN_CHECKOUT,
                  "root": str(ROOT), "prefect_file": str(shipped("prefect.yaml")), "spec": str(s.spec_path),
                  "home": str(s.home)}))
"""
    out = json.loads(_run([installed.bin("python"), "-c", code], cwd=tmp_path,
                          env=product_env(installed, tmp_path)).stdout.strip().splitlines()[-1])
    site = str(installed.site_packages)
    assert all(m.startswith(site) for m in out["modules"]), out["modules"]
    assert out["root"] == site and not out["in_checkout"]
    for key in ("prefect_file", "spec"):
        assert out[key].startswith(f"{site}/lakeloop_shipped/") and Path(out[key]).is_file(), out
    assert out["home"] == str(tmp_path / ".lakeloop")  # the user's home, not site-packages


@pytest.fixture
def product(installed: Installed, lakefs_server: LakeFSServer, mlflow_server: str, own_prefect: Service,
            tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    """Environment of a team's install: every address and name from variables, nothing from the checkout;
    `lakeloop down` at the end stops what `lakeloop up` started."""
    repo = f"wheel-{uuid.uuid4().hex[:8]}"
    home = tmp_path / "home"
    work = tmp_path / "work"  # cwd of every command: outside the repository
    work.mkdir()
    env = product_env(
        installed, tmp_path,
        LAKEFS_ENDPOINT=lakefs_server.endpoint, LAKEFS_ACCESS_KEY_ID=lakefs_server.access_key_id,
        LAKEFS_SECRET_ACCESS_KEY=lakefs_server.secret_access_key, LAKEFS_REPOSITORY=repo,
        LAKEFS_STORAGE_NAMESPACE=f"local://{repo}",
        MLFLOW_TRACKING_URI=mlflow_server, MLFLOW_EXPERIMENT_NAME=f"lakeloop-{repo}", MLFLOW_MODEL_NAME=repo,
        PREFECT_API_URL=own_prefect.url,
        LAKELOOP_BRIDGE_URL=f"http://127.0.0.1:{free_port()}", LAKELOOP_BRIDGE_LAKEFS_SECRET=HOOK_TOKEN,
        LAKELOOP_HOME=str(home), LAKELOOP_TRAIN_FOLDS="3", LAKELOOP_TRAIN_N_ESTIMATORS="100",
    )
    try:
        yield env, work
    finally:
        subprocess.run([installed.bin("lakeloop"), "down"], env=env, cwd=work, capture_output=True, timeout=120)


def _logs(home: Path) -> str:
    return "\n".join(f"--- {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-30:])
                     for p in sorted((home / "logs").glob("*.log")))


def test_an_installed_wheel_runs_the_loop_from_commit_to_champion(
        installed: Installed, product: tuple[dict[str, str], Path], lakefs_server: LakeFSServer,
        mlflow_server: str) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    env, work = product
    home, repo, model = Path(env["LAKELOOP_HOME"]), env["LAKEFS_REPOSITORY"], env["MLFLOW_MODEL_NAME"]
    lakeloop = installed.bin("lakeloop")
    t0 = time.monotonic()
    up = _run([lakeloop, "up", "--no-label-studio"], env=env, cwd=work, timeout=600)
    t_up = time.monotonic() - t0
    started = json.loads((home / "stack.json").read_text())
    # the servers answered already and were reused; what `up` started runs the venv's python
    assert set(started) == {"worker", "bridge"}, up.stdout
    for name, entry in started.items():
        exe = Path(f"/proc/{entry['pid']}/cmdline").read_bytes().split(b"\0")[0].decode()
        assert exe.startswith(str(installed.venv)), f"{name} runs {exe}"

    lake = Lake(lake_settings(lakefs_server, repo))
    lake.write_frame("main", "data/001-baseline.parquet", synth_batch(ROWS, seed=1, start_id=0).data)
    commit = lake.commit("main", "add baseline", {"lakeloop.kind": "data"})
    # compose's init step on the live stack, while the commit's run goes on (a restarted init must not disturb it)
    init = subprocess.Popen([lakeloop, "init", "--wait", "30"], env=env, cwd=work, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        client = MlflowClient(tracking_uri=mlflow_server)
        deadline = time.monotonic() + 420
        champion = None
        while champion is None and time.monotonic() < deadline:
            try:
                champion = client.get_model_version_by_alias(model, "champion")
            except MlflowException:  # the model is not registered yet
                time.sleep(2)
        assert champion is not None, f"no champion {time.monotonic() - t0:.0f}s after `up`; logs:\n{_logs(home)}"
        t_loop = time.monotonic() - t0 - t_up
        init_out, _ = init.communicate(timeout=300)
    finally:
        if init.poll() is None:
            init.kill()
    assert init.returncode == 0, init_out
    assert "on-commit/on-commit" in init_out and "retrain/retrain" in init_out, init_out
    actions = [c for c in lake.log("main") if c.metadata.get("lakeloop.kind") == "actions"]
    assert len(actions) == 1, "the actions file is installed once; init again changes nothing"
    run = client.get_run(champion.run_id)
    assert run.data.tags["lakefs.commit_id"] == commit and run.data.tags["lakefs.repository"] == repo
    # trained by the installed package (a checkout would have tagged its git sha)
    assert run.data.tags["lakeloop.code_version"] == "lakeloop-0.1.0"
    print(f"\nwheel: build+install {installed.seconds:.0f}s, up {t_up:.0f}s, commit->champion {t_loop:.0f}s")
