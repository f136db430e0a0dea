"""What lakeloop knows about one data object, kept by its content, so a commit never re-reads unchanged data.

A lakeFS object's checksum names its content. For each object (format and checksum) the store keeps,
in `<state dir>/objects/<namespace>/<key>/`:

* the object validated on its own, as if no other object held any id (`valid.parquet`,
  `invalid.parquet`, `report.json`): the training set is assembled from these frames;
* its ids as read (`ids.parquet`, sorted and unique), what "already in the lake" means to a commit,
  and as validation types them (`typed_ids.parquet`, unique), what a commit's ids are compared as;
* hash indexes of both (`ids.u64`, `typed_ids.u64`: sorted unique 64-bit hashes): a commit searches
  the first for its new ids without loading a single string (`IdIndex`), and a training set finds
  ids held by more than one object with the second.

Never a Python set: every id check is a numpy search or a polars join. The context an object is
validated in (ids earlier objects already hold) is applied by `tasks.data.dataset`, which re-validates
only the rare object whose ids another object already holds, so every result equals a full validation.

The namespace is the spec's hash (validation follows the spec), a hash of validation's code and this
module's (a change of either must not reuse old results) and the polars version: `pl.Series.hash` is
stable only within one polars version (an index is a cache, so a new version simply builds new ones),
and parsing rules may change with it too. Old namespaces are not cleaned up. Writes are atomic (a
directory renamed into place), so concurrent flow runs never see half a state.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from lakeloop.adapters.lakefs import Lake, ObjectRef
from lakeloop.spec import DatasetSpec
from tasks.data.validate import SOURCE, ValidationReport, ValidationResult, typed_ids, validate

NO_IDS = pl.Series("id", [], dtype=pl.String)
_SAFE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def id_hash(ids: pl.Expr) -> pl.Expr:
    """64-bit hash of text ids (polars' hash with a fixed seed: stable within one polars version)."""
    return ids.cast(pl.String).hash(seed=0)


def id_hashes(ids: pl.Series) -> np.ndarray:
    return ids.to_frame().select(id_hash(pl.first())).to_series().to_numpy()


class ObjectState:
    """One object's state; read lazily from its directory (a commit mostly needs only the hash index)."""

    def __init__(self, where: Path | None = None, **values: Any) -> None:
        self._dir = where
        self.__dict__.update(values)  # values given up front win over the lazy readers below

    @classmethod
    def of_frame(cls, df: pl.DataFrame, spec: DatasetSpec) -> ObjectState:
        """Validate `df` on its own (raises SchemaError as `validate` does) and index its ids."""
        result = validate(df, spec, known_ids=NO_IDS)
        raw = df.get_column(spec.id_column).cast(pl.String).drop_nulls().unique().sort().rename("id")
        typed = typed_ids(df, spec).drop_nulls().unique().rename("id")
        return cls(result=result, ids=raw, typed_ids=typed, hashes=np.unique(id_hashes(raw)),
                   typed_hashes=np.unique(id_hashes(typed)))

    @cached_property
    def result(self) -> ValidationResult:
        return self._result(pl.read_parquet(self._path() / "valid.parquet"))

    @cached_property
    def report(self) -> ValidationReport:
        return self.result.report if "result" in self.__dict__ else \
            ValidationReport(**json.loads((self._path() / "report.json").read_text()))

    def _result(self, valid: pl.DataFrame) -> ValidationResult:
        return ValidationResult(valid=valid, invalid=pl.read_parquet(self._path() / "invalid.parquet"),
                                report=self.report)

    @cached_property
    def ids(self) -> pl.Series:
        return pl.read_parquet(self._path() / "ids.parquet").to_series()

    @cached_property
    def typed_ids(self) -> pl.Series:
        return pl.read_parquet(self._path() / "typed_ids.parquet").to_series()

    @cached_property
    def hashes(self) -> np.ndarray:
        return _u64(self._path() / "ids.u64")

    @cached_property
    def typed_hashes(self) -> np.ndarray:
        return _u64(self._path() / "typed_ids.u64")

    def _path(self) -> Path:
        if self._dir is None:
            raise RuntimeError("an in-memory object state has every value already")
        return self._dir

    def with_source(self, source: str) -> ValidationResult:
        """The stored result as a validation of `source` would report it."""
        r = self.result
        invalid = r.invalid.with_columns(pl.lit(source, dtype=pl.String).alias(SOURCE)) if r.invalid.height \
            else r.invalid
        return ValidationResult(valid=r.valid, invalid=invalid, report=dataclasses.replace(r.report, source=source))

    def write(self, target: Path) -> None:
        """Write every file to a fresh directory and rename it into place (a peer's same state may win)."""
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
        try:
            r = self.result
            r.valid.write_parquet(tmp / "valid.parquet", compression="lz4")  # read by every training set
            r.invalid.write_parquet(tmp / "invalid.parquet")
            (tmp / "report.json").write_text(json.dumps(r.report.to_dict()))
            self.ids.to_frame("id").write_parquet(tmp / "ids.parquet")
            self.typed_ids.to_frame("id").write_parquet(tmp / "typed_ids.parquet")
            np.ascontiguousarray(self.hashes, dtype=np.uint64).tofile(tmp / "ids.u64")
            np.ascontiguousarray(self.typed_hashes, dtype=np.uint64).tofile(tmp / "typed_ids.u64")
            try:
                os.rename(tmp, target)
            except OSError:  # already there: another run stored the same content first
                if not target.exists():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


@cache
def _code_hash() -> str:
    """What decides a stored state besides the spec: validation's code and this module's."""
    from tasks.data import validate as validation

    code = b"".join(Path(m.__file__ or "").read_bytes() for m in (validation, sys.modules[__name__]))
    return hashlib.sha256(code).hexdigest()[:12]


def _u64(path: Path) -> np.ndarray:
    if not path.stat().st_size:
        return np.zeros(0, dtype=np.uint64)
    return np.memmap(path, dtype=np.uint64, mode="r")


class ObjectStates:
    """Object states by content: on disk under `root`, or in memory for one call when `root` is None."""

    def __init__(self, spec: DatasetSpec, root: Path | None = None) -> None:
        self.spec = spec
        self.root = root
        self._memory: dict[str, ObjectState] = {}

    @classmethod
    def for_spec(cls, state_dir: Path, spec: DatasetSpec) -> ObjectStates:
        """The store the flows share, under the stack's state dir."""
        namespace = f"{spec.spec_hash()}-{_code_hash()}-polars{pl.__version__}"
        return cls(spec, Path(state_dir) / "objects" / namespace)

    @staticmethod
    def key(obj: ObjectRef) -> str:
        """Format and content: the same bytes read as CSV and as parquet are different data."""
        checksum = obj.checksum.strip().strip('"')
        if not _SAFE.match(checksum):
            checksum = hashlib.sha256(checksum.encode()).hexdigest()
        return f"{obj.path.rsplit('.', 1)[-1].lower()}-{checksum}"

    @staticmethod
    def read_results(states: list[ObjectState]) -> None:
        """Read the stored results of many objects at once: one parquet read of all their valid frames,
        decoded in parallel (what a training set needs), cut back into one frame per object."""
        unread = [s for s in states if "result" not in s.__dict__]
        if len(unread) < 2:
            return
        try:
            valid = pl.read_parquet([s._path() / "valid.parquet" for s in unread])
        except pl.exceptions.PolarsError:  # frames whose columns differ: each is read on its own when asked
            return
        offset = 0
        for s in unread:
            s.__dict__["result"] = s._result(valid.slice(offset, s.report.n_valid))
            offset += s.report.n_valid

    def get(self, obj: ObjectRef) -> ObjectState | None:
        key = self.key(obj)
        if key in self._memory:
            return self._memory[key]
        if self.root is not None and (self.root / key).is_dir():
            state = self._memory[key] = ObjectState(self.root / key)
            return state
        return None

    def build(self, obj: ObjectRef, df: pl.DataFrame) -> ObjectState:
        """Validate and index `df` (the content of `obj`) and keep it."""
        state = ObjectState.of_frame(df, self.spec)
        if self.root is not None:
            state.write(self.root / self.key(obj))
        self._memory[self.key(obj)] = state
        return state

    def of(self, lake: Lake, ref: str, obj: ObjectRef) -> ObjectState:
        """The state of `obj` (at `ref`), read from the lake and validated only the first time its content is seen."""
        state = self.get(obj)
        return state if state is not None else self.build(obj, lake.read_frame(ref, obj.path))


class IdIndex:
    """The ids (as read) of some objects: searched by hash, then confirmed on the strings where a hash matched."""

    def __init__(self, states: list[ObjectState]) -> None:
        self.states = states

    def found(self, ids: pl.Series) -> pl.Series:
        """Those of `ids` that one of the objects holds (unique)."""
        probe = ids.cast(pl.String).drop_nulls().unique().rename("id")
        if probe.is_empty():
            return NO_IDS
        wanted = id_hashes(probe)
        found = []
        for state in self.states:
            index = state.hashes
            if not len(index):
                continue
            at = np.minimum(np.searchsorted(index, wanted), len(index) - 1)
            match = index[at] == wanted
            if match.any():  # a hash match: confirm on this object's ids (a collision is not a duplicate)
                candidates = probe.filter(pl.Series(match)).to_frame()
                found.append(candidates.join(state.ids.to_frame(), on="id", how="semi").to_series())
        return pl.concat(found).unique() if found else NO_IDS


def among(ids: pl.Series, others: list[pl.Series]) -> pl.Series:
    """Those of `ids` that are in any of `others` (a polars semi join)."""
    if not others or ids.is_empty():
        return NO_IDS
    pool = pl.concat([o.cast(pl.String).rename("id") for o in others]).to_frame()
    return ids.cast(pl.String).rename("id").to_frame().join(pool, on="id", how="semi").to_series().unique()
