"""Result files and tables: `summary.csv`, `rounds.csv`, `roc.csv`, `run.json`,
`curves.png`, and the tables printed at the end of a run.

The file layout is a contract other tools rely on (DESIGN.md): `summary.csv`
has `method,metric,value` (+ `site`, the support `test_rows,positives`, and
over seeds `sd,ci_low,ci_high,seeds`; `note` for the `data` rows), `rounds.csv`
has `method,seed,round,accuracy,leader` (+ one accuracy column per site).
`value` is the mean over seeds; the interval is the 95% t interval of it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from rich.table import Table

if TYPE_CHECKING:
    from swarmflower.app_compare import AppComparison
    from swarmflower.app_run import AppRun
    from swarmflower.datasets import FederatedDataset

from swarmflower.simulations.experiments.methods import METHODS
from swarmflower.simulations.experiments.results import (
    FIGURES,
    GLOBAL,
    MethodResult,
)

LEGEND = {
    "swarm": "the swarm's model",
    "swarm+ft": "it fine-tuned and thresholded at each site (own test set)",
    "fedavg": "Flower's FedAvg",
    "fedavg+ft": "FedAvg's, fine-tuned",
    "local": "each site alone, scored on every site (FLamby)",
    "local_own": "each site alone, on its own test set",
    "pooled": "all data in one place",
}
SUMMARY_COLUMNS = [
    *("method", "metric", "value", "site", "test_rows", "positives"),
    *("sd", "ci_low", "ci_high", "seeds", "note"),
]
ROC_POINTS = 200  # at most, per method and seed


def _order(method: str) -> int:
    return METHODS.index(method) if method in METHODS else len(METHODS)


def _per_seed_rows(results: Sequence[MethodResult]) -> pd.DataFrame:
    rows = [
        {
            "method": r.method,
            "seed": r.seed,
            "metric": m.metric,
            "value": m.value,
            "site": m.site,
            "test_rows": m.test_rows,
            "positives": m.positives,
        }
        for r in results
        for m in r.metrics()
    ]
    columns = ["method", "seed", "metric", "value", "site", "test_rows", "positives"]
    return pd.DataFrame(rows, columns=columns)


def interval(
    values: np.ndarray, bounds: tuple[float, float] = (-np.inf, np.inf)
) -> tuple[float, float, float, float, int]:
    """Mean, sd and the 95% t interval of the mean over the seeds' values.

    NaN values (an AUC a seed could not compute) are left out; with one value
    sd and interval are NaN. The interval is cut to `bounds`, the values a
    figure can take (with 2 seeds the t factor is 12.7).
    """
    from scipy import stats

    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    n = len(values)
    if n == 0:
        return (float("nan"),) * 4 + (0,)
    mean = float(values.mean())
    if n == 1:
        return mean, float("nan"), float("nan"), float("nan"), 1
    sd = float(values.std(ddof=1))
    half = float(stats.t.ppf(0.975, n - 1)) * sd / np.sqrt(n)
    low, high = bounds
    return mean, sd, max(mean - half, low), min(mean + half, high), n


def _bounds(metric: str) -> tuple[float, float]:
    """The values a summary figure can take: rates in [0, 1], others >= 0."""
    name = metric.removeprefix(GLOBAL).removesuffix("_weakest")
    return (0.0, 1.0) if name in FIGURES else (0.0, np.inf)


def summary_frame(
    results: Sequence[MethodResult], data: FederatedDataset | None = None
) -> pd.DataFrame:
    """One row per method, metric and site: the mean over seeds and its spread.

    With `data` (the task's `FederatedDataset`), `data` rows say which sites
    took part with how many rows, which were left out and why, and notices.
    """
    per_seed = _per_seed_rows(results)
    rows = []
    keys = ["method", "metric", "site"]
    for (method, metric, site), group in per_seed.groupby(keys, sort=False):
        mean, sd, low, high, n = interval(group.value.to_numpy(), _bounds(metric))
        first = group.iloc[0]
        rows.append(
            {
                "method": method,
                "metric": metric,
                "value": mean,
                "site": site,
                "test_rows": first.test_rows,
                "positives": first.positives,
                "sd": sd,
                "ci_low": low,
                "ci_high": high,
                "seeds": n,
                "note": "",
            }
        )
    frame = pd.DataFrame(rows + _data_rows(data), columns=SUMMARY_COLUMNS)
    for column in ("test_rows", "positives", "seeds"):
        frame[column] = frame[column].astype("Int64")
    return frame


def _data_rows(data: FederatedDataset | None) -> list[dict]:
    """The `data` pseudo-method: who took part, who was left out, notices."""
    if data is None:
        return []
    rows = [
        {
            "method": "data",
            "metric": "site_rows",
            "site": s.name,
            "value": s.num_train + s.num_test,
        }
        for s in data.sites
    ]
    rows += [
        {
            "method": "data",
            "metric": "left_out_rows",
            "site": site.name,
            "value": site.rows,
            "note": site.reason,
        }
        for site in data.left_out
    ]
    positive = data.positive_label
    if positive is not None:
        rows.append({"method": "data", "metric": "positive_class", "note": positive})
    rows += [
        {"method": "data", "metric": "notice", "note": notice}
        for notice in data.notices
    ]
    return [{"site": "", "note": "", **row} for row in rows]


def rounds_frame(results: Sequence[MethodResult]) -> pd.DataFrame:
    rows = []
    for result in results:
        for record in result.rounds:
            row = {
                "method": result.method,
                "seed": result.seed,
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
            if record.attackers:  # a run with --attack names them
                row["attackers"] = record.attackers
            row |= audit_cells(record.updates, record.held_back)
            for name, acc in zip(result.site_names, record.site_accuracy, strict=True):
                row[f"accuracy_{name}"] = acc
            rows.append(row)
    frame = pd.DataFrame(rows)
    # Counts stay integers even where other methods leave them empty.
    for column in ("view", "contributors", "up"):
        if column in frame:
            frame[column] = frame[column].astype("Int64")
    return frame


def flagged_lines(results: Sequence[MethodResult]) -> list[str]:
    """One line per swarm run that has flagged sites (`suspects.py`)."""
    from swarmflower.suspects import suspects

    swarm = [r for r in results if r.method == "swarm"]
    if not swarm:
        return []
    lines = []
    frame = rounds_frame(swarm)
    for seed, rows in frame.groupby("seed", sort=True):
        found = suspects(rows)
        if found:
            reasons = "; ".join(s.why() for s in found)
            lines.append(f"flagged in the swarm (seed {seed}): {reasons}")
    return lines


def audit_cells(
    updates: Sequence[tuple[str, float, float]], held_back: Sequence[str]
) -> dict[str, str]:
    """rounds.csv's cells on what a swarm round's merge did to each update:
    `norms` and `distances` (`site=value;...`) and `held_back` (`a;b`)."""
    if not updates:
        return {}
    return {
        "norms": _per_site((site, norm) for site, norm, _ in updates),
        "distances": _per_site((site, distance) for site, _, distance in updates),
        "held_back": ";".join(held_back),
    }


def _per_site(values: Iterable[tuple[str, float]]) -> str:
    """`site=value;...`, four significant digits."""
    return ";".join(f"{site}={value:.4g}" for site, value in values)


def roc_frame(results: Sequence[MethodResult]) -> pd.DataFrame:
    """ROC points of each method and seed on the union of the test sets."""
    from sklearn.metrics import roc_curve

    frames = []
    for result in results:
        labels, scores = result.union_labels, result.union_scores
        if labels is None or scores is None or len(np.unique(labels)) < 2:
            continue
        fpr, tpr, _ = roc_curve(labels, scores)
        if len(fpr) > ROC_POINTS:
            keep = np.unique(np.linspace(0, len(fpr) - 1, ROC_POINTS).astype(int))
            fpr, tpr = fpr[keep], tpr[keep]
        frames.append(
            pd.DataFrame(
                {"method": result.method, "seed": result.seed, "fpr": fpr, "tpr": tpr}
            )
        )
    columns = ["method", "seed", "fpr", "tpr"]
    return (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=columns)
    )


def run_facts(
    results: Sequence[MethodResult], title: str, task: str, rounds: int
) -> dict:
    """`run.json`: what ran, for the report and for readers of the files."""
    methods = sorted(dict.fromkeys(r.method for r in results), key=_order)
    return {
        "title": title,
        "task": task,
        "rounds": rounds,
        "seeds": sorted({r.seed for r in results}),
        "methods": methods,
        "sites": list(results[0].site_names) if results else [],
        "legend": {m: LEGEND[m] for m in methods if m in LEGEND},
        **_swarm_facts(results),
    }


def _swarm_facts(results: Sequence[MethodResult]) -> dict:
    """The swarm's merge (from its genesis) and the attack its sites played,
    when a swarm ran: `strategy`, `bucketing`, `attack`, `attackers`."""
    from swarmflower.swarm_result import SwarmResult

    swarm = next(
        (r.details for r in results if isinstance(r.details, SwarmResult)), None
    )
    if swarm is None or not swarm.sites:
        return {}
    core = swarm.sites[0]
    params = core.ledger.genesis.params
    facts: dict = {"strategy": params.strategy, "bucketing": params.bucketing}
    attack = core.faults.attack
    if attack is not None:
        names = {c.identity.index: c.identity.name for c in swarm.sites}
        facts["attack"] = attack.spec
        facts["attackers"] = [names.get(k, str(k)) for k in sorted(attack.sites)]
    return facts


def write_results(
    results: Sequence[MethodResult],
    out: Path,
    title: str,
    *,
    data: FederatedDataset | None = None,
    task: str = "",
    rounds: int | None = None,
) -> list[Path]:
    """Write the result files into `out` (created if needed)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        name: out / name
        for name in ("summary.csv", "rounds.csv", "roc.csv", "run.json")
    }
    summary_frame(results, data).to_csv(paths["summary.csv"], index=False)
    rounds_frame(results).to_csv(paths["rounds.csv"], index=False)
    roc_frame(results).to_csv(paths["roc.csv"], index=False)
    done = max((len(r.rounds) for r in results), default=0)
    facts = run_facts(results, title, task, rounds if rounds is not None else done)
    paths["run.json"].write_text(json.dumps(facts, indent=2) + "\n")
    return [*paths.values(), plot_curves(results, out / "curves.png", title)]


