"""What a long run shows while it runs: a bar per method, the swarm's latest rounds."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType

from rich.console import Console, Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

COLUMNS = ("round", "leader", "view", "reason", "up", "merged", "accuracy")
TIMES = ("wall_s", "sim_s")


class LiveRounds:
    """Progress bars, and a table of the swarm's last `keep` rounds as they end.

    The table appears once the engine reports rounds (the Ray engine does);
    the in-process engine only moves its bar.
    """

    def __init__(
        self, console: Console, methods: Sequence[str], rounds: int, keep: int = 10
    ) -> None:
        self.progress = Progress(
            TextColumn("{task.description:>8}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        self.bars = {
            m: self.progress.add_task(m, total=rounds, start=False) for m in methods
        }
        self.keep = keep
        self.reports: list = []
        self.live = Live(
            self.progress, console=console, refresh_per_second=4, transient=True
        )

    def __enter__(self) -> LiveRounds:
        self.live.__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.live.__exit__(kind, error, trace)

    def advance(self, method: str, done: int) -> None:
        self.progress.start_task(self.bars[method])
        self.progress.update(self.bars[method], completed=done)

    def swarm_round(self, report) -> None:
        """A finished round of the Ray engine (a `RoundReport`)."""
        self.reports.append(report)
        self.live.update(Group(self.progress, self.table()))

    def table(self) -> Table:
        table = Table(title="swarm: latest rounds", title_justify="left")
        for column in (*COLUMNS, *TIMES):
            table.add_column(
                column, justify="left" if column in ("leader", "reason") else "right"
            )
        for r in self.reports[-self.keep :]:
            table.add_row(
                str(r.round),
                r.leader,
                str(r.view),
                r.reason,
                str(r.up),
                str(r.contributors),
                f"{r.accuracy:.3f}",
                f"{r.wall_s:.2f}",
                f"{r.sim_s:.2f}",
            )
        return table
