"""Sustained webhook load on the bridge, on loopback, with a real Prefect server behind it.

The bridge runs as `lakeloop up` runs it (`infra.bridge.service.start_bridge`: its own process, the
durable ledger under its state directory, events posted to Prefect's `POST /api/events`), without
the reconciler, so every event Prefect holds was published by a webhook. An async httpx client
keeps CONCURRENCY post-commit webhooks in flight for N_WEBHOOKS distinct commits; one commit in
REDELIVER_EVERY is delivered a second time, as lakeFS does when a hook times out, and must be
answered `duplicate`. Nothing is deployed on the Prefect server: the figure is the bridge's, not
the flow runs'.

Afterwards the run is reconciled three ways: every webhook got a 2xx (none dropped); the ledger has
every commit `done` exactly once; Prefect's event store (`POST /api/events/filter`, read until the
count stops moving) holds exactly one `lakefs.commit.created` per commit. lost = commits missing
from the ledger or from Prefect; duplicated = events beyond one per commit.
Figures (`bridge`): webhooks_per_s (sustained over the load phase), p50/p99 latency, lost, duplicated.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.results_io import record
from infra.procs import free_port

SECRET = "bench-bridge-secret"
N_WEBHOOKS = int(os.environ.get("LAKELOOP_BENCH_BRIDGE_WEBHOOKS", "3000"))
CONCURRENCY = int(os.environ.get("LAKELOOP_BENCH_BRIDGE_CONCURRENCY", "16"))
REDELIVER_EVERY = 20
WARMUP = 50
SETTLE_TIMEOUT_S = 120.0


def webhook(repo: str, commit_id: str) -> dict[str, Any]:
    return {"event_type": "post-commit", "event_time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "action_name": "lakeloop", "hook_id": "lakeloop_relay", "repository_id": repo, "branch_id": "main",
            "source_ref": commit_id, "commit_id": commit_id, "commit_message": "load", "committer": "bench",
            "commit_metadata": {"bench": "load"}}


async def drive(url: str, repo: str, commits: list[str]) -> tuple[list[float], Counter[str], float]:
    """POST every webhook (redeliveries included) with CONCURRENCY in flight; latencies in ms."""
    deliveries = [(c, i % REDELIVER_EVERY == 0) for i, c in enumerate(commits)]
    queue: list[tuple[str, bool]] = []
    for c, again in deliveries:
        queue.append((c, False))
        if again:
            queue.append((c, True))
    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    it = iter(queue)
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30,
                                 headers={"X-Lakeloop-Token": SECRET}) as client:
        async def worker() -> None:
            for commit_id, again in it:
                t0 = time.perf_counter()
                try:
                    r = await client.post("/lakefs/events", json=webhook(repo, commit_id))
                except httpx.HTTPError as e:
                    outcomes[f"error:{type(e).__name__}"] += 1
                    continue
                latencies.append((time.perf_counter() - t0) * 1000)
                status = r.json().get("status") if r.status_code == 200 else f"http {r.status_code}"
                outcomes[f"{'redelivery' if again else 'first'}:{status}"] += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        wall = time.perf_counter() - t0
    return latencies, outcomes, wall


def prefect_commit_events(api: str, repo: str, since: datetime) -> list[str]:
    """The commit ids of every stored `lakefs.commit.created` event of `repo` (one per event)."""
    until = datetime.now(UTC) + timedelta(minutes=5)
    with httpx.Client(base_url=api, timeout=60) as http:
        r = http.post("/events/filter", json={"limit": 50, "filter": {
            "occurred": {"since": since.isoformat(), "until": until.isoformat()},
            "event": {"name": ["lakefs.commit.created"]},
            "resource": {"id": [f"lakefs.repo.{repo}.branch.main"]}}})
        r.raise_for_status()
        page = r.json()
        out = [e["resource"].get("lakefs.commit", "") for e in page["events"]]
        while page.get("next_page"):
            r = http.get(str(page["next_page"]))
            r.raise_for_status()
            page = r.json()
            out += [e["resource"].get("lakefs.commit", "") for e in page["events"]]
    return out


def settled_events(api: str, repo: str, since: datetime, want: int) -> list[str]:
    """Prefect persists events in batches after accepting them: read until the count stops moving."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    last = -1
    while True:
        got = prefect_commit_events(api, repo, since)
        if (len(got) >= want and len(got) == last) or time.monotonic() > deadline:
            return got
        last = len(got)
        time.sleep(3)


