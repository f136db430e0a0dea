"""The one way lakeloop touches lakeFS: a thin adapter over the official SDK.

Everything goes through `lakefs` (the wrapper over `lakefs-sdk`), so the same
code runs against a real lakeFS and against the local server in `infra/`.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import lakefs
import polars as pl
from lakefs.client import SINGLE_STORAGE_ID
from lakefs.exceptions import BadRequestException, ConflictException, NotFoundException, ServerException
from urllib3.exceptions import HTTPError

from lakeloop.adapters.secrets import reveal
from lakeloop.settings import LakeFSSettings, get_settings

DATA_SUFFIXES = (".parquet", ".csv")


class LakeError(RuntimeError):
    """A lakeFS object that cannot be used as data; the message names repo, ref and path."""


class UnreadableData(LakeError):
    """The object is there but its bytes are not data (corrupt or truncated): quarantined, not retried."""


@dataclass(frozen=True)
class CommitInfo:
    id: str
    parents: list[str]
    message: str
    committer: str
    metadata: dict[str, str]
    created: datetime


@dataclass(frozen=True)
class ObjectRef:
    path: str
    checksum: str
    size: int


@dataclass(frozen=True)
class Change:
    path: str
    type: str  # added | removed | changed | conflict


@dataclass
class Lake:
    """A lakeFS repository, reached with the settings' endpoint and credentials."""

    settings: LakeFSSettings = field(default_factory=lambda: get_settings().lakefs)

    def __post_init__(self) -> None:
        s = self.settings
        self.client = lakefs.Client(host=s.endpoint, username=s.access_key_id, password=reveal(s.secret_access_key))
        self.repo = lakefs.Repository(s.repository, client=self.client)
        self._pre_sign: bool | None = None

    def pre_sign(self) -> bool:
        """Whether object I/O goes through presigned URLs, as the SDK decides it (the repository's storage
        supports them), asked once: left to decide, the SDK looks the repository up on every new object,
        a second request per upload or read."""
        if self._pre_sign is None:
            storage_id = self.repo.properties.storage_id or SINGLE_STORAGE_ID
            self._pre_sign = bool(self.client.storage_config_by_id(storage_id).pre_sign_support)
        return self._pre_sign

    # ---- repository and branches ---------------------------------------
    def repository_exists(self) -> bool:
        """Whether the repository is there yet (asked afresh: the SDK caches a repository's properties)."""
        try:
            _ = lakefs.Repository(self.settings.repository, client=self.client).properties
        except NotFoundException:
            return False
        return True

    def ensure_repository(self) -> None:
        s = self.settings
        self.repo.create(
            storage_namespace=s.storage_namespace, default_branch=s.default_branch, exist_ok=True
        )

    def ensure_branch(self, name: str, source: str | None = None) -> str:
        """Create `name` from `source` (default branch) unless it exists; return its head commit."""
        branch = self.repo.branch(name).create(source_reference=source or self.settings.default_branch,
                                               exist_ok=True)
        return branch.get_commit().id

    def delete_branch(self, name: str) -> None:
        with contextlib.suppress(NotFoundException):
            self.repo.branch(name).delete()

    def branches(self) -> list[str]:
        return [b.id for b in self.repo.branches()]

    def head(self, ref: str) -> str:
        return self.repo.ref(ref).get_commit().id

    # ---- commits --------------------------------------------------------
    def commit(self, branch: str, message: str, metadata: dict[str, str] | None = None) -> str:
        ref = self.repo.branch(branch).commit(message=message, metadata=metadata or {})
        return ref.get_commit().id

    def commit_info(self, ref: str) -> CommitInfo:
        return _commit_info(lakefs.Reference(self.settings.repository, ref, client=self.client).get_commit())

    def is_on_branch(self, commit_id: str, branch: str) -> bool:
        """Whether `commit_id` is in `branch`'s history (its merge base with the branch is itself)."""
        api = self.client.sdk_client.refs_api
        try:
            found = api.find_merge_base(self.settings.repository, commit_id, branch)
        except NotFoundException:
            return False
        return str(found.base_commit_id) == self.head(commit_id)

    def log(self, ref: str, limit: int | None = None) -> list[CommitInfo]:
        return [_commit_info(c) for c in self.repo.ref(ref).log(max_amount=limit)]

    def merge(self, source: str, destination: str, message: str | None = None,
              metadata: dict[str, str] | None = None) -> str:
        kwargs: dict[str, object] = {}
        if message:
            kwargs["message"] = message
        if metadata:
            kwargs["metadata"] = metadata
        return self.repo.ref(source).merge_into(destination, **kwargs)

    # ---- objects --------------------------------------------------------
    def list_objects(self, ref: str, prefix: str = "") -> list[ObjectRef]:
        out = []
        for o in self.repo.ref(ref).objects(prefix=prefix):
            if isinstance(o, lakefs.models.ObjectInfo):
                out.append(ObjectRef(path=o.path, checksum=o.checksum, size=o.size_bytes or 0))
        return out

    def data_objects(self, ref: str, prefix: str | None = None) -> list[ObjectRef]:
        """Parquet and CSV objects under the data prefix, in path order."""
        p = self.settings.data_prefix if prefix is None else prefix
        return [o for o in self.list_objects(ref, p) if o.path.endswith(DATA_SUFFIXES)]

    def read_bytes(self, ref: str, path: str) -> bytes:
        """The object's bytes; while lakeFS cannot be reached, tried again with backoff (`read_retries`)."""
        where = f"lakefs://{self.settings.repository}/{ref}/{path}"
        attempt = 0
        while True:
            try:
                with self.repo.ref(ref).object(path).reader(mode="rb", pre_sign=self.pre_sign()) as r:
                    data = r.read()
                    return data if isinstance(data, bytes) else data.encode()
            except NotFoundException as e:
                raise LakeError(f"{where}: not found") from e
            except (HTTPError, OSError, ServerException) as e:
                if not _transient(e):
                    raise
                s = self.settings
                if attempt >= s.read_retries:
                    raise LakeError(f"{where}: lakeFS at {s.endpoint} unreachable after {attempt + 1} attempts: "
                                    f"{type(e).__name__}: {e}") from e
                time.sleep(min(s.retry_backoff_s * 2 ** attempt, s.retry_backoff_max_s))
                attempt += 1

    def write_bytes(self, branch: str, path: str, data: bytes, content_type: str | None = None,
                    metadata: dict[str, str] | None = None) -> None:
        self.repo.branch(branch).object(path).upload(data=data, mode="wb", content_type=content_type,
                                                      metadata=metadata, pre_sign=self.pre_sign())

    def exists(self, ref: str, path: str) -> bool:
        return bool(self.repo.ref(ref).object(path).exists())

    def delete_object(self, branch: str, path: str) -> None:
        self.repo.branch(branch).object(path).delete()

    # ---- dataframes -----------------------------------------------------
    def read_frame(self, ref: str, path: str) -> pl.DataFrame:
        data = self.read_bytes(ref, path)
        try:
            if path.endswith(".csv"):
                return pl.read_csv(io.BytesIO(data), infer_schema=False)  # validation parses text
            return pl.read_parquet(io.BytesIO(data))
        except Exception as e:  # polars raises several unrelated types for unreadable files
            raise UnreadableData(
                f"lakefs://{self.settings.repository}/{ref}/{path}: unreadable data object: {e}"
            ) from e

    def iter_frames(self, ref: str, prefix: str | None = None) -> Iterator[tuple[ObjectRef, pl.DataFrame]]:
        for obj in self.data_objects(ref, prefix):
            yield obj, self.read_frame(ref, obj.path)

    def write_frame(self, branch: str, path: str, df: pl.DataFrame,
                    metadata: dict[str, str] | None = None) -> None:
        buf = io.BytesIO()
        if path.endswith(".csv"):
            df.write_csv(buf)
            ctype = "text/csv"
        else:
            df.write_parquet(buf, compression="zstd")
            ctype = "application/vnd.apache.parquet"
        self.write_bytes(branch, path, buf.getvalue(), content_type=ctype, metadata=metadata)

    # ---- diff and actions ----------------------------------------------
    def diff(self, left: str, right: str, prefix: str | None = None) -> list[Change]:
        """Three-dot diff; a ref (or the repository) lakeFS does not have, or cannot parse, is a LakeError."""
        try:
            return [Change(path=c.path, type=c.type)
                    for c in self.repo.ref(left).diff(right, prefix=prefix)]
        except (NotFoundException, BadRequestException) as e:
            what = "not found" if isinstance(e, NotFoundException) else "invalid"
            raise LakeError(f"lakefs://{self.settings.repository}: diff {left!r}...{right!r}: {what} "
                            f"({e.body.get('message') or e.reason})") from e

    def install_actions(self, branch: str, name: str, yaml_text: str, message: str | None = None) -> str | None:
        """Write `_lakefs_actions/<name>` and commit it; returns the commit id or None if unchanged."""
        path = f"_lakefs_actions/{name}"
        try:
            if self.read_bytes(branch, path) == yaml_text.encode():
                return None
        except LakeError:
            pass
        self.write_bytes(branch, path, yaml_text.encode(), content_type="application/x-yaml")
        try:
            return self.commit(branch, message or f"lakeloop: install actions {name}",
                               {"lakeloop.kind": "actions"})
        except ConflictException:
            return None


def _transient(e: Exception) -> bool:
    """Whether trying again may help: no connection, or lakeFS failing (5xx); never a 4xx answer."""
    if isinstance(e, ServerException):
        return e.status_code is None or e.status_code >= 500
    return True


def _commit_info(c: lakefs.models.Commit) -> CommitInfo:
    return CommitInfo(
        id=c.id,
        parents=list(c.parents or []),
        message=c.message,
        committer=c.committer,
        metadata=dict(c.metadata or {}),
        created=datetime.fromtimestamp(c.creation_date, tz=UTC),
    )
