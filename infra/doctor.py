"""`lakeloop doctor`: is every service the loop needs there, reachable with these settings, and wired up?

One checklist line per check, each failure with the fix. A check that cannot reach its
service fails fast (short timeouts, no client retries) and the checks that depend on
that service are not run: the one line that names the service and its fix is the answer.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import BaseModel
from rich.console import Console

from lakeloop.settings import ROOT, Settings

TIMEOUT_S = 3.0
# the lakeFS release docker-compose.yml pins (tests/test_doctor.py keeps the two equal); servers of its major pass
LAKEFS_PINNED = "1.84.0"
# a worker that has not sent a heartbeat for this long no longer polls the pool
WORKER_STALE_S = 90.0

Status = Literal["ok", "fail", "skip"]


class Check(BaseModel):
    service: str  # lakeFS | MLflow | Prefect | bridge | Label Studio | spec
    name: str
    status: Status
    detail: str = ""
    fix: str = ""


class Report(BaseModel):
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status == "fail"]


class _Service:
    """Collects one service's checks; `stop` ends the service's list (its later checks would only repeat it)."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.checks: list[Check] = []

    def ok(self, name: str, detail: str = "") -> None:
        self.checks.append(Check(service=self.service, name=name, status="ok", detail=detail))

    def fail(self, name: str, detail: str, fix: str) -> None:
        self.checks.append(Check(service=self.service, name=name, status="fail", detail=detail, fix=fix))

    def skip(self, name: str, detail: str) -> None:
        self.checks.append(Check(service=self.service, name=name, status="skip", detail=detail))


def _major_minor(version: str) -> tuple[int, int]:
    parts = version.lstrip("v").split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    except ValueError as e:
        raise ValueError(f"unrecognised version {version!r}") from e


def _reach(svc: _Service, url: str, fix: str, timeout: float) -> bool:
    """GET `url`; a failed check names the URL and what went wrong."""
    try:
        r = httpx.get(url, timeout=timeout)
    except httpx.HTTPError as e:
        svc.fail("reachable", f"{url}: {type(e).__name__}: {e or 'no answer'}", fix)
        return False
    if r.status_code >= 400:
        svc.fail("reachable", f"{url}: HTTP {r.status_code}", fix)
        return False
    svc.ok("reachable", url)
    return True


# ---- lakeFS -------------------------------------------------------------------
def check_lakefs(s: Settings, timeout: float = TIMEOUT_S) -> list[Check]:
    from lakefs_sdk.exceptions import ApiException

    from infra.bridge.lakefs_actions import ACTIONS_FILE, settings_actions_yaml
    from infra.local.lakefs import HEALTH_PATH
    from lakeloop.adapters.lakefs import Lake, LakeError
    from lakeloop.branches import BranchPolicy

    svc = _Service("lakeFS")
    lf = s.lakefs
    if not _reach(svc, f"{lf.endpoint}{HEALTH_PATH}", f"start lakeFS (`lakeloop up` starts the local one) or set "
                  f"LAKEFS_ENDPOINT to your lakeFS (now {lf.endpoint})", timeout):
        return svc.checks
    lake = Lake(lf)
    sdk = lake.client.sdk_client
    try:
        user = sdk.auth_api.get_current_user(_request_timeout=timeout)
    except ApiException as e:  # 401 for a wrong key
        svc.fail("credentials", f"access key {lf.access_key_id}: HTTP {e.status} {e.reason}",
                 "set LAKEFS_ACCESS_KEY_ID / LAKEFS_SECRET_ACCESS_KEY to a key of a lakeFS user that may read and "
                 "write the repository")
        return svc.checks
    svc.ok("credentials", f"user {user.user.id}")

    version = str(sdk.config_api.get_config(_request_timeout=timeout).version_config.version or "")
    want = _major_minor(LAKEFS_PINNED)[0]
    try:
        compatible = _major_minor(version)[0] == want
    except ValueError:
        compatible = False
    if compatible:
        svc.ok("version", f"{version} (lakeloop is tested with {LAKEFS_PINNED})")
    else:
        svc.fail("version", f"server {version or 'unknown'}; lakeloop needs lakeFS {want}.x (tested with "
                 f"{LAKEFS_PINNED})", f"upgrade lakeFS to {want}.x (docker-compose.yml pins {LAKEFS_PINNED})")

    if not lake.repository_exists():
        svc.fail("repository", f"{lf.repository} does not exist",
                 f"`lakeloop up` creates it; or create it (lakectl repo create lakefs://{lf.repository} "
                 f"{lf.storage_namespace}); or set LAKEFS_REPOSITORY")
        return svc.checks
    svc.ok("repository", lf.repository)

    policy = BranchPolicy.from_settings(s)
    existing = set(lake.branches())
    wanted = list(dict.fromkeys([lf.default_branch, *policy.watched]))
    missing = [b for b in wanted if b not in existing]
    if missing:
        svc.fail("branches", f"missing: {', '.join(missing)} (have {', '.join(sorted(existing)) or 'none'})",
                 f"create them from {lf.default_branch} (lakectl branch create lakefs://{lf.repository}/<branch> "
                 f"--source lakefs://{lf.repository}/{lf.default_branch}), or fix LAKELOOP_BRANCHES_WATCHED")
    else:
        svc.ok("branches", ", ".join(wanted) + (f"; experiments: {', '.join(policy.experiments)}"
                                                if policy.experiments else ""))

    expected = settings_actions_yaml(s)
    path = f"_lakefs_actions/{ACTIONS_FILE}"
    for branch in [b for b in policy.watched if b in existing]:
        name = f"actions file on {branch}"
        fix = (f"`lakeloop up` installs it on {lf.default_branch}" +
               (f"; then merge {lf.default_branch} into {branch}" if branch != lf.default_branch else ""))
        try:
            current = lake.read_bytes(branch, path).decode()
        except LakeError as e:
            svc.fail(name, f"{path}: {e}", fix + ": without it no commit reaches the loop")
            continue
        if current != expected:
            svc.fail(name, f"{path} differs from what lakeloop installs for bridge {s.bridge.url} and branches "
                     f"{', '.join(policy.hook_branches())}", fix)
        else:
            svc.ok(name, f"{path} → {s.bridge.url}")
    return svc.checks


