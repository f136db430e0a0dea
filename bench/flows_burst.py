"""The trivial `on-commit` of the burst-with-restart bench: it emits one model-level event per commit.

Deployed in place of `flows/on_commit.py` by bench/bench_burst_restart.py, so each commit's run
hands `lakeloop.model.registered` to Prefect through `events.emit_durable`, exactly as retrain
does; the bench then counts that each commit's event arrived in Prefect once.
"""

from __future__ import annotations

import os

from prefect import flow

from lakeloop import events
from lakeloop.adapters import prefect_events

MODEL_ENV = "LAKELOOP_BENCH_MODEL_NAME"


@flow(name="on-commit")
def on_commit(repository: str, branch: str, commit_id: str) -> str:
    model = os.environ.get(MODEL_ENV, "burst")
    ev = prefect_events.emit_durable(events.MODEL_REGISTERED, events.model_resource(model), {
        "repository": repository, "branch": branch, "commit_id": commit_id, "run_id": f"burst-{commit_id}",
        "model_name": model, "version": commit_id[:12], "reason": "bench burst",
    })
    return str(ev.id)
