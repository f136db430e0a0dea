"""Contract tests: a scripted SDK session, every request and response checked against lakeFS's OpenAPI spec.

The server runs in-process behind a recording ASGI middleware so the exact
bytes on the wire can be validated with openapi-core. Two known spec quirks
are patched (see NOTES §3): YAML's integer status keys, and the 206
`Content-Range` pattern that real lakeFS does not follow either.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import lakefs
import pytest
import yaml

from infra.lakefs_server.app import build_app
from tests.lakefs_server.conftest import parquet_bytes, wait_for_runs
from tests.schema_fuzz import serve_in_thread

REPO_ROOT = Path(__file__).resolve().parents[2]
SPEC_PATH = REPO_ROOT.parent / "shared/lakefs/swagger-v1.84.0.yml"
KEY, SECRET = "AKIACONTRACT", "contract-secret"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:Use of allowEmptyValue property is deprecated:DeprecationWarning"),
    pytest.mark.skipif(not SPEC_PATH.exists(), reason=f"lakeFS OpenAPI spec not found at {SPEC_PATH}"),
]


@dataclass
class Exchange:
    method: str
    path: str
    query: str
    req_headers: dict[str, str]
    req_body: bytes
    status: int
    resp_headers: dict[str, str]
    resp_body: bytes


class Recorder:
    """ASGI middleware that keeps every request/response pair."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.exchanges: list[Exchange] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        req = bytearray()
        resp = bytearray()
        meta: dict[str, Any] = {}

        async def rcv() -> Any:
            msg = await receive()
            if msg["type"] == "http.request":
                req.extend(msg.get("body", b""))
            return msg

        async def snd(msg: Any) -> None:
            if msg["type"] == "http.response.start":
                meta["status"] = msg["status"]
                meta["headers"] = {k.decode().lower(): v.decode() for k, v in msg.get("headers", [])}
            elif msg["type"] == "http.response.body":
                resp.extend(msg.get("body", b""))
            await send(msg)

        await self.app(scope, rcv, snd)
        self.exchanges.append(
            Exchange(
                scope["method"],
                scope["path"],
                scope["query_string"].decode(),
                {k.decode().lower(): v.decode() for k, v in scope["headers"]},
                bytes(req),
                meta.get("status", 0),
                meta.get("headers", {}),
                bytes(resp),
            )
        )


def _stringify_status_keys(node: Any) -> Any:
    if isinstance(node, dict):
        return {(str(k) if isinstance(k, int) else k): _stringify_status_keys(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_stringify_status_keys(v) for v in node]
    return node


@pytest.fixture(scope="module")
def openapi() -> Any:
    from openapi_core import Config, OpenAPI

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader reads the 400 KB spec 10x faster
    spec = _stringify_status_keys(yaml.load(SPEC_PATH.read_text(), Loader=loader))
    for methods in spec["paths"].values():
        for op in methods.values():
            if isinstance(op, dict):
                for resp in (op.get("responses") or {}).values():
                    rng = (resp.get("headers") or {}).get("Content-Range") if isinstance(resp, dict) else None
                    if rng is not None:
                        rng.get("schema", {}).pop("pattern", None)  # real lakeFS sends RFC 7233 `bytes a-b/size`
    # Validating the spec itself takes seconds and is the spec authors' job; we only validate traffic.
    return OpenAPI.from_dict(spec, config=Config(spec_validator_cls=None))


@pytest.fixture(scope="module")
def recorded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Recorder]]:
    recorder = Recorder(build_app(tmp_path_factory.mktemp("contract"), KEY, SECRET))
    with serve_in_thread(recorder) as url:
        yield url, recorder


def _mock(ex: Exchange, host: str) -> tuple[Any, Any]:
    from openapi_core.testing import MockRequest, MockResponse

    args: dict[str, list[str]] = {}
    for k, v in parse_qsl(ex.query, keep_blank_values=True):
        args.setdefault(k, []).append(v)
    req_ct = ex.req_headers.get("content-type", "application/json").split(";")[0]
    request = MockRequest(
        host,
        ex.method,
        ex.path,
        args=args,
        headers=ex.req_headers,
        data=ex.req_body,
        content_type=req_ct if ex.req_body else "application/json",
    )
    resp_ct = ex.resp_headers.get("content-type", "application/json").split(";")[0]
    response = MockResponse(ex.resp_body, status_code=ex.status, headers=ex.resp_headers, content_type=resp_ct)
    return request, response