# ---- MLflow -------------------------------------------------------------------
@contextlib.contextmanager
def _mlflow_fail_fast(timeout: float) -> Iterator[None]:
    """The MLflow client retries a refused request for minutes by default; the doctor asks once."""
    keys = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(int(max(timeout, 1)))}
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(keys)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def check_mlflow(s: Settings, timeout: float = TIMEOUT_S) -> list[Check]:
    import mlflow
    from mlflow.exceptions import MlflowException

    from infra.local.mlflow import HEALTH_PATH
    from lakeloop.adapters.mlflow_tracking import client

    svc = _Service("MLflow")
    uri = s.mlflow.tracking_uri.rstrip("/")
    if not _reach(svc, f"{uri}{HEALTH_PATH}", f"start MLflow (`lakeloop up` starts the local one) or set "
                  f"MLFLOW_TRACKING_URI to your tracking server (now {uri})", timeout):
        return svc.checks
    try:
        server = httpx.get(f"{uri}/version", timeout=timeout).raise_for_status().text.strip()
        same_major = _major_minor(server)[0] == _major_minor(mlflow.__version__)[0]
    except (httpx.HTTPError, ValueError) as e:
        svc.fail("version", f"{uri}/version: {e}", "use an MLflow tracking server (`mlflow server`), not a proxy "
                 "that hides /version")
    else:
        if same_major:
            svc.ok("version", f"server {server}, client {mlflow.__version__}")
        else:
            svc.fail("version", f"server {server}, client {mlflow.__version__}: different major versions",
                     f"run an MLflow {_major_minor(mlflow.__version__)[0]}.x server (docker-compose.yml pins one)")
    with _mlflow_fail_fast(timeout):
        try:
            client(s.mlflow).search_experiments(max_results=1)
        except MlflowException as e:
            svc.fail("tracking API", str(e)[:300], "set MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (or "
                     "MLFLOW_TRACKING_TOKEN) for a user that may create experiments and register models")
        else:
            svc.ok("tracking API", f"experiments readable; model {s.mlflow.model_name}")
    return svc.checks


