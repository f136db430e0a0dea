"""The lakeFS SDK, over HTTP, against the local server: the flows lakeloop relies on."""

from __future__ import annotations

import base64
from collections.abc import Callable

import httpx
import lakefs
import pytest
from lakefs.exceptions import (
    BadRequestException,
    ConflictException,
    NotAuthorizedException,
    NotFoundException,
)

from tests.fixtures.lakefs import LakeFSServer
from tests.lakefs_server.conftest import parquet_bytes

pytestmark = pytest.mark.integration


def _read(repo: lakefs.Repository, ref: str, path: str) -> bytes:
    with repo.ref(ref).object(path).reader(mode="rb") as r:
        data = r.read()
        assert isinstance(data, bytes)
        return data


def test_commit_diff_log_merge_flow(new_repo: Callable[[], lakefs.Repository]) -> None:
    repo = new_repo()
    assert repo.properties.default_branch == "main"
    branch = repo.branch("ingest-1").create(source_reference="main")
    files = {f"data/part-{i}.parquet": parquet_bytes(200, seed=i) for i in range(3)}
    for path, data in files.items():
        branch.object(path).upload(data=data, metadata={"rows": "200"})
    assert sorted(c.path for c in branch.uncommitted()) == sorted(files)

    first = branch.commit(message="ingest batch 1", metadata={"rows": "600", "run_id": "42"}).get_commit()
    assert first.message == "ingest batch 1"
    assert first.metadata == {"rows": "600", "run_id": "42"}
    assert list(branch.uncommitted()) == []
    stat = branch.object("data/part-0.parquet").stat()
    assert stat.metadata == {"rows": "200"} and stat.size_bytes == len(files["data/part-0.parquet"])

    changed = parquet_bytes(250, seed=99)
    branch.object("data/part-1.parquet").upload(data=changed)
    second = branch.commit(message="ingest batch 2").get_commit()

    diff = list(repo.ref(first.id).diff(other_ref=second.id))
    assert [(d.type, d.path) for d in diff] == [("changed", "data/part-1.parquet")]

    log = list(branch.log())
    assert [c.id for c in log[:2]] == [second.id, first.id]
    assert log[0].parents == [first.id]
    assert log[1].parents == [log[2].id]
    assert log[2].message == "Repository created" and log[2].parents == []

    # Old commits still read the old bytes; the branch reads the new ones.
    assert _read(repo, first.id, "data/part-1.parquet") == files["data/part-1.parquet"]
    assert _read(repo, "ingest-1", "data/part-1.parquet") == changed

    main = repo.branch("main")
    merge_id = branch.merge_into(main)
    merged = main.get_commit()
    assert merged.id == merge_id
    assert merged.parents == [log[2].id, second.id]
    assert merged.metadata[".lakefs.merge.strategy"] == "default"
    assert sorted(o.path for o in main.objects()) == sorted(files)
    assert _read(repo, "main", "data/part-1.parquet") == changed


def test_conflicting_merge_gets_409(new_repo: Callable[[], lakefs.Repository]) -> None:
    repo = new_repo()
    main = repo.branch("main")
    main.object("shared.parquet").upload(data=parquet_bytes(10))
    main.commit(message="base")
    a = repo.branch("a").create(source_reference="main")
    b = repo.branch("b").create(source_reference="main")
    a.object("shared.parquet").upload(data=parquet_bytes(10, seed=1))
    a.commit(message="a changes")
    b.object("shared.parquet").upload(data=parquet_bytes(10, seed=2))
    b.commit(message="b changes")
    a.merge_into(main)
    head = main.get_commit().id
    with pytest.raises(ConflictException):
        b.merge_into(main)
    assert main.get_commit().id == head
    # Strategies resolve the conflict instead.
    b.merge_into(main, strategy="source-wins")
    assert _read(repo, "main", "shared.parquet") == parquet_bytes(10, seed=2)


