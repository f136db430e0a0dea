"""Helpers for the lakeFS server tests: SDK clients, fresh repositories, parquet bytes, a webhook receiver."""

from __future__ import annotations

import io
import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import lakefs
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.fixtures.lakefs import LakeFSServer

_counter = itertools.count()


def parquet_bytes(rows: int = 100, seed: int = 0) -> bytes:
    table = pa.table(
        {
            "id": list(range(seed, seed + rows)),
            "value": [float(i * 1.5 + seed) for i in range(rows)],
            "label": [f"r{seed}-{i}" for i in range(rows)],
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def wait_for_runs(client: lakefs.Client, repo_id: str, where: Callable[[Any], bool] = lambda r: True,
                  timeout: float = 3.0) -> list[Any]:
    """The repository's action runs that match `where`, polled until there are some or `timeout` has passed
    (post-* hooks run, and record their run, after the response)."""
    deadline = time.monotonic() + timeout
    while True:
        runs = [r for r in client.sdk_client.actions_api.list_repository_runs(repo_id).results if where(r)]
        if runs or time.monotonic() >= deadline:
            return runs
        time.sleep(0.05)


@pytest.fixture
def client(lakefs_server: LakeFSServer) -> lakefs.Client:
    return lakefs_server.client()


@pytest.fixture
def new_repo(client: lakefs.Client) -> Callable[[], lakefs.Repository]:
    """A fresh repository (fresh namespace too: lakeFS never reuses one)."""

    def make() -> lakefs.Repository:
        name = f"repo-{next(_counter)}-{uuid.uuid4().hex[:8]}"
        return lakefs.Repository(name, client=client).create(storage_namespace=f"local://tests/{name}")

    return make


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """A tiny HTTP server that records POSTs and answers a status chosen per path."""

    port: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_for(self, pred: Callable[[Received], bool], timeout: float) -> Received | None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for r in self.received:
                    if pred(r):
                        return r
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)


@pytest.fixture(scope="session")
def webhook() -> Iterator[WebhookReceiver]:
    rec = WebhookReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server API
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            path = self.path.split("?", 1)[0]
            with rec.cond:
                rec.received.append(Received(self.path, dict(self.headers.items()), body, time.monotonic()))
                rec.cond.notify_all()
            status = rec.statuses.get(path, 200)
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.port = srv.server_address[1]
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield rec
    srv.shutdown()
