"""The demo's review round: two simulated annotators answer in Label Studio, and the loop takes it from there.

The request-relabel run was started by the `lakeloop.model.registered` event of the
last training; Label Studio's webhooks reach the bridge, and the corrections commit
restarts on-commit, which retrains because labels changed. The demo only answers
tasks (as a labeling team would) and waits.
"""

from __future__ import annotations

import polars as pl
from rich.console import Console

from infra.demo.runs import run_result, wait_for_run
from lakeloop.settings import Settings
from lakeloop.spec import DatasetSpec

ANNOTATORS = ("ana@lakeloop.demo", "ben@lakeloop.demo")


def run_label_round(settings: Settings, console: Console, run_id: str, truth: pl.DataFrame) -> None:
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment

    from infra.demo.annotator import SimulatedAnnotator
    from lakeloop.adapters.label_studio import LabelStudioAdapter

    spec = DatasetSpec.from_yaml(settings.spec_path)
    console.rule("label review round")
    run = wait_for_run(settings.prefect.api_url, "request-relabel", {"run_id": run_id}, console=console)
    request = run_result(run)
    console.print(f"request-relabel {run['name']}: {run['state']['type']}; "
                  f"{getattr(request, 'created', '?')} new task(s), {getattr(request, 'open_before', '?')} "
                  f"still open from earlier rounds, in Label Studio project {getattr(request, 'project_id', '?')}")
    project = int(request.project_id)

    true_labels = dict(zip(truth.get_column(spec.id_column).cast(pl.Utf8).to_list(),
                           truth.get_column("true_label").cast(pl.Utf8).to_list(), strict=True))
    adapter = LabelStudioAdapter.from_settings(settings)
    for seed, email in enumerate(ANNOTATORS):
        stats = SimulatedAnnotator(adapter, spec, email, error_rate=0.03, seed=seed).annotate(project, true_labels)
        console.print(f"  {email} answered {stats.answered} task(s) ({stats.wrong} wrong on purpose)")

    # Webhooks already started ingest-labels; one more run after the last answer applies whatever is agreed
    # (runs are serialised and the applied-answer ledger makes repeats no-ops).
    fr = run_deployment("ingest-labels/ingest-labels", parameters={"project_id": project, "force": True}, timeout=600)
    assert isinstance(fr, FlowRun)  # the sync call returns the run itself
    if fr.state is None or not fr.state.is_completed():
        console.print(f"[red]ingest-labels {fr.name}: {fr.state.type if fr.state else '?'}[/]")
    merges = _correction_merges(settings)  # webhook-started intakes may have merged before the forced one
    if not merges:
        console.print("[yellow]no corrections were merged (answers did not reach agreement)[/]")
        return
    console.print(f"ingest-labels: {sum(n for _, n in merges)} correction(s) merged into main as "
                  + ", ".join(m[:12] for m, _ in merges))
    retrain = wait_for_run(settings.prefect.api_url, "on-commit", {"commit_id": merges[0][0]},
                           console=console)
    outcome = run_result(retrain)
    model = getattr(outcome, "model", None)
    console.print(f"on-commit for the corrections merge {merges[0][0][:12]}: {outcome.decision.reason}"
                  + (f" → {model.name} v{model.version} (AUC {model.metrics.get('roc_auc', 0):.3f})" if model else ""))


def _correction_merges(settings: Settings) -> list[tuple[str, int]]:
    """(merge commit, corrections) of each merge on main that brought label corrections, newest first."""
    from lakeloop.adapters.lakefs import Lake

    lake = Lake(settings.lakefs)
    return [(c.id, int(c.metadata.get("lakeloop.corrections", 0))) for c in lake.log(settings.lakefs.default_branch,
                                                                                    limit=20)
            if c.metadata.get("lakeloop.kind") == "label-corrections" and len(c.parents) == 2]
