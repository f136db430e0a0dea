"""What a commit means for the dataset: the new batch it brought, and the full training set.

A commit's *batch* is the data objects it added or changed compared with its
first parent (what drift is judged on). The *training set* is every data
object at the commit, validated, with the labeling team's corrections laid
over it (last correction per id wins).

Both cost what changed, not what the lake holds: each object's validation and ids are kept by its
content (`tasks.data.object_state`), a commit reads only the objects its diff names, and ids are
checked against the other objects' hash indexes and with polars joins, never Python sets.
The results equal a full validation of every object in context (tests/test_object_state.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from lakeloop.adapters.lakefs import Lake, ObjectRef, UnreadableData
from lakeloop.layout import CORRECTIONS_PREFIX
from lakeloop.spec import DatasetSpec
from tasks.data.object_state import IdIndex, ObjectState, ObjectStates, among, id_hash
from tasks.data.stable_hash import crc32
from tasks.data.validate import ValidationResult, validate


@dataclass
class ObjectCheck:
    """One data object, validated."""

    obj: ObjectRef
    result: ValidationResult

    @property
    def n_rows(self) -> int:
        return self.result.valid.height + self.result.invalid.height

    def valid_rows(self) -> pl.DataFrame:
        """Loader for the profile cache: only called when this object's profile is not cached."""
        return self.result.valid


@dataclass(frozen=True)
class UnreadableObject:
    """A data object whose bytes no reader can open: none of its rows can be validated, so the object
    itself is quarantined, with the reader's error as its reason."""

    obj: ObjectRef
    source: str  # as validation names an object (`_source`)
    reason: str


@dataclass
class CommitBatch:
    commit_id: str
    parent_id: str | None
    checks: list[ObjectCheck] = field(default_factory=list)
    labels_changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unreadable: list[UnreadableObject] = field(default_factory=list)

    @property
    def valid(self) -> pl.DataFrame:
        frames = [c.result.valid for c in self.checks if c.result.valid.height]
        return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()

    @property
    def n_rows(self) -> int:
        return sum(c.n_rows for c in self.checks)

    @property
    def n_invalid(self) -> int:
        return sum(c.result.invalid.height for c in self.checks)


def first_parent(lake: Lake, commit_id: str) -> str | None:
    parents = lake.commit_info(commit_id).parents
    return parents[0] if parents else None


def _source(lake: Lake, ref: str, path: str) -> str:
    return f"lakefs://{lake.settings.repository}/{ref[:12]}/{path}"


def commit_batch(lake: Lake, spec: DatasetSpec, commit_id: str, states: ObjectStates | None = None) -> CommitBatch:
    """Validate the data objects this commit added or changed (ids checked against the parent's data).

    Costs what the commit changed: the diff names the objects to read, and the parent's other
    objects are consulted through their cached hash indexes (`states`; None keeps them for this call only).
    """
    states = states if states is not None else ObjectStates(spec)
    parent = first_parent(lake, commit_id)
    batch = CommitBatch(commit_id=commit_id, parent_id=parent)
    objects = {o.path: o for o in lake.data_objects(commit_id)}  # data prefix, parquet/csv only
    if parent is None:
        changed = list(objects)
    else:
        changes = lake.diff(parent, commit_id)
        changed = [c.path for c in changes if c.type in ("added", "changed") and c.path in objects]
        data_prefix = lake.settings.data_prefix
        batch.removed = [c.path for c in changes if c.type == "removed" and c.path.startswith(data_prefix)]
        batch.labels_changed = [c.path for c in changes if c.path.startswith(CORRECTIONS_PREFIX)]
    in_lake = IdIndex(_states(lake, parent, states, exclude=set(changed)) if parent else [])
    taken: list[pl.Series] = []  # valid ids of this commit's objects checked so far
    for path in sorted(changed):
        obj, source = objects[path], _source(lake, commit_id, path)
        state = states.get(obj)
        df = None
        if state is None:
            try:
                df = lake.read_frame(commit_id, path)
            except UnreadableData as e:  # quarantined whole; the commit's other objects go on
                batch.unreadable.append(UnreadableObject(obj=obj, source=source, reason=str(e)))
                continue
            state = states.build(obj, df)
        known = pl.concat([in_lake.found(state.typed_ids), among(state.typed_ids, taken)])
        if known.is_empty():  # the usual case: the object alone decides
            result = state.with_source(source)
        else:
            df = df if df is not None else lake.read_frame(commit_id, path)
            result = validate(df, spec, source=source, known_ids=known)
        batch.checks.append(ObjectCheck(obj=obj, result=result))
        taken.append(result.valid.get_column(spec.id_column))
    return batch


def _readable(lake: Lake, ref: str, states: ObjectStates,
              exclude: set[str] | None = None) -> list[tuple[ObjectRef, ObjectState]]:
    """The data objects at `ref` with their states, less unreadable ones: those hold no rows (the commit
    that brought them quarantined them), so they neither block later commits nor join a training set."""
    out = []
    for o in lake.data_objects(ref):
        if exclude and o.path in exclude:
            continue
        try:
            out.append((o, states.of(lake, ref, o)))
        except UnreadableData:
            continue
    return out


