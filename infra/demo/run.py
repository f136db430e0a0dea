"""`lakeloop demo`: the whole loop on the local stack, driven only by lakeFS commits.

The demo writes batches to lakeFS through the SDK and commits them, exactly as a
data team would; lakeFS's actions call the bridge, the bridge emits Prefect
events, and the deployments' triggers start the flows. The demo only waits for
those runs and reads their results.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from infra.demo.runs import failure_line, run_result, wait_for_run
from lakeloop.adapters.lakefs import Lake
from lakeloop.settings import Settings
from lakeloop.spec import DatasetSpec


@dataclass
class DemoBatch:
    name: str
    frame: pl.DataFrame
    note: str
    truth: pl.DataFrame | None = None  # the generator's true labels: only the simulated annotator reads them


def mixed(rows: int, *, seed: int, start_id: int, invalid_rate: float = 0.0,
          label_noise: float = 0.0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Half old population, half drifted (data, truth): what a model trained on baseline + drifted data knows."""
    from infra.demo.synth import synth_batch

    half = rows // 2
    old = synth_batch(half, seed=seed, start_id=start_id, invalid_rate=invalid_rate, label_noise=label_noise)
    new = synth_batch(rows - half, seed=seed + 1, start_id=start_id + half, covariate_drift=1.0,
                      invalid_rate=invalid_rate, label_noise=label_noise)
    return (pl.concat([old.data, new.data], how="vertical_relaxed"),
            pl.concat([old.truth, new.truth], how="vertical_relaxed"))


def mixed_batch(rows: int, *, seed: int, start_id: int, invalid_rate: float = 0.0,
                label_noise: float = 0.0) -> pl.DataFrame:
    return mixed(rows, seed=seed, start_id=start_id, invalid_rate=invalid_rate, label_noise=label_noise)[0]


def churn_batches(rows: int = 5000, label_noise: float = 0.08) -> list[DemoBatch]:
    """Baseline, drifted, clean and invalid batches, as the README's demo describes."""
    from infra.demo.synth import synth_batch

    base = synth_batch(rows, seed=100, start_id=0, label_noise=label_noise)
    drifted = synth_batch(rows, seed=200, start_id=rows, covariate_drift=1.0, label_noise=label_noise)
    clean = mixed(rows, seed=300, start_id=2 * rows, label_noise=label_noise)
    invalid = mixed(rows, seed=400, start_id=3 * rows, invalid_rate=0.05, label_noise=label_noise)
    return [
        DemoBatch("baseline", base.data, "first data: trains v1", base.truth),
        DemoBatch("drifted", drifted.data, "covariate drift (more month-to-month, fiber, higher charges): retrains",
                  drifted.truth),
        DemoBatch("clean", clean[0], "the population the current model learned from: no retrain", clean[1]),
        DemoBatch("invalid", invalid[0], "5% invalid rows: quarantined with reasons, 95% land", invalid[1]),
    ]