def plot_curves(results: Sequence[MethodResult], path: Path, title: str) -> Path:
    """Mean per-site test accuracy after each round, one line per method.

    Over several seeds: the mean, in a band of one standard deviation.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    frame = rounds_frame(results)
    figure, axes = plt.subplots(figsize=(7, 4.5))
    if not frame.empty:
        methods = sorted(frame.method.unique(), key=_order)
        for method in methods:
            by_round = frame[frame.method == method].groupby("round").accuracy
            mean, sd = by_round.mean(), by_round.std(ddof=1)
            (line,) = axes.plot(
                mean.index, mean.values, marker="o", markersize=3, label=method
            )
            if sd.notna().any():
                axes.fill_between(
                    mean.index,
                    (mean - sd).values,
                    (mean + sd).values,
                    color=line.get_color(),
                    alpha=0.2,
                    linewidth=0,
                )
        axes.legend()
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("round")
    axes.set_ylabel("mean per-site test accuracy")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


MAX_SITE_COLUMNS = 12  # beyond this, a table shows the worst and best site
HEADLINE = (
    ("accuracy", "accuracy"),
    ("bal acc", "balanced_accuracy"),
    ("AUC", "auc"),
    ("AUC all", "global_auc"),
)


def _cell(summary: pd.DataFrame, method: str, metric: str, site: str = "") -> str:
    """A figure as `mean ± sd` (or the bare value with one seed); n/a if none."""
    row = summary[
        (summary.method == method) & (summary.metric == metric) & (summary.site == site)
    ]
    if row.empty or pd.isna(row.value.iloc[0]):
        return "n/a"
    value, sd = float(row.value.iloc[0]), row.sd.iloc[0]
    return f"{value:.3f}" if pd.isna(sd) else f"{value:.3f}±{float(sd):.3f}"


def _methods_in(results: Sequence[MethodResult]) -> list[str]:
    return sorted(dict.fromkeys(r.method for r in results), key=_order)


def results_table(results: Sequence[MethodResult], title: str) -> Table:
    """One row per method: the headline figures (mean ± sd over seeds) and
    the wall time.

    `accuracy`, `bal acc` and `AUC` are means over the sites' test sets;
    `AUC all` is on their union.
    """
    summary = summary_frame(results).fillna({"site": ""})
    table = Table(title=title)
    table.add_column("method", style="bold", no_wrap=True)
    for label, _ in HEADLINE:
        table.add_column(label, justify="right", no_wrap=True)
    table.add_column("wall_s", justify="right", no_wrap=True)
    for method in _methods_in(results):
        wall = summary[(summary.method == method) & (summary.metric == "wall_s")]
        table.add_row(
            method,
            *(_cell(summary, method, metric) for _, metric in HEADLINE),
            f"{float(wall.value.iloc[0]):.1f}",
        )
    return table


def site_table(results: Sequence[MethodResult], title: str) -> Table:
    """Each site's test accuracy per method (mean ± sd over seeds).

    With many sites, the worst and the best site stand in (every site is in
    `summary.csv`).
    """
    summary = summary_frame(results).fillna({"site": ""})
    names = results[0].site_names
    few = len(names) <= MAX_SITE_COLUMNS
    table = Table(title=title)
    table.add_column("method", style="bold", no_wrap=True)
    for name in names if few else ("worst site", "best site"):
        table.add_column(name, justify="right", no_wrap=True)
    for method in _methods_in(results):
        if few:
            cells = [_cell(summary, method, "accuracy", name) for name in names]
        else:
            per_site = summary[
                (summary.method == method)
                & (summary.metric == "accuracy")
                & (summary.site != "")
            ].value
            cells = [f"{per_site.min():.3f}", f"{per_site.max():.3f}"]
        table.add_row(method, *cells)
    return table


def legend_line(methods: Sequence[str]) -> str:
    """One line saying what each row's model is and which test sets score it."""
    shown = sorted(dict.fromkeys(methods), key=_order)
    return "; ".join(f"{m}: {LEGEND[m]}" for m in shown if m in LEGEND)


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


