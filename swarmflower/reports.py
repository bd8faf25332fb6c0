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
            for name, acc in zip(result.site_names, record.site_accuracy, strict=True):
                row[f"accuracy_{name}"] = acc
            rows.append(row)
    return pd.DataFrame(rows)


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


def results_table(results: Sequence[MethodResult], title: str) -> Table:
    """One row per method: mean accuracy, each site's accuracy, wall time."""
    ordered = sorted(results, key=lambda r: METHOD_ORDER.index(r.method))
    table = Table(title=title)
    table.add_column("method", style="bold")
    table.add_column("accuracy", justify="right")
    for name in ordered[0].site_names:
        table.add_column(name, justify="right")
    table.add_column("wall_s", justify="right")
    for result in ordered:
        sites = [f"{a:.3f}" for a in result.rounds[-1].site_accuracy]
        table.add_row(
            result.method, f"{result.accuracy:.3f}", *sites, f"{result.wall_s:.1f}"
        )
    return table


def rounds_table(result: MethodResult) -> Table:
    """The swarm's rounds: who sealed, at which view and why, how many merged."""
    table = Table(title="swarm rounds")
    for column in ("round", "leader", "view", "reason", "merged", "accuracy"):
        table.add_column(
            column, justify="left" if column in ("leader", "reason") else "right"
        )
    for record in result.rounds:
        table.add_row(
            str(record.round),
            record.leader,
            str(record.view),
            record.reason,
            str(record.contributors),
            f"{record.accuracy:.3f}",
        )
    return table
