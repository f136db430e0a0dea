"""What every flow starts from: settings, the dataset spec and the lake, built once per run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import ParamSpec, TypeVar

from prefect import Task, task
from prefect.cache_policies import NO_CACHE

from lakeloop.adapters.lakefs import Lake
from lakeloop.branches import BranchPolicy
from lakeloop.settings import Settings, get_settings
from lakeloop.spec import DatasetSpec
from tasks.data.object_state import ObjectStates

P = ParamSpec("P")
R = TypeVar("R")


def step(name: str, fn: Callable[P, R]) -> Task[P, R]:
    """A plain task function as a Prefect task. No input caching: inputs are live clients and frames, and
    every step reads lakeFS at an immutable commit anyway."""
    return task(name=name, cache_policy=NO_CACHE)(fn)


def run_owner() -> str:
    """Who holds a ledger claim or lock: this flow run (its id), or "local" outside a run."""
    from prefect.runtime import flow_run

    return str(flow_run.id or "local")


@dataclass
class FlowContext:
    settings: Settings
    spec: DatasetSpec
    lake: Lake

    @classmethod
    def load(cls, repository: str | None = None) -> FlowContext:
        settings = get_settings()
        if repository and repository != settings.lakefs.repository:
            settings = settings.model_copy(
                update={"lakefs": settings.lakefs.model_copy(update={"repository": repository})}
            )
        return cls(settings=settings, spec=DatasetSpec.from_yaml(settings.spec_path), lake=Lake(settings.lakefs))

    @cached_property
    def branches(self) -> BranchPolicy:
        return BranchPolicy.from_settings(self.settings)

    @cached_property
    def object_states(self) -> ObjectStates:
        """Validation results and id indexes by object content, shared by every flow of this stack."""
        return ObjectStates.for_spec(self.settings.state_dir, self.spec)

    @property
    def model_name(self) -> str:
        return self.settings.mlflow.model_name

    @cached_property
    def lakefs_ui(self) -> str:
        return f"{self.settings.lakefs.endpoint}/repositories/{self.settings.lakefs.repository}"

    def commit_url(self, commit_id: str) -> str:
        return f"{self.lakefs_ui}/commits/{commit_id}"