def _states(lake: Lake, ref: str, states: ObjectStates, exclude: set[str] | None = None) -> list[ObjectState]:
    return [s for _, s in _readable(lake, ref, states, exclude)]


def ids_at(lake: Lake, spec: DatasetSpec, ref: str, ids: pl.Series, states: ObjectStates | None = None) -> pl.Series:
    """Those of `ids` that a data object at `ref` holds (as read), found through the objects' hash indexes."""
    return IdIndex(_states(lake, ref, states if states is not None else ObjectStates(spec))).found(ids)


def training_set(lake: Lake, spec: DatasetSpec, ref: str,
                 states: ObjectStates | None = None) -> tuple[pl.DataFrame, list[ObjectCheck]]:
    """Every valid row at `ref`, corrections applied; invalid rows stay out (they are quarantined).

    Objects are taken in path order and an id belongs to the first object whose valid rows hold it. The
    cached per-object results are used as they are, except for an object holding an id that an earlier
    object's valid rows hold: that one is validated again with those ids, which equals a full validation.
    """
    states = states if states is not None else ObjectStates(spec)
    readable = _readable(lake, ref, states)
    objs, found = [o for o, _ in readable], [s for _, s in readable]
    states.read_results(found)
    taken = _taken_earlier(found, spec)
    checks: list[ObjectCheck] = []
    for i, (obj, state) in enumerate(zip(objs, found, strict=True)):
        source = _source(lake, ref, obj.path)
        known = taken.get(i)
        result = (state.with_source(source) if known is None
                  else validate(lake.read_frame(ref, obj.path), spec, source=source, known_ids=known))
        checks.append(ObjectCheck(obj=obj, result=result))
    frames = [c.result.valid for c in checks if c.result.valid.height]
    data = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
    corrections = [lake.read_frame(ref, o.path) for o in lake.list_objects(ref, CORRECTIONS_PREFIX)
                   if o.path.endswith(".parquet")]
    if corrections and data.height:
        from tasks.data.label_overlay import overlay_corrections

        data = overlay_corrections(data, corrections, spec)
    return data, checks


def _taken_earlier(states: list[ObjectState], spec: DatasetSpec) -> dict[int, pl.Series]:
    """Per object (by position), its ids that an earlier object's valid rows hold (only objects with any).

    An earlier object's valid rows in context are its own valid rows less ids taken before it, so the ids
    taken before object i are the union of the objects' own valid ids before i: no sequential pass needed.
    """
    if len(states) < 2:
        return {}
    # each object's hashes are sorted and unique: a stable sort (timsort) merges the runs, and equal
    # neighbours are the ids in two objects; the usual case is none
    hashes = np.sort(np.concatenate([s.typed_hashes for s in states]), kind="stable")
    twice = hashes[1:][hashes[1:] == hashes[:-1]]
    if not len(twice):
        return {}
    shared_hashes = pl.Series(np.unique(twice), dtype=pl.UInt64).implode()
    typed = pl.concat([s.typed_ids.to_frame().filter(id_hash(pl.col("id")).is_in(shared_hashes))
                       .with_columns(pl.lit(i, pl.UInt32).alias("obj")) for i, s in enumerate(states)])
    shared = typed.filter(pl.col("id").is_duplicated())
    if shared.is_empty():  # hashes alike, ids not
        return {}
    valid = pl.concat([s.result.valid.select(pl.col(spec.id_column).cast(pl.String).alias("id"))
                       .with_columns(pl.lit(i, pl.UInt32).alias("obj")) for i, s in enumerate(states)])
    first = (valid.join(shared.select("id").unique(), on="id", how="semi")
             .group_by("id").agg(pl.col("obj").min().alias("first")))
    hit = shared.join(first, on="id").filter(pl.col("obj") > pl.col("first"))
    return {int(obj): part.get_column("id") for (obj,), part in hit.partition_by("obj", as_dict=True).items()}


def holdout_mask(ids: pl.Series, share: float = 0.1) -> pl.Series:
    """Rows kept out of every training run, by a stable hash of the id.

    The champion/challenger gate scores both models on these rows, so neither has
    seen them; a row stays in (or out of) the holdout for its whole life.
    """
    buckets = int(round(share * 1000))
    # CRC-32 of the id as text, as always (tasks.data.stable_hash says why); a null id hashes as "None" did
    return (crc32(ids.cast(pl.String).fill_null("None")) % 1000 < buckets).alias(ids.name)


def split_holdout(df: pl.DataFrame, spec: DatasetSpec, share: float = 0.1) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(training rows, holdout rows) of a training set."""
    mask = holdout_mask(df.get_column(spec.id_column), share)
    return df.filter(~mask), df.filter(mask)
