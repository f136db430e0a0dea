"""The lake adapter against the local lakeFS server, through the official SDK."""

from __future__ import annotations

import polars as pl
import pytest

from lakeloop.adapters.lakefs import Lake, LakeError

pytestmark = pytest.mark.integration


def test_frames_commits_diff_and_merge(lake: Lake) -> None:
    df = pl.DataFrame({"id": ["a", "b"], "x": [1.0, 2.0]})
    lake.ensure_branch("ingest")
    lake.write_frame("ingest", "data/one.parquet", df)
    lake.write_frame("ingest", "data/two.csv", df.with_columns(pl.col("x") * 10))
    first = lake.commit("ingest", "two objects", {"rows": "4"})
    info = lake.commit_info(first)
    assert info.metadata["rows"] == "4" and info.message == "two objects"

    assert [o.path for o in lake.data_objects(first)] == ["data/one.parquet", "data/two.csv"]
    assert lake.read_frame(first, "data/one.parquet").equals(df)
    assert lake.read_frame(first, "data/two.csv")["x"].to_list() == ["10.0", "20.0"]  # CSV stays text

    lake.write_frame("ingest", "data/one.parquet", df.with_columns(pl.lit(9.0).alias("x")))
    second = lake.commit("ingest", "change one")
    assert lake.commit_info(second).parents == [first]
    assert [(c.path, c.type) for c in lake.diff(first, second)] == [("data/one.parquet", "changed")]
    assert lake.read_frame(first, "data/one.parquet")["x"].to_list() == [1.0, 2.0]  # old commit, old bytes

    merged = lake.merge("ingest", "main", metadata={"by": "test"})
    assert lake.commit_info(merged).parents[1] == second
    assert lake.head("main") == merged


def test_unreadable_object_names_repo_ref_and_path(lake: Lake) -> None:
    lake.write_bytes("main", "data/broken.parquet", b"not parquet at all")
    commit = lake.commit("main", "broken")
    with pytest.raises(LakeError, match=r"data/broken\.parquet: unreadable data object"):
        lake.read_frame(commit, "data/broken.parquet")
    with pytest.raises(LakeError, match="not found"):
        lake.read_bytes(commit, "data/missing.parquet")


def test_install_actions_is_idempotent(lake: Lake) -> None:
    text = (
        "name: noop actions\non:\n  post-commit:\n    branches: [nothing-matches]\n"
        "hooks:\n  - id: noop\n    type: webhook\n    properties: {url: \"http://127.0.0.1:9/\"}\n"
    )
    assert lake.install_actions("main", "t.yaml", text) is not None
    assert lake.install_actions("main", "t.yaml", text) is None


def test_is_on_branch_tells_a_side_branch_commit_from_the_branch_history(lake: Lake) -> None:
    lake.write_bytes("main", "data/a.csv", b"a\n1\n")
    on_main = lake.commit("main", "a")
    lake.ensure_branch("side", "main")
    lake.write_bytes("side", "data/b.csv", b"a\n2\n")
    side = lake.commit("side", "b")
    assert lake.is_on_branch(on_main, "main") and lake.is_on_branch(on_main, "side")
    assert not lake.is_on_branch(side, "main")
    lake.merge("side", "main")
    assert lake.is_on_branch(side, "main")


def test_object_io_asks_for_the_repository_once(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK looks the repository up (for its storage's presign support) on every new object it reads or
    writes unless told `pre_sign`; the adapter asks once, so an upload or read is one request, not two."""
    import lakefs_sdk

    calls: list[str] = []
    real = lakefs_sdk.RepositoriesApi.get_repository

    def counting(self, repository, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(repository)
        return real(self, repository, **kwargs)

    monkeypatch.setattr(lakefs_sdk.RepositoriesApi, "get_repository", counting)
    for i in range(4):
        lake.write_bytes("main", f"data/p{i}.bin", b"x" * 10)
    lake.commit("main", "four objects")
    assert [lake.read_bytes("main", f"data/p{i}.bin") for i in range(4)] == [b"x" * 10] * 4
    assert len(calls) <= 1