def test_dirty_destination_and_empty_commit_are_400(new_repo: Callable[[], lakefs.Repository]) -> None:
    repo = new_repo()
    main = repo.branch("main")
    with pytest.raises(BadRequestException):
        main.commit(message="nothing staged")
    dev = repo.branch("dev").create(source_reference="main")
    dev.object("x").upload(data=b"x")
    dev.commit(message="x")
    main.object("dirty").upload(data=b"d")
    with pytest.raises(BadRequestException):
        dev.merge_into(main)


def test_ref_expressions(new_repo: Callable[[], lakefs.Repository]) -> None:
    repo = new_repo()
    main = repo.branch("main")
    created = main.get_commit().id
    main.object("v").upload(data=b"1")
    c1 = main.commit(message="one").get_commit().id
    main.object("v").upload(data=b"2")
    c2 = main.commit(message="two").get_commit().id
    assert repo.ref("main~1").get_commit().id == c1
    assert repo.ref("main~2").get_commit().id == created
    assert repo.ref("main^1").get_commit().id == c1
    assert repo.ref("main~1^1").get_commit().id == created
    assert repo.ref(c2[:10]).get_commit().id == c2
    repo.tag("v1").create(c1)
    assert repo.ref("v1").get_commit().id == c1
    assert _read(repo, "v1", "v") == b"1"
    # `@` is the committed state only: staged changes are invisible through it.
    main.object("staged-only").upload(data=b"s")
    assert _read(repo, "main", "staged-only") == b"s"
    assert repo.ref("main@").get_commit().id == c2
    with pytest.raises(NotFoundException):
        _read(repo, "main@", "staged-only")
    with pytest.raises(NotFoundException):
        repo.ref("main~5").get_commit()


def test_pagination(client: lakefs.Client, new_repo: Callable[[], lakefs.Repository]) -> None:
    repo = new_repo()
    main = repo.branch("main")
    paths = [f"p/{i:02d}.bin" for i in range(7)]
    for p in paths:
        main.object(p).upload(data=p.encode())
    main.object("q/other.bin").upload(data=b"o")
    main.commit(message="many")
    api = client.sdk_client.objects_api
    page1 = api.list_objects(repo.id, "main", prefix="p/", amount=3)
    assert [o.path for o in page1.results] == paths[:3]
    assert page1.pagination.has_more and page1.pagination.next_offset == paths[2]
    page3 = api.list_objects(repo.id, "main", prefix="p/", amount=3, after=paths[5])
    assert [o.path for o in page3.results] == paths[6:]
    assert not page3.pagination.has_more and page3.pagination.next_offset == ""
    # The wrapper pages on its own; delimiter folds into common prefixes.
    assert [o.path for o in main.objects(prefix="p/")] == paths
    assert [o.path for o in main.objects(delimiter="/")] == ["p/", "q/"]
    log = client.sdk_client.refs_api.log_commits(repo.id, "main", amount=1)
    assert len(log.results) == 1 and log.pagination.has_more
    rest = client.sdk_client.refs_api.log_commits(repo.id, "main", after=log.pagination.next_offset)
    assert [c.message for c in rest.results] == ["Repository created"]
    assert not rest.pagination.has_more


def test_unknown_things_get_404(new_repo: Callable[[], lakefs.Repository], client: lakefs.Client) -> None:
    repo = new_repo()
    with pytest.raises(NotFoundException):
        _ = lakefs.Repository("no-such-repo", client=client).properties
    with pytest.raises(NotFoundException):
        repo.branch("nope").get_commit()
    with pytest.raises(NotFoundException):
        repo.commit("f" * 64).get_commit()
    with pytest.raises(NotFoundException):
        repo.branch("main").object("missing.parquet").stat()
    with pytest.raises(NotFoundException):
        _read(repo, "main", "missing.parquet")
    with pytest.raises(NotFoundException):
        repo.tag("no-tag").get_commit()


