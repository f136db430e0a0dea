"""End to end with real servers: lakeFS commit -> actions webhook -> bridge -> Prefect event
-> deployment trigger -> flow run with the commit's parameters.

Everything is real: the local lakeFS server (with lakeloop's actions file installed),
the bridge as its own process, a Prefect server and a process worker with
prefect.yaml deployed (entrypoints swapped for trivial flows).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from infra.bridge.lakefs_actions import ACTIONS_FILE, render_actions_yaml
from infra.bridge.service import start_bridge
from infra.demo.synth import synth_batch
from infra.procs import Service, free_port
from lakeloop.adapters.lakefs import Lake
from lakeloop.settings import BridgeSettings, LakeFSSettings
from lakeloop.state import Ledger, commit_key
from tests.fixtures.lake import lake_settings
from tests.fixtures.lakefs import HOOK_ENV, LakeFSServer
from tests.fixtures.prefect import PrefectStack
from tests.fixtures.secret_scan import (
    lakefs_places,
    leaks,
    listening_addresses,
    log_files,
    prefect_events,
    prefect_places,
)

pytestmark = pytest.mark.integration

TOKEN_ENV = "LAKEFSACTION_LAKELOOP_TEST_TOKEN"
SECRET = HOOK_ENV[TOKEN_ENV]
ON_COMMIT = "on-commit/on-commit"


@dataclass
class Stack:
    lake: Lake
    settings: LakeFSSettings
    home: Path
    port: int
    prefect: PrefectStack
    bridge: Service | None = None

    @property
    def repo(self) -> str:
        return self.settings.repository

    def start_bridge(self) -> None:
        self.bridge = start_bridge(self.home, self.port, api_url=self.prefect.api_url, lakefs_secret=SECRET,
                                   lakefs=self.settings, repositories=[self.repo], reconcile_interval=3600,
                                   experiments=["ingest-*"])  # side branches are relayed only when configured

    def stop_bridge(self) -> None:
        if self.bridge is not None:
            self.bridge.stop(timeout=10)
            self.bridge = None

    def ledger(self) -> Ledger:
        return Ledger(self.home / "state" / "ledger.sqlite3")

    def commit_rows(self, branch: str, n: int, seed: int, message: str) -> str:
        batch = synth_batch(n, seed=seed, start_id=seed * 1000)
        self.lake.write_frame(branch, f"data/batch-{seed}.parquet", batch.data)
        return self.lake.commit(branch, message)


@pytest.fixture(scope="module")
def stack(lakefs_server, prefect_server: PrefectStack,  # type: ignore[no-untyped-def]
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    repo = f"ev-{uuid.uuid4().hex[:8]}"
    settings = lake_settings(lakefs_server, repo)
    lake = Lake(settings)
    lake.ensure_repository()
    s = Stack(lake, settings, tmp_path_factory.mktemp("bridge-home"), free_port(), prefect_server)
    s.start_bridge()
    assert s.bridge is not None
    lake.install_actions("main", ACTIONS_FILE, render_actions_yaml(s.bridge.url, token_env=TOKEN_ENV))
    try:
        yield s
    finally:
        s.stop_bridge()


@pytest.fixture
def runs_not_executed(prefect_server: PrefectStack) -> Iterator[None]:
    prefect_server.pause_pool(True)
    try:
        yield
    finally:
        prefect_server.pause_pool(False)


def wait_settled(ledger: Ledger, keys: list[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(ledger.is_settled(k) for k in keys):
            return
        time.sleep(0.2)
    raise AssertionError(f"not settled after {timeout:.0f}s: {[k for k in keys if not ledger.is_settled(k)]}")


def test_commit_starts_on_commit_flow_with_its_parameters(stack: Stack) -> None:
    stack.lake.ensure_branch("ingest-a")
    cid = stack.commit_rows("ingest-a", 50, seed=1, message="ingest batch 1")
    runs = stack.prefect.wait_for_runs(ON_COMMIT, lambda r: r["parameters"].get("commit_id") == cid,
                                       timeout=180, started=True)
    assert runs[0]["parameters"] == {"repository": stack.repo, "branch": "ingest-a", "commit_id": cid}
    d = stack.ledger().get(commit_key(stack.repo, cid))
    assert d is not None and d.state == "done" and d.owner == "bridge"
    # the actions install commit was seen by the bridge and deliberately not relayed
    install = stack.lake.log("main", limit=1)[0]
    assert install.metadata.get("lakeloop.kind") == "actions"
    wait_settled(stack.ledger(), [commit_key(stack.repo, install.id)])
    skipped = stack.ledger().get(commit_key(stack.repo, install.id))
    assert skipped is not None and skipped.state == "skipped"
    assert not [r for r in stack.prefect.flow_runs(ON_COMMIT) if r["parameters"].get("commit_id") == install.id]


def test_bad_merge_into_main_is_blocked_and_good_merge_is_relayed(stack: Stack, runs_not_executed: None) -> None:
    from lakefs.exceptions import ServerException

    stack.lake.ensure_branch("ingest-bad")
    bad = synth_batch(20, seed=7, start_id=70_000).data
    bad = bad.with_columns(bad["tenure_months"].scatter([3], [-5]))
    stack.lake.write_frame("ingest-bad", "data/bad.parquet", bad)
    stack.lake.commit("ingest-bad", "bad batch")
    with pytest.raises(ServerException) as exc:
        stack.lake.merge("ingest-bad", "main")
    assert exc.value.status_code == 412
    api = stack.lake.client.sdk_client.actions_api
    failed = [r for r in api.list_repository_runs(stack.repo, branch="main").results
              if r.event_type == "pre-merge" and r.status == "failed"]
    assert failed, "no failed pre-merge run recorded"
    hooks = api.list_run_hooks(stack.repo, failed[0].run_id).results
    gate = next(h for h in hooks if h.hook_id == "lakeloop_merge_gate")
    output = api.get_run_hook_output(stack.repo, failed[0].run_id, gate.hook_run_id)
    text = output.decode() if isinstance(output, bytes) else str(output)
    assert "min:tenure_months" in text and "data/bad.parquet" in text

    stack.lake.ensure_branch("ingest-good")
    stack.commit_rows("ingest-good", 30, seed=8, message="good batch")
    merge_id = stack.lake.merge("ingest-good", "main")
    runs = stack.prefect.wait_for_runs(ON_COMMIT, lambda r: r["parameters"].get("commit_id") == merge_id,
                                       timeout=120)
    assert runs[0]["parameters"]["branch"] == "main"


def test_commits_during_bridge_outage_are_reconciled_exactly_once(stack: Stack, runs_not_executed: None) -> None:
    earlier = {commit_key(stack.repo, c.id) for b in stack.lake.branches() for c in stack.lake.log(b)}
    stack.stop_bridge()
    stack.lake.ensure_branch("ingest-b")
    missed = [stack.commit_rows("ingest-b", 10, seed=100 + i, message=f"offline {i}") for i in range(5)]
    time.sleep(1.0)  # lakeFS's post-commit calls fail against the closed port meanwhile
    before = {d.key for d in stack.ledger().done()}
    stack.start_bridge()  # reconciles at start
    keys = [commit_key(stack.repo, c) for c in missed]
    wait_settled(stack.ledger(), keys, timeout=90)
    new = [d for d in stack.ledger().done() if d.key not in before]
    assert [d.key for d in new if d.key in keys] == keys  # each of the five once, oldest first
    # lakeFS runs post-commit hooks in the background, so an earlier test's last hook may still have been
    # in flight when the bridge stopped: the reconciler owes that commit too, and nothing else
    assert {d.key for d in new} - set(keys) <= earlier
    assert {d.owner for d in new if d.key in keys} == {"reconcile"}
    runs = stack.prefect.wait_for_runs(ON_COMMIT, lambda r: r["parameters"].get("commit_id") in missed,
                                       count=5, timeout=120)
    time.sleep(3.0)  # give a (wrong) duplicate time to show up
    runs = [r for r in stack.prefect.flow_runs(ON_COMMIT) if r["parameters"].get("commit_id") in missed]
    assert sorted(r["parameters"]["commit_id"] for r in runs) == sorted(missed)
    assert all(r["parameters"]["branch"] == "ingest-b" for r in runs)


def test_lakeloop_events_from_a_short_lived_process_start_their_flows(
        prefect_server: PrefectStack, runs_not_executed: None) -> None:
    """`prefect_events.emit` flushes before the process exits, and prefect.yaml maps each event's payload."""
    import subprocess
    import sys

    tag = uuid.uuid4().hex[:8]
    code = f"""
from lakeloop import events as e
from lakeloop.adapters.prefect_events import emit
emit(e.DRIFT_DETECTED, e.drift_resource("churn", retrain="requested"),
       e.DriftPayload(repository="churn", branch="main", commit_id="c-{tag}", reason="drift in tenure_months"))
emit(e.MODEL_REGISTERED, e.model_resource("churn"),
       e.ModelRegisteredPayload(repository="churn", commit_id="m-{tag}", run_id="run-{tag}",
                                model_name="churn", version="3"))
emit(e.DRIFT_DETECTED, e.drift_resource("churn", retrain="requested"),  # flows/monitor.py's shape: reasons, no reason
       {{"repository": "churn", "branch": "main", "commit_id": "d-{tag}", "reasons": ["a drifted", "b drifted"]}})
emit(e.MODEL_PROMOTED, e.model_resource("churn"),  # no ref: batch inference scores main
       {{"repository": "churn", "model_name": "churn", "version": 4, "commit_id": "m-{tag}", "kind": "ensemble"}})
emit(e.LABELS_READY, e.labels_resource(41),
       e.LabelsPayload(project_id=41, annotation_id=9, action="ANNOTATION_CREATED"))
"""
    env = {**__import__("os").environ, "PREFECT_API_URL": prefect_server.api_url}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
    p = prefect_server
    (r,) = p.wait_for_runs("retrain/retrain", lambda r: r["parameters"].get("commit_id") == f"c-{tag}")
    assert r["parameters"] == {"repository": "churn", "branch": "main", "commit_id": f"c-{tag}",
                               "reason": "drift in tenure_months", "force": False}
    (r,) = p.wait_for_runs("request-relabel/request-relabel",
                           lambda r: r["parameters"].get("run_id") == f"run-{tag}")
    assert r["parameters"] == {"repository": "churn", "commit_id": f"m-{tag}", "run_id": f"run-{tag}"}
    (r,) = p.wait_for_runs("retrain/retrain", lambda r: r["parameters"].get("commit_id") == f"d-{tag}")
    assert r["parameters"]["reason"] == "a drifted; b drifted"
    # exactly these parameters (waiting fails otherwise); other tests' promotions start batch inference on
    # the same server for their own repositories
    p.wait_for_runs("batch-inference/batch-inference",
                    lambda r: r["parameters"] == {"repository": "churn", "ref": "main"})
    # single-expression templates keep the payload's JSON type: an int, not "41"
    runs = p.wait_for_runs("ingest-labels/ingest-labels", lambda r: r["parameters"].get("project_id") == 41)
    assert runs[0]["parameters"] == {"project_id": 41}
    # an Optuna search per registered model would fight the loop for the cores: ensembles are weekly/on demand
    assert not [r for r in p.flow_runs("build-ensemble/build-ensemble")
                if r["parameters"].get("commit_id") == f"m-{tag}"]


