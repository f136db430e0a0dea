"""lakeFS actions: load `_lakefs_actions/*` YAML, match events, call webhooks, record runs.

Semantics follow `pkg/actions` in lakeFS: every file directly under
`_lakefs_actions/` is an action (no extension filter); `on:` maps events to an
optional `branches` glob list; hooks of one action run in order, a failed hook
skips later hooks unless their `if:` says `failure()`/`true`. A failing
`pre-*` run aborts the operation (the caller answers 412); `post-*` runs are
fire-and-forget on a worker thread.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import yaml

from infra.lakefs_server.models import EventInfo
from infra.lakefs_server.store import Store

ACTIONS_PREFIX = "_lakefs_actions/"
ENV_PREFIX = "LAKEFSACTION_"
EVENTS = {
    f"{p}-{e}"
    for p in ("pre", "post")
    for e in ("commit", "merge", "create-branch", "delete-branch", "revert", "create-tag", "delete-tag", "cherry-pick")
} | {"prepare-commit"}
_NAME = re.compile(r"^\w[\w\-. ]+$")
_HOOK_ID = re.compile(r"^[_a-zA-Z][\-_a-zA-Z0-9]{1,255}$")
_ENV_REF = re.compile(r"\{\{\s*ENV\.([A-Za-z0-9_]+)\s*\}\}")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
SECRET_MASK = "*******"  # what lakeFS's hook output shows for a value read from its environment (SecureString)
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class ActionError(Exception):
    """An action file that does not parse or validate."""


@dataclass
class Hook:
    id: str
    type: str
    properties: dict[str, Any]
    condition: str = "success()"


@dataclass
class Action:
    name: str
    on: dict[str, list[str] | None]
    hooks: list[Hook]
    source: str = ""


@dataclass
class Event:
    """What happened; becomes the webhook payload (EventInfo) plus run bookkeeping."""

    event_type: str
    repository_id: str
    branch_id: str = ""
    source_ref: str = ""
    tag_id: str = ""
    commit_id: str = ""
    commit_message: str = ""
    committer: str = ""
    commit_metadata: dict[str, str] = field(default_factory=dict)
    merge_source: str = ""

    def payload(self, action: str, hook_id: str) -> dict[str, Any]:
        """EventInfo with this event's fields (same names); empty ones are left out, as lakeFS omits them."""
        fields: dict[str, Any] = {k: v or None for k, v in asdict(self).items()}
        when = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return EventInfo(**fields, event_time=when, action_name=action, hook_id=hook_id).dump()


def parse_action(source: str, data: bytes) -> Action:
    try:
        doc = yaml.safe_load(data)
    except yaml.YAMLError as e:
        raise ActionError(f"action file {source}: yaml: {e}") from e
    if not isinstance(doc, dict):
        raise ActionError(f"action file {source}: not a mapping")
    name = doc.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ActionError(f"action file {source}: missing or invalid name")
    # PyYAML (YAML 1.1) reads the key `on` as boolean True; Go's yaml.v3 keeps "on".
    on_raw = doc.get("on", doc.get(True))
    if not isinstance(on_raw, dict) or not on_raw:
        raise ActionError(f"action {name!r}: 'on' needs at least one event")
    on: dict[str, list[str] | None] = {}
    for ev, spec in on_raw.items():
        if ev not in EVENTS:
            raise ActionError(f"action {name!r}: unknown event {ev!r}")
        branches = None
        if isinstance(spec, dict) and spec.get("branches") is not None:
            if "tag" in str(ev):
                raise ActionError(f"action {name!r}: branches filter not allowed on {ev}")
            raw = spec["branches"]
            branches = [str(b) for b in (raw if isinstance(raw, list) else [raw])]
        on[str(ev)] = branches
    hooks_raw = doc.get("hooks")
    if not isinstance(hooks_raw, list) or not hooks_raw:
        raise ActionError(f"action {name!r}: missing hooks")
    hooks: list[Hook] = []
    for h in hooks_raw:
        if not isinstance(h, dict):
            raise ActionError(f"action {name!r}: hook is not a mapping")
        hid, htype = h.get("id"), h.get("type")
        if not isinstance(hid, str) or not _HOOK_ID.match(hid) or any(x.id == hid for x in hooks):
            raise ActionError(f"action {name!r}: missing, invalid or duplicate hook id {hid!r}")
        if htype not in ("webhook", "lua", "airflow"):
            raise ActionError(f"action {name!r}: hook {hid!r}: unknown type {htype!r}")
        props = h.get("properties") or {}
        if htype == "webhook" and not (isinstance(props, dict) and props.get("url")):
            raise ActionError(f"action {name!r}: hook {hid!r}: webhook needs properties.url")
        cond = h.get("if")
        cond_s = "success()" if cond is None else ("true" if cond is True else str(cond)).strip()
        hooks.append(Hook(hid, str(htype), dict(props), cond_s))
    return Action(name, on, hooks, source)


def load_actions(files: list[tuple[str, bytes]]) -> list[Action]:
    actions = [parse_action(path, data) for path, data in files]
    names = [a.name for a in actions]
    if len(set(names)) != len(names):
        raise ActionError("duplicate action names")
    return actions


def matching(actions: list[Action], event_type: str, branch: str) -> list[Action]:
    """Actions for this event whose branch globs match (merge events: the destination)."""
    out = []
    for a in actions:
        if event_type not in a.on:
            continue
        globs = a.on[event_type]
        if globs is None or any(fnmatch.fnmatchcase(branch, g) for g in globs):
            out.append(a)
    return out


