"""Run the server in the foreground (what `lakeloop lakefs serve` and `python -m` call)."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import uvicorn

ENV_KEY = "LAKEFS_ACCESS_KEY_ID"
ENV_SECRET = "LAKEFS_SECRET_ACCESS_KEY"


def resolve_credentials(access_key_id: str | None, secret_access_key: str | None) -> tuple[str, str, bool]:
    """Args win, then env; otherwise generate lakeFS-looking keys (and say so, since nobody else knows them)."""
    key = access_key_id or os.environ.get(ENV_KEY)
    secret = secret_access_key or os.environ.get(ENV_SECRET)
    generated = False
    if not key:
        key, generated = "AKIAJ" + secrets.token_hex(8).upper()[:15], True
    if not secret:
        secret, generated = secrets.token_urlsafe(30), True
    return key, secret, generated


RECEIVE_WINDOW = 4 * 1024 * 1024


def _large_receive_window() -> None:
    """Let a connection buffer up to RECEIVE_WINDOW of request body before uvicorn pauses reading it.

    uvicorn pauses the socket whenever 64 KiB are buffered and resumes on the app's next receive, so a
    multi-MB upload (urllib3 sends 16 KiB chunks) cost a pause/resume and an ASGI message per 64 KiB;
    profiling put that at a sixth of the server's time. uvicorn has no setting for it, only this constant.
    """
    from uvicorn.protocols.http import h11_impl

    if hasattr(h11_impl, "HIGH_WATER_LIMIT"):
        h11_impl.HIGH_WATER_LIMIT = max(h11_impl.HIGH_WATER_LIMIT, RECEIVE_WINDOW)


def serve(
    host: str, port: int, data_dir: Path, access_key_id: str | None = None, secret_access_key: str | None = None
) -> None:
    """Serve the lakeFS API on host:port with state in data_dir until interrupted."""
    from infra.lakefs_server.app import build_app

    key, secret, generated = resolve_credentials(access_key_id, secret_access_key)
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    if generated:
        print(f"lakeFS credentials (generated): access_key_id={key} secret_access_key={secret}", flush=True)
    print(f"lakeFS-compatible server on http://{host}:{port}/api/v1 (data: {data_dir})", file=sys.stderr, flush=True)
    app = build_app(data_dir, key, secret)
    _large_receive_window()
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, timeout_graceful_shutdown=5)
