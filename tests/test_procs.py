"""Service start-up refuses a taken port instead of trusting whoever answers there."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from infra.procs import ServiceStartError, port_in_use, start_service


def test_a_taken_port_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        assert port_in_use("127.0.0.1", port)
        marker = tmp_path / "started"
        with pytest.raises(ServiceStartError, match=f"port {port} is already taken"):
            start_service("demo", [sys.executable, "-c", f"open({str(marker)!r}, 'w')"],
                          health_url=f"http://127.0.0.1:{port}/health", url=f"http://127.0.0.1:{port}",
                          log_path=tmp_path / "demo.log", timeout=5)
        assert not marker.exists()
    assert not port_in_use("127.0.0.1", port)