def test_no_hook_secret_leaves_its_place_and_the_bridge_listens_on_loopback(
        stack: Stack, lakefs_server: LakeFSServer) -> None:
    """After the tests above (commits, merges, a blocked merge, an outage): lakeFS's hook secret is in no log,
    hook output, commit, Prefect event or run; Label Studio's secret opens no lakeFS endpoint of the real bridge."""
    assert stack.bridge is not None
    ls_secret = BridgeSettings().label_studio_secret.get_secret_value()  # the bridge's (its environment's)
    r = httpx.post(f"{stack.bridge.url}/lakefs/events", json={"event_type": "post-commit"},
                   headers={"X-Lakeloop-Token": ls_secret}, timeout=10)
    assert r.status_code == 401 and "Label Studio's secret" in r.json()["error"]

    secrets = {"LAKEFSACTION_LAKELOOP_TEST_TOKEN": SECRET, "LAKEFS_SECRET_ACCESS_KEY": stack.settings.secret_access_key}
    runs = [r["id"] for r in stack.prefect.flow_runs(ON_COMMIT)]
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    places = [*log_files(stack.home), *log_files(lakefs_server.home), *lakefs_places(stack.lake),
              *prefect_places(stack.prefect.api_url, runs), *prefect_events(stack.prefect.api_url, since)]
    assert any(where.startswith("lakefs hook output") for where, _ in places)
    assert any(where.startswith("prefect event lakefs.") for where, _ in places)
    assert not leaks(secrets, places)
    addresses = listening_addresses()  # every server this session started
    assert addresses[stack.bridge.pid] == [f"127.0.0.1:{stack.port}"], addresses
