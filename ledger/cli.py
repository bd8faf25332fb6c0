"""`swarmflower ledger show|verify DIR`: inspect and re-verify a replica on disk."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.table import Table

from .errors import LedgerError
from .records import RoundRecord
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
    """The sealed rounds (leader, view, reason, who was merged, who was not,
    membership changes), then each site: since when, whether it still
    belongs and is electable, and the rounds it contributed to."""
    ledger = _open(folder)
    try:
        # Piped output (files, CI logs) gets a fixed width so hashes stay whole.
        console = Console(width=None if sys.stdout.isatty() else 132)
        history = _History(ledger)
        rounds = _rounds_table(ledger)
        for rec in ledger.rounds():  # once: each record decodes its commitments
            rounds.add_row(*history.row(rec))
        console.print(rounds)
        console.print(_members_table(ledger, history))
    finally:
        ledger.close()


def _rounds_table(ledger: Ledger) -> Table:
    table = Table(title=f"swarm {_short(ledger.swarm_id)}")
    columns = ("round", "leader", "view", "reason", "skipped", "sites", "missing")
    for column in (*columns, "members", "model", "block"):
        table.add_column(column)
    return table


class _History:
    """What `show` gathers in its one pass over the rounds: each round's row,
    and per site when it was enrolled, left, and which rounds it gave to."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.parent = ledger.swarm_id
        self.since = {a: "genesis" for a in ledger.membership(self.parent).roster}
        self.until: dict[str, int] = {}
        self.contributed: dict[str, list[int]] = {a: [] for a in self.since}

    def row(self, rec: RoundRecord) -> tuple[str, ...]:
        merged = set(rec.contributors)
        members = self.ledger.membership(self.parent).members
        missing = [a for a in members if a not in merged]
        self.parent = rec.block_hash
        self.since.update({e.address: f"round {rec.round}" for e in rec.enrolled})
        self.until.update({a: rec.round for a in rec.left})
        for site in rec.contributors:
            self.contributed.setdefault(site, []).append(rec.round)
        return (
            str(rec.round),
            rec.leader,
            str(rec.view),
            rec.reason.name.lower(),
            " ".join(a[:10] for a in rec.skipped),
            str(len(rec.commitments)),
            " ".join(a[:10] for a in missing),
            _changes(rec),
            _short(rec.model_hash),
            _short(rec.block_hash),
        )


def _changes(rec: RoundRecord) -> str:
    """A round's membership changes: +joined, -left, ^electable again."""
    return " ".join(
        [f"+{e.address[:10]}" for e in rec.enrolled]
        + [f"-{a[:10]}" for a in rec.left]
        + [f"^{a[:10]}" for a in rec.revived]
    )


def _members_table(ledger: Ledger, history: _History) -> Table:
    since, until, contributed = history.since, history.until, history.contributed
    table = Table(title="sites")
    for column in ("site", "enrolled", "status", "contributed", "last"):
        table.add_column(column)
    for site in ledger.membership().roster:
        rounds = contributed.get(site, [])
        if site in until:
            status = f"left with round {until[site]}"
        elif ledger.electable(site):
            status = "member, electable"
        else:
            status = "member, not electable until it contributes"
        table.add_row(
            site,
            since.get(site, "?"),
            status,
            str(len(rounds)),
            str(rounds[-1]) if rounds else "-",
        )
    return table


@app.command()
def verify(folder: Path = _DIR) -> None:
    """Re-verify a replica from genesis; print the head block's hash last."""
    ledger = _open(folder)
    try:
        head = ledger.head()
        try:
            final = ledger.final_round()
        except LedgerError as exc:
            _fail(str(exc))
        typer.echo(f"swarm {ledger.swarm_id.hex()}")
        typer.echo(
            f"verified {head.height} rounds: seals, elections, commitments, "
            "state roots, finality"
        )
        typer.echo(
            f"final through round {final}: a majority of the members built on "
            "each block up to it; later rounds may still be replaced"
        )
        typer.echo("0x" + head.hash.hex())
    finally:
        ledger.close()