def user_batches(data: Path, spec: DatasetSpec, n: int) -> list[DemoBatch]:
    """Split the user's file into `n` batches (in time order when the spec has a time column)."""
    df = pl.read_csv(data, infer_schema=False) if data.suffix == ".csv" else pl.read_parquet(data)
    if spec.time_column and spec.time_column in df.columns:
        df = df.sort(spec.time_column)
    size = -(-df.height // n)
    return [DemoBatch(name=f"part-{i + 1}", frame=df.slice(i * size, size), note=f"{data.name} part {i + 1}/{n}")
            for i in range(n) if i * size < df.height]


def commit_batch(lake: Lake, branch: str, batch: DemoBatch, index: int) -> str:
    from tasks.data.batches import add_batch

    _, commit_id = add_batch(lake, branch, batch.name, batch.frame, rows=batch.frame.height, index=index,
                             message=f"demo: add {batch.name} batch ({batch.frame.height} rows)",
                             metadata={"lakeloop.demo.batch": batch.name})
    return commit_id


def run_demo(settings: Settings, console: Console, *, data: Path | None, spec_path: Path | None,
             batches: int, label_round: bool, ensemble: bool = True) -> list[str]:
    """The demo; returns one line per on-commit run that did not complete (empty: every run did)."""
    from infra.stack import print_urls, start_stack

    if spec_path is not None:  # the repository and model are named after this dataset unless set explicitly
        settings = settings.for_spec(spec_path)
    spec = DatasetSpec.from_yaml(settings.spec_path)
    demo_batches = user_batches(data, spec, batches) if data else churn_batches()
    truths = [b.truth for b in demo_batches if b.truth is not None]
    if label_round and not truths:
        console.print("no true labels to simulate annotators with: no label review round (Label Studio stays off)")
        label_round = False
    console.rule("starting the local stack")
    stack = start_stack(settings, with_label_studio=label_round)
    print_urls(stack, console)
    lake = Lake(settings.lakefs)
    branch = settings.lakefs.default_branch

    table = Table("batch", "commit", "rows", "valid", "quarantined", "decision", "drifted columns", "model", "AUC",
                  title="lakeloop demo")
    last_model = None
    failures: list[str] = []
    for i, batch in enumerate(demo_batches, start=1):
        console.rule(f"commit {i}: {batch.name} — {batch.note}")
        commit_id = commit_batch(lake, branch, batch, i)
        run = wait_for_run(settings.prefect.api_url, "on-commit", {"commit_id": commit_id}, console=console)
        outcome = run_result(run)
        _add_row(table, batch, commit_id, run, outcome)
        failed = failure_line("on-commit", run, outcome)
        if failed:
            failures.append(failed)
            console.print(f"  [red]{escape(failed)}[/]")
        else:
            console.print(f"  on-commit run {run['name']}: {run['state']['type']}")
        if getattr(outcome, "model", None) is not None:
            last_model = outcome.model
    console.print(table)
    if label_round and last_model is not None and truths:
        from infra.demo.labels import run_label_round

        run_label_round(settings, console, last_model.run_id, pl.concat(truths, how="vertical_relaxed"))
    if last_model is not None and ensemble:
        from infra.demo.promotion import run_promotion_round

        failures += run_promotion_round(settings, console)
    console.print(gate_evidence_table(settings))
    console.rule("where to look")
    print_urls(stack, console)
    console.print(f"lineage: [bold]lakeloop lineage <commit-id>[/] or "
                  f"[bold]lakeloop lineage {escape(settings.mlflow.model_name)}@1[/]")
    return failures


def _add_row(table: Table, batch: DemoBatch, commit_id: str, run: dict[str, Any], outcome: Any) -> None:
    if run["state"]["type"] != "COMPLETED" or outcome is None or isinstance(outcome, BaseException):
        table.add_row(batch.name, commit_id[:12], str(batch.frame.height), "", "", f"run {run['state']['type']}",
                      "", "", "")
        return
    model = outcome.model
    table.add_row(
        batch.name, commit_id[:12], str(outcome.batch_rows), str(outcome.batch_rows - outcome.invalid_rows),
        str(outcome.invalid_rows), outcome.decision.reason, _short_list(outcome.drifted),
        f"v{model.version}" if model else "-",
        f"{model.metrics.get('roc_auc', float('nan')):.3f}" if model else "-",
    )


def gate_evidence_table(settings: Settings) -> Table:
    """Every version's gate verdict and its evidence, from the registry's `gate.*` tags."""
    from mlflow import MlflowClient

    table = Table("version", "trigger", "gate", "AUC", "bar", "AUC − bar [95% CI]", "value/row − bar [CI]",
                  "new rows: AUC [CI]", title="gate evidence (MLflow version tags)")
    name = settings.mlflow.model_name
    client = MlflowClient(tracking_uri=settings.mlflow.tracking_uri)
    for mv in sorted(client.search_model_versions(f"name = '{name}'"), key=lambda m: int(m.version)):
        t = mv.tags or {}

        def ci(key: str, t: dict[str, str] = t) -> str:
            return (f"{float(t[key]):+.4f} [{float(t[key + '.ci_low']):+.4f}, {float(t[key + '.ci_high']):+.4f}]"
                    if key in t else "-")

        verdict = {"true": "passed", "false": "refused"}.get(t.get("gate.passed", ""), "-")
        if "lakeloop.promoted_at" in t:
            verdict += ", champion once"
        table.add_row(f"v{mv.version}", t.get("lakeloop.trigger", "ensemble")[:28], verdict,
                      t.get("gate.auc", "-")[:6], f"v{t['gate.bar_version']}" if t.get("gate.bar_version",
                                                                                         "none") != "none" else "-",
                      ci("gate.auc_delta"), ci("gate.business_delta"),
                      (f"{t['gate.new_rows']}: " + ci("gate.signal_auc")) if "gate.signal_auc" in t else "-")
    return table


def _short_list(names: list[str], keep: int = 3) -> str:
    if not names:
        return "-"
    more = f" +{len(names) - keep}" if len(names) > keep else ""
    return ", ".join(names[:keep]) + more
