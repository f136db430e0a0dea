"""Gate a challenger and promote it, compare-and-set, gating again when the champion moved meanwhile.

Why a loop: two retrains that finish together both read the same champion. The
first to take the promotion lock wins; the second finds the champion changed
under it, and its evidence is stale, so it is judged again against the new
champion (and the best champions before it) instead of overwriting it.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import polars as pl
from mlflow import MlflowClient

from lakeloop.adapters.mlflow_registry import Approval, GateDecision, apply_gate, record_approval, refuse
from lakeloop.spec import DatasetSpec
from tasks.model.gate import GateConfig, GateResult, run_gate

MAX_ATTEMPTS = 3


class PromotionRace(RuntimeError):
    """The champion kept moving while this challenger was judged; nothing was promoted."""


def gate_and_promote(name: str, version: str, eval_df: pl.DataFrame, eval_commit: str, spec: DatasetSpec, *,
                     config: GateConfig | None = None, new_rows: pl.DataFrame | None = None,
                     lock: Callable[[], AbstractContextManager[Any]] | None = None,
                     client: MlflowClient | None = None,
                     approve: Callable[[GateResult], Approval] | None = None,
                     attempts: int = MAX_ATTEMPTS) -> tuple[GateResult, GateDecision]:
    """The gate's last verdict (stored as version tags) and what the registry did with it.

    `approve` (the `approval` promotion policy): asked about a passing verdict before anything moves; its
    answer is recorded on the version, and a rejection leaves the version `challenger`. When the champion
    moved while a person decided, the evidence is stale: gated again, and asked again."""
    for _ in range(attempts):
        verdict = run_gate(name, version, eval_df, eval_commit, spec, config, client, new_rows)
        if verdict.passed and approve is not None:
            approval = approve(verdict)
            record_approval(name, version, approval, client)
            if not approval.approved:
                return verdict, refuse(verdict, [f"approval: rejected by {approval.approver}"
                                                 + (f": {approval.reason}" if approval.reason else "")], client)
        decision = apply_gate(verdict, client, lock() if lock else None)
        if not decision.stale:
            return verdict, decision
    raise PromotionRace(f"model {name!r} v{version}: the champion moved during each of {attempts} gate runs")