# ---- Prefect ------------------------------------------------------------------
def check_prefect(s: Settings, timeout: float = TIMEOUT_S, prefect_file: Path | None = None) -> list[Check]:
    import prefect

    from infra.deploy import DeployError, load_deployments, read_deployments
    from infra.local.prefect import HEALTH_PATH

    svc = _Service("Prefect")
    api = s.prefect.api_url.rstrip("/")
    pool = s.prefect.work_pool
    if not _reach(svc, f"{api}{HEALTH_PATH}", f"start Prefect (`lakeloop up` starts the local server) or set "
                  f"LAKELOOP_PREFECT_API_URL to your Prefect API (now {api})", timeout):
        return svc.checks
    try:
        server = str(httpx.get(f"{api}/admin/version", timeout=timeout).raise_for_status().json())
        (smaj, smin), (cmaj, cmin) = _major_minor(server), _major_minor(prefect.__version__)
    except (httpx.HTTPError, ValueError) as e:
        svc.fail("API version", f"{api}/admin/version: {e}", "point LAKELOOP_PREFECT_API_URL at the API (…/api)")
        return svc.checks
    if smaj == cmaj and smin >= cmin:
        svc.ok("API version", f"server {server}, client {prefect.__version__}")
    else:
        svc.fail("API version", f"server {server}, client {prefect.__version__}: the client is newer or another "
                 "major", f"run a Prefect {cmaj}.{cmin} server or newer in {cmaj}.x (prefect.yaml pins one)")

    r = httpx.get(f"{api}/work_pools/{pool}", timeout=timeout)
    if r.status_code == 404:
        svc.fail("work pool", f"{pool} does not exist", f"`lakeloop up` creates it; or: prefect work-pool create "
                 f"{pool} --type process; or set LAKELOOP_PREFECT_WORK_POOL")
        return svc.checks
    wp = r.raise_for_status().json()
    if wp.get("is_paused"):
        svc.fail("work pool", f"{pool} is paused: runs stay Scheduled", f"prefect work-pool resume {pool}")
    else:
        svc.ok("work pool", f"{pool} ({wp.get('type', '?')})")
    # raw REST with a complete body: the 3.8.8 client's worker filter sends `limit: null` (422)
    workers = httpx.post(f"{api}/work_pools/{pool}/workers/filter", json={"limit": 50, "offset": 0},
                         timeout=timeout).raise_for_status().json()
    polling = [w for w in workers if _worker_polls(w)]
    if polling:
        svc.ok("worker", f"{len(polling)} polling {pool} ({', '.join(w['name'] for w in polling)})")
    else:
        seen = f"; {len(workers)} seen earlier, none recently" if workers else ""
        svc.fail("worker", f"no worker polls {pool}{seen}: triggered runs stay Scheduled",
                 f"start one: prefect worker start --pool {pool} --type process (`lakeloop up` starts one)")

    pfile = prefect_file or ROOT / "prefect.yaml"
    env = {"LAKELOOP_PROJECT_ROOT": str(ROOT), "LAKELOOP_PREFECT_WORK_POOL": pool,
           "LAKEFS_REPOSITORY": s.lakefs.repository}
    try:
        wanted = [str(d["name"]) for d in load_deployments(pfile, env)]
    except (DeployError, OSError) as e:
        svc.skip("deployments", f"cannot read {pfile}: {e}")
        return svc.checks
    found = {d["name"]: d for d in read_deployments(api, timeout=timeout)}
    missing = [n for n in wanted if n not in found]
    elsewhere = [f"{n} → {found[n].get('work_pool_name')}" for n in wanted
                 if n in found and found[n].get("work_pool_name") != pool]
    if missing:
        svc.fail("deployments", f"missing: {', '.join(missing)}", "lakeloop deploy")
    elif elsewhere:
        svc.fail("deployments", f"on another pool than {pool}: {', '.join(elsewhere)}", "lakeloop deploy")
    else:
        svc.ok("deployments", f"{len(wanted)} on {pool}: {', '.join(wanted)}")
    return svc.checks


def _worker_polls(worker: dict[str, Any]) -> bool:
    from datetime import UTC, datetime

    if worker.get("status") and worker["status"] != "ONLINE":
        return False
    beat = worker.get("last_heartbeat_time")
    if not beat:
        return False
    age = (datetime.now(UTC) - datetime.fromisoformat(str(beat).replace("Z", "+00:00"))).total_seconds()
    return age < WORKER_STALE_S


# ---- bridge, Label Studio, spec ---------------------------------------------------
def check_bridge(s: Settings, timeout: float = TIMEOUT_S) -> list[Check]:
    from infra.bridge.service import HEALTH_PATH
    from lakeloop.settings import InsecureSecrets, check_secrets

    svc = _Service("bridge")
    try:
        check_secrets(s)
    except InsecureSecrets as e:
        svc.fail("secrets", str(e), "set LAKELOOP_BRIDGE_LAKEFS_SECRET and LAKELOOP_BRIDGE_LABEL_STUDIO_SECRET (and "
                 "the others named) to secrets of your own; README, 'Webhook authentication and secrets'")
    else:
        svc.ok("secrets", "one per sender; no published default reaches a server beyond loopback")
    _reach(svc, f"{s.bridge.url.rstrip('/')}{HEALTH_PATH}", "start it (`lakeloop up` starts it) or set "
           f"LAKELOOP_BRIDGE_URL (now {s.bridge.url}); `lakeloop reconcile` re-sends the commits it missed", timeout)
    return svc.checks