def app_rounds_frame(run: AppRun) -> pd.DataFrame:
    """A Flower app's swarm, one row per round: who sealed it, and the app's
    own evaluate metrics (aggregated by its strategy) under their own names."""
    leaders = run.swarm.leader_names()
    audits = run.swarm.round_audits(run.attackers)
    rows = []
    for record in run.swarm.rounds:
        audit = audits.get(record.round, {})
        row = {
            "method": "swarm",
            "seed": 0,
            "round": record.round,
            "leader": leaders[record.round],
            "view": record.view,
            "reason": record.reason.name.lower(),
            "contributors": len(record.commitments),
        }
        if run.attackers:
            row["attackers"] = audit.get("attackers", "")
        row |= audit_cells(audit.get("updates", ()), audit.get("held_back", ()))
        rows.append(row | _app_metrics(run, record.round))
    return pd.DataFrame(rows)


def _app_metrics(run: AppRun, round: int) -> dict[str, float]:
    """A round's metrics under the app's own names: the sites' aggregated
    train metrics, their aggregated evaluate metrics and the ServerApp's
    evaluate_fn metrics (`train_<name>` or `server_<name>` where a name is
    already taken; `num-examples` counts, which Flower sums, are left out)."""
    merged = {
        k: v
        for k, v in run.evaluate_metrics.get(round, {}).items()
        if k != "num-examples"
    }
    for prefix, metrics in (
        ("train_", run.train_metrics.get(round, {})),
        ("server_", run.central_metrics.get(round, {})),
    ):
        for name, value in metrics.items():
            if name != "num-examples":
                merged[f"{prefix}{name}" if name in merged else name] = value
    return merged


