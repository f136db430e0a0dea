"""Start and stop the local servers lakeloop depends on.

One place for the mechanics every service shares: pick a loopback port, start a
process with its own log file and process group, wait until it answers a health
URL, and stop it (and its children) cleanly. Used by `lakeloop up` and by the
test fixtures, so the tests start services exactly the way users do.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx


def log_file(home: Path, service: str) -> Path:
    """Where a service of the local stack logs: one folder under `home`, one file named after the service."""
    return Path(home) / "logs" / f"{service}.log"


def free_port() -> int:
    """A free TCP port on loopback (racy by nature, fine for local stacks)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServiceStartError(RuntimeError):
    pass


def port_in_use(host: str, port: int) -> bool:
    """Something already accepts connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        return s.connect_ex((host, port)) == 0


@dataclass
class Service:
    """A running server process started by lakeloop."""

    name: str
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the group, reap our child (a zombie would look alive to killpg), SIGKILL what is left."""
        _signal_group(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=timeout)
        _signal_group(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)  # start_new_session=True: the group id is the leader's pid


def stop_pid(pid: int, timeout: float = 15.0) -> None:
    """SIGTERM the process group, then SIGKILL what is left after `timeout`."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def wait_healthy(
    url: str,
    timeout: float,
    proc: subprocess.Popen[bytes] | None = None,
    ok_status: tuple[int, ...] = (200,),
    headers: dict[str, str] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServiceStartError(f"process exited with code {proc.returncode} before {url} answered")
        try:
            r = httpx.get(url, timeout=2.0, headers=headers)
            if r.status_code in ok_status:
                return
            last = f"HTTP {r.status_code}"
        except httpx.HTTPError as e:
            last = type(e).__name__
        time.sleep(0.25)
    raise ServiceStartError(f"{url} not healthy after {timeout:.0f}s ({last})")


def start_service(
    name: str,
    cmd: list[str],
    *,
    health_url: str,
    url: str,
    log_path: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 60.0,
    ok_status: tuple[int, ...] = (200,),
    health_headers: dict[str, str] | None = None,
) -> Service:
    """Start `cmd` in its own process group and block until `health_url` answers.

    The health URL's port must be free first: otherwise a server left over from another
    run would answer the health check while the new one exits on "address in use".
    """
    target = urlsplit(health_url)
    if target.port is not None and port_in_use(target.hostname or "127.0.0.1", target.port):
        raise ServiceStartError(
            f"{name}: port {target.port} is already taken by another process (a stack from another checkout "
            f"or an interrupted run?). Stop it (`lakeloop down` where it was started) or choose another port.")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **(env or {})}
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child process
    proc = subprocess.Popen(
        cmd,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=full_env,
        cwd=str(cwd) if cwd else None,
        start_new_session=True,
    )
    log.close()
    svc = Service(name=name, proc=proc, url=url, log_path=log_path)
    try:
        wait_healthy(health_url, timeout, proc, ok_status, health_headers)
    except ServiceStartError as e:
        svc.stop(timeout=5)
        raise ServiceStartError(f"{name} failed to start: {e}\n--- {log_path} ---\n{svc.log_tail()}") from e
    return svc


def record_service(path: Path, svc: Service, *, key: str | None = None, config: str | None = None) -> None:
    """Remember a started service in the stack file (read-modify-write, so partial starts are kept), under
    `key` (default: its name), with the `config` it was started for (to tell when it needs a restart)."""
    data = read_pidfile(path)
    data[key or svc.name] = {"pid": svc.pid, "url": svc.url, **({"config": config} if config is not None else {})}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)  # a reader never sees a half-written file


def read_pidfile(path: Path) -> dict[str, dict[str, object]]:
    if not path.exists():
        return {}
    data: dict[str, dict[str, object]] = json.loads(path.read_text())
    return data
