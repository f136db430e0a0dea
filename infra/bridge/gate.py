"""Pre-merge gate: the data a merge brings into a protected branch must satisfy the spec.

lakeFS runs pre-merge hooks synchronously with the branch locked, so the check
reads only what the merge changes (`diff(destination, source)`, three-dot, as
lakeFS-hooks does) and validates each added or changed data object with
`tasks.data.validate.validate`. Any schema error or any row failing a check blocks
the merge (up to `max_invalid_share`); the message names object, check and column.

With `experiments` set, a merge from an experiment branch also needs that branch's
latest experiment verdict (the report commit `flows.experiment` writes) to be
something other than `worse`; a data commit newer than the last report is a
pending verdict, which blocks too: data CI, the branch's tests must have run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from infra.bridge.models import LakeFSHookEvent
from lakeloop.events import INTERNAL_KIND_KEY
from lakeloop.settings import LakeFSSettings
from lakeloop.spec import DatasetSpec

if TYPE_CHECKING:
    from lakeloop.adapters.lakefs import Lake
    from lakeloop.branches import BranchPolicy

EXPERIMENT_REPORT_KIND = "experiment-report"


@dataclass(frozen=True)
class MergeCheck:
    """The pre-merge data check's verdict on a merge: ok, the objects read, and why it is blocked."""

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
    experiments: BranchPolicy | None = None  # set: merges from experiment branches need a verdict that is not worse

    def __call__(self, ev: LakeFSHookEvent) -> MergeCheck:
        from lakeloop.adapters.lakefs import Lake, LakeError
        from tasks.data.validate import REASONS, SchemaError, validate

        if not ev.branch_id or not ev.source_ref:
            return MergeCheck(False, problems=["pre-merge event without branch_id/source_ref"])
        lake = Lake(self.lakefs.model_copy(update={"repository": ev.repository_id}))
        prefix = self.lakefs.data_prefix
        try:
            diff = lake.diff(ev.branch_id, ev.source_ref, prefix=prefix)
        except LakeError as e:  # the event names a repository or ref lakeFS does not have: block, saying so
            return MergeCheck(False, problems=[str(e)])
        changes = [c for c in diff
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
        if self.experiments is not None and ev.merge_source and self.experiments.role(ev.merge_source) == "experiment":
            problems += experiment_verdict_problems(lake, ev.source_ref, ev.merge_source)
        return MergeCheck(not problems, checked, problems)


def experiment_verdict_problems(lake: Lake, source_ref: str, branch: str, depth: int = 100) -> list[str]:
    """Why the branch's experiment verdict blocks a merge (none: the latest verdict is not `worse`)."""
    for c in lake.log(source_ref, limit=depth):
        if c.metadata.get(INTERNAL_KIND_KEY) == EXPERIMENT_REPORT_KIND:
            verdict = c.metadata.get("lakeloop.experiment.verdict", "")
            if verdict == "worse":
                judged = c.metadata.get("lakeloop.experiment.commit", "")[:12]
                return [f"experiment on {branch} @ {judged}: the model gets worse (see _lakeloop/experiments/"
                        f"{judged}.md on the branch)"]
            return []
        if c.parents and c.metadata.get(INTERNAL_KIND_KEY) != "actions":
            return [f"experiment on {branch}: no verdict yet for commit {c.id[:12]}; wait for its report"]
    return [f"experiment on {branch}: no experiment report in the last {depth} commits"]