def label_studio_configured(s: Settings) -> bool:
    """Configured when its URL or token was set, or when the local stack started it."""
    from infra.procs import read_pidfile

    if {"url", "api_token"} & s.label_studio.model_fields_set:
        return True
    return "label-studio" in read_pidfile(s.home / "stack.json")


def check_label_studio(s: Settings, timeout: float = TIMEOUT_S, configured: bool | None = None) -> list[Check]:
    from infra.local.label_studio import HEALTH_PATH
    from lakeloop.adapters.label_studio import LabelStudioAdapter

    svc = _Service("Label Studio")
    if not (label_studio_configured(s) if configured is None else configured):
        svc.skip("reachable", "not configured (LABEL_STUDIO_URL unset, not started by `lakeloop up`): label "
                 "review rounds wait in the outbox")
        return svc.checks
    url = s.label_studio.url.rstrip("/")
    if not _reach(svc, f"{url}{HEALTH_PATH}", f"start Label Studio (`lakeloop up` starts the local one) or set "
                  f"LABEL_STUDIO_URL (now {url})", timeout):
        return svc.checks
    adapter = LabelStudioAdapter(url, s.label_studio.api_token, s.state_dir, timeout=timeout)
    try:
        me = adapter.client.users.whoami()
    except Exception as e:  # the SDK raises its ApiError or an httpx error; either way the token did not work
        svc.fail("token", f"{type(e).__name__}: {str(e)[:200]}", "set LABEL_STUDIO_API_TOKEN to a user's legacy "
                 "API token (Account & Settings → Access Token)")
    else:
        svc.ok("token", f"user {me.email or me.id}")
    return svc.checks


def check_spec(s: Settings) -> list[Check]:
    from lakeloop.spec import DatasetSpec, SpecError

    svc = _Service("spec")
    try:
        spec = DatasetSpec.from_yaml(s.spec_path)
    except SpecError as e:
        svc.fail("parses", str(e), "fix the field the message names, or draft a spec from a sample: lakeloop spec "
                 "infer SAMPLE.csv -o spec.yaml (LAKELOOP_SPEC_PATH chooses the file)")
    else:
        svc.ok("parses", f"{s.spec_path}: {spec.name}, {len(spec.features)} features, label {spec.label_column}")
    return svc.checks


def run_checks(s: Settings, *, timeout: float = TIMEOUT_S, label_studio: bool | None = None) -> Report:
    """Every check, in the order a fix is most useful (a service before what lives in it)."""
    runs: list[tuple[str, Callable[[], list[Check]]]] = [
        ("lakeFS", lambda: check_lakefs(s, timeout)),
        ("MLflow", lambda: check_mlflow(s, timeout)),
        ("Prefect", lambda: check_prefect(s, timeout)),
        ("bridge", lambda: check_bridge(s, timeout)),
        ("Label Studio", lambda: check_label_studio(s, timeout, label_studio)),
        ("spec", lambda: check_spec(s)),
    ]
    checks: list[Check] = []
    for service, run in runs:
        try:
            checks += run()
        except Exception as e:  # a doctor reports what broke instead of dying with a trace
            checks.append(Check(service=service, name="check", status="fail", detail=f"{type(e).__name__}: {e}",
                                fix="see the detail; `lakeloop status` shows which local services answer"))
    return Report(checks=checks)


MARKS = {"ok": "[green]✓[/]", "fail": "[red]✗[/]", "skip": "[yellow]–[/]"}


def print_report(report: Report, console: Console) -> None:
    """One line per check; under each failure, the fix."""
    from rich.markup import escape

    for c in report.checks:
        console.print(f"{MARKS[c.status]} [bold]{c.service}[/] {c.name}: {escape(c.detail)}", highlight=False)
        if c.status == "fail":
            console.print(f"    [bold]fix:[/] {escape(c.fix)}", highlight=False)
    failed = report.failed
    if failed:
        names = ", ".join(dict.fromkeys(c.service for c in failed))
        console.print(f"[red]{len(failed)} check(s) failed: {names}[/]")
    else:
        console.print("[green]all checks passed[/]")
