"""The demo's promotion round: a voted ensemble is searched, gated, promoted, and then serves.

`build-ensemble` normally runs weekly; the demo starts it by hand with a small search
budget. A passing gate moves `champion` and emits `lakeloop.model.promoted`, whose
trigger starts `batch-inference`; its `lakeloop.inference.completed` starts `monitor`.
The demo only starts the first run and waits for the chain.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.markup import escape

from infra.demo.runs import failure_line, run_result, wait_for_run
from lakeloop.outcomes import ModelRef
from lakeloop.settings import Settings

DEMO_TRIALS = 6
DEMO_SEARCH_S = 120.0


def run_promotion_round(settings: Settings, console: Console) -> list[str]:
    """The round's failures, one line each, for the demo's exit status."""
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment

    console.rule("voted ensemble → gate → champion → batch inference → monitor")
    repository = settings.lakefs.repository
    started = datetime.now(UTC)
    fr = run_deployment("build-ensemble/build-ensemble", timeout=1800, parameters={
        "repository": repository, "trials": DEMO_TRIALS, "timeout_s": DEMO_SEARCH_S})
    assert isinstance(fr, FlowRun)  # the sync call returns the run itself
    if fr.state is None or not fr.state.is_completed():
        refused = f"build-ensemble run {fr.name}: {fr.state.type.value if fr.state else '?'}"
        console.print(f"[red]{escape(refused)}[/]")
        return [refused]
    ensemble: ModelRef = fr.state.result()
    console.print(f"build-ensemble {fr.name}: {ensemble.name} v{ensemble.version}, holdout AUC "
                  f"{ensemble.metrics.get('roc_auc', 0):.3f}, "
                  + ("promoted to [bold]champion[/]" if ensemble.promoted else "gate refused: stays challenger"))
    if not ensemble.promoted:
        return []
    api = settings.prefect.api_url
    inference_run, inference = _inference_by(api, repository, str(ensemble.version), started, console)
    console.print(f"batch-inference {inference_run['name']}: {getattr(inference, 'rows', '?')} predictions by "
                  f"v{getattr(inference, 'model_version', '?')} → predictions branch commit "
                  f"{str(getattr(inference, 'predictions_commit', '?'))[:12]}")
    unscored = failure_line("batch-inference", inference_run, inference)
    if unscored or not hasattr(inference, "data_commit"):
        unscored = unscored or f"batch-inference run {inference_run['name']}: no result"
        console.print(f"[red]{escape(unscored)}[/]")
        return [unscored]
    monitor_run = wait_for_run(api, "monitor", {"ref": inference.data_commit},
                               created_after=datetime.fromisoformat(inference_run["created"]), console=console)
    report = run_result(monitor_run)
    failed = failure_line("monitor", monitor_run, report)
    if failed:  # a failed run reports no verdict; saying "no drift" would hide it
        console.print(f"[red]{escape(failed)}[/]")
        return [failed]
    verdict = "drift detected" if getattr(report, "drift_detected", False) else "no drift"
    console.print(f"monitor {monitor_run['name']}: {verdict}"
                  + (f" ({'; '.join(report.reasons)})" if getattr(report, "reasons", None) else "")
                  + _estimate_line(getattr(report, "estimate", None)))
    return []


def _estimate_line(estimate: Any) -> str:
    """CBPE's estimate before labels arrive: the number a team watches between label rounds."""
    if estimate is None or getattr(estimate, "auc", None) is None:
        return ""
    reference = f" (reference {estimate.reference_auc:.3f})" if estimate.reference_auc is not None else ""
    return f"; estimated AUC {estimate.auc:.3f}{reference} over {estimate.rows} rows"


def _inference_by(api: str, repository: str, version: str, after: datetime,
                  console: Console) -> tuple[dict[str, Any], Any]:
    """The batch-inference run that scored with `version`: an earlier promotion's run may finish first."""
    while True:
        run = wait_for_run(api, "batch-inference", {"repository": repository}, created_after=after, console=console)
        outcome = run_result(run)
        if str(getattr(outcome, "model_version", "")) == version:
            return run, outcome
        after = datetime.fromisoformat(run["created"])
