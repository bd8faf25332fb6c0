"""Result files and tables: `summary.csv`, `rounds.csv`, `curves.png`, rich tables.

The file layout is a contract other tools rely on (DESIGN.md): `summary.csv`
has `method,metric,value` (+ `site`), `rounds.csv` has
`method,round,accuracy,leader` (+ one accuracy column per site).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from rich.table import Table

from swarmflower.simulations.results import MethodResult

METHOD_ORDER = ("swarm", "fedavg", "local", "pooled")


def summary_frame(results: Sequence[MethodResult]) -> pd.DataFrame:
    rows = [
        {"method": r.method, "metric": m.metric, "value": m.value, "site": m.site}
        for r in results
        for m in r.metrics()
    ]
    return pd.DataFrame(rows, columns=["method", "metric", "value", "site"])


def rounds_frame(results: Sequence[MethodResult]) -> pd.DataFrame:
    rows = []
    for result in results:
        for record in result.rounds:
            row = {
                "method": result.method,
                "round": record.round,
                "accuracy": record.accuracy,
                "leader": record.leader,
                "view": record.view,
                "reason": record.reason,
                "contributors": record.contributors,
            }
            for column in ("up", "wall_s", "sim_s"):
                if getattr(record, column) is not None:
                    row[column] = getattr(record, column)
            for name, acc in zip(result.site_names, record.site_accuracy, strict=True):
                row[f"accuracy_{name}"] = acc
            rows.append(row)
    frame = pd.DataFrame(rows)
    # Counts stay integers even where other methods leave them empty.
    for column in ("view", "contributors", "up"):
        if column in frame:
            frame[column] = frame[column].astype("Int64")
    return frame


def write_results(results: Sequence[MethodResult], out: Path, title: str) -> list[Path]:
    """Write the three result files into `out` (created if needed)."""
    out.mkdir(parents=True, exist_ok=True)
    summary, rounds = out / "summary.csv", out / "rounds.csv"
    summary_frame(results).to_csv(summary, index=False)
    rounds_frame(results).to_csv(rounds, index=False)
    return [summary, rounds, plot_curves(results, out / "curves.png", title)]


def plot_curves(results: Sequence[MethodResult], path: Path, title: str) -> Path:
    """Mean per-site test accuracy after each round, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for result in results:
        axes.plot(
            [r.round for r in result.rounds],
            [r.accuracy for r in result.rounds],
            marker="o",
            markersize=3,
            label=result.method,
        )
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("round")
    axes.set_ylabel("mean per-site test accuracy")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


MAX_SITE_COLUMNS = 12  # beyond this, a table shows the worst and best site


def results_table(results: Sequence[MethodResult], title: str) -> Table:
    """One row per method: mean accuracy, each site's accuracy, wall time.

    With many sites, the worst and the best site stand in for the per-site
    columns (every site is in `summary.csv`).
    """
    ordered = sorted(results, key=lambda r: METHOD_ORDER.index(r.method))
    table = Table(title=title)
    table.add_column("method", style="bold")
    table.add_column("accuracy", justify="right")
    names = ordered[0].site_names
    few = len(names) <= MAX_SITE_COLUMNS
    for name in names if few else ("worst site", "best site"):
        table.add_column(name, justify="right")
    table.add_column("wall_s", justify="right")
    for result in ordered:
        accuracies = result.rounds[-1].site_accuracy
        shown = accuracies if few else (min(accuracies), max(accuracies))
        table.add_row(
            result.method,
            f"{result.accuracy:.3f}",
            *(f"{a:.3f}" for a in shown),
            f"{result.wall_s:.1f}",
        )
    return table


def rounds_table(result: MethodResult) -> Table:
    """The swarm's rounds: who sealed, at which view and why, how many merged.

    The Ray engine's rounds add the sites that trained and the round's wall
    and simulated time.
    """
    timed = any(r.sim_s is not None for r in result.rounds)
    columns = ["round", "leader", "view", "reason", "merged", "accuracy"]
    if timed:
        columns[4:4] = ["up"]
        columns += ["wall_s", "sim_s"]
    table = Table(title="swarm rounds")
    for column in columns:
        table.add_column(
            column, justify="left" if column in ("leader", "reason") else "right"
        )
    for record in result.rounds:
        cells = [
            str(record.round),
            record.leader,
            str(record.view),
            record.reason,
            str(record.contributors),
            f"{record.accuracy:.3f}",
        ]
        if timed:
            cells[4:4] = [str(record.up)]
            cells += [f"{record.wall_s:.2f}", f"{record.sim_s:.2f}"]
        table.add_row(*cells)
    return table
