"""Wall time per round: the in-process swarm against Flower's simulation engine.

Both run the same task, data, seeds and budget (FedAvg, every site every
round, federated evaluation after each round). Prints one CSV line per size.

    python benchmarks/swarm_bench.py [--sites 4 10 20] [--rounds 10]
"""

from __future__ import annotations

import argparse

from swarmflower.simulations.experiments.fedavg import run_flower_fedavg
from swarmflower.simulations.experiments.swarm import run_swarm_method
from swarmflower.tasks import TaskSpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, nargs="+", default=[4, 10, 20])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--local-steps", type=int, default=100)
    args = parser.parse_args()
    print(
        "task,sites,rounds,swarm_s_per_round,fedavg_s_per_round,ratio,"
        "swarm_accuracy,fedavg_accuracy"
    )
    for sites in args.sites:
        task = "heart" if sites == 4 else "breast-cancer"
        spec = TaskSpec(task=task, num_sites=sites, local_steps=args.local_steps)
        swarm = run_swarm_method(spec, args.rounds)
        flower = run_flower_fedavg(spec, args.rounds)
        per_swarm = swarm.wall_s / args.rounds
        per_flower = flower.wall_s / args.rounds
        print(
            f"{task},{sites},{args.rounds},{per_swarm:.3f},{per_flower:.3f},"
            f"{per_swarm / per_flower:.2f},{swarm.accuracy:.3f},{flower.accuracy:.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