def test_wrong_credentials_get_401(lakefs_server: LakeFSServer, new_repo: Callable[[], lakefs.Repository]) -> None:
    repo = new_repo()
    bad = lakefs_server.client(password="wrong")
    with pytest.raises(NotAuthorizedException):
        _ = lakefs.Repository(repo.id, client=bad).properties
    r = httpx.get(f"{lakefs_server.endpoint}/api/v1/repositories")
    assert r.status_code == 401 and "message" in r.json()
    assert httpx.get(f"{lakefs_server.endpoint}/api/v1/healthcheck").status_code == 204


def test_malformed_bodies_get_400(lakefs_server: LakeFSServer, new_repo: Callable[[], lakefs.Repository]) -> None:
    repo = new_repo()
    token = base64.b64encode(f"{lakefs_server.access_key_id}:{lakefs_server.secret_access_key}".encode()).decode()
    h = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}
    base = f"{lakefs_server.endpoint}/api/v1/repositories"
    cases = [
        ("POST", base, "{not json"),
        ("POST", base, '{"name": "x-repo"}'),  # storage_namespace missing
        ("POST", f"{base}/{repo.id}/branches", '{"name": "b"}'),  # source missing
        ("POST", f"{base}/{repo.id}/branches/main/commits", "{}"),  # message missing
        ("POST", f"{base}/{repo.id}/branches/main/commits", '{"message": 5}'),
        ("POST", f"{base}/{repo.id}/tags", "[]"),
        ("GET", f"{base}/{repo.id}/refs/main/objects/ls?amount=5000", None),
        ("GET", f"{base}/{repo.id}/refs/main/diff/main?type=four_dot", None),
    ]
    for method, url, body in cases:
        r = httpx.request(method, url, headers=h, content=body)
        assert r.status_code == 400, (method, url, body, r.status_code, r.text)
        assert isinstance(r.json()["message"], str)


def test_unimplemented_operations_get_501(
    lakefs_server: LakeFSServer, new_repo: Callable[[], lakefs.Repository]
) -> None:
    repo = new_repo()
    auth = (lakefs_server.access_key_id, lakefs_server.secret_access_key)
    r = httpx.get(f"{lakefs_server.endpoint}/api/v1/repositories/{repo.id}/gc/rules", auth=auth)
    assert r.status_code == 501 and "not implemented" in r.json()["message"]
    r = httpx.get(f"{lakefs_server.endpoint}/api/v1/no/such/thing", auth=auth)
    assert r.status_code == 404


def test_range_reads_and_if_none_match(lakefs_server: LakeFSServer, new_repo: Callable[[], lakefs.Repository]) -> None:
    repo = new_repo()
    main = repo.branch("main")
    data = bytes(range(256)) * 10
    main.object("blob.bin").upload(data=data)
    with main.object("blob.bin").reader() as reader:
        reader.seek(100)
        assert reader.read(16) == data[100:116]
    auth = (lakefs_server.access_key_id, lakefs_server.secret_access_key)
    url = f"{lakefs_server.endpoint}/api/v1/repositories/{repo.id}/refs/main/objects"
    r = httpx.get(url, params={"path": "blob.bin"}, headers={"Range": "bytes=4-7"}, auth=auth)
    assert r.status_code == 206 and r.content == data[4:8]
    assert r.headers["content-range"] == f"bytes 4-7/{len(data)}"
    r = httpx.get(url, params={"path": "blob.bin"}, headers={"Range": f"bytes={len(data) + 5}-"}, auth=auth)
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{len(data)}"
    etag = httpx.head(url, params={"path": "blob.bin"}, auth=auth).headers["etag"]
    assert httpx.get(url, params={"path": "blob.bin"}, headers={"If-None-Match": etag}, auth=auth).status_code == 304
    # If-None-Match: * on upload refuses to overwrite.
    with pytest.raises(lakefs.exceptions.ObjectExistsException):
        main.object("blob.bin").upload(data=b"other", mode="xb")


