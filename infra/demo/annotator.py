"""A simulated labeling team for the demo, tests and benches.

Each simulated annotator is a real Label Studio user (created through the
API) and answers through the API the way the labeling UI does: one
annotation per task, with `completed_by` set to that user and a lead time.
(Label Studio's community edition has no API to mint a token for another
user, so the admin token posts on the annotator's behalf; the annotation is
attributed to the annotator.) Answers come from the generator's true labels,
wrong with probability `error_rate`, "unsure" with probability `unsure_rate`;
deterministic for a seed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from lakeloop.adapters.label_studio import FROM_NAME, TO_NAME, UNSURE, LabelStudioAdapter
from lakeloop.spec import DatasetSpec


@dataclass(frozen=True)
class AnnotatorStats:
    annotator: str
    answered: int
    wrong: int
    unsure: int
    skipped_existing: int


def ensure_annotator(adapter: LabelStudioAdapter, email: str) -> int:
    """The user id of `email`, creating the user if needed."""
    for u in adapter.client.users.list():
        if u.email == email:
            return int(u.id)
    user = adapter.client.users.create(username=email.split("@")[0], email=email,
                                       password=hashlib.sha256(email.encode()).hexdigest()[:20])
    return int(user.id)


class SimulatedAnnotator:
    """Answers tasks of a project from `truth` (row id -> true class) with a given error rate."""

    def __init__(self, adapter: LabelStudioAdapter, spec: DatasetSpec, email: str, *, error_rate: float = 0.05,
                 unsure_rate: float = 0.0, seed: int = 0, workers: int = 4) -> None:
        if not 0 <= error_rate <= 1 or not 0 <= unsure_rate <= 1:
            raise ValueError(f"error_rate and unsure_rate must be in [0, 1], got {error_rate}, {unsure_rate}")
        self.adapter = adapter
        self.spec = spec
        self.email = email
        self.error_rate = error_rate
        self.unsure_rate = unsure_rate
        self.seed = seed
        self.workers = workers
        self.user_id = ensure_annotator(adapter, email)

    def _rng(self, row_id: str) -> np.random.Generator:
        # per (seed, annotator, row): the same answer whatever the task order
        key = hashlib.sha256(f"{self.seed}|{self.email}|{row_id}".encode()).digest()
        return np.random.default_rng(int.from_bytes(key[:8], "little"))

    def answer(self, row_id: str, true_label: str) -> str:
        rng = self._rng(row_id)
        u = rng.random()
        if u < self.unsure_rate:
            return UNSURE
        if rng.random() < self.error_rate:
            others = [c for c in self.spec.classes if c != true_label]
            return str(others[int(rng.integers(len(others)))])
        return true_label

    def annotate(self, project_id: int, truth: dict[str, str], task_ids: Sequence[int] | None = None) -> AnnotatorStats:
        """Answer every task (or `task_ids`) of the project this annotator has not answered yet."""
        client = self.adapter.client
        wrong = unsure = skipped = 0
        wanted = set(task_ids) if task_ids is not None else None
        tasks: list[Any] = list(client.tasks.list(project=project_id, page_size=500, fields="all"))
        todo: list[tuple[int, str, float]] = []
        for t in tasks:
            if wanted is not None and int(t.id) not in wanted:
                continue
            mine = [a for a in (t.annotations or [])
                    if (a["completed_by"] if isinstance(a, dict) else a.completed_by) == self.user_id]
            if mine:
                skipped += 1
                continue
            row_id = str((t.data or {}).get("row_id"))
            if row_id not in truth:
                raise KeyError(f"task {t.id}: row {row_id!r} has no true label")
            choice = self.answer(row_id, truth[row_id])
            todo.append((int(t.id), choice, float(self._rng(row_id + "|time").uniform(4, 40))))
            wrong += int(choice not in (truth[row_id], UNSURE))
            unsure += int(choice == UNSURE)

        def post(item: tuple[int, str, float]) -> None:
            task_id, choice, lead = item
            client.annotations.create(
                task_id, completed_by=self.user_id, lead_time=lead,
                result=[{"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices",
                         "value": {"choices": [choice]}}],
            )

        # a team works in parallel; Label Studio's server is threaded
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            list(pool.map(post, todo))
        return AnnotatorStats(self.email, len(todo), wrong, unsure, skipped)
