"""Per-object state keyed by content: any sequence of add/replace/remove commits gives what a full recomputation gives.

The reference below is the full recomputation lakeloop did before the state existed: read every object,
collect ids in Python sets, validate each object in that context. The lake is an in-memory stand-in with
the `Lake` methods the dataset functions call (the real server is in test_object_state_integration).
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra.demo.synth import synth_batch
from lakeloop.adapters.lakefs import Change, ObjectRef
from lakeloop.settings import LakeFSSettings
from lakeloop.spec import DatasetSpec
from tasks.data import dataset
from tasks.data.object_state import IdIndex, ObjectStates
from tasks.data.validate import validate

SPEC = DatasetSpec.from_yaml(Path(__file__).resolve().parents[1] / "examples" / "churn" / "spec.yaml")
PATHS = ["data/a.parquet", "data/b.parquet", "data/c.csv", "data/d.parquet"]


@cache
def frame(k: int) -> pl.DataFrame:
    """A small pool of contents whose ids overlap (start ids 0/8/16 over 16 rows), some rows invalid but in 5."""
    df = synth_batch(16, seed=k, start_id=8 * (k % 3), invalid_rate=0.25 if k != 5 else 0.0).data
    if k == 4:  # ids with blanks: validation strips them, the ids as read keep them
        df = df.with_columns((pl.lit(" ") + pl.col(SPEC.id_column)).alias(SPEC.id_column))
    return df


@dataclass
class FakeCommit:
    parents: list[str]


@dataclass
class FakeLake:
    settings: LakeFSSettings = field(default_factory=lambda: LakeFSSettings(repository="fake"))
    trees: dict[str, dict[str, int]] = field(default_factory=dict)  # commit -> path -> content
    parents: dict[str, list[str]] = field(default_factory=dict)
    reads: int = 0

    def commit(self, tree: dict[str, int], parent: str | None) -> str:
        cid = hashlib.sha256(f"{len(self.trees)}{sorted(tree.items())}".encode()).hexdigest()
        self.trees[cid], self.parents[cid] = dict(tree), [parent] if parent else []
        return cid

    def commit_info(self, ref: str) -> FakeCommit:
        return FakeCommit(self.parents[ref])

    def data_objects(self, ref: str, prefix: str | None = None) -> list[ObjectRef]:
        return [ObjectRef(path=p, checksum=f"content-{k}", size=1) for p, k in sorted(self.trees[ref].items())]

    def list_objects(self, ref: str, prefix: str = "") -> list[ObjectRef]:
        return self.data_objects(ref) if prefix == self.settings.data_prefix else []

    def diff(self, left: str, right: str) -> list[Change]:
        a, b = self.trees[left], self.trees[right]
        out = [Change(p, "added") for p in b if p not in a] + [Change(p, "removed") for p in a if p not in b]
        return out + [Change(p, "changed") for p in b if p in a and a[p] != b[p]]

    def read_frame(self, ref: str, path: str) -> pl.DataFrame:
        self.reads += 1
        df = frame(self.trees[ref][path])
        return df.select(pl.all().cast(pl.String)) if path.endswith(".csv") else df  # CSV is read as text


# ---- the full recomputation (lakeloop before per-object state) --------------------------------------
def full_known_ids(lake: FakeLake, ref: str, exclude: set[str]) -> set[str]:
    ids: set[str] = set()
    for obj in lake.data_objects(ref):
        if obj.path not in exclude:
            ids.update(lake.read_frame(ref, obj.path).get_column(SPEC.id_column).cast(pl.Utf8).to_list())
    return ids


def full_commit_batch(lake: FakeLake, commit_id: str) -> list[tuple[str, object]]:
    parent = dataset.first_parent(lake, commit_id)  # type: ignore[arg-type]
    objects = {o.path for o in lake.data_objects(commit_id)}
    changed = objects if parent is None else {c.path for c in lake.diff(parent, commit_id)
                                              if c.type in ("added", "changed")}
    known = full_known_ids(lake, parent, changed) if parent else set()
    out = []
    for path in sorted(changed):
        source = f"lakefs://{lake.settings.repository}/{commit_id[:12]}/{path}"
        r = validate(lake.read_frame(commit_id, path), SPEC, source=source, known_ids=known)
        out.append((path, r))
        known |= set(r.valid.get_column(SPEC.id_column).cast(pl.Utf8).to_list())
    return out


def full_training_set(lake: FakeLake, ref: str) -> tuple[pl.DataFrame, list[tuple[str, object]]]:
    seen: set[str] = set()
    out = []
    for obj in lake.data_objects(ref):
        source = f"lakefs://{lake.settings.repository}/{ref[:12]}/{obj.path}"
        r = validate(lake.read_frame(ref, obj.path), SPEC, source=source, known_ids=seen)
        seen |= set(r.valid.get_column(SPEC.id_column).cast(pl.Utf8).to_list())
        out.append((obj.path, r))
    frames = [r.valid for _, r in out if r.valid.height]  # type: ignore[attr-defined]
    return (pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()), out


def same_results(got: list[dataset.ObjectCheck], want: list[tuple[str, object]]) -> None:
    assert [c.obj.path for c in got] == [p for p, _ in want]
    for c, (_, w) in zip(got, want, strict=True):
        assert c.result.report == w.report  # type: ignore[attr-defined]
        assert c.result.valid.equals(w.valid), c.obj.path  # type: ignore[attr-defined]
        assert c.result.invalid.equals(w.invalid), c.obj.path  # type: ignore[attr-defined]


# one commit: a few (path, content or None for remove) operations
ops = st.lists(st.tuples(st.sampled_from(PATHS), st.one_of(st.none(), st.integers(0, 5))), min_size=1, max_size=3)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ops, min_size=1, max_size=4))
def test_any_commit_sequence_equals_full_recomputation(commits: list[list[tuple[str, int | None]]]) -> None:
    lake = FakeLake()
    with tempfile.TemporaryDirectory() as tmp:
        states = ObjectStates.for_spec(Path(tmp), SPEC)  # shared across commits, as the flows share it
        tree: dict[str, int] = {}
        head = None
        for commit in commits:
            for path, content in commit:
                if content is None:
                    tree.pop(path, None)
                else:
                    tree[path] = content
            head = lake.commit(tree, head)
            batch = dataset.commit_batch(lake, SPEC, head, states)  # type: ignore[arg-type]
            same_results(batch.checks, full_commit_batch(lake, head))
            data, checks = dataset.training_set(lake, SPEC, head, states)  # type: ignore[arg-type]
            want_data, want = full_training_set(lake, head)
            same_results(checks, want)
            assert data.equals(want_data)
            # a fresh store (nothing cached, everything read from disk again) agrees too
            fresh = ObjectStates.for_spec(Path(tmp), SPEC)
            again, again_checks = dataset.training_set(lake, SPEC, head, fresh)  # type: ignore[arg-type]
            same_results(again_checks, want)
            assert again.equals(want_data)


def test_a_commit_reads_only_the_objects_it_changed(tmp_path: Path) -> None:
    lake = FakeLake()
    states = ObjectStates.for_spec(tmp_path, SPEC)
    first = lake.commit({"data/a.parquet": 0, "data/b.parquet": 1}, None)
    dataset.commit_batch(lake, SPEC, first, states)  # type: ignore[arg-type]
    second = lake.commit({"data/a.parquet": 0, "data/b.parquet": 1, "data/d.parquet": 3}, first)
    lake.reads = 0
    batch = dataset.commit_batch(lake, SPEC, second, ObjectStates.for_spec(tmp_path, SPEC))  # type: ignore[arg-type]
    assert [c.obj.path for c in batch.checks] == ["data/d.parquet"]
    # the new object once (its ids collide with the lake's: content 3 overlaps content 0's), no parent object
    assert lake.reads == 1 and batch.checks[0].result.report.checks["known_id"] > 0
    lake.reads = 0
    dataset.training_set(lake, SPEC, second, ObjectStates.for_spec(tmp_path, SPEC))  # type: ignore[arg-type]
    assert lake.reads == 2  # b and d hold ids a holds: re-validated; a comes from its state alone


def test_id_index_confirms_hash_matches_on_the_ids() -> None:
    state = ObjectStates(SPEC).build(ObjectRef("data/a.parquet", "x", 1), frame(0))
    index = IdIndex([state])
    ids = frame(0).get_column(SPEC.id_column)
    assert sorted(index.found(pl.concat([ids, pl.Series(["nope", None])])).to_list()) == sorted(
        set(ids.drop_nulls().to_list()))
    assert index.found(pl.Series(["nope"])).is_empty()


def test_same_bytes_as_csv_and_parquet_are_different_states() -> None:
    a = ObjectStates.key(ObjectRef("data/x.csv", "abc", 1))
    b = ObjectStates.key(ObjectRef("data/x.parquet", "abc", 1))
    assert a != b and ObjectStates.key(ObjectRef("data/y.parquet", '"abc"', 1)) == b


@pytest.mark.parametrize("content", [0, 4])
def test_a_stored_state_reads_back_as_validated(tmp_path: Path, content: int) -> None:
    obj = ObjectRef("data/a.parquet", f"c{content}", 1)
    ObjectStates.for_spec(tmp_path, SPEC).build(obj, frame(content))
    stored = ObjectStates.for_spec(tmp_path, SPEC).get(obj)
    assert stored is not None
    want = validate(frame(content), SPEC, source="s", known_ids=set())
    got = stored.with_source("s")
    assert got.report == want.report and got.valid.equals(want.valid) and got.invalid.equals(want.invalid)


def test_rows_new_since_leave_out_the_ids_the_lake_held_then() -> None:
    from tasks.model.judge import rows_new_since

    lake = FakeLake()
    since = lake.commit({"data/a.parquet": 0, "data/c.csv": 4}, None)
    rows = pl.concat([frame(1), frame(2)])  # ids 8..23 and 16..31: 8..15 were in the lake (content 0)
    got = rows_new_since(lake, SPEC, rows, since)  # type: ignore[arg-type]
    held = full_known_ids(lake, since, set())
    assert got.equals(rows.filter(~pl.col(SPEC.id_column).is_in(list(held))))
    assert 0 < got.height < rows.height
