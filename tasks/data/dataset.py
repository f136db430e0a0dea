"""What a commit means for the dataset: the new batch it brought, and the full training set.

A commit's *batch* is the data objects it added or changed compared with its
first parent (what drift is judged on). The *training set* is every data
object at the commit, validated, with the labeling team's corrections laid
over it (last correction per id wins).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from lakeloop.adapters.lakefs import Lake, ObjectRef
from lakeloop.layout import CORRECTIONS_PREFIX
from lakeloop.spec import DatasetSpec
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


@dataclass
class CommitBatch:
    commit_id: str
    parent_id: str | None
    checks: list[ObjectCheck] = field(default_factory=list)
    labels_changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

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


def commit_batch(lake: Lake, spec: DatasetSpec, commit_id: str) -> CommitBatch:
    """Validate the data objects this commit added or changed (ids checked against the parent's data)."""
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
    known = known_ids(lake, spec, parent, exclude=set(changed)) if parent else set()
    for path in sorted(changed):
        df = lake.read_frame(commit_id, path)
        result = validate(df, spec, source=f"lakefs://{lake.settings.repository}/{commit_id[:12]}/{path}",
                          known_ids=known)
        batch.checks.append(ObjectCheck(obj=objects[path], result=result))
        known |= set(result.valid.get_column(spec.id_column).cast(pl.Utf8).to_list())
    return batch


def known_ids(lake: Lake, spec: DatasetSpec, ref: str, exclude: set[str] | None = None) -> set[str]:
    """Ids already in the lake at `ref` (objects being replaced are left out)."""
    ids: set[str] = set()
    for obj in lake.data_objects(ref):
        if exclude and obj.path in exclude:
            continue
        df = lake.read_frame(ref, obj.path)
        if spec.id_column in df.columns:
            ids.update(df.get_column(spec.id_column).cast(pl.Utf8).to_list())
    return ids


def training_set(lake: Lake, spec: DatasetSpec, ref: str) -> tuple[pl.DataFrame, list[ObjectCheck]]:
    """Every valid row at `ref`, corrections applied; invalid rows stay out (they are quarantined)."""
    checks: list[ObjectCheck] = []
    seen: set[str] = set()
    for obj in lake.data_objects(ref):
        df = lake.read_frame(ref, obj.path)
        result = validate(df, spec, source=f"lakefs://{lake.settings.repository}/{ref[:12]}/{obj.path}",
                          known_ids=seen)
        seen |= set(result.valid.get_column(spec.id_column).cast(pl.Utf8).to_list())
        checks.append(ObjectCheck(obj=obj, result=result))
    frames = [c.result.valid for c in checks if c.result.valid.height]
    data = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
    corrections = [lake.read_frame(ref, o.path) for o in lake.list_objects(ref, CORRECTIONS_PREFIX)
                   if o.path.endswith(".parquet")]
    if corrections and data.height:
        from tasks.data.label_overlay import overlay_corrections

        data = overlay_corrections(data, corrections, spec)
    return data, checks


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
