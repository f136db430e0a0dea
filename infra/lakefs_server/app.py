"""HTTP layer: routes under /api/v1, Basic auth, lakeFS's `{"message": ...}` errors.

Handlers are thin: parse and validate the request, call `LakeFS` in a worker
thread (pre-hooks may call back into this server, so the event loop must stay
free), and shape the response as lakeFS does. Object bodies stream in and out
without being held in memory. Anything in lakeFS's API that is not served here
answers 501 rather than a fake success.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from infra.lakefs_server.errors import ApiError
from infra.lakefs_server.listing import amount_of
from infra.lakefs_server.service import LakeFS, PostHook, parse_since
from infra.lakefs_server.spec_paths import SPEC_OPERATIONS
from infra.lakefs_server.store import BlobWriter, Store

VERSION = "1.84.0"
META_PREFIX = "x-lakefs-meta-"
CHUNK = 1024 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)")


@dataclass
class Ctx:
    """What a handler needs from the request, detached from the event loop."""

    request: Request
    body: bytes

    def p(self, name: str) -> str:
        return str(self.request.path_params[name])

    def q(self, name: str, default: str = "") -> str:
        return self.request.query_params.get(name, default)

    def qbool(self, name: str, default: bool = False) -> bool:
        raw = self.request.query_params.get(name)
        if raw is None or raw == "":
            return default
        if raw.lower() in ("true", "1"):
            return True
        if raw.lower() in ("false", "0"):
            return False
        raise ApiError(400, f"{name}: invalid boolean {raw!r}")

    def amount(self) -> int:
        return amount_of(self.request.query_params.get("amount"))

    def json(self) -> dict[str, Any]:
        try:
            data = json.loads(self.body) if self.body.strip() else None
        except (ValueError, UnicodeDecodeError) as e:
            raise ApiError(400, f"invalid request body: {e}") from e
        if not isinstance(data, dict):
            raise ApiError(400, "invalid request body: expected a JSON object")
        return data


def _str(d: dict[str, Any], key: str, required: bool = False, default: str = "") -> str:
    v = d.get(key)
    if v is None:
        if required:
            raise ApiError(400, f"{key}: required")
        return default
    if not isinstance(v, str):
        raise ApiError(400, f"{key}: must be a string")
    return v


def _bool(d: dict[str, Any], key: str) -> bool:
    v = d.get(key, False)
    if v is None:
        return False
    if not isinstance(v, bool):
        raise ApiError(400, f"{key}: must be a boolean")
    return v


def _meta(d: dict[str, Any], key: str = "metadata") -> dict[str, str]:
    v = d.get(key) or {}
    if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
        raise ApiError(400, f"{key}: must be an object of strings")
    return {str(k): x for k, x in v.items()}


def _overrides(d: dict[str, Any]) -> dict[str, Any]:
    """`commit_overrides` of a revert or cherry-pick body (absent: none)."""
    overrides = d.get("commit_overrides") or {}
    if not isinstance(overrides, dict):
        raise ApiError(400, "commit_overrides: must be an object")
    return overrides


def _object_path(request: Request) -> str:
    """The `path` query parameter every object endpoint requires."""
    path = request.query_params.get("path", "")
    if not path:
        raise ApiError(400, "path: required")
    return path


def js(obj: Any, status: int = 200) -> Response:
    return JSONResponse(obj, status_code=status)


def error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"message": message}, status_code=status, headers=headers)


def _http_date(ts: int) -> str:
    return formatdate(ts, usegmt=True)


Handler = Callable[[Ctx], Any]


class Server:
    """Holds the service and credentials; builds the Starlette app."""

    def __init__(self, data_dir: Path, access_key_id: str, secret_access_key: str) -> None:
        self.store = Store(data_dir)
        self.svc = LakeFS(self.store)
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key
        self.created = int(time.time())

    # -- plumbing --------------------------------------------------------------------

    def authorized(self, request: Request) -> bool:
        auth = request.headers.get("authorization", "")
        if not auth.lower().startswith("basic "):
            return False
        try:
            user, _, pw = base64.b64decode(auth[6:].strip(), validate=True).partition(b":")
        except ValueError:  # binascii.Error, or non-ASCII characters in the header
            return False
        # compared as UTF-8 bytes: compare_digest refuses str with non-ASCII characters (a 500 before)
        user_ok = hmac.compare_digest(user, self.access_key_id.encode())
        return hmac.compare_digest(pw, self.secret_access_key.encode()) and user_ok

    def endpoint(self, fn: Handler, auth: bool = True) -> Callable[[Request], Awaitable[Response]]:
        async def ep(request: Request) -> Response:
            if auth and not self.authorized(request):
                return error(401, "error authenticating request")
            try:
                body = await request.body() if request.method in ("POST", "PUT", "PATCH", "DELETE") else b""
                result = await run_in_threadpool(fn, Ctx(request, body))
            except ApiError as e:
                return error(e.status, e.message)
            post: PostHook = None
            if isinstance(result, tuple):
                result, post = result
            resp: Response = result
            if post is not None:
                resp.background = BackgroundTask(post)
            return resp

        return ep

    def raw_endpoint(self, fn: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def ep(request: Request) -> Response:
            if not self.authorized(request):
                return error(401, "error authenticating request")
            try:
                return await fn(request)
            except ApiError as e:
                return error(e.status, e.message)

        return ep

    async def fallback(self, request: Request) -> Response:
        """Known lakeFS operations we do not serve: 501; anything else: 404."""
        path = "/" + request.path_params.get("rest", "")
        for method, pattern, template in SPEC_OPERATIONS:
            if method == request.method and pattern.match(path):
                if not self.authorized(request) and template not in ("/auth/login", "/sts/login"):
                    return error(401, "error authenticating request")
                return error(501, f"{method} {template} is not implemented by lakeloop's local lakeFS server")
        return error(404, f"{request.method} {path}: path not found")

    # -- setup, config, user ---------------------------------------------------------

    def healthcheck(self, ctx: Ctx) -> Response:
        return Response(status_code=204)

    def setup_state(self, ctx: Ctx) -> Response:
        return js({"state": "initialized", "comm_prefs_missing": False})

    def setup(self, ctx: Ctx) -> Response:
        ctx.json()
        return error(409, "lakeFS already initialized")

    def comm_prefs(self, ctx: Ctx) -> Response:
        ctx.json()
        return Response(status_code=200)

    def storage_config(self) -> dict[str, Any]:
        return {
            "blockstore_type": "local",
            "blockstore_namespace_example": "local://path/to/repo",
            "blockstore_namespace_ValidityRegex": "^(local|mem)://",
            "default_namespace_prefix": "local://",
            "pre_sign_support": False,
            "pre_sign_support_ui": False,
            "import_support": False,
            "import_validity_regex": "^local://",
            "pre_sign_multipart_upload": False,
        }

    def version_config(self) -> dict[str, Any]:
        return {"version": VERSION, "version_context": "lakeloop-local", "upgrade_recommended": False}

    def config(self, ctx: Ctx) -> Response:
        return js({"version_config": self.version_config(), "storage_config": self.storage_config()})

    def config_version(self, ctx: Ctx) -> Response:
        return js(self.version_config())

    def config_storage(self, ctx: Ctx) -> Response:
        return js(self.storage_config())

    def user(self, ctx: Ctx) -> Response:
        return js({"user": {"id": self.svc.username, "creation_date": self.created}})

    # -- repositories ----------------------------------------------------------------

    def create_repo(self, ctx: Ctx) -> Response:
        if ctx.qbool("bare"):
            raise ApiError(501, "bare repositories are not implemented by lakeloop's local lakeFS server")
        d = ctx.json()
        repo = self.svc.create_repo(
            _str(d, "name", True),
            _str(d, "storage_namespace", True),
            _str(d, "default_branch", default="main"),
            _bool(d, "read_only"),
        )
        return js(repo, 201)

    def list_repos(self, ctx: Ctx) -> Response:
        return js(self.svc.list_repos(ctx.q("prefix"), ctx.q("after"), ctx.amount()))

    def get_repo(self, ctx: Ctx) -> Response:
        return js(self.svc.get_repo(ctx.p("repository")))

    def delete_repo(self, ctx: Ctx) -> Response:
        self.svc.delete_repo(ctx.p("repository"))
        return Response(status_code=204)

    def repo_metadata(self, ctx: Ctx) -> Response:
        self.svc.get_repo(ctx.p("repository"))
        return js({})

    # -- branches and tags -----------------------------------------------------------

    def list_branches(self, ctx: Ctx) -> Response:
        return js(
            self.svc.list_branches(
                ctx.p("repository"), ctx.q("prefix"), ctx.q("after"), ctx.amount(), ctx.qbool("show_hidden")
            )
        )

    def create_branch(self, ctx: Ctx) -> tuple[Response, PostHook]:
        d = ctx.json()
        cid, post = self.svc.create_branch(
            ctx.p("repository"), _str(d, "name", True), _str(d, "source", True), _bool(d, "hidden")
        )
        return Response(cid, status_code=201, media_type="text/html"), post

    def get_branch(self, ctx: Ctx) -> Response:
        return js(self.svc.get_branch(ctx.p("repository"), ctx.p("branch")))

    def delete_branch(self, ctx: Ctx) -> tuple[Response, PostHook]:
        post = self.svc.delete_branch(ctx.p("repository"), ctx.p("branch"))
        return Response(status_code=204), post

    def reset_branch(self, ctx: Ctx) -> Response:
        d = ctx.json()
        self.svc.reset_branch(ctx.p("repository"), ctx.p("branch"), _str(d, "type", True), _str(d, "path"))
        return Response(status_code=204)

    def revert(self, ctx: Ctx) -> Response:
        d = ctx.json()
        pn = d.get("parent_number")
        if not isinstance(pn, int) or isinstance(pn, bool):
            raise ApiError(400, "parent_number: required integer")
        overrides = _overrides(d)
        self.svc.revert(
            ctx.p("repository"),
            ctx.p("branch"),
            _str(d, "ref", True),
            pn,
            _str(overrides, "message") or None,
            _meta(overrides),
            _bool(d, "allow_empty"),
        )
        return Response(status_code=204)

    def cherry_pick(self, ctx: Ctx) -> Response:
        d = ctx.json()
        pn = d.get("parent_number", 0)
        if not isinstance(pn, int) or isinstance(pn, bool):
            raise ApiError(400, "parent_number: must be an integer")
        overrides = _overrides(d)
        c = self.svc.cherry_pick(
            ctx.p("repository"),
            ctx.p("branch"),
            _str(d, "ref", True),
            pn,
            _str(overrides, "message") or None,
            _meta(overrides) if "metadata" in overrides else None,
        )
        return js(c, 201)

    def hard_reset(self, ctx: Ctx) -> Response:
        ref = ctx.q("ref")
        if not ref:
            raise ApiError(400, "ref: required")
        self.svc.hard_reset(ctx.p("repository"), ctx.p("branch"), ref)
        return Response(status_code=204)

    def copy_object(self, ctx: Ctx) -> Response:
        d = ctx.json()
        if _bool(d, "shallow"):
            raise ApiError(501, "shallow copy is not implemented by lakeloop's local lakeFS server")
        stats = self.svc.copy_object(
            ctx.p("repository"), ctx.p("branch"), ctx.q("dest_path"), _str(d, "src_ref"), _str(d, "src_path", True)
        )
        return js(stats, 201)

    def list_tags(self, ctx: Ctx) -> Response:
        return js(self.svc.list_tags(ctx.p("repository"), ctx.q("prefix"), ctx.q("after"), ctx.amount()))

    def create_tag(self, ctx: Ctx) -> Response:
        d = ctx.json()
        return js(
            self.svc.create_tag(ctx.p("repository"), _str(d, "id", True), _str(d, "ref", True), _bool(d, "force")), 201
        )

    def get_tag(self, ctx: Ctx) -> Response:
        return js(self.svc.get_tag(ctx.p("repository"), ctx.p("tag")))

    def delete_tag(self, ctx: Ctx) -> Response:
        self.svc.delete_tag(ctx.p("repository"), ctx.p("tag"))
        return Response(status_code=204)

    # -- commits, diff, merge --------------------------------------------------------

    def commit(self, ctx: Ctx) -> tuple[Response, PostHook]:
        if ctx.q("source_metarange"):
            raise ApiError(501, "source_metarange is not implemented by lakeloop's local lakeFS server")
        d = ctx.json()
        date = d.get("date")
        if date is not None and (not isinstance(date, int) or isinstance(date, bool)):
            raise ApiError(400, "date: must be an integer")
        c, post = self.svc.commit_branch(
            ctx.p("repository"), ctx.p("branch"), _str(d, "message", True), _meta(d), _bool(d, "allow_empty"), date
        )
        return js(c, 201), post

    def get_commit(self, ctx: Ctx) -> Response:
        return js(self.svc.get_commit(ctx.p("repository"), ctx.p("commitId")))

    def log(self, ctx: Ctx) -> Response:
        qp = ctx.request.query_params
        return js(
            self.svc.log(
                ctx.p("repository"),
                ctx.p("ref"),
                ctx.q("after"),
                ctx.amount(),
                qp.getlist("objects"),
                qp.getlist("prefixes"),
                ctx.qbool("first_parent"),
                parse_since(ctx.q("since")),
                ctx.q("stop_at"),
            )
        )

    def diff_refs(self, ctx: Ctx) -> Response:
        return js(
            self.svc.diff_refs(
                ctx.p("repository"),
                ctx.p("leftRef"),
                ctx.p("rightRef"),
                ctx.q("type", "three_dot"),
                ctx.q("prefix"),
                ctx.q("after"),
                ctx.amount(),
                ctx.q("delimiter"),
            )
        )

    def diff_branch(self, ctx: Ctx) -> Response:
        return js(
            self.svc.diff_branch(
                ctx.p("repository"), ctx.p("branch"), ctx.q("prefix"), ctx.q("after"), ctx.amount(), ctx.q("delimiter")
            )
        )

    def merge(self, ctx: Ctx) -> tuple[Response, PostHook]:
        d = ctx.json() if ctx.body.strip() else {}
        strategy = d.get("strategy")
        if strategy is not None and not isinstance(strategy, str):
            raise ApiError(400, "strategy: must be a string")
        res, post = self.svc.merge(
            ctx.p("repository"),
            ctx.p("sourceRef"),
            ctx.p("destinationBranch"),
            _str(d, "message"),
            _meta(d),
            strategy or None,
            _bool(d, "force"),
            _bool(d, "allow_empty"),
            _bool(d, "squash_merge"),
        )
        return js(res), post

    def merge_base(self, ctx: Ctx) -> Response:
        return js(self.svc.merge_base(ctx.p("repository"), ctx.p("sourceRef"), ctx.p("destinationBranch")))

    # -- objects ---------------------------------------------------------------------

    def stat(self, ctx: Ctx) -> Response:
        from infra.lakefs_server.service import object_stats

        path = _object_path(ctx.request)
        e = self.svc.get_entry(ctx.p("repository"), ctx.p("ref"), path)
        return js(object_stats(path, e, ctx.qbool("user_metadata", True)))

    def ls(self, ctx: Ctx) -> Response:
        return js(
            self.svc.list_objects(
                ctx.p("repository"),
                ctx.p("ref"),
                ctx.q("prefix"),
                ctx.q("after"),
                ctx.amount(),
                ctx.q("delimiter"),
                ctx.qbool("user_metadata", True),
            )
        )

    def delete_object(self, ctx: Ctx) -> Response:
        path = _object_path(ctx.request)
        self.svc.delete_objects(ctx.p("repository"), ctx.p("branch"), [path], missing_ok=False)
        return Response(status_code=204)

    def delete_objects(self, ctx: Ctx) -> Response:
        d = ctx.json()
        paths = d.get("paths")
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise ApiError(400, "paths: required list of strings")
        if len(paths) > 1000:
            raise ApiError(400, "paths: at most 1000")
        self.svc.delete_objects(ctx.p("repository"), ctx.p("branch"), paths, missing_ok=True)
        return js({"errors": []})

    async def upload(self, request: Request) -> Response:
        repo, branch = request.path_params["repository"], request.path_params["branch"]
        path = _object_path(request)
        if request.query_params.get("storageClass"):
            raise ApiError(501, "storageClass is not implemented by lakeloop's local lakeFS server")
        await run_in_threadpool(self.svc.check_branch, repo, branch)
        ctype = request.headers.get("content-type") or "application/octet-stream"
        metadata = {k[len(META_PREFIX) :]: v for k, v in request.headers.items() if k.startswith(META_PREFIX)}
        writer = self.store.new_blob_writer()
        try:
            if ctype.lower().startswith("multipart/form-data"):
                content, part_type = parse_multipart(await request.body(), ctype)
                writer.write(content)
                ctype = part_type or "application/octet-stream"
            else:
                await _receive_into(request, writer)
            stats = await run_in_threadpool(
                self.svc.put_object,
                repo,
                branch,
                path,
                writer,
                ctype,
                metadata,
                request.headers.get("if-none-match", "").strip() == "*",
            )
        finally:
            writer.discard()
        return js(stats, 201)

    async def get_object(self, request: Request) -> Response:
        path = _object_path(request)
        if request.query_params.get("presign", "").lower() == "true":
            raise ApiError(400, "presign: not supported by the local blockstore")
        e = await run_in_threadpool(
            self.svc.get_entry, request.path_params["repository"], request.path_params["ref"], path
        )
        size = int(e["size"])
        etag = f'"{e["checksum"]}"'
        headers = {
            "ETag": etag,
            "Last-Modified": _http_date(int(e["mtime"])),
            "Accept-Ranges": "bytes",
            "Content-Type": e["content_type"] or "application/octet-stream",
            "Content-Disposition": "attachment",
            "Cache-Control": "no-store, must-revalidate",
        }
        for k, v in (e.get("metadata") or {}).items():
            headers[META_PREFIX + k] = v
        inm = request.headers.get("if-none-match")
        if inm and etag in [t.strip() for t in inm.split(",")]:
            return Response(status_code=304, headers=headers)
        start, end, status = 0, size - 1, 200
        rng = request.headers.get("range")
        if rng:
            m = _RANGE.match(rng.strip())
            parsed = _parse_range(m, size) if m else None
            if parsed is None:
                return error(416, "Requested Range Not Satisfiable", {"Content-Range": f"bytes */{size}"})
            start, end = parsed
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        length = max(0, end - start + 1)
        headers["Content-Length"] = str(length)
        if request.method == "HEAD":
            return Response(status_code=status, headers=headers)
        blob = self.store.blob_path(e["blob"])
        return StreamingResponse(_read_file(blob, start, length), status_code=status, headers=headers)

    # -- action runs -----------------------------------------------------------------

    def list_runs(self, ctx: Ctx) -> Response:
        return js(
            self.svc.list_runs(ctx.p("repository"), ctx.q("branch"), ctx.q("commit"), ctx.q("after"), ctx.amount())
        )

    def get_run(self, ctx: Ctx) -> Response:
        return js(self.svc.get_run(ctx.p("repository"), ctx.p("run_id")))

    def list_hooks(self, ctx: Ctx) -> Response:
        return js(self.svc.list_hooks(ctx.p("repository"), ctx.p("run_id"), ctx.q("after"), ctx.amount()))

    def hook_output(self, ctx: Ctx) -> Response:
        out = self.svc.hook_output(ctx.p("repository"), ctx.p("run_id"), ctx.p("hook_run_id"))
        return PlainTextResponse(out, media_type="application/octet-stream")

    # -- app -------------------------------------------------------------------------

    def app(self) -> Starlette:
        e, R = self.endpoint, "/api/v1/repositories/{repository}"
        routes = [
            Route("/api/v1/healthcheck", e(self.healthcheck, auth=False), methods=["GET"]),
            Route("/api/v1/setup_lakefs", e(self.setup_state, auth=False), methods=["GET"]),
            Route("/api/v1/setup_lakefs", e(self.setup, auth=False), methods=["POST"]),
            Route("/api/v1/setup_comm_prefs", e(self.comm_prefs, auth=False), methods=["POST"]),
            Route("/api/v1/config", e(self.config), methods=["GET"]),
            Route("/api/v1/config/version", e(self.config_version), methods=["GET"]),
            Route("/api/v1/config/storage", e(self.config_storage), methods=["GET"]),
            Route("/api/v1/user", e(self.user), methods=["GET"]),
            Route("/api/v1/repositories", e(self.list_repos), methods=["GET"]),
            Route("/api/v1/repositories", e(self.create_repo), methods=["POST"]),
            Route(R, e(self.get_repo), methods=["GET"]),
            Route(R, e(self.delete_repo), methods=["DELETE"]),
            Route(R + "/metadata", e(self.repo_metadata), methods=["GET"]),
            Route(R + "/branches", e(self.list_branches), methods=["GET"]),
            Route(R + "/branches", e(self.create_branch), methods=["POST"]),
            Route(R + "/branches/{branch}", e(self.get_branch), methods=["GET"]),
            Route(R + "/branches/{branch}", e(self.delete_branch), methods=["DELETE"]),
            Route(R + "/branches/{branch}", e(self.reset_branch), methods=["PUT"]),
            Route(R + "/branches/{branch}/revert", e(self.revert), methods=["POST"]),
            Route(R + "/branches/{branch}/cherry-pick", e(self.cherry_pick), methods=["POST"]),
            Route(R + "/branches/{branch}/hard_reset", e(self.hard_reset), methods=["PUT"]),
            Route(R + "/branches/{branch}/objects/copy", e(self.copy_object), methods=["POST"]),
            Route(R + "/branches/{branch}/commits", e(self.commit), methods=["POST"]),
            Route(R + "/branches/{branch}/diff", e(self.diff_branch), methods=["GET"]),
            Route(R + "/branches/{branch}/objects", self.raw_endpoint(self.upload), methods=["POST"]),
            Route(R + "/branches/{branch}/objects", e(self.delete_object), methods=["DELETE"]),
            Route(R + "/branches/{branch}/objects/delete", e(self.delete_objects), methods=["POST"]),
            Route(R + "/refs/{ref}/objects", self.raw_endpoint(self.get_object), methods=["GET", "HEAD"]),
            Route(R + "/refs/{ref}/objects/stat", e(self.stat), methods=["GET"]),
            Route(R + "/refs/{ref}/objects/ls", e(self.ls), methods=["GET"]),
            Route(R + "/refs/{ref}/commits", e(self.log), methods=["GET"]),
            Route(R + "/refs/{leftRef}/diff/{rightRef}", e(self.diff_refs), methods=["GET"]),
            Route(R + "/refs/{sourceRef}/merge/{destinationBranch}", e(self.merge), methods=["POST"]),
            Route(R + "/refs/{sourceRef}/merge/{destinationBranch}", e(self.merge_base), methods=["GET"]),
            Route(R + "/commits/{commitId}", e(self.get_commit), methods=["GET"]),
            Route(R + "/tags", e(self.list_tags), methods=["GET"]),
            Route(R + "/tags", e(self.create_tag), methods=["POST"]),
            Route(R + "/tags/{tag}", e(self.get_tag), methods=["GET"]),
            Route(R + "/tags/{tag}", e(self.delete_tag), methods=["DELETE"]),
            Route(R + "/actions/runs", e(self.list_runs), methods=["GET"]),
            Route(R + "/actions/runs/{run_id}", e(self.get_run), methods=["GET"]),
            Route(R + "/actions/runs/{run_id}/hooks", e(self.list_hooks), methods=["GET"]),
            Route(R + "/actions/runs/{run_id}/hooks/{hook_run_id}/output", e(self.hook_output), methods=["GET"]),
            Route("/api/v1/{rest:path}", self.fallback, methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]),
        ]
        return Starlette(routes=routes)


def _parse_range(m: re.Match[str], size: int) -> tuple[int, int] | None:
    a, b = m.group(1), m.group(2)
    if a == "" and b == "":
        return None
    if a == "":
        n = int(b)
        if n == 0:
            return None
        return max(0, size - n), size - 1
    start = int(a)
    end = size - 1 if b == "" else min(int(b), size - 1)
    if start >= size or end < start:
        return None
    return start, end


def _read_file(path: Path, start: int, length: int) -> Iterator[bytes]:
    """Stream a byte range from disk in 1 MiB chunks."""
    with open(path, "rb") as f:
        f.seek(start)
        left = length
        while left > 0:
            chunk = f.read(min(CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk


async def _receive_into(request: Request, writer: BlobWriter) -> None:
    """Stream the body into `writer` in CHUNK-sized pieces, writing and hashing each on a worker thread
    while the event loop receives the next (the SDK sends 16 KiB chunks; per-chunk work would stall both)."""
    loop = asyncio.get_running_loop()
    pending: asyncio.Future[None] | None = None
    buf = bytearray()
    try:
        async for chunk in request.stream():
            buf += chunk
            if len(buf) >= CHUNK:
                if pending is not None:
                    await pending
                pending = loop.run_in_executor(None, writer.write, buf)
                buf = bytearray()  # the worker owns the full buffer now
    finally:
        if pending is not None:  # even on a disconnect: the caller discards the file only after the last write
            await pending
    if buf:
        writer.write(buf)


def parse_multipart(body: bytes, content_type: str) -> tuple[bytes, str | None]:
    """The `content` part of a multipart/form-data upload (the generated SDK's upload_object)."""
    m = re.search(r'boundary="?([^";]+)"?', content_type)
    if not m:
        raise ApiError(400, "multipart: missing boundary")
    delim = b"--" + m.group(1).encode()
    for part in body.split(delim)[1:]:
        if part.startswith(b"--"):
            break
        head, sep, data = part.partition(b"\r\n\r\n")
        if not sep:
            continue
        headers = head.decode("latin-1").lower()
        if re.search(r'name="content"', headers):
            if data.endswith(b"\r\n"):
                data = data[:-2]
            ct = re.search(r"content-type:\s*([^\r\n]+)", headers)
            return data, ct.group(1).strip() if ct else None
    raise ApiError(400, "multipart: missing 'content' part")


def build_app(data_dir: Path, access_key_id: str, secret_access_key: str) -> Starlette:
    return Server(data_dir, access_key_id, secret_access_key).app()
