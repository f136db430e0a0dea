"""The `lakeloop` command: start the local stack, run the demo, answer lineage questions."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from lakeloop.settings import get_settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
lakefs_app = typer.Typer(no_args_is_help=True, help="The local lakeFS-compatible server.")
data_app = typer.Typer(no_args_is_help=True, help="Datasets: synthetic churn batches.")
app.add_typer(lakefs_app, name="lakefs")
app.add_typer(data_app, name="data")
console = Console(width=None if sys.stdout.isatty() else 150)  # logs and CI get the full table


@lakefs_app.command("serve")
def lakefs_serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    data_dir: Annotated[Path, typer.Option(help="Where metadata (SQLite) and objects live.")] = Path(
        ".lakeloop/lakefs"
    ),
) -> None:
    """Run the lakeFS-compatible server in the foreground (credentials from LAKEFS_ACCESS_KEY_ID/SECRET)."""
    from infra.lakefs_server.serve import serve

    serve(host=host, port=port, data_dir=data_dir)  # credentials: `serve` reads the environment


@data_app.command("synth")
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


@app.command()
def setup() -> None:
    """Install what the servers need beyond the app venv (Label Studio's own venv)."""
    from infra.local.label_studio import ensure_venv

    venv = ensure_venv(get_settings().home.parent)
    console.print(f"Label Studio venv ready: {venv}")


@app.command()
def up(
    label_studio: Annotated[bool, typer.Option(help="Also start Label Studio.")] = True,
) -> None:
    """Start the local stack on loopback: lakeFS-compatible server, MLflow, Prefect, bridge, worker."""
    from infra.stack import print_urls, start_stack

    stack = start_stack(get_settings(), with_label_studio=label_studio)
    print_urls(stack, console)


@app.command()
def down() -> None:
    """Stop every service `lakeloop up` started."""
    from infra.stack import stop_stack

    stopped = stop_stack(get_settings())
    console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@app.command()
def status() -> None:
    """Which services of the local stack answer."""
    from infra.stack import stack_status

    for name, (url, ok) in stack_status(get_settings()).items():
        console.print(f"{name:14} {'[green]up[/]' if ok else '[red]down[/]'}  {url}")


@app.command()
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
    run_demo(get_settings(), console, data=data, spec_path=spec, batches=batches, label_round=label_round,
             ensemble=ensemble)


@app.command()
def lineage(target: Annotated[str, typer.Argument(help="A lakeFS commit id, or MODEL@VERSION.")]) -> None:
    """Which models a commit produced, or which commit a model version was trained on."""
    from infra.lineage import print_lineage

    print_lineage(target, get_settings(), console)


@app.command()
def rollback(name: Annotated[str | None, typer.Argument(help="Registered model name.")] = None) -> None:
    """Make the `previous` model version the `champion` again."""
    from lakeloop.adapters.mlflow_registry import rollback as do_rollback

    version = do_rollback(name or get_settings().mlflow.model_name)
    console.print(f"champion is now version {version}")


@app.command()
def deploy() -> None:
    """Create or update every deployment of prefect.yaml on the configured Prefect server."""
    from infra.deploy import deploy_all
    from lakeloop.settings import ROOT

    s = get_settings()
    result = deploy_all(s.prefect.api_url, s.prefect.work_pool, ROOT)
    console.print(f"deployed: {', '.join(result.deployments)}")


@app.command()
def reconcile() -> None:
    """Emit events for lakeFS commits the bridge missed."""
    from infra.bridge.reconcile import reconcile_once
    from lakeloop.adapters.lakefs import Lake
    from lakeloop.adapters.prefect_events import post_events
    from lakeloop.state import Ledger

    s = get_settings()
    report = reconcile_once(Lake(s.lakefs), Ledger.default(), lambda ev: post_events([ev], s.prefect.api_url))
    console.print(f"emitted {len(report.emitted)} missed commit event(s); {report.already} already processed")
    for err in report.errors:
        console.print(f"[red]{err}[/]")


if __name__ == "__main__":
    app()
