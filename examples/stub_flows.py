"""Trivial stand-ins with the real flows' names and parameters.

Deployed from a copy of prefect.yaml whose entrypoints point here, so the
trigger wiring (event -> deployment -> parameters) is tested without running
the real pipelines.
"""

from __future__ import annotations

from prefect import flow


@flow(name="on-commit")
def on_commit(repository: str, branch: str, commit_id: str) -> str:
    return f"{repository}/{branch}@{commit_id}"


@flow(name="retrain")
def retrain(repository: str, branch: str, commit_id: str, reason: str, force: bool = True) -> str:
    return f"{repository}@{commit_id}: {reason}"


@flow(name="request-relabel")
def request_relabel(repository: str, commit_id: str, run_id: str) -> str:
    return run_id


@flow(name="ingest-labels")
def ingest_labels(project_id: int | None = None) -> int | None:
    return project_id


@flow(name="build-ensemble")
def build_ensemble(repository: str, commit_id: str) -> str:
    return commit_id


@flow(name="batch-inference")
def batch_inference(repository: str, ref: str = "main") -> str:
    return ref


@flow(name="monitor")
def monitor(repository: str, ref: str = "main") -> str:
    return ref