def parse_duration(s: Any, default: float = 60.0) -> float:
    if s is None:
        return default
    if isinstance(s, int | float):
        return float(s)
    parts = _DURATION.findall(str(s))
    if not parts:
        return default
    return sum(float(n) * _UNITS[u] for n, u in parts)


def _expand(value: str) -> str:
    """`{{ ENV.X }}`: only LAKEFSACTION_* names are read; others become ""; missing prefixed ones fail."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if not name.startswith(ENV_PREFIX):
            return ""
        if name not in os.environ:
            raise ActionError(f"missing environment variable {name}")
        return os.environ[name]

    return _ENV_REF.sub(sub, value)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_run_id() -> str:
    """Newer runs sort first, so listing by run id ascending is newest-first (as lakeFS)."""
    inverted = 0xFFFFFFFFFFFF - int(time.time() * 1000)
    return f"{inverted:012x}{secrets.token_hex(4)}"


class Runner:
    """Executes matching actions for an event and records the run in the store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="post-hooks")

    def run(self, actions: list[Action], event: Event) -> str | None:
        """Run all matching actions; returns a lakeFS-style failure message, or None on success."""
        todo = matching(actions, event.event_type, event.branch_id)
        if not todo:
            return None
        run_id = new_run_id()
        run_start = _now()
        first_failure: str | None = None
        for ai, action in enumerate(todo):
            failed = False
            for hi, hook in enumerate(action.hooks):
                hook_run_id = f"{ai:04d}_{hi:04d}"
                cond = hook.condition.replace(" ", "")
                should = {
                    "success()": not failed,
                    "failure()": failed,
                    "true": True,
                    "false": False,
                    "always()": True,
                }.get(cond, not failed)
                if not should:
                    continue
                start = _now()
                ok, log = self._call(hook, action.name, event)
                self._record_hook(event.repository_id, run_id, hook_run_id, action.name, hook.id, ok, start, log)
                if not ok:
                    failed = True
                    if first_failure is None:
                        reason = log.splitlines()[0] if log else "failed"
                        first_failure = (
                            f"{event.event_type} hook aborted, run id '{run_id}': hook run id "
                            f"'{hook_run_id}' failed on action '{action.name}' hook '{hook.id}': "
                            f"action failed: {reason}"
                        )
        # Recorded once finished, as lakeFS does: a run's status is only ever completed or failed.
        with self.store.write() as conn:
            conn.execute(
                "INSERT INTO action_runs (repo, run_id, event_type, branch, commit_id, source_ref, status,"
                " start_time, end_time) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    event.repository_id,
                    run_id,
                    event.event_type,
                    event.branch_id,
                    event.commit_id,
                    event.source_ref,
                    "failed" if first_failure else "completed",
                    run_start,
                    _now(),
                ),
            )
        return first_failure

    def run_later(self, actions: list[Action], event: Event) -> None:
        """post-* events: never block or fail the operation that triggered them."""
        if matching(actions, event.event_type, event.branch_id):
            self.pool.submit(self.run, actions, event)

    def _record_hook(
        self, repo: str, run_id: str, hook_run_id: str, action: str, hook_id: str, ok: bool, start: str, log: str
    ) -> None:
        with self.store.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO hook_runs (repo, run_id, hook_run_id, action, hook_id, status,"
                " start_time, end_time, output) VALUES (?,?,?,?,?,?,?,?,?)",
                (repo, run_id, hook_run_id, action, hook_id, "completed" if ok else "failed", start, _now(), log),
            )

    def _call(self, hook: Hook, action: str, event: Event) -> tuple[bool, str]:
        """One webhook POST; (succeeded, log text with the failure reason first)."""
        if hook.type != "webhook":
            return False, f"hook type {hook.type!r} is not supported by lakeloop's local lakeFS server"
        props = hook.properties
        try:
            headers = {"Content-Type": "application/json", "User-Agent": "Go-http-client/1.1"}
            for k, v in (props.get("headers") or {}).items():
                headers[str(k)] = _expand(str(v))
            params: list[tuple[str, str]] = []
            shown: list[str] = []  # as lakeFS logs them: a value read from the environment is a secret, masked
            for k, v in (props.get("query_params") or {}).items():
                for item in v if isinstance(v, list) else [v]:
                    params.append((str(k), _expand(str(item))))
                    secret = _ENV_REF.search(str(item)) is not None
                    shown.append(f"{urllib.parse.quote(str(k))}="
                                 f"{SECRET_MASK if secret else urllib.parse.quote(params[-1][1])}")
        except ActionError as e:
            return False, f"webhook request failed: {e}"
        body = json.dumps(event.payload(action, hook.id), separators=(",", ":")).encode()
        url = shown_url = str(props["url"])
        if params:
            sep = "&" if urllib.parse.urlsplit(url).query else "?"
            url += sep + urllib.parse.urlencode(params)
            shown_url += sep + "&".join(shown)
        req = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=parse_duration(props.get("timeout"))) as resp:
                status, text = resp.status, resp.read(4096).decode(errors="replace")
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read(4096).decode(errors="replace")
        except (OSError, ValueError) as e:
            return False, f"webhook request failed: {type(e).__name__}: {e}\nRequest: POST {shown_url}\n{body.decode()}"
        log = f"Request: POST {shown_url}\n{body.decode()}\n\nResponse: {status}\n{text}"
        if not 200 <= status < 300:
            return False, f"webhook request failed (status code: {status})\n{log}"
        return True, log
