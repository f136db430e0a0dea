"""The demo's commands (`lakeloop demo`, `lakeloop data synth`), registered by `infra.cli`.

Kept here so the simulators stay behind the demo: the CLI imports this module, never them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from infra.console import console
from lakeloop.settings import get_settings


def data_synth(
    out: Annotated[Path, typer.Option(help="Output folder for parquet batches.")] = Path("synth"),
    rows: int = 5000,
    batches: int = 1,
    seed: int = 0,
    covariate_drift: float = 0.0,
    concept_drift: float = 0.0,
    label_noise: float = 0.0,
    invalid_rate: float = 0.0,
) -> None:
    """Write synthetic churn batches (true labels kept aside in a truth file)."""
    from infra.demo.synth import write_batches

    paths = write_batches(
        out,
        n=rows,
        batches=batches,
        seed=seed,
        covariate_drift=covariate_drift,
        concept_drift=concept_drift,
        label_noise=label_noise,
        invalid_rate=invalid_rate,
    )
    for p in paths:
        console.print(f"wrote {p}")


def demo(
    data: Annotated[Path | None, typer.Option(help="Your own CSV or parquet (split into batches).")] = None,
    spec: Annotated[Path | None, typer.Option(help="Dataset spec YAML for --data.")] = None,
    batches: int = 4,
    label_round: Annotated[bool, typer.Option(help="Run one Label Studio review round.")] = True,
    ensemble: Annotated[bool, typer.Option(help="Build a voted ensemble, gate it, and serve the champion.")] = True,
) -> None:
    """Bring the stack up, commit batches to lakeFS and let the loop react; print a summary."""
    from infra.demo.run import run_demo

    if (data is None) != (spec is None):
        raise typer.BadParameter("--data and --spec go together")
    failures = run_demo(get_settings(), console, data=data, spec_path=spec, batches=batches,
                        label_round=label_round, ensemble=ensemble)
    if failures:
        console.print(f"[red]{len(failures)} on-commit run(s) failed[/]")
        raise typer.Exit(1)
