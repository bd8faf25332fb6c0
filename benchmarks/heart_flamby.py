"""Fed-Heart-Disease over several seeds, as FLamby reports it (mean over 5 seeds).

Prints one CSV line per method: the mean and standard deviation over seeds of
the mean per-hospital test accuracy, the FLamby-style local figure (each
hospital's model on every hospital's test set), and the mean wall time.

    python benchmarks/heart_flamby.py [--rounds 20] [--lr 0.01] [--seeds 5]
"""

from __future__ import annotations

import argparse
import statistics

from swarmflower.simulations.compare import run_compare
from swarmflower.tasks import TaskSpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--methods", default="fedavg,local,pooled")
    args = parser.parse_args()

    runs: dict[str, list] = {}
    for seed in range(args.seeds):
        spec = TaskSpec(task="heart", learning_rate=args.lr, seed=seed)
        for result in run_compare(spec, args.rounds, args.methods.split(",")):
            runs.setdefault(result.method, []).append(result)

    print("method,rounds,lr,seeds,accuracy_mean,accuracy_std,wall_s_mean,detail")
    for method, results in runs.items():
        accuracies = [r.accuracy for r in results]
        detail = ""
        if method == "local":
            by_site: dict[str, list[float]] = {}
            for result in results:
                for metric in result.extra:
                    by_site.setdefault(metric.site, []).append(metric.value)
            detail = " ".join(
                f"{site}_on_all_tests={statistics.mean(v):.3f}"
                for site, v in by_site.items()
            )
        print(
            f"{method},{args.rounds},{args.lr},{len(results)},"
            f"{statistics.mean(accuracies):.3f},{statistics.pstdev(accuracies):.3f},"
            f"{statistics.mean(r.wall_s for r in results):.1f},{detail}"
        )


if __name__ == "__main__":
    main()
