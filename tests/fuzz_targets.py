"""lakeloop's two HTTP services as fuzz targets: the local lakeFS server and the bridge.

Before a run, `seed_repository` writes commits and objects into the lakeFS server and records the
exact bytes of each commit, listing and object; the fuzz cases are steered at that repository (its
branches, commits, tags and paths; never its deletion), and `Snapshot.changed` afterwards names
anything that no longer reads back byte for byte. Shared by tests/test_fuzz_integration.py (small
budget, CI) and bench/bench_fuzz.py (the recorded figures).
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import lakefs
import schemathesis

from infra.lakefs_server.app import build_app
from tests.fixtures.lakefs import LakeFSServer
from tests.schema_fuzz import HOSTILE_CREDENTIALS, FuzzReport, basic_auth, fuzz, serve_in_thread

REPO_ROOT = Path(__file__).resolve().parents[1]
LAKEFS_SPEC = REPO_ROOT.parent / "shared/lakefs/swagger-v1.84.0.yml"
BRIDGE_SECRET = "fuzz-bridge-secret"


@dataclass
class Snapshot:
    """The bytes the server answered, per request, for everything written before the fuzz run."""

    repository: str
    branches: list[str]
    commits: list[str]
    paths: list[str]
    tag: str
    answers: dict[str, bytes] = field(default_factory=dict)

    def urls(self) -> list[str]:
        r = f"/api/v1/repositories/{self.repository}"
        out = []
        for c in self.commits:
            out += [f"{r}/commits/{c}", f"{r}/refs/{c}/objects/ls?amount=1000"]
            out += [f"{r}/refs/{c}/objects?path={p}" for p in self.paths]
        return out  # (the tag is a fuzz target too: deleting it is the API working, not data lost)

    def read(self, http: httpx.Client) -> dict[str, bytes]:
        got = {}
        for u in self.urls():
            resp = http.get(u)
            got[u] = resp.content if resp.status_code == 200 else f"HTTP {resp.status_code}".encode()
        return got

    def changed(self, http: httpx.Client) -> list[str]:
        now = self.read(http)
        return [u for u in self.urls() if now[u] != self.answers[u]]


def lakefs_http(server: LakeFSServer) -> httpx.Client:
    return httpx.Client(base_url=server.endpoint, auth=(server.access_key_id, server.secret_access_key), timeout=30)


def seed_repository(server: LakeFSServer) -> Snapshot:
    """A repository with two branches, three commits (one a merge), a tag, and objects of every kind
    of byte content; the answers are read once the writing is over."""
    from tests.lakefs_server.conftest import parquet_bytes

    client = server.client()
    name = f"fuzz-seed-{uuid.uuid4().hex[:8]}"
    repo = lakefs.Repository(name, client=client).create(storage_namespace=f"local://{name}")
    side = repo.branch("fuzz").create(source_reference="main")
    objects = {"data/a.parquet": parquet_bytes(50, seed=1), "data/b.csv": b"x,y\n1,2\n",
               "bin/random.bin": os.urandom(4096), "bin/empty": b"", "text/ünïcode name.txt": "é\u202e".encode()}
    commits = []
    for i, (path, data) in enumerate(objects.items()):
        side.object(path).upload(data=data, metadata={"i": str(i)})
        if i % 2:
            commits.append(side.commit(message=f"seed {i}", metadata={"seed": str(i)}).get_commit().id)
    commits.append(side.commit(message="seed last").get_commit().id)
    commits.append(repo.branch("main").get_commit().id)
    commits.append(side.merge_into(repo.branch("main"), message="seed merge"))
    repo.tag("seed-tag").create(commits[0])
    snap = Snapshot(name, ["main", "fuzz"], commits, list(objects), "seed-tag")
    with lakefs_http(server) as http:
        snap.answers = snap.read(http)
    return snap


def served_lakefs_operations() -> set[tuple[str, str]]:
    """(method, spec path) of every operation the local server serves (the rest answer 501 by design)."""
    with tempfile.TemporaryDirectory() as d:
        app = build_app(Path(d), "k", "s")
    return {(m, r.path.removeprefix("/api/v1")) for r in app.routes
            if "{rest" not in r.path for m in (r.methods or ())}  # type: ignore[attr-defined]


def fuzz_lakefs(server: LakeFSServer, snap: Snapshot, max_examples: int) -> FuzzReport:
    served = served_lakefs_operations()
    refs = [*snap.branches, *snap.commits, snap.tag, f"{snap.branches[1]}~1", "main@"]
    return fuzz(
        schemathesis.openapi.from_path(str(LAKEFS_SPEC)),
        f"{server.endpoint}/api/v1",
        auth_header="Authorization",
        auth_value=basic_auth(server.access_key_id, server.secret_access_key),
        hostile_auth=[basic_auth(raw) for raw in HOSTILE_CREDENTIALS],
        max_examples=max_examples,
        include=lambda method, path: (method, path) in served,
        path_parameters={"repository": [snap.repository], "branch": snap.branches, "destinationBranch": snap.branches,
                         "ref": refs, "sourceRef": refs, "leftRef": refs, "rightRef": refs,
                         "commitId": snap.commits, "tag": [snap.tag]},
        query={"path": snap.paths, "ref": refs, "prefix": ["data/", "bin/"], "delimiter": ["/"]},
        body={"ref": refs, "source": refs, "src_path": snap.paths, "paths": [snap.paths]},
        unsteered=[("DELETE", "/repositories/{repository}")],
    )


@contextmanager
def bridge_under_fuzz(server: LakeFSServer, snap: Snapshot, home: Path) -> Iterator[tuple[str, list[Any]]]:
    """The bridge as production wires it (ledger, branch policy, spec merge gate reading this lakeFS
    server), except that events go to a list instead of Prefect; yields its URL and that list."""
    from infra.bridge.app import create_app
    from infra.bridge.service import build_config
    from lakeloop.settings import BridgeSettings, LakeFSSettings, Settings

    settings = Settings(
        home=home,
        lakefs=LakeFSSettings(endpoint=server.endpoint, access_key_id=server.access_key_id,
                              secret_access_key=server.secret_access_key, repository=snap.repository),
        bridge=BridgeSettings(lakefs_secret=BRIDGE_SECRET, label_studio_secret=BRIDGE_SECRET,  # type: ignore[arg-type]
                              labels_quiet_s=0.05),  # one secret for both: the fuzz sends one token
    )
    config = build_config(settings)
    events: list[Any] = []
    config.emitter = events.append
    with serve_in_thread(create_app(config)) as url:
        yield url, events


def fuzz_bridge(url: str, snap: Snapshot, max_examples: int) -> FuzzReport:
    doc = httpx.get(f"{url}/openapi.json", timeout=10).json()
    refs = [*snap.branches, *snap.commits]
    return fuzz(
        schemathesis.openapi.from_dict(doc),
        url,
        auth_header="X-Lakeloop-Token",
        auth_value=BRIDGE_SECRET,
        hostile_auth=[b"", b"wrong", "ключ".encode(), ("\u202e" + BRIDGE_SECRET).encode(), b"\xff\xfe"],
        message_key=("error", "message"),
        max_examples=max_examples,
        body={"event_type": ["post-commit", "post-merge", "pre-merge", "pre-commit"],
              "repository_id": [snap.repository], "branch_id": snap.branches, "commit_id": snap.commits,
              "source_ref": refs, "merge_source": snap.branches,
              "action": ["ANNOTATION_CREATED", "ANNOTATION_UPDATED", "TASK_DELETED"]},
    )
