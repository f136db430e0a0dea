"""Fault: lakeFS goes down during a read. The adapter retries with backoff, bounded by the settings,
then fails with an error naming the object (repository, ref, path); if lakeFS comes back while it
retries, the read succeeds. A server of its own (stopped and restarted here), not the session's."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.procs import free_port
from lakeloop.adapters.lakefs import Lake, LakeError
from tests.fixtures.lake import lake_settings
from tests.fixtures.lakefs import LakeFSServer

pytestmark = pytest.mark.integration

RETRIES, BACKOFF, BACKOFF_MAX = 4, 0.2, 1.0  # waits 0.2 + 0.4 + 0.8 + 1.0 = 2.4 s in all


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[LakeFSServer]:
    server = LakeFSServer(port=free_port(), home=tmp_path / "lakefs")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _lake(server: LakeFSServer) -> Lake:
    settings = lake_settings(server, "down").model_copy(update={
        "read_retries": RETRIES, "retry_backoff_s": BACKOFF, "retry_backoff_max_s": BACKOFF_MAX})
    lake = Lake(settings)
    lake.ensure_repository()
    lake.write_bytes("main", "data/a.csv", b"id\n1\n")
    lake.commit("main", "one object")
    assert lake.read_bytes("main", "data/a.csv") == b"id\n1\n"  # and the pre-sign answer is asked now
    return lake


def test_read_while_lakefs_is_down_retries_then_names_the_object(own_server: LakeFSServer) -> None:
    lake = _lake(own_server)
    head = lake.head("main")
    own_server.stop()
    t0 = time.monotonic()
    with pytest.raises(LakeError) as caught:
        lake.read_bytes(head, "data/a.csv")
    elapsed = time.monotonic() - t0
    message = str(caught.value)
    assert f"lakefs://down/{head}/data/a.csv" in message
    assert f"{RETRIES + 1} attempts" in message
    assert 2.4 <= elapsed < 2.4 + 5  # every backoff waited, none unbounded


def test_read_succeeds_when_lakefs_comes_back_during_the_retries(own_server: LakeFSServer) -> None:
    lake = _lake(own_server)
    own_server.stop()
    back = threading.Thread(target=own_server.start)  # same port, same data dir
    lake.settings = lake.settings.model_copy(update={"read_retries": 30, "retry_backoff_max_s": 0.5})
    back.start()
    try:
        assert lake.read_bytes("main", "data/a.csv") == b"id\n1\n"
    finally:
        back.join()
