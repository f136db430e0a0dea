"""whylogs profiles of the dataset, kept per lakeFS object so unchanged data is never profiled twice.

A commit usually adds or changes a few objects; the dataset profile is the merge of
per-object profiles (whylogs sketches merge exactly for counts and within sketch
error for quantiles). Profiles are cached content-addressed by the object's lakeFS
checksum, in a namespace per spec hash (the spec decides which columns are
profiled, so a spec change must not reuse old profiles).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
from pydantic import BaseModel

from lakeloop.spec import DatasetSpec, FeatureType
from tasks.data.fast_sketches import profile_polars, whylogs_pandas
from tasks.data.whylogs_compat import (
    DatasetProfileView,
    deserialize_view,
    merge_views,
    profile_pandas,
    serialize_view,
    view_summary,
)

Loader = Callable[[], pl.DataFrame]

_SAFE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


class ProfileStats(BaseModel):
    profiled: int = 0
    reused: int = 0
    rows_profiled: int = 0


class ProfileSummary(BaseModel):
    """Small, JSON-able digest of a profile for artifacts and Prefect markdown."""

    rows: int
    columns: dict[str, dict[str, Any]]


class ProfileStore:
    """Content-addressed cache: `<root>/<checksum>.bin` holds the whylogs profile of that object."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @classmethod
    def for_spec(cls, home: Path, spec: DatasetSpec) -> ProfileStore:
        """The store under `home/profiles/<spec hash>/` used by the flows."""
        return cls(Path(home) / "profiles" / spec.spec_hash())

    def path(self, checksum: str) -> Path:
        key = checksum.strip().strip('"')
        if not _SAFE.match(key):
            key = hashlib.sha256(key.encode()).hexdigest()
        return self.root / f"{key}.bin"

    def has(self, checksum: str) -> bool:
        return self.path(checksum).exists()

    def get_bytes(self, checksum: str) -> bytes | None:
        try:
            return self.path(checksum).read_bytes()
        except FileNotFoundError:
            return None

    def put_bytes(self, checksum: str, data: bytes) -> Path:
        """Atomic write (tmp + rename), so concurrent flow runs never read half a profile."""
        target = self.path(checksum)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".bin")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    def get(self, checksum: str) -> DatasetProfileView | None:
        data = self.get_bytes(checksum)
        return None if data is None else deserialize_view(data)

    def put(self, checksum: str, view: DatasetProfileView) -> Path:
        return self.put_bytes(checksum, serialize_view(view))


def profiled_columns(spec: DatasetSpec) -> list[str]:
    """Features (PII excluded) and the label. Id and time columns are left out: they drift by design."""
    return [f.name for f in spec.features if not f.pii] + [spec.label_column]


def frame_for_profile(df: pl.DataFrame, spec: DatasetSpec) -> pl.DataFrame:
    """The profiled columns, cast by spec type: text as strings, booleans and integers as Int64, numbers as Float64."""
    exprs: list[pl.Expr] = []
    for name in profiled_columns(spec):
        if name not in df.columns:
            raise ValueError(f"column {name!r} of spec {spec.name!r} is missing from the frame to profile")
        ftype = None if name == spec.label_column else spec.feature(name).type
        if ftype in (FeatureType.categorical, FeatureType.string) or name == spec.label_column:
            dtype: type[pl.DataType] = pl.Utf8
        elif ftype in (FeatureType.boolean, FeatureType.integer):
            # whylogs' bool path runs six lambdas per value; 0/1 integers take the vectorised int path
            dtype = pl.Int64
        else:
            dtype = pl.Float64
        exprs.append(pl.col(name).cast(dtype))
    return df.select(exprs)


def profile_frame(df: pl.DataFrame, spec: DatasetSpec, *, fast: bool = True) -> DatasetProfileView:
    """whylogs profile of the spec's features (PII excluded) and label.

    `fast=False` runs `whylogs.log` itself on the same columns: the reference the fast path equals
    (tests/test_profiling_fast.py) and the baseline of bench/bench_profile.py."""
    frame = frame_for_profile(df, spec)
    return profile_polars(frame) if fast else profile_pandas(whylogs_pandas(frame), fast_numeric=False)


def dataset_profile(
    objects: list[tuple[str, Loader]],
    store: ProfileStore,
    spec: DatasetSpec,
) -> tuple[DatasetProfileView, ProfileStats]:
    """Merged profile of all objects; only objects whose checksum is not cached are loaded and profiled."""
    stats = ProfileStats()
    views: list[DatasetProfileView] = []
    for checksum, loader in objects:
        # the same checksum twice (a copied object) is profiled once but counted twice, like its rows
        view = store.get(checksum)
        if view is None:
            frame = loader()
            view = profile_frame(frame, spec)
            store.put(checksum, view)
            stats.profiled += 1
            stats.rows_profiled += frame.height
        else:
            stats.reused += 1
        views.append(view)
    return merge_views(views), stats


def profile_rows(view: DatasetProfileView) -> int:
    """Row count of a profile (the largest column count; every profiled column sees every row)."""
    cols = view.get_columns()
    best = 0
    for cview in cols.values():
        counts = cview.get_metric("counts")
        if counts is not None:
            best = max(best, int(counts.n.value))
    return best


def summarize(view: DatasetProfileView) -> ProfileSummary:
    return ProfileSummary(rows=profile_rows(view), columns=view_summary(view))


def to_bytes(view: DatasetProfileView) -> bytes:
    """Bytes for lakeFS objects / MLflow artifacts (whylogs protobuf)."""
    return serialize_view(view)


def from_bytes(data: bytes) -> DatasetProfileView:
    return deserialize_view(data)
