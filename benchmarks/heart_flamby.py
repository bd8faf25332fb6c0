"""Fed-Heart-Disease over several seeds, beside FLamby's published figures.

Runs `compare`'s methods on heart with `--seeds N` (FLamby reports means over
5 seeds) and prints one markdown table: mean per-hospital test accuracy
(FLamby's metric; `local` scored on every hospital's test set, as FLamby
does) with its sd and 95% interval, balanced accuracy, per-hospital AUC and
wall time, then FLamby's figures for the same task.

    python benchmarks/heart_flamby.py [--seeds 5] [--rounds 20]
        [--methods swarm,swarm+ft,fedavg,fedavg+ft,local,local_own,pooled]
"""

from __future__ import annotations

import argparse

from swarmflower.reports import summary_frame
from swarmflower.simulations.experiments.compare import run_compare
from swarmflower.simulations.experiments.methods import METHODS
from swarmflower.tasks import TaskSpec

# FLamby (Ogier du Terrail et al., NeurIPS 2022), Fed-Heart-Disease: mean
# per-hospital test accuracy over 5 seeds, as published.
FLAMBY = (
    ("pooled", "0.735"),
    ("best federated strategy", "0.731"),
    ("FedAvg + fine-tuning", "0.735 ± 0.009"),
)


def _figure(summary, method: str, metric: str) -> str:
    row = summary[
        (summary.method == method) & (summary.metric == metric) & summary.site.eq("")
    ]
    if row.empty:
        return "n/a"
    value, sd = row.value.iloc[0], row.sd.iloc[0]
    return f"{value:.3f}" if sd != sd else f"{value:.3f} ± {sd:.3f}"


def _interval(summary, method: str) -> str:
    headline = (summary.metric == "accuracy") & (summary.site == "")
    row = summary[(summary.method == method) & headline]
    low, high = row.ci_low.iloc[0], row.ci_high.iloc[0]
    return "n/a" if low != low else f"{low:.3f}-{high:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--methods", default=",".join(METHODS))
    args = parser.parse_args()

    results = run_compare(
        TaskSpec(task="heart"), args.rounds, args.methods.split(","), seeds=args.seeds
    )
    summary = summary_frame(results).fillna({"site": ""})
    print(f"heart, {args.rounds} rounds, {args.seeds} seeds (mean ± sd)\n")
    print("| method | accuracy | 95% interval | balanced accuracy | AUC | wall s |")
    print("|---|---|---|---|---|---|")
    for method in dict.fromkeys(r.method for r in results):
        print(
            f"| {method} | {_figure(summary, method, 'accuracy')} "
            f"| {_interval(summary, method)} "
            f"| {_figure(summary, method, 'balanced_accuracy')} "
            f"| {_figure(summary, method, 'auc')} "
            f"| {_figure(summary, method, 'wall_s')} |"
        )
    print("\nFLamby, same task and metric:\n")
    print("| FLamby | accuracy |\n|---|---|")
    for label, value in FLAMBY:
        print(f"| {label} | {value} |")


if __name__ == "__main__":
    main()
