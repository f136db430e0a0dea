"""Commit -> flow-run latency through lakeloop's bridge, beside Prefect's own event -> run latency.

Side by side in one run, against real servers (local lakeFS with the actions
file installed, the bridge process, a Prefect server with prefect.yaml deployed,
entrypoints swapped for trivial flows):

* commit path: `Lake.commit` -> lakeFS post-commit webhook -> bridge (auth,
  ledger claim, publish) -> Prefect trigger -> flow run of `on-commit`;
* bare path: `prefect.events.emit_event` of the same event shape from this
  process -> the same trigger -> flow run.

"Run start" is the moment the trigger's flow run exists, scheduled to start
now (the server's `created` time). No worker serves the bench pool: its poll
interval (1 s in lakeloop's stack) and the flow process start-up would add the
same amount to both paths, and 40+ flow processes would swamp a 2-core box.
Both paths alternate so load drifts hit them equally. Then a burst of 30
commits: each must be processed exactly once (ledger + one run per commit).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from bench.results_io import record
from infra.procs import free_port

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-bridge-secret"
TOKEN_ENV = "LAKEFSACTION_LAKELOOP_TOKEN"
N_LATENCY = 20
N_BURST = 30


def _ts(s: str) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def _runs(api: str, deployment_id: str) -> list[dict[str, Any]]:
    body = {"limit": 200, "offset": 0, "sort": "EXPECTED_START_TIME_DESC",
            "deployments": {"id": {"any_": [deployment_id]}}}
    r = httpx.post(f"{api}/flow_runs/filter", json=body, timeout=30)
    r.raise_for_status()
    runs: list[dict[str, Any]] = r.json()
    return runs


def _wait_run(api: str, dep: str, commit_id: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for r in _runs(api, dep):
            if r["parameters"].get("commit_id") == commit_id:
                return r
        time.sleep(0.05)
    raise TimeoutError(f"no run for {commit_id} after {timeout:.0f}s")


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def main() -> dict[str, Any]:
    from prefect.events import emit_event
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from infra.bridge.lakefs_actions import ACTIONS_FILE, render_actions_yaml
    from infra.bridge.service import start_bridge
    from infra.deploy import deploy_all
    from infra.local.lakefs import start_lakefs
    from infra.local.prefect import ensure_work_pool, start_prefect_server, stub_prefect_file
    from lakeloop.adapters.lakefs import Lake
    from lakeloop.adapters.prefect_events import flush
    from lakeloop.events import branch_resource
    from lakeloop.settings import LakeFSSettings
    from lakeloop.state import Ledger, commit_key

    home = Path(tempfile.mkdtemp(prefix="lakeloop-bench-events-"))
    os.environ[TOKEN_ENV] = SECRET  # lakeFS substitutes it into the hook's header
    services = []
    try:
        key, secret = "AKIALAKELOOPBENCH001", "lakeloop-bench-secret"
        lakefs_svc = start_lakefs(home, free_port(), key, secret)
        services.append(lakefs_svc)
        prefect = start_prefect_server(home, free_port(), ui=False, timeout=180)
        services.append(prefect)
        api = prefect.url
        ensure_work_pool(api, "bench")
        deploy_all(api, "bench", ROOT, stub_prefect_file(home / "prefect.bench.yaml"), home=home)
        dep = httpx.get(f"{api}/deployments/name/on-commit/on-commit", timeout=30).json()["id"]

        repo = f"bench-{uuid.uuid4().hex[:6]}"
        settings = LakeFSSettings(endpoint=lakefs_svc.url, access_key_id=key, secret_access_key=secret,
                                  repository=repo, storage_namespace=f"local://{repo}")
        lake = Lake(settings)
        lake.ensure_repository()
        bport = free_port()
        bridge = start_bridge(home, bport, api_url=api, lakefs_secret=SECRET, lakefs=settings,
                              repositories=[repo], reconcile_interval=3600,
                              experiments=["bench"])  # the bench commits on a side branch: relay it
        services.append(bridge)
        lake.install_actions("main", ACTIONS_FILE, render_actions_yaml(bridge.url, token_env=TOKEN_ENV))
        lake.ensure_branch("bench")
        ledger = Ledger(home / "state" / "ledger.sqlite3")

        commit_lat: list[float] = []
        bare_lat: list[float] = []
        with temporary_settings({PREFECT_API_URL: api}):
            # warm both paths once (first websocket connection, first trigger load)
            lake.write_bytes("bench", "data/warm.csv", b"a\n1\n")
            _wait_run(api, dep, lake.commit("bench", "warm-up"))
            emit_event("lakefs.commit.created", resource=branch_resource(repo, "bench"),
                       payload={"repository": repo, "branch": "bench", "commit_id": "bare-warm"})
            _wait_run(api, dep, "bare-warm")
            for i in range(N_LATENCY):
                lake.write_bytes("bench", f"data/lat-{i}.csv", f"a\n{i}\n".encode())
                t0 = time.time()
                cid = lake.commit("bench", f"latency {i}")
                commit_lat.append(_ts(_wait_run(api, dep, cid)["created"]) - t0)

                bare_id = f"bare-{i}-{uuid.uuid4().hex[:6]}"
                t0 = time.time()
                emit_event("lakefs.commit.created", resource=branch_resource(repo, "bench"),
                           payload={"repository": repo, "branch": "bench", "commit_id": bare_id})
                bare_lat.append(_ts(_wait_run(api, dep, bare_id)["created"]) - t0)
            flush()

        # burst: 30 commits as fast as the API takes them
        burst: list[str] = []
        t0 = time.time()
        for i in range(N_BURST):
            lake.write_bytes("bench", f"data/burst-{i}.csv", f"a\n{i}\n".encode())
            burst.append(lake.commit("bench", f"burst {i}"))
        t_committed = time.time()
        wanted = set(burst)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            got = [r for r in _runs(api, dep) if r["parameters"].get("commit_id") in wanted]
            if len({r["parameters"]["commit_id"] for r in got}) == N_BURST:
                break
            time.sleep(0.2)
        t_drained = max(_ts(r["created"]) for r in got)
        time.sleep(3)  # let any duplicate surface before counting
        got = [r for r in _runs(api, dep) if r["parameters"].get("commit_id") in wanted]
        per_commit = {c: sum(r["parameters"]["commit_id"] == c for r in got) for c in burst}
        done_at = {d.key: d.done_at for d in ledger.done()}
        published: list[float] = [t for c in burst if (t := done_at.get(commit_key(repo, c))) is not None]
        health = httpx.get(f"{bridge.url}/health", timeout=10).json()

        # the same burst as bare events, to tell the bridge's share from Prefect's
        bare_ids = [f"bare-burst-{i}-{uuid.uuid4().hex[:6]}" for i in range(N_BURST)]
        with temporary_settings({PREFECT_API_URL: api}):
            tb = time.time()
            for bid in bare_ids:
                emit_event("lakefs.commit.created", resource=branch_resource(repo, "bench"),
                           payload={"repository": repo, "branch": "bench", "commit_id": bid})
            flush()
        wanted_bare = set(bare_ids)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            got_bare = [r for r in _runs(api, dep) if r["parameters"].get("commit_id") in wanted_bare]
            if len({r["parameters"]["commit_id"] for r in got_bare}) == N_BURST:
                break
            time.sleep(0.2)
        bare_drain = max(_ts(r["created"]) for r in got_bare) - tb

        figures: dict[str, Any] = {
            "commit_to_run_s": {"median": round(statistics.median(commit_lat), 3),
                                "p95": round(_pct(commit_lat, 0.95), 3), "n": len(commit_lat)},
            "bare_emit_to_run_s": {"median": round(statistics.median(bare_lat), 3),
                                   "p95": round(_pct(bare_lat, 0.95), 3), "n": len(bare_lat)},
            "commit_to_run_vs_bare": round(statistics.median(commit_lat) / statistics.median(bare_lat), 2),
            "commit_to_run_vs_bare_p95": round(_pct(commit_lat, 0.95) / _pct(bare_lat, 0.95), 2),
            "goal_ratio": 2.0,
            "burst": {
                "commits": N_BURST,
                "commit_s": round(t_committed - t0, 2),
                "drain_s": round(t_drained - t0, 2),
                "runs": len(got),
                "runs_per_commit_max": max(per_commit.values()),
                "runs_per_commit_min": min(per_commit.values()),
                "ledger_done": len(published),
                "bridge_published_s": round(max(published) - t0, 2) if published else None,
                "bare_emit_drain_s": round(bare_drain, 2),
                "drain_vs_bare": round((t_drained - t0) / bare_drain, 2),
            },
            "bridge_counters": health.get("counters", {}),
            "run_start": "flow run created by the deployment trigger (scheduled for now)",
        }
        print(f"commit->run  median {figures['commit_to_run_s']['median']:.3f}s  "
              f"p95 {figures['commit_to_run_s']['p95']:.3f}s")
        print(f"bare emit->run median {figures['bare_emit_to_run_s']['median']:.3f}s  "
              f"p95 {figures['bare_emit_to_run_s']['p95']:.3f}s")
        print(f"ratio (median) {figures['commit_to_run_vs_bare']}  (goal <= 2)")
        print(f"burst: {figures['burst']}")
        record("events", figures)
        return figures
    finally:
        for s in reversed(services):
            s.stop(timeout=10)


if __name__ == "__main__":
    main()
