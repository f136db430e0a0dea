"""Pre-merge gate: the data a merge brings into a protected branch must satisfy the spec.

lakeFS runs pre-merge hooks synchronously with the branch locked, so the check
reads only what the merge changes (`diff(destination, source)`, three-dot, as
lakeFS-hooks does) and validates each added or changed data object with
`tasks.validate.validate`. Any schema error or any row failing a check blocks
the merge (up to `max_invalid_share`); the message names object, check and column.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from infra.bridge.models import LakeFSHookEvent
from lakeloop.settings import LakeFSSettings
from lakeloop.spec import DatasetSpec


@dataclass(frozen=True)
class GateResult:
    ok: bool
    checked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def message(self) -> str:
        if self.ok:
            return f"ok: {len(self.checked)} data object(s) valid"
        return "merge blocked by lakeloop: " + " | ".join(self.problems)


@dataclass
class SpecMergeGate:
    """Validates the data objects a merge adds or changes against `spec`."""

    spec: DatasetSpec
    lakefs: LakeFSSettings
    max_invalid_share: float = 0.0
    max_reasons: int = 3

    def __call__(self, ev: LakeFSHookEvent) -> GateResult:
        from tasks.lake import Lake, LakeError
        from tasks.validate import REASONS, SchemaError, validate

        if not ev.branch_id or not ev.source_ref:
            return GateResult(False, problems=["pre-merge event without branch_id/source_ref"])
        lake = Lake(self.lakefs.model_copy(update={"repository": ev.repository_id}))
        prefix = self.lakefs.data_prefix
        changes = [c for c in lake.diff(ev.branch_id, ev.source_ref, prefix=prefix)
                   if c.type in ("added", "changed", "conflict") and c.path.endswith((".parquet", ".csv"))]
        checked: list[str] = []
        problems: list[str] = []
        for ch in changes:
            where = f"lakefs://{ev.repository_id}/{ev.merge_source or ev.source_ref}/{ch.path}"
            checked.append(ch.path)
            try:
                df = lake.read_frame(ev.source_ref, ch.path)
                result = validate(df, self.spec, source=where)
            except SchemaError as e:
                col = f" (column {e.column!r})" if e.column else ""
                problems.append(f"schema: {e}{col}")
                continue
            except LakeError as e:
                problems.append(str(e))
                continue
            rep = result.report
            if rep.n_invalid and rep.invalid_share > self.max_invalid_share:
                failing = ", ".join(f"{k} ({v} rows)" for k, v in rep.checks.items() if v)
                reasons = [str(r) for r in result.invalid.get_column(REASONS).head(self.max_reasons).to_list()]
                rows = [str(r) for r in result.invalid.get_column("_row").head(self.max_reasons).to_list()]
                examples = "; ".join(f"row {r}: {x}" for r, x in zip(rows, reasons, strict=False))
                problems.append(f"{where}: {rep.n_invalid} of {rep.n_rows} rows invalid; failing checks: "
                                f"{failing}; e.g. {examples}")
        return GateResult(not problems, checked, problems)
