"""The `lakeloop` command: start the local stack, run the demo, answer lineage questions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from infra.console import console
from infra.demo import commands as demo_commands
from infra.running_dataset import command_settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
lakefs_app = typer.Typer(no_args_is_help=True, help="The local lakeFS-compatible server.")
data_app = typer.Typer(no_args_is_help=True, help="Datasets: synthetic churn batches.")
app.add_typer(lakefs_app, name="lakefs")
app.add_typer(data_app, name="data")
spec_app = typer.Typer(no_args_is_help=True, help="Dataset specs: draft one from data.")
app.add_typer(spec_app, name="spec")
# the demo's commands live with the demo: the CLI is the one door from the product into infra.demo
app.command("demo")(demo_commands.demo)
data_app.command("synth")(demo_commands.data_synth)


@lakefs_app.command("serve")
def lakefs_serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    data_dir: Annotated[Path, typer.Option(help="Where metadata (SQLite) and objects live.")] = Path(
        ".lakeloop/lakefs"
    ),
) -> None:
    """Run the lakeFS-compatible server in the foreground (credentials from LAKEFS_ACCESS_KEY_ID/SECRET)."""
    import os

    from infra.lakefs_server.serve import ENV_SECRET, serve
    from lakeloop.settings import InsecureSecrets, is_loopback, is_published_secret

    if not is_loopback(host) and is_published_secret(os.environ.get(ENV_SECRET) or ""):
        console.print(f"[red]{InsecureSecrets.__name__}: refusing to listen on {host}: {ENV_SECRET} is a published "
                      "default; set your own (or unset it: the server then generates one and prints it)[/]")
        raise typer.Exit(1)
    serve(host=host, port=port, data_dir=data_dir)  # credentials: `serve` reads the environment


@spec_app.command("infer")
def spec_infer(
    data: Annotated[Path, typer.Argument(help="A CSV or parquet sample of the dataset.")],
    name: Annotated[str | None, typer.Option(help="Dataset name (default: the file's stem).")] = None,
    id_column: Annotated[str | None, typer.Option("--id", help="The id column (default: guessed).")] = None,
    label: Annotated[str | None, typer.Option(help="The label column (default: guessed).")] = None,
    out: Annotated[Path | None, typer.Option("-o", "--out", help="Write the YAML here instead of stdout.")] = None,
) -> None:
    """Draft a dataset spec YAML from a sample; every guess to check is a '# REVIEW:' comment."""
    from tasks.data.spec_infer import infer_spec, read_sample, render_yaml

    try:
        inferred = infer_spec(read_sample(str(data)), name or data.stem, id_column=id_column, label_column=label,
                              file_format="csv" if data.suffix == ".csv" else "parquet")
    except ValueError as e:
        console.print(f"[red]{data}: {e}[/]")
        raise typer.Exit(1) from e
    text = render_yaml(inferred)
    if out:
        out.write_text(text)
        console.print(f"wrote {out}; {sum(len(v) for v in inferred.review.values())} item(s) to review")
    else:
        print(text, end="")


@app.command()
def setup() -> None:
    """Install what the servers need beyond the app venv (Label Studio's own venv)."""
    from infra.local.label_studio import ensure_venv, venv_root

    venv = ensure_venv(venv_root(command_settings().home))
    console.print(f"Label Studio venv ready: {venv}")


@app.command()
def up(
    label_studio: Annotated[bool, typer.Option(help="Also start Label Studio.")] = True,
) -> None:
    """Start the local stack on loopback: lakeFS-compatible server, MLflow, Prefect, bridge, worker."""
    from infra.stack import print_urls, start_stack
    from lakeloop.settings import InsecureSecrets

    try:
        stack = start_stack(command_settings(), with_label_studio=label_studio)
    except InsecureSecrets as e:
        console.print(f"[red]{e}[/]")
        raise typer.Exit(1) from e
    print_urls(stack, console)


@app.command()
def down() -> None:
    """Stop every service `lakeloop up` started."""
    from infra.stack import stop_stack

    stopped = stop_stack(command_settings())
    console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@app.command()
def status() -> None:
    """Which services of the local stack answer."""
    from infra.stack import stack_status

    for name, (url, ok) in stack_status(command_settings()).items():
        console.print(f"{name:14} {'[green]up[/]' if ok else '[red]down[/]'}  {url}")


@app.command()
def lineage(target: Annotated[str, typer.Argument(help="A lakeFS commit id, or MODEL@VERSION.")]) -> None:
    """Which models a commit produced, or which commit a model version was trained on."""
    from infra.lineage import print_lineage

    print_lineage(target, command_settings(), console)


@app.command()
def rollback(name: Annotated[str | None, typer.Argument(help="Registered model name.")] = None) -> None:
    """Make the `previous` model version the `champion` again."""
    from lakeloop.adapters.mlflow_registry import rollback as do_rollback

    version = do_rollback(name or command_settings().mlflow.model_name)
    console.print(f"champion is now version {version}")


@app.command()
def deploy() -> None:
    """Create or update every deployment of prefect.yaml (and its work pool) on the configured Prefect server."""
    from infra.stack import deploy_flows

    console.print(f"deployed: {', '.join(deploy_flows(command_settings()))}")


@app.command()
def init(
    wait: Annotated[float, typer.Option(help="Seconds lakeFS and Prefect may take to answer first.")] = 0.0,
) -> None:
    """Prepare configured servers: lakeFS repository (if missing), actions file (commits reach the bridge,
    merges into watched branches are gated), work pool and deployments. Idempotent; the compose stack runs it."""
    from infra.stack import StackNotReady, init_stack
    from lakeloop.settings import InsecureSecrets

    s = command_settings()
    try:
        deployed = init_stack(s, wait_s=wait)
    except (StackNotReady, InsecureSecrets) as e:
        console.print(f"[red]{e}[/]")
        raise typer.Exit(1) from e
    console.print(f"lakeFS repository {s.lakefs.repository}: actions installed (hooks call {s.bridge.url})")
    console.print(f"deployed: {', '.join(deployed)}")


@app.command()
def reconcile() -> None:
    """Emit events for lakeFS commits the bridge missed."""
    from infra.bridge.reconcile import reconcile_once
    from lakeloop.adapters.lakefs import Lake
    from lakeloop.adapters.prefect_events import post_events
    from lakeloop.state import Ledger

    s = command_settings()
    report = reconcile_once(Lake(s.lakefs), Ledger.default(), lambda ev: post_events([ev], s.prefect.api_url))
    console.print(f"emitted {len(report.emitted)} missed commit event(s); {report.already} already processed")
    for err in report.errors:
        console.print(f"[red]{err}[/]")


# ---- doctor, ingest, history: is the stack wired up, put data in, what happened to it ----------------
@app.command()
def doctor(
    label_studio: Annotated[bool | None, typer.Option(
        "--label-studio/--no-label-studio",
        help="Check Label Studio (default: when configured or started by `lakeloop up`).")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds each request may take.")] = 3.0,
) -> None:
    """Check every service the loop needs; print the fix for each failure; exit 1 on any failure."""
    from infra.doctor import print_report, run_checks

    report = run_checks(command_settings(), timeout=timeout, label_studio=label_studio)
    print_report(report, console)
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def ingest(
    file: Annotated[Path, typer.Argument(help="A CSV or parquet batch.")],
    branch: Annotated[str, typer.Option(help="The lakeFS branch to commit to.")],
    message: Annotated[str | None, typer.Option("-m", "--message", help="Commit message.")] = None,
    force: Annotated[bool, typer.Option(help="Add a file again that the branch already has.")] = False,
) -> None:
    """Upload a batch through the lakeFS SDK and commit it with its lineage (file, sha256, rows, user)."""
    from lakeloop.adapters.lakefs import Lake
    from lakeloop.branches import BranchPolicy
    from tasks.data.batches import IngestError, ingest_file

    s = command_settings()
    try:
        result = ingest_file(Lake(s.lakefs), file, branch, message, force=force)
    except IngestError as e:
        console.print(f"[red]{e}[/]")
        raise typer.Exit(1) from e
    role = BranchPolicy.from_settings(s).role(branch)
    next_step = {"watched": "on-commit validates it and may retrain",
                 "experiment": "on-commit runs an experiment on it",
                 "ignored": "the branch is neither watched nor an experiment: nothing runs"}[role]
    console.print(f"committed {result.commit_id} on {branch}: {result.path}, {result.rows} rows, "
                  f"sha256 {result.sha256[:12]}; {next_step}")


@app.command()
def history(
    branch: Annotated[str | None, typer.Option(help="lakeFS branch (default: the repository's default).")] = None,
    last: Annotated[int, typer.Option("-n", "--last", help="How many commits.")] = 10,
) -> None:
    """What happened to a branch's last commits: relayed, decision, drift, model, gate."""
    from infra.history import print_history

    print_history(command_settings(), console, branch, last)


if __name__ == "__main__":
    app()
