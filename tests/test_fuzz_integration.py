"""schemathesis against the bridge and the local lakeFS server, on a bounded budget (seconds, for CI).

bench/bench_fuzz.py runs the same with a larger budget and records `fuzz.lakefs_cases` and
`fuzz.bridge_cases`. Any 5xx (bar a 501 saying what is not implemented), any 4xx without a message,
and any request left without an answer fails; so does any commit or object written before the run
that no longer reads back byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import schemathesis
from starlette.routing import Route

from infra.bridge.app import BridgeConfig, create_app
from infra.bridge.openapi import openapi_document
from infra.procs import free_port
from lakeloop.state import Ledger
from tests.fixtures.lakefs import LakeFSServer
from tests.fuzz_targets import (
    LAKEFS_SPEC,
    Snapshot,
    bridge_under_fuzz,
    fuzz_bridge,
    fuzz_lakefs,
    lakefs_http,
    seed_repository,
)
from tests.schema_fuzz import judge

LAKEFS_EXAMPLES, BRIDGE_EXAMPLES = 4, 30  # ~180 and ~120 cases: about 30 s on 2 busy cores


def _response(status: int, body: bytes) -> requests.Response:
    r = requests.Response()
    r.status_code, r._content = status, body
    return r


def test_judge_refuses_5xx_unclear_4xx_and_accepts_clear_answers() -> None:
    keys = ("message",)
    assert judge("GET", _response(500, b'{"message": "boom"}'), keys)
    assert judge("GET", _response(502, b""), keys)
    assert judge("GET", _response(400, b"bad"), keys)
    assert judge("GET", _response(404, b'{"message": ""}'), keys)
    assert judge("GET", _response(501, b'{"message": "oops"}'), keys)
    assert judge("GET", _response(404, b'{"message": "repo: not found"}'), keys) is None
    assert judge("HEAD", _response(404, b""), keys) is None
    assert judge("GET", _response(501, b'{"message": "x is not implemented by ..."}'), keys) is None
    assert judge("GET", _response(200, b"anything"), keys) is None


def test_bridge_document_covers_every_route_and_loads_in_schemathesis(tmp_path: Path) -> None:
    app = create_app(BridgeConfig(lakefs_secret="s", label_studio_secret="s",
                                  ledger=Ledger(tmp_path / "l.sqlite3"), emitter=lambda e: None))
    doc = openapi_document()
    routes = {(m, r.path) for r in app.routes if isinstance(r, Route) for m in (r.methods or ()) if m != "HEAD"}
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert routes - {("GET", "/openapi.json")} == documented
    ops = [r.ok() for r in schemathesis.openapi.from_dict(doc).get_all_operations()]
    assert len(ops) == len(documented)


@pytest.fixture(scope="module")
def fuzzed_lakefs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LakeFSServer, Snapshot]]:
    """A server of its own (the session's is shared with tests that list repositories), seeded."""
    server = LakeFSServer(port=free_port(), home=tmp_path_factory.mktemp("fuzz-lakefs"))
    server.start()
    try:
        yield server, seed_repository(server)
    finally:
        server.stop()


@pytest.mark.integration
@pytest.mark.skipif(not LAKEFS_SPEC.exists(), reason=f"lakeFS OpenAPI spec not found at {LAKEFS_SPEC}")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_fuzzing_the_lakefs_server_finds_no_server_error_and_loses_nothing(
        fuzzed_lakefs: tuple[LakeFSServer, Snapshot]) -> None:
    server, snap = fuzzed_lakefs
    report = fuzz_lakefs(server, snap, LAKEFS_EXAMPLES)
    assert not report.failures, report.summary()
    assert report.cases >= 100 and len(report.operations) >= 40, report.figures()
    assert report.statuses[401] > 0 and sum(n for s, n in report.statuses.items() if s < 300) > 0  # both sides
    with lakefs_http(server) as http:
        assert http.get("/api/v1/healthcheck").status_code == 204
        assert snap.changed(http) == []


@pytest.mark.integration
def test_fuzzing_the_bridge_finds_no_server_error(fuzzed_lakefs: tuple[LakeFSServer, Snapshot],
                                                  tmp_path: Path) -> None:
    server, snap = fuzzed_lakefs
    with bridge_under_fuzz(server, snap, tmp_path) as (url, _events):
        report = fuzz_bridge(url, snap, BRIDGE_EXAMPLES)
        assert requests.get(f"{url}/health", timeout=10).status_code == 200
    assert not report.failures, report.summary()
    assert report.cases >= 100, report.figures()
    with lakefs_http(server) as http:
        assert snap.changed(http) == []