def app_rounds_table(run: AppRun) -> Table:
    """The swarm's rounds with the app's own metrics, as printed by `run`."""
    frame = app_rounds_frame(run)
    table = Table(title=f"{run.app.name}: swarm rounds")
    for column in frame.columns.drop(["method", "seed"]):
        left = column in ("leader", "reason")
        table.add_column(column, justify="left" if left else "right")
    for row in frame.drop(columns=["method", "seed"]).itertuples(index=False):
        table.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row))
    return table


def write_app_results(run: AppRun, out: Path) -> list[Path]:
    """`rounds.csv`, `summary.csv` (the last round's metrics, wall time) and
    `final_model.npz` (the swarm's final arrays, by their record keys)."""
    out.mkdir(parents=True, exist_ok=True)
    rounds_path, summary_path = out / "rounds.csv", out / "summary.csv"
    app_rounds_frame(run).to_csv(rounds_path, index=False)
    final = max((record.round for record in run.swarm.rounds), default=0)
    last = _app_metrics(run, final)
    rows = [("swarm", name, value) for name, value in last.items()]
    rows.append(("swarm", "wall_s", run.wall_s))
    pd.DataFrame(rows, columns=["method", "metric", "value"]).to_csv(
        summary_path, index=False
    )
    model_path = out / "final_model.npz"
    np.savez(
        model_path,
        **{key: array.numpy() for key, array in run.final_arrays.items()},
    )
    return [rounds_path, summary_path, model_path]


