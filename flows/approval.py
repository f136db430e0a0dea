"""Human approval of a promotion (`LAKELOOP_GATE_PROMOTION_POLICY=approval`): the flow run pauses in the
Prefect UI with the gate's evidence and waits for a typed approve/reject answer.

Resuming is Prefect's own: the UI's Resume form (built from `ApprovalInput`'s schema) posts
`/flow_runs/{id}/resume` with the answer as `run_input`. No answer within the timeout is a rejection.
"""

from __future__ import annotations

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.states import Running

from flows.context import FlowContext
from flows.reports import publish_artifact
from lakeloop.adapters.mlflow_registry import Approval
from tasks.model.gate import GateResult

POLL_S = 5


class ApprovalInput(RunInput):
    """The Resume form: approve or reject the challenger, and who decided."""

    approve: bool = False
    approver: str = ""
    reason: str = ""


def evidence_markdown(ctx: FlowContext, verdict: GateResult, card_url: str | None = None) -> str:
    """What the approver reads: metrics against the champion, slices, business value, the MLflow pages and
    the challenger's model card (published before the pause, so the approver can open it)."""
    mlflow = ctx.settings.mlflow.tracking_uri.rstrip("/")
    def link(v: str | None) -> str:
        return f"[v{v}]({mlflow}/#/models/{verdict.model_name}/versions/{v})" if v else "none"
    rows = [("AUC", verdict.auc, verdict.champion_auc),
            ("business value per row", verdict.business_value, verdict.champion_business_value)]
    lines = [f"## Approve {verdict.model_name} v{verdict.version} as champion?", "",
             f"Challenger {link(verdict.version)}{f' ([model card]({card_url}))' if card_url else ''} against "
             f"champion {link(verdict.champion_version)}, "
             f"on {verdict.rows} holdout rows of lakeFS commit [`{verdict.eval_commit[:12]}`]"
             f"({ctx.commit_url(verdict.eval_commit)}). The gate passed; resume this run to decide.", "",
             "| metric | challenger | champion |", "|---|---:|---:|"]
    lines += [f"| {n} | {_f(a)} | {_f(b)} |" for n, a, b in rows]
    if verdict.auc_delta is not None:
        lines += ["", f"AUC difference to the bar (v{verdict.bar_version}): {verdict.auc_delta}"]
    if verdict.business_delta is not None:
        lines += [f"Business value difference per row: {verdict.business_delta}"]
    if verdict.slices:
        lines += ["", "| slice | rows | AUC | champion AUC | result |", "|---|---:|---:|---:|---|"]
        lines += [f"| {s.name} | {s.rows} | {_f(s.auc)} | {_f(s.champion_auc)} | "
                  f"{'pass' if s.passed else 'fail'}{'' if s.gated else ' (not gated)'} |" for s in verdict.slices]
    lines += ["", "| check | result | detail |", "|---|---|---|"]
    lines += [f"| {c.name} | {'pass' if c.passed else 'fail'} | {c.detail} |" for c in verdict.checks]
    return "\n".join(lines) + "\n"


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def ask_for_approval(ctx: FlowContext, verdict: GateResult, card_url: str | None = None) -> Approval:
    """Pause this flow run until a person answers; a timeout is a rejection (and the run carries on)."""
    log = get_run_logger()
    timeout = ctx.settings.gate.approval_timeout_s
    evidence = evidence_markdown(ctx, verdict, card_url)
    publish_artifact("approval", evidence, description=f"approve {verdict.model_name} v{verdict.version}?")
    log.info("%s v%s passed the gate; waiting up to %ss for approval (resume this run in the Prefect UI)",
             verdict.model_name, verdict.version, timeout)
    form = ApprovalInput.with_initial_data(description=evidence, approve=False)
    try:
        answer = pause_flow_run(wait_for_input=form, timeout=timeout, poll_interval=min(POLL_S, timeout),
                                key=f"approve-v{verdict.version}-over-v{verdict.champion_at_gate or 'none'}")
    except FlowPauseTimeout:
        _running_again()
        log.warning("no approval of v%s within %ss: rejected", verdict.version, timeout)
        return Approval(approved=False, approver="timeout", reason=f"no answer within {timeout}s")
    log.info("v%s %s by %s%s", verdict.version, "approved" if answer.approve else "rejected",
             answer.approver or "unknown", f": {answer.reason}" if answer.reason else "")
    return Approval(approved=answer.approve, approver=answer.approver, reason=answer.reason)


def _running_again() -> None:
    """After a pause timed out the run is still Paused (or expired) on the server; it finishes its work."""
    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(ctx.flow_run.id, Running(), force=True)
