"""Exactly-once across hosts: two bridges and two workers sharing one PostgreSQL state database.

Real servers: a throwaway PostgreSQL cluster, the local lakeFS server with an actions file that sends
every commit to *both* bridges (two `python -m infra.bridge` processes, each also reconciling the
repository at start), and a stub of Prefect's `POST /api/events` recording what it accepts. The two
"workers" are processes running retrain's claim path (`Ledger.run_once` on the retrain key, as
`flows/retrain.py` does with `force=False`) for every relayed commit, each emitting its model event
through the durable outbox (`emit_durable`), which both workers and both bridges' replayers share.
Full Prefect workers would take minutes here; the claim path is what decides who trains.

A burst of commits, then: every commit relayed to Prefect once, trained once, announced once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from infra.bridge.lakefs_actions import ACTIONS_FILE, render_actions_yaml
from infra.bridge.service import start_bridge
from infra.procs import Service, free_port
from lakeloop import events
from lakeloop.adapters.lakefs import Lake
from lakeloop.state import Ledger, commit_key
from tests.fixtures.lake import lake_settings
from tests.fixtures.lakefs import HOOK_ENV
from tests.test_event_outbox import EventsStub

pytestmark = pytest.mark.integration

TOKEN_ENV = "LAKEFSACTION_LAKELOOP_TEST_TOKEN"
SECRET = HOOK_ENV[TOKEN_ENV]
N_COMMITS = 12
ROOT = Path(__file__).resolve().parents[1]


def two_bridge_actions(urls: list[str]) -> str:
    """The shipped actions file with its relay hook repeated for each bridge (no merge gate: not tested here)."""
    action = yaml.safe_load(render_actions_yaml(urls[0], token_env=TOKEN_ENV, protected=()))
    relay = next(h for h in action["hooks"] if h["id"] == "lakeloop_relay")
    action["hooks"] = [{**relay, "id": f"lakeloop_relay_{i}",
                        "properties": {**relay["properties"], "url": f"{u.rstrip('/')}/lakefs/events"}}
                       for i, u in enumerate(urls)]
    return yaml.safe_dump(action, sort_keys=False)


def worker_main(repo: str, state_dir: str, api_url: str, trained_log: str, expect: int, deadline_s: float) -> None:
    """One worker host: trains (appends to `trained_log`) each relayed commit it wins the retrain claim for."""
    from lakeloop.adapters.prefect_events import emit_durable

    owner = f"worker-{os.getpid()}"
    ledger = Ledger.at(Path(state_dir), lease_seconds=3600)
    deadline = time.monotonic() + deadline_s
    settled: set[str] = set()
    while len(settled) < expect and time.monotonic() < deadline:
        for d in ledger.done(f"lakefs:{repo}:"):
            commit = d.key.rsplit(":", 1)[1]
            key = f"retrain:{repo}:churn:{commit}"
            if key in settled:
                continue

            def train(commit: str = commit) -> None:
                time.sleep(0.05)  # a window for the other worker to race into
                with open(trained_log, "a") as f:
                    f.write(json.dumps({"commit": commit, "owner": owner}) + "\n")
                emit_durable(events.MODEL_REGISTERED, events.model_resource("churn"),
                             {"repository": repo, "commit_id": commit, "run_id": f"run-{commit[:8]}",
                              "model_name": "churn", "version": "1"},
                             state_dir=Path(state_dir), api_url=api_url)

            ledger.run_once(key, "retrain", owner, train)
            if ledger.is_settled(key):
                settled.add(key)
        time.sleep(0.1)


@pytest.fixture
def stub() -> Iterator[EventsStub]:
    s = EventsStub()
    yield s
    s.close()


def test_two_bridges_and_two_workers_process_each_commit_once(
        lakefs_server, postgres_url: str, stub: EventsStub, tmp_path: Path,  # type: ignore[no-untyped-def]
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKELOOP_STATE_URL", postgres_url)  # inherited by every process started below
    repo = f"pg-{uuid.uuid4().hex[:8]}"
    settings = lake_settings(lakefs_server, repo)
    lake = Lake(settings)
    lake.ensure_repository()
    bridges: list[Service] = []
    workers: list[subprocess.Popen[bytes]] = []
    trained_log = tmp_path / "trained.jsonl"
    started = time.monotonic()
    try:
        for i in range(2):  # started first: they import while the bridges start
            code = (f"from tests.test_shared_state_integration import worker_main; "
                    f"worker_main({repo!r}, {str(tmp_path / f'worker-{i}')!r}, {stub.api_url!r}, "
                    f"{str(trained_log)!r}, {N_COMMITS}, 150.0)")
            workers.append(subprocess.Popen([sys.executable, "-c", code], cwd=ROOT,
                                            env={**os.environ, "PYTHONPATH": str(ROOT)}))
        with ThreadPoolExecutor(2) as pool:  # separate homes: nothing shared but the database
            bridges.extend(pool.map(lambda i: start_bridge(
                tmp_path / f"bridge-{i}", free_port(), api_url=stub.api_url, lakefs_secret=SECRET, lakefs=settings,
                repositories=[repo], reconcile_interval=2.0, experiments=[], timeout=120), range(2)))
        install = lake.install_actions("main", ACTIONS_FILE, two_bridge_actions([b.url for b in bridges]))
        t0 = time.monotonic()
        print(f"two bridges up in {t0 - started:.1f} s")
        commits = []
        for n in range(N_COMMITS):  # a burst: no pause between commits
            lake.write_bytes("main", f"data/burst-{n}.txt", f"row {n}\n".encode())
            commits.append(lake.commit("main", f"burst {n}"))
        print(f"{N_COMMITS} commits (each webhook answered by both bridges) in {time.monotonic() - t0:.1f} s")
        for w in workers:
            w.wait(timeout=180)
        print(f"burst of {N_COMMITS} processed in {time.monotonic() - t0:.1f} s")
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
        for b in bridges:
            b.stop(timeout=10)

    ledger = Ledger(postgres_url)
    done = {d.key: d for d in ledger.done(f"lakefs:{repo}:")}
    assert set(done) == {commit_key(repo, c) for c in commits}
    assert install is not None and ledger.get(commit_key(repo, install)).state == "skipped"  # type: ignore[union-attr]

    relayed = Counter(e["payload"]["commit_id"] for e in stub.received if e["event"] == events.LAKEFS_COMMIT_CREATED)
    assert relayed == Counter(commits), "each commit reaches Prefect exactly once, whichever bridge got it"

    trained = [json.loads(line) for line in trained_log.read_text().splitlines()]
    assert Counter(t["commit"] for t in trained) == Counter(commits), "each commit is trained exactly once"

    announced = [e for e in stub.received if e["event"] == events.MODEL_REGISTERED]
    assert len({e["id"] for e in announced}) == len(announced), "no model event sent twice"
    assert Counter(e["payload"]["commit_id"] for e in announced) == Counter(commits)
    assert all(w.returncode == 0 for w in workers)
    owners = Counter(d.owner for d in done.values())  # "bridge" (a webhook) or "reconcile" (a bridge's pass)
    print("relayed by:", dict(owners), "trained per worker:", dict(Counter(t["owner"] for t in trained)))