def bare_prefect_ms(api: str, repo: str, n: int = 60) -> list[float]:
    """Latency of `post_events` straight to Prefect, one event a call: the floor under any bridge answer
    (the bridge answers only once Prefect accepted), measured beside the load on the same box."""
    from lakeloop.adapters.prefect_events import post_events
    from lakeloop.events import CommitPayload, commit_event

    out = []
    for i in range(n):
        ev = commit_event(CommitPayload(repository=f"{repo}-bare", branch="main", commit_id=f"bare{i}",
                                        message="", committer="", metadata={}, lakefs_event="post-commit"))
        t0 = time.perf_counter()
        post_events([ev], api)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def main() -> dict[str, Any]:
    from infra.bridge.service import start_bridge
    from infra.local.prefect import QUIET_SERVICES, start_prefect_server
    from lakeloop.state import Ledger, commit_key

    home = Path(tempfile.mkdtemp(prefix="lakeloop-bench-bridge-"))
    services = []
    try:
        prefect = start_prefect_server(home, free_port(), ui=False, timeout=180, extra_env=QUIET_SERVICES)
        services.append(prefect)
        bridge = start_bridge(home, free_port(), api_url=prefect.url, lakefs_secret=SECRET, reconcile_interval=0)
        services.append(bridge)
        repo = f"load-{uuid.uuid4().hex[:6]}"
        since = datetime.now(UTC) - timedelta(seconds=5)

        warm = [f"warm{i:04d}" + uuid.uuid4().hex for i in range(WARMUP)]
        asyncio.run(drive(bridge.url, repo, warm))
        commits = [f"{i:06d}" + uuid.uuid4().hex for i in range(N_WEBHOOKS)]
        load0 = os.getloadavg()[0]
        latencies, outcomes, wall = asyncio.run(drive(bridge.url, repo, commits))
        load_avg = os.getloadavg()[0]
        bare = bare_prefect_ms(prefect.url, repo)

        everything = warm + commits
        ledger = Ledger(home / "state" / "ledger.sqlite3")
        done = {d.key for d in ledger.done()}
        not_done = [c for c in everything if commit_key(repo, c) not in done]
        events = Counter(settled_events(prefect.url, repo, since, len(everything)))
        missing_in_prefect = [c for c in everything if events[c] == 0]
        duplicated = sum(n - 1 for n in events.values() if n > 1)
        strays = sum(n for c, n in events.items() if c not in set(everything))
        health = httpx.get(f"{bridge.url}/health", timeout=10).json()
        redeliveries = len(commits[::REDELIVER_EVERY])
        dropped = len(commits) + redeliveries - sum(outcomes[k] for k in outcomes if k.endswith((":emitted",
                                                                                              ":duplicate")))
        figures: dict[str, Any] = {
            "webhooks_per_s": round(len(latencies) / wall, 1),
            "p50_ms": round(statistics.median(latencies), 1),
            "p99_ms": round(_pct(latencies, 0.99), 1),
            "max_ms": round(max(latencies), 1),
            "prefect_post_p50_ms": round(statistics.median(bare), 1), "prefect_post_p99_ms": round(_pct(bare, 0.99), 1),
            "lost": len(set(not_done) | set(missing_in_prefect)),
            "duplicated": duplicated + strays,
            "dropped_webhooks": dropped,
            "webhooks": len(latencies), "commits": len(commits), "redeliveries": redeliveries,
            "concurrency": CONCURRENCY, "load_s": round(wall, 1),
            "outcomes": dict(sorted(outcomes.items())),
            "ledger_not_done": len(not_done), "prefect_events": sum(events.values()),
            "prefect_missing": len(missing_in_prefect),
            "bridge_counters": health.get("counters", {}),
            "goals": {"webhooks_per_s": 200, "p99_ms": 100, "lost": 0, "duplicated": 0},
            "load_avg_1m": round(load_avg, 2), "load_avg_1m_before": round(load0, 2), "cores": os.cpu_count(),
        }
        print(f"{figures['webhooks_per_s']} webhooks/s sustained over {wall:.1f}s at concurrency {CONCURRENCY}; "
              f"p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms")
        print(f"bare POST /api/events to Prefect (one event, sequential): p50 {figures['prefect_post_p50_ms']} ms, "
              f"p99 {figures['prefect_post_p99_ms']} ms")
        print(f"lost {figures['lost']}, duplicated {figures['duplicated']}, dropped {dropped}; outcomes {outcomes}")
        print(f"load average {load_avg:.2f} on {os.cpu_count()} cores")
        record("bridge", figures)
        return figures
    finally:
        for s in reversed(services):
            s.stop(timeout=15)


if __name__ == "__main__":
    main()