def app_comparison_frame(comparison: AppComparison) -> pd.DataFrame:
    """Per round, the app's own train and evaluate metrics as a swarm and
    under Flower (a train metric named like an evaluate one as `train_<name>`)."""
    swarm, flower, local = comparison.swarm, comparison.flower, comparison.local
    runs = [
        ("swarm", swarm.evaluate_metrics, swarm.train_metrics),
        ("flower", flower.evaluate_metrics(), flower.train_metrics()),
    ]
    if local is not None:
        runs.append(("local", local.evaluate_metrics, local.train_metrics))
    rows = []
    for method, evaluated, trained in runs:
        for r in sorted(set(evaluated) | set(trained)):
            row = {"method": method, "round": r, **evaluated.get(r, {})}
            for name, value in trained.get(r, {}).items():
                row[f"train_{name}" if name in row else name] = value
            rows.append(row)
    return pd.DataFrame(rows)


def app_comparison_table(comparison: AppComparison) -> Table:
    """The last round's metrics of each run (swarm, Flower, local-only), their
    wall times, and how far apart the swarm's and Flower's final models are."""
    frame = app_comparison_frame(comparison)
    last = frame.groupby("method").tail(1).set_index("method")
    metrics = [c for c in last.columns if c != "round"]
    gap = comparison.largest_difference()
    table = Table(
        title=f"the app as a swarm, on Flower and local-only (the swarm's and "
        f"Flower's final models differ by {gap:.1e})"
    )
    table.add_column("method", style="bold", no_wrap=True)
    for column in [*metrics, "wall_s"]:
        table.add_column(column, justify="right")
    walls = _app_walls(comparison)
    for method in walls:
        if method not in last.index:  # every site failed every round
            continue
        cells = [f"{last.loc[method, m]:.4g}" for m in metrics]
        table.add_row(method, *cells, f"{walls[method]:.1f}")
    return table


def _app_walls(comparison: AppComparison) -> dict[str, float]:
    """Wall seconds of each run of `compare --app`, in the tables' order."""
    walls = {"swarm": comparison.swarm.wall_s, "flower": comparison.flower.wall_s}
    if comparison.local is not None:
        walls["local"] = comparison.local.wall_s
    return walls


def write_app_comparison(comparison: AppComparison, out: Path) -> list[Path]:
    """`rounds.csv` (both runs, per round) and `summary.csv` (last round,
    wall time, the final models' largest difference)."""
    out.mkdir(parents=True, exist_ok=True)
    frame = app_comparison_frame(comparison)
    rounds_path, summary_path = out / "rounds.csv", out / "summary.csv"
    frame.to_csv(rounds_path, index=False)
    last = frame.groupby("method").tail(1)
    rows = [
        (row["method"], metric, row[metric])
        for _, row in last.iterrows()
        for metric in frame.columns.drop(["method", "round"])
    ]
    walls = _app_walls(comparison)
    rows += [(method, "wall_s", wall) for method, wall in walls.items()]
    rows.append(
        ("swarm", "largest_difference_to_flower", comparison.largest_difference())
    )
    pd.DataFrame(rows, columns=["method", "metric", "value"]).to_csv(
        summary_path, index=False
    )
    return [rounds_path, summary_path]
