"""The `swarmflower` command line."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Swarm Learning on Flower: train one model across sites, no central server.",
    no_args_is_help=True,
    add_completion=False,
)


def _mount_subcommands() -> None:
    """Attach the command groups that live in the side packages."""
    from swarmflower.ledger.cli import app as ledger_app

    app.add_typer(ledger_app, name="ledger", help="Inspect and verify a ledger.")


def main() -> None:
    """Console-script entry point."""
    _mount_subcommands()
    app()
