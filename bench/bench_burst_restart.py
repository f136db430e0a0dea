"""A burst of commits with a Prefect restart in the middle: is every commit and model event processed once?

Real servers, as `lakeloop up` starts them: the local lakeFS-compatible server with the actions
file installed, the bridge process (reconciler every RECONCILE_S seconds, which also replays the
flows' event outbox), a Prefect server with prefect.yaml deployed and a process worker. The
entrypoints are swapped for trivial flows; `on-commit` is bench/flows_burst.py, which emits one
`lakeloop.model.registered` per commit through `events.emit_durable`. The other deployments'
runs go to a paused work queue (their triggers still create them; nothing executes them).

N commits on `main`, one every PACE_S seconds; after commit RESTART_AFTER the Prefect server is
stopped (SIGTERM) and started again on the same port with the same database, while the commits
go on. Then, bounded by DRAIN_TIMEOUT_S, the bench waits until every commit has an on-commit run
and every model event is stored in Prefect, waits SETTLE_S more for duplicates to surface, and
counts per commit: on-commit runs, `lakeloop.model.registered` events (`POST /api/events/filter`,
distinct event ids) and the request-relabel runs those events triggered.

Figures (`events.burst_with_restart`): processed = commits with exactly one on-commit run;
lost = commits with none + commits whose model event never arrived; duplicated = extra on-commit
runs + extra model events. The triggered request-relabel runs are reported beside them.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench.results_io import record
from infra.local.prefect import STUB_FLOWS
from infra.procs import Service, free_port

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-bridge-secret"
TOKEN_ENV = "LAKEFSACTION_LAKELOOP_TOKEN"
POOL = "bench-burst"
HELD_QUEUE = "held"
N_COMMITS = int(os.environ.get("LAKELOOP_BENCH_BURST_COMMITS", "30"))
RESTART_AFTER = int(os.environ.get("LAKELOOP_BENCH_BURST_RESTART_AFTER", "10"))
PACE_S = float(os.environ.get("LAKELOOP_BENCH_BURST_PACE_S", "0.5"))
RECONCILE_S = 5.0
# 30 flow processes through one 2-slot worker: ~20-40 s each on a loaded 2-core box (5-10 min)
DRAIN_TIMEOUT_S = float(os.environ.get("LAKELOOP_BENCH_BURST_DRAIN_TIMEOUT_S", "900"))
SETTLE_S = 15.0
WORKER_LIMIT = 2


def _ts(s: str) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def _prefect_file(dest: Path) -> Path:
    """prefect.yaml with trivial entrypoints; everything but on-commit goes to the paused queue."""
    data = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    for d in data["deployments"]:
        fn = d["entrypoint"].split(":", 1)[1]
        if d["name"] == "on-commit":
            d["entrypoint"] = "bench/flows_burst.py:on_commit"
        else:
            d["entrypoint"] = f"{STUB_FLOWS}:{fn}"
            d["work_pool"] = {**d["work_pool"], "work_queue_name": HELD_QUEUE}
    dest.write_text(yaml.safe_dump(data, sort_keys=False))
    return dest


class Api:
    """Plain REST reads of the Prefect API (retried: the server may be restarting)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        delay = 0.5
        for attempt in range(30):
            try:
                r = httpx.request(method, path if path.startswith("http") else f"{self.url}{path}",
                                  json=body, timeout=30)
                if r.status_code not in (502, 503, 504):
                    r.raise_for_status()
                    return r.json() if r.content else None
            except httpx.TransportError:
                if attempt == 29:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        raise RuntimeError(f"{method} {path}: no answer")

    def deployment_id(self, name: str) -> str:
        return str(self._request("GET", f"/deployments/name/{name}/{name}")["id"])

    def runs(self, deployment_id: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            page = self._request("POST", "/flow_runs/filter", {
                "limit": 200, "offset": len(out), "sort": "EXPECTED_START_TIME_DESC",
                "deployments": {"id": {"any_": [deployment_id]}}})
            out += page
            if len(page) < 200:
                return out

    def events(self, name: str, resource_id: str, since: datetime) -> list[dict[str, Any]]:
        until = datetime.now(UTC) + timedelta(minutes=5)
        page = self._request("POST", "/events/filter", {"limit": 50, "filter": {
            "occurred": {"since": since.isoformat(), "until": until.isoformat()},
            "event": {"name": [name]}, "resource": {"id": [resource_id]}}})
        out: list[dict[str, Any]] = list(page["events"])
        while page.get("next_page"):
            page = self._request("GET", str(page["next_page"]))
            out += page["events"]
        return out

    def pause_queue(self, pool: str, queue: str) -> None:
        self._request("PATCH", f"/work_pools/{pool}/queues/{queue}", {"is_paused": True})


def main() -> dict[str, Any]:
    from bench.flows_burst import MODEL_ENV
    from infra.bridge.lakefs_actions import ACTIONS_FILE, render_actions_yaml
    from infra.bridge.run_confirm import FINAL_STATES as FINAL
    from infra.bridge.run_confirm import SentCommitEvents
    from infra.bridge.service import start_bridge
    from infra.deploy import deploy_all
    from infra.local.lakefs import start_lakefs
    from infra.local.prefect import QUIET_SERVICES, ensure_work_pool, start_prefect_server, start_worker
    from lakeloop import events
    from lakeloop.adapters.lakefs import Lake
    from lakeloop.event_outbox import EventOutbox
    from lakeloop.settings import LakeFSSettings
    from lakeloop.state import Ledger, commit_key

    load_before = os.getloadavg()
    home = Path(tempfile.mkdtemp(prefix="lakeloop-bench-burst-"))
    model = f"burst-{uuid.uuid4().hex[:6]}"
    # the bridge, the worker and its flow runs share one state directory (ledger, event outbox)
    os.environ.update({TOKEN_ENV: SECRET, "LAKELOOP_HOME": str(home), MODEL_ENV: model})
    services: dict[str, Service] = {}
    try:
        key, secret = "AKIALAKELOOPBENCH002", "lakeloop-bench-secret"
        services["lakefs"] = lakefs_svc = start_lakefs(home, free_port(), key, secret)
        pport = free_port()

        def start_prefect() -> Service:
            return start_prefect_server(home, pport, ui=False, timeout=180, extra_env=QUIET_SERVICES)

        services["prefect"] = start_prefect()
        api = Api(services["prefect"].url)
        ensure_work_pool(api.url, POOL)
        deploy_all(api.url, POOL, ROOT, _prefect_file(home / "prefect.burst.yaml"), home=home)
        api.pause_queue(POOL, HELD_QUEUE)
        on_commit, relabel = api.deployment_id("on-commit"), api.deployment_id("request-relabel")
        services["worker"] = start_worker(api.url, POOL, home, limit=WORKER_LIMIT, timeout=120)

        repo = f"burst-{uuid.uuid4().hex[:6]}"
        settings = LakeFSSettings(endpoint=lakefs_svc.url, access_key_id=key, secret_access_key=secret,
                                  repository=repo, storage_namespace=f"local://{repo}")
        lake = Lake(settings)
        lake.ensure_repository()
        services["bridge"] = bridge = start_bridge(home, free_port(), api_url=api.url, lakefs_secret=SECRET,
                                                   lakefs=settings, repositories=[repo],
                                                   reconcile_interval=RECONCILE_S)
        lake.install_actions("main", ACTIONS_FILE, render_actions_yaml(bridge.url, token_env=TOKEN_ENV))
        ledger = Ledger.at(home / "state")
        outbox = EventOutbox.at(home / "state")
        model_resource = events.model_resource(model)["prefect.resource.id"]
        since = datetime.now(UTC) - timedelta(minutes=1)

        def runs_per_commit(dep: str, wanted: list[str]) -> dict[str, int]:
            c = Counter(r["parameters"].get("commit_id") for r in api.runs(dep))
            return {w: c.get(w, 0) for w in wanted}

        def events_per_commit(wanted: list[str]) -> dict[str, int]:
            ids: dict[str, set[str]] = {w: set() for w in wanted}
            for e in api.events(events.MODEL_REGISTERED, model_resource, since):
                cid = e["payload"].get("commit_id")
                if cid in ids:
                    ids[cid].add(e["id"])
            return {w: len(v) for w, v in ids.items()}

        # warm-up commit (first websocket, first trigger load, first flow process): not counted
        lake.write_bytes("main", "data/warm.csv", b"a\n0\n")
        warm = lake.commit("main", "warm-up")
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not events_per_commit([warm])[warm]:
            time.sleep(1)

        restart: dict[str, float] = {}

        def restart_prefect() -> None:
            restart["stop_at"] = time.time()
            old = services["prefect"]
            old.stop(timeout=30)  # SIGTERM; SIGKILL if it has not exited after 30 s
            restart["down_at"] = time.time()
            restart["exit_code"] = float(old.proc.returncode if old.proc.returncode is not None else 0)
            services["prefect"] = start_prefect()
            restart["up_at"] = time.time()

        burst: list[str] = []
        restarter = threading.Thread(target=restart_prefect, name="restart-prefect")
        t0 = time.time()
        for i in range(N_COMMITS):
            lake.write_bytes("main", f"data/burst-{i}.csv", f"a\n{i}\n".encode())
            burst.append(lake.commit("main", f"burst {i}"))
            if i + 1 == RESTART_AFTER:
                restarter.start()
            time.sleep(PACE_S)
        t_committed = time.time()
        restarter.join()

        drained_at: float | None = None
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while time.monotonic() < deadline:
            runs = runs_per_commit(on_commit, burst)
            evs = events_per_commit(burst)
            if all(runs.values()) and all(evs.values()) and not outbox.pending():
                drained_at = time.time()
                break
            time.sleep(2)
        time.sleep(SETTLE_S)  # let duplicates (and the event persister's last batch) surface

        runs = runs_per_commit(on_commit, burst)
        evs = events_per_commit(burst)
        relabels = runs_per_commit(relabel, burst)  # the runs the model events triggered
        done = {d.key for d in ledger.done(f"lakefs:{repo}:")}
        burst_runs = [r for r in api.runs(on_commit) if r["parameters"].get("commit_id") in set(burst)]
        states = Counter(r["state_type"] for r in burst_runs)
        finished = {r["parameters"]["commit_id"]: True for r in burst_runs if r["state_type"] in FINAL}
        sent_commits = SentCommitEvents.at(home / "state")
        confirmation = {"redelivered": 0, "rescheduled": 0, "abandoned": 0}
        for c in burst:
            row = sent_commits.get(str(events.commit_event_id(events.LAKEFS_COMMIT_CREATED, repo, c)))
            if row:
                confirmation["redelivered"] += int(row["redeliveries"])
                confirmation["rescheduled"] += int(row["reschedules"])
                confirmation["abandoned"] += int(row["abandoned_at"] is not None)
        health = httpx.get(f"{bridge.url}/health", timeout=10).json()
        load_after = os.getloadavg()

        no_run = [c for c in burst if runs[c] == 0]
        no_event = [c for c in burst if evs[c] == 0]
        figures: dict[str, Any] = {
            "commits": N_COMMITS,
            "processed": sum(1 for c in burst if runs[c] == 1),
            "lost": len(no_run) + len(no_event),
            "duplicated": sum(max(0, n - 1) for n in runs.values()) + sum(max(0, n - 1) for n in evs.values()),
            "on_commit_runs": {"lost": len(no_run), "duplicated": sum(max(0, n - 1) for n in runs.values()),
                               "states": dict(states)},
            "lost_detail": {
                "no_on_commit_run": len(no_run),
                # the commit's run exists but had not run (or finished) by the deadline: the event is late, not dropped
                "model_event_run_not_finished": sum(1 for c in no_event if runs[c] and not finished.get(c)),
                "model_event_missing_after_run": sum(1 for c in no_event if finished.get(c)),
            },
            "model_events": {"arrived_once": sum(1 for n in evs.values() if n == 1), "lost": len(no_event),
                             "duplicated": sum(max(0, n - 1) for n in evs.values())},
            "model_triggered_runs": {"exactly_one": sum(1 for n in relabels.values() if n == 1),
                                     "lost": sum(1 for n in relabels.values() if n == 0),
                                     "duplicated": sum(max(0, n - 1) for n in relabels.values())},
            "ledger_done": sum(1 for c in burst if commit_key(repo, c) in done),
            "ledger_done_without_run": [c[:12] for c in no_run if commit_key(repo, c) in done],
            "outbox": outbox.counts(),
            "run_confirmation": confirmation,
            "restart_after_commit": RESTART_AFTER,
            "restart_s": round(restart["up_at"] - restart["stop_at"], 2),
            "restart_stop_s": round(restart["down_at"] - restart["stop_at"], 2),
            "restart_exit_code": int(restart["exit_code"]),  # -9: did not stop on SIGTERM within 30 s
            "commit_s": round(t_committed - t0, 2),
            "pace_s": PACE_S,
            "drain_s": round(drained_at - t0, 2) if drained_at else None,
            "drain_after_restart_s": round(drained_at - restart["up_at"], 2) if drained_at else None,
            "drain_timeout_s": DRAIN_TIMEOUT_S,
            "reconcile_interval_s": RECONCILE_S,
            "worker_limit": WORKER_LIMIT,
            "bridge_counters": health.get("counters", {}),
            "load_avg_before": [round(x, 2) for x in load_before],
            "load_avg": [round(x, 2) for x in load_after],
            "cpus": os.cpu_count(),
        }
        print(f"burst with restart: {figures}")
        record("events.burst_with_restart", figures)
        return figures
    finally:
        for name in ("bridge", "worker", "prefect", "lakefs"):
            if name in services:
                services[name].stop(timeout=15)


if __name__ == "__main__":
    main()