def test_large_uploads_keep_every_byte_and_lakefs_md5(new_repo: Callable[[], lakefs.Repository]) -> None:
    """Bodies of several MiB (written in 1 MiB pieces on a worker thread, with a short tail) arrive whole,
    with lakeFS's md5 checksum; two uploads of the same bytes are two objects with their own addresses."""
    import hashlib
    import os

    repo = new_repo()
    main = repo.branch("main")
    data = os.urandom(3 * 1024 * 1024 + 12345)
    for path in ("big/a.bin", "big/b.bin"):
        main.object(path).upload(data=data, content_type="application/octet-stream")
    stats = {o.path: o for o in main.objects(prefix="big/")}
    assert {s.checksum for s in stats.values()} == {hashlib.md5(data).hexdigest()}
    assert {s.size_bytes for s in stats.values()} == {len(data)}
    assert stats["big/a.bin"].physical_address != stats["big/b.bin"].physical_address
    main.commit(message="two big objects")
    assert _read(repo, "main", "big/a.bin") == data and _read(repo, "main", "big/b.bin") == data


def test_delete_revert_reset_and_tags(new_repo: Callable[[], lakefs.Repository]) -> None:
    repo = new_repo()
    main = repo.branch("main")
    main.object("a").upload(data=b"a")
    main.object("b").upload(data=b"b")
    c1 = main.commit(message="ab").get_commit().id
    main.object("a").delete()
    main.delete_objects(["b", "never-existed"])
    assert {(c.type, c.path) for c in main.uncommitted()} == {("removed", "a"), ("removed", "b")}
    main.reset_changes()
    assert list(main.uncommitted()) == []
    main.object("a").upload(data=b"a2")
    main.commit(message="a2")
    main.revert(main.get_commit().id, parent_number=1)
    assert main.get_commit().message.startswith("Revert ")
    assert _read(repo, "main", "a") == b"a"
    tag = repo.tag("release").create(c1)
    assert [t.id for t in repo.tags()] == ["release"]
    tag.delete()
    assert list(repo.tags()) == []
    dev = repo.branch("dev").create(source_reference="main")
    assert {b.id for b in repo.branches()} == {"main", "dev"}
    dev.delete()
    assert {b.id for b in repo.branches()} == {"main"}
    with pytest.raises(lakefs.exceptions.ForbiddenException):
        main.delete()


def test_generated_sdk_multipart_upload(client: lakefs.Client, new_repo: Callable[[], lakefs.Repository]) -> None:
    """The generated `upload_object` sends multipart/form-data with a `content` part; both forms work."""
    repo = new_repo()
    data = parquet_bytes(40, seed=5)
    stats = client.sdk_client.objects_api.upload_object(repo.id, "main", "mp/part.parquet", content=data)
    assert stats.size_bytes == len(data)
    assert _read(repo, "main", "mp/part.parquet") == data


def test_cherry_pick_copy_and_hard_reset(client: lakefs.Client, new_repo: Callable[[], lakefs.Repository]) -> None:
    repo = new_repo()
    main = repo.branch("main")
    main.object("base").upload(data=b"base")
    main.commit(message="base")
    dev = repo.branch("dev").create(source_reference="main")
    dev.object("fix").upload(data=b"fix")
    fix = dev.commit(message="the fix", metadata={"ticket": "7"}).get_commit()
    dev.object("other").upload(data=b"other")
    dev.commit(message="unrelated")

    picked = main.cherry_pick(fix.id)
    assert picked.message == "the fix" and picked.metadata == {"ticket": "7"}
    assert sorted(o.path for o in main.objects()) == ["base", "fix"]

    copied = main.object("fix").copy("dev", "copies/fix")
    assert copied.path == "copies/fix"
    assert _read(repo, "dev", "copies/fix") == b"fix"

    client.sdk_client.experimental_api.hard_reset_branch(repo.id, "dev", "main")
    assert repo.branch("dev").get_commit().id == main.get_commit().id
    assert list(repo.branch("dev").uncommitted()) == []
