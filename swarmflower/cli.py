"""The `swarmflower` command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from swarmflower.errors import SwarmflowerError

app = typer.Typer(
    help="Swarm Learning on Flower: train one model across sites, no central server.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True)

DEFAULT_METHODS = "fedavg,local,pooled"


@app.callback()
def root() -> None:
    """Swarm Learning on Flower: train one model across sites, no central server."""


def _task_options(
    task: str,
    sites: int,
    alpha: float,
    site_column: str | None,
    target: str | None,
    model: str,
    local_steps: int,
    batch_size: int,
    lr: float,
    optimizer: str,
    seed: int,
):
    from swarmflower.tasks import TaskSpec

    return TaskSpec(
        task=task,
        num_sites=sites,
        alpha=alpha,
        site_column=site_column,
        target=target,
        model=model,
        local_steps=local_steps,
        batch_size=batch_size,
        learning_rate=lr,
        optimizer=optimizer,
        seed=seed,
    )


@app.command()
def compare(
    task: Annotated[
        str, typer.Option(help="heart, breast-cancer, or csv:PATH for your own table.")
    ] = "heart",
    rounds: Annotated[
        int, typer.Option(help="Training rounds (local/pooled: same budget).")
    ] = 20,
    sites: Annotated[
        int, typer.Option(help="Sites for a partitioned task (breast-cancer).")
    ] = 4,
    out: Annotated[
        Path, typer.Option(help="Folder for summary.csv, rounds.csv, curves.png.")
    ] = Path("swarmflower-results/compare"),
    methods: Annotated[
        str, typer.Option(help="Comma-separated methods to run.")
    ] = DEFAULT_METHODS,
    site_column: Annotated[
        str | None, typer.Option(help="csv: the column naming each row's site.")
    ] = None,
    target: Annotated[
        str | None, typer.Option(help="csv: the binary target column.")
    ] = None,
    alpha: Annotated[
        float, typer.Option(help="Dirichlet label skew (breast-cancer).")
    ] = 1.0,
    model: Annotated[str, typer.Option(help="logreg or mlp.")] = "logreg",
    local_steps: Annotated[
        int, typer.Option(help="Optimiser updates per site per round.")
    ] = 100,
    batch_size: Annotated[int, typer.Option(help="Mini-batch size.")] = 4,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 0.01,
    optimizer: Annotated[str, typer.Option(help="sgd or adam.")] = "sgd",
    seed: Annotated[int, typer.Option(help="Seed for model, split and training.")] = 0,
) -> None:
    """Run the swarm's yardsticks on one task and print a table.

    Flower's own FedAvg (Flower's simulation engine), each site alone, and all
    data pooled; same data, seeds and training budget for every method.
    """
    from swarmflower.reports import results_table, write_results
    from swarmflower.simulations.compare import check_methods, run_compare

    spec = _task_options(
        task,
        sites,
        alpha,
        site_column,
        target,
        model,
        local_steps,
        batch_size,
        lr,
        optimizer,
        seed,
    )
    chosen = check_methods([m.strip() for m in methods.split(",") if m.strip()])
    data = spec.load()
    console.print(
        f"[bold]{data.name}[/]: {data.num_sites} sites, {data.num_features} features, "
        f"{rounds} rounds x {spec.local_steps} local steps"
    )
    with Progress(
        TextColumn("{task.description:>8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        bars = {m: progress.add_task(m, total=rounds, start=False) for m in chosen}

        def advance(method: str, done: int) -> None:
            progress.start_task(bars[method])
            progress.update(bars[method], completed=done)

        results = run_compare(
            spec,
            rounds,
            chosen,
            progress=advance,
        )
    title = f"{data.name}: mean per-site test accuracy after {rounds} rounds"
    console.print(results_table(results, title))
    written = write_results(results, out, title)
    console.print("wrote " + ", ".join(str(p) for p in written))


def _mount_subcommands() -> None:
    """Attach the command groups that live in the side packages."""
    try:
        from swarmflower.ledger.cli import app as ledger_app
    except ModuleNotFoundError:
        return
    app.add_typer(ledger_app, name="ledger", help="Inspect and verify a ledger.")


def main() -> None:
    """Console-script entry point: user errors become one line and exit code 1."""
    _mount_subcommands()
    try:
        app()
    except SwarmflowerError as exc:
        message = Text.assemble(("error: ", "bold red"), str(exc))
        errors.print(message, highlight=False, soft_wrap=True)
        sys.exit(1)
