"""Run a local Label Studio (the labeling team's UI) from its own virtualenv.

Why a separate venv: Label Studio pins Django, pydantic and friends at
versions that clash with the app's, so it lives in `<root>/.venv-ls` and only
talks to lakeloop over HTTP (the SDK in the app venv, webhooks to the bridge).

Traps handled here (all seen on a real 1.23.2):
* `--internal-host 127.0.0.1` binds loopback (`--host` only sets URLs; alone it listens on 0.0.0.0).
* New organisations have legacy API tokens switched off: the first start of a
  fresh data dir creates the admin with `LABEL_STUDIO_USER_TOKEN` and
  `LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true`, so the configured token works.
* Webhooks to loopback (the bridge) are refused by LS's SSRF guard; the local
  server only listens on loopback, so the guard is switched off for it.
* The first start migrates a fresh SQLite database (~30 s to 2 min on a busy machine).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from infra.procs import Service, log_file, start_service
from lakeloop.settings import IN_CHECKOUT, ROOT

LS_VERSION = "1.23.2"
REQUIREMENTS = Path(__file__).resolve().parents[2] / "infra" / "label_studio" / "requirements.txt"
STAMP = ".lakeloop-requirements.sha256"
HEALTH_PATH = "/health"

TELEMETRY_OFF = {
    "LATEST_VERSION_CHECK": "false",
    "COLLECT_ANALYTICS": "false",
    "SENTRY_DSN": "",
    "FRONTEND_SENTRY_DSN": "",
}


class LabelStudioVenvError(RuntimeError):
    """The Label Studio venv cannot be created; the message says which step failed."""


def venv_dir(root: Path) -> Path:
    return Path(root) / ".venv-ls"


def venv_root(home: Path) -> Path:
    """Where `.venv-ls` lives: a checkout's root (beside .venv); installed, the state `home` (not site-packages)."""
    return ROOT if IN_CHECKOUT else Path(home)


def _requirements_hash(req: Path) -> str:
    return hashlib.sha256(req.read_bytes()).hexdigest()


def _find_uv(root: Path) -> str | None:
    """`uv` from the app venv (the checkout's, else the running one's), else from PATH; None: fall back to pip."""
    for candidate in (Path(root) / ".venv" / "bin" / "uv", Path(sys.executable).parent / "uv"):
        if candidate.exists():
            return str(candidate)
    return shutil.which("uv")


def _run(cmd: list[str], step: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
        raise LabelStudioVenvError(f"{step} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")


def ensure_venv(root: Path, requirements: Path = REQUIREMENTS, python: str = "python3.11") -> Path:
    """Create `<root>/.venv-ls` with Label Studio installed; returns the venv's python.

    Idempotent and fast: a stamp with the requirements' hash skips the install
    when nothing changed. Uses `uv` when available (it should be an app
    dependency), else pip. Bytecode is compiled at install time so starts stay
    fast even when PYTHONDONTWRITEBYTECODE is set.
    """
    venv = venv_dir(root)
    py = venv / "bin" / "python"
    stamp = venv / STAMP
    want = _requirements_hash(requirements)
    if py.exists() and (venv / "bin" / "label-studio").exists() and stamp.exists() \
            and stamp.read_text().strip() == want:
        return py
    if not py.exists():
        if shutil.which(python) is None:
            raise LabelStudioVenvError(f"{python} not found on PATH; Label Studio's venv needs Python 3.11")
        _run([python, "-m", "venv", str(venv)], f"creating {venv}")
    uv = _find_uv(root)
    if uv:
        _run([uv, "pip", "install", "--python", str(py), "--compile-bytecode", "-r", str(requirements)],
             f"installing {requirements} with uv")
    else:
        _run([str(py), "-m", "pip", "install", "-r", str(requirements)], f"installing {requirements} with pip")
    stamp.write_text(want + "\n")
    return py


def label_studio_env(home: Path, token: str, username: str, password: str) -> dict[str, str]:
    data_dir = Path(home) / "label-studio"
    return {
        **TELEMETRY_OFF,
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        "DJANGO_DB": "sqlite",
        "LABEL_STUDIO_USERNAME": username,
        "LABEL_STUDIO_PASSWORD": password,
        "LABEL_STUDIO_USER_TOKEN": token,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        # the bridge that receives webhooks listens on loopback too
        "SSRF_PROTECTION_ENABLED": "false",
        # empty = unset for Python: let LS cache its bytecode even if the caller disabled it
        "PYTHONDONTWRITEBYTECODE": "",
    }


def start_label_studio(
    home: Path,
    port: int,
    token: str,
    username: str,
    password: str,
    *,
    root: Path | None = None,
    host: str = "127.0.0.1",
    timeout: float = 300.0,
) -> Service:
    """Run `label-studio start` with SQLite data under `home/label-studio/`; blocks until `/health` answers.

    The admin `username`/`password` and API `token` are created on the first
    start of a fresh data dir and reused afterwards.
    """
    venv = venv_dir(root or venv_root(home))
    exe = venv / "bin" / "label-studio"
    if not exe.exists():
        raise LabelStudioVenvError(f"{exe} missing: run infra.local.label_studio.ensure_venv first")
    env = label_studio_env(home, token, username, password)
    data_dir = Path(env["LABEL_STUDIO_BASE_DATA_DIR"])
    data_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(exe), "start",
        "--no-browser",
        "--internal-host", host,
        "--port", str(port),
        "--data-dir", str(data_dir),
        "--username", username,
        # the password and token travel in the environment only (LABEL_STUDIO_PASSWORD, LABEL_STUDIO_USER_TOKEN):
        # a command line is readable by every local user (`ps`)
        "--enable-legacy-api-token",
        "--log-level", "WARNING",
    ]
    return start_service(
        "label-studio",
        cmd,
        health_url=f"http://{host}:{port}{HEALTH_PATH}",
        url=f"http://{host}:{port}",
        log_path=log_file(home, "label-studio"),
        env={**env, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"},
        cwd=data_dir,
        timeout=timeout,
    )
