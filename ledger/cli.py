"""`swarmflower ledger show|verify DIR`: inspect and re-verify a replica on disk."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.table import Table

from .errors import LedgerError
from .replica import Ledger

app = typer.Typer(no_args_is_help=True, add_completion=False)

_DIR = typer.Argument(..., help="A replica folder, or a site folder holding ledger/.")


def _short(value: bytes) -> str:
    return "0x" + value.hex()[:12]


def _open(folder: Path) -> Ledger:
    """Open (and so fully re-validate) the replica, or exit 1 with one line."""
    try:
        return Ledger.open(folder)
    except LedgerError as exc:
        _fail(str(exc))
    except (ValueError, KeyError, TypeError) as exc:
        # A safety net: damage the store's checks do not name yet (they raise
        # StoreError for every kind known) is still one line, never a trace.
        _fail(f"{folder}: damaged replica ({type(exc).__name__}: {exc})")


def _fail(message: str) -> NoReturn:
    one_line = " ".join(message.split())  # py-evm messages span lines
    typer.echo(f"error: {one_line}", err=True)
    raise typer.Exit(1)


@app.command()
def show(folder: Path = _DIR) -> None:
    """A table of the sealed rounds: leader, view, reason, contributors, hashes."""
    ledger = _open(folder)
    try:
        table = Table(title=f"swarm {_short(ledger.swarm_id)}")
        columns = ("round", "leader", "view", "reason", "skipped", "sites", "model")
        for column in (*columns, "block"):
            table.add_column(column)
        for rec in ledger.rounds():
            table.add_row(
                str(rec.round),
                rec.leader,
                str(rec.view),
                rec.reason.name.lower(),
                " ".join(a[:10] for a in rec.skipped),
                str(len(rec.commitments)),
                _short(rec.model_hash),
                _short(rec.block_hash),
            )
        # Piped output (files, CI logs) gets a fixed width so hashes stay whole.
        Console(width=None if sys.stdout.isatty() else 132).print(table)
    finally:
        ledger.close()


@app.command()
def verify(folder: Path = _DIR) -> None:
    """Re-verify a replica from genesis; print the head block's hash last."""
    ledger = _open(folder)
    try:
        head = ledger.head()
        typer.echo(f"swarm {ledger.swarm_id.hex()}")
        typer.echo(
            f"verified {head.height} rounds: seals, elections, commitments, state roots"
        )
        typer.echo("0x" + head.hash.hex())
    finally:
        ledger.close()