def _sdk_session(endpoint: str) -> None:
    """What lakeloop does with lakeFS, end to end."""
    client = lakefs.Client(host=endpoint, username=KEY, password=SECRET)
    repo = lakefs.Repository("contract-repo", client=client).create(storage_namespace="local://contract/repo")
    lakefs.Repository("contract-repo", client=client).create(storage_namespace="local://contract/x", exist_ok=True)
    list(lakefs.repositories(client=client))
    branch = repo.branch("ingest-1").create(source_reference="main")
    for i in range(3):
        branch.object(f"data/p{i}.parquet").upload(data=parquet_bytes(20, seed=i), metadata={"rows": "20"})
    list(branch.uncommitted())
    first = branch.commit(message="batch 1", metadata={"rows": "60"}).get_commit()
    branch.object("data/p1.parquet").upload(data=parquet_bytes(30, seed=7))
    branch.object("data/p0.parquet").stat()
    second = branch.commit(message="batch 2").get_commit()
    list(repo.ref(first.id).diff(other_ref=second.id))
    list(repo.ref("main").diff(other_ref="ingest-1", type="two_dot"))
    list(branch.log(max_amount=5))
    list(branch.objects(prefix="data/"))
    list(branch.objects(delimiter="/"))
    with repo.ref(first.id).object("data/p1.parquet").reader() as r:
        r.read()
        r.seek(4)
        r.read(8)
    repo.ref("ingest-1~1").get_commit()
    repo.ref("ingest-1@").get_commit()
    branch.merge_into(repo.branch("main"), message="merge batch")
    repo.tag("v1").create("main")
    list(repo.tags())
    list(repo.branches())
    repo.branch("main").get_commit()
    branch.object("data/p2.parquet").delete()
    branch.delete_objects(["data/p0.parquet"])
    branch.reset_changes()
    repo.branch("ingest-1").delete()
    # Action runs: a post-commit hook to a closed port fails and is recorded.
    hook = (
        "name: unreachable\non:\n  post-commit:\nhooks:\n  - id: nowhere\n    type: webhook\n"
        "    properties:\n      url: http://127.0.0.1:1/hook\n      timeout: 1s\n"
    )
    main = repo.branch("main")
    main.object("_lakefs_actions/unreachable.yaml").upload(data=hook)
    main.commit(message="add action")
    actions = client.sdk_client.actions_api
    runs = wait_for_runs(client, repo.id, timeout=5)
    assert runs and runs[0].status == "failed"
    actions.get_run(repo.id, runs[0].run_id)
    hooks = actions.list_run_hooks(repo.id, runs[0].run_id).results
    assert b"webhook request failed" in actions.get_run_hook_output(repo.id, runs[0].run_id, hooks[0].hook_run_id)


def test_sdk_session_matches_spec(openapi: Any, recorded_server: tuple[str, Recorder]) -> None:
    endpoint, recorder = recorded_server
    _sdk_session(endpoint)
    # Error responses must match the spec too: 401, 404, 409, 400.
    auth = {"Authorization": "Basic " + base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()}
    httpx.get(f"{endpoint}/api/v1/repositories/contract-repo/branches/nope", headers=auth)
    httpx.get(f"{endpoint}/api/v1/repositories", headers={"Authorization": "Basic eDp5"})
    httpx.post(
        f"{endpoint}/api/v1/repositories/contract-repo/branches", headers=auth, json={"name": "main", "source": "main"}
    )
    httpx.get(f"{endpoint}/api/v1/healthcheck")
    httpx.get(f"{endpoint}/api/v1/config", headers=auth)

    host = endpoint
    checked, problems = 0, []
    operations = set()
    for ex in recorder.exchanges:
        request, response = _mock(ex, host)
        try:
            openapi.validate_request(request)
        except Exception as e:  # noqa: BLE001 - collect every mismatch
            if ex.status != 401:  # the bad-credentials probe is a valid request shape-wise
                problems.append(f"request {ex.method} {ex.path}?{ex.query}: {e!r} {getattr(e, '__cause__', '')}")
        try:
            openapi.validate_response(request, response)
        except Exception as e:  # noqa: BLE001
            problems.append(f"response {ex.status} to {ex.method} {ex.path}: {e!r} {getattr(e, '__cause__', '')}")
        checked += 1
        operations.add((ex.method, ex.status))
    assert checked >= 30
    assert not problems, "\n".join(problems)
    # The oracle is awake: a commit reply without its required `id` is rejected.
    commit_ex = next(ex for ex in recorder.exchanges if ex.method == "GET" and "/commits/" in ex.path)
    broken = Exchange(**{**commit_ex.__dict__, "resp_body": b'{"message": "x"}'})
    with pytest.raises(Exception):  # noqa: B017
        openapi.validate_response(*_mock(broken, host))
    statuses = {s for _, s in operations}
    assert {200, 201, 204, 206, 401, 404, 409} <= statuses


def test_spec_oracle_agrees_with_server_on_bad_requests(openapi: Any, recorded_server: tuple[str, Recorder]) -> None:
    """Requests the spec rejects, the server rejects too (400), instead of half-working."""
    from openapi_core.testing import MockRequest

    endpoint, _ = recorded_server
    auth = {"Authorization": "Basic " + base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()}
    client = lakefs.Client(host=endpoint, username=KEY, password=SECRET)
    lakefs.Repository("oracle-repo", client=client).create(storage_namespace="local://contract/oracle")
    cases = [
        ("post", "/api/v1/repositories/oracle-repo/branches/main/commits", {}, b"{}"),
        ("get", "/api/v1/repositories/oracle-repo/refs/main/objects/ls", {"amount": "5000"}, b""),
        ("get", "/api/v1/repositories/oracle-repo/refs/main/diff/main", {"type": "four_dot"}, b""),
        ("post", "/api/v1/repositories", {}, b'{"name": "only-name"}'),
    ]
    for method, path, args, body in cases:
        req = MockRequest(
            endpoint, method, path, args=args, headers={**auth, "Content-Type": "application/json"}, data=body
        )
        with pytest.raises(Exception):  # noqa: B017 - any validation error
            openapi.validate_request(req)
        r = httpx.request(
            method.upper(),
            endpoint + path,
            params=args,
            content=body,
            headers={**auth, "Content-Type": "application/json"},
        )
        assert r.status_code == 400, (path, r.text)
