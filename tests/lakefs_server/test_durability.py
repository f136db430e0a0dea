"""Durability and concurrency: restarts keep everything, parallel writers lose nothing."""

from __future__ import annotations

import threading
from collections.abc import Callable

import lakefs
import pytest

from tests.fixtures.lakefs import LakeFSServer
from tests.lakefs_server.conftest import parquet_bytes

pytestmark = pytest.mark.integration


def _snapshot(repo: lakefs.Repository) -> dict[str, object]:
    state: dict[str, object] = {}
    for b in repo.branches():
        log = [(c.id, tuple(c.parents), c.message, tuple(sorted((c.metadata or {}).items()))) for c in b.log()]
        objects = {}
        for o in b.objects():
            with b.object(o.path).reader() as r:
                objects[o.path] = r.read()
        state[b.id] = (b.get_commit().id, log, objects, sorted((c.type, c.path) for c in b.uncommitted()))
    state["tags"] = sorted((t.id, t.get_commit().id) for t in repo.tags())
    return state


def test_restart_keeps_everything(lakefs_server: LakeFSServer, new_repo: Callable[[], lakefs.Repository]) -> None:
    repo = new_repo()
    main = repo.branch("main")
    main.object("a.parquet").upload(data=parquet_bytes(30), metadata={"k": "v"})
    main.commit(message="a", metadata={"n": "1"})
    dev = repo.branch("dev").create(source_reference="main")
    dev.object("b.parquet").upload(data=parquet_bytes(30, seed=3))
    dev.commit(message="b")
    dev.merge_into(main)
    repo.tag("t1").create("dev")
    dev.object("staged.bin").upload(data=b"not committed yet")
    before = _snapshot(repo)

    lakefs_server.restart()

    fresh = lakefs.Repository(repo.id, client=lakefs_server.client())
    assert _snapshot(fresh) == before
    assert fresh.branch("dev").object("a.parquet").stat().size_bytes == len(parquet_bytes(30))


def test_eight_writers_on_eight_branches(
    lakefs_server: LakeFSServer, new_repo: Callable[[], lakefs.Repository]
) -> None:
    repo = new_repo()
    writers, rounds, per_round = 8, 3, 2
    for w in range(writers):
        repo.branch(f"w{w}").create(source_reference="main")
    errors: list[BaseException] = []
    start = threading.Barrier(writers)

    def write(w: int) -> None:
        try:
            client = lakefs_server.client()
            branch = lakefs.Repository(repo.id, client=client).branch(f"w{w}")
            start.wait()
            for r in range(rounds):
                for i in range(per_round):
                    branch.object(f"w{w}/r{r}-{i}.parquet").upload(data=parquet_bytes(20, seed=w * 100 + r * 10 + i))
                branch.commit(message=f"writer {w} round {r}", metadata={"w": str(w), "r": str(r)})
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    for w in range(writers):
        b = repo.branch(f"w{w}")
        assert sorted(o.path for o in b.objects()) == sorted(
            f"w{w}/r{r}-{i}.parquet" for r in range(rounds) for i in range(per_round)
        )
        messages = [c.message for c in b.log()]
        assert messages == [f"writer {w} round {r}" for r in reversed(range(rounds))] + ["Repository created"]
        with b.object(f"w{w}/r2-1.parquet").reader() as f:
            assert f.read() == parquet_bytes(20, seed=w * 100 + 21)
    # Merge them all into main: disjoint paths, so no conflicts.
    main = repo.branch("main")
    for w in range(writers):
        repo.branch(f"w{w}").merge_into(main)
    assert len(list(main.objects())) == writers * rounds * per_round
