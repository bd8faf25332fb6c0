"""Wall time per round at 100 sites: the Ray swarm against Flower's own simulation.

Same task, data, seeds and budget: Flower's FedAvg through Flower's Ray
simulation engine (one CPU per actor), and the swarm on the Ray engine (one
host actor per CPU), both training every site every round and scoring every
site's test set after it. Round 1 of each is left out of the per-round
figure (Ray start, actors, data); the swarm's rounds include sealing a block
and every host's validation of it. Prints one CSV line with the ratio.

    python benchmarks/ray_vs_flower.py [--sites 100] [--rounds 6]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from swarmflower.simulations.experiments.fedavg import run_flower_fedavg
from swarmflower.simulations.experiments.swarm import run_swarm_method
from swarmflower.tasks import TaskSpec


def flower_per_round(spec: TaskSpec, rounds: int) -> tuple[float, float, float]:
    """Mean seconds per round after the first, total seconds, final accuracy."""
    ends: list[float] = []
    result = run_flower_fedavg(spec, rounds, lambda r: ends.append(time.perf_counter()))
    return float(np.mean(np.diff(ends))), result.wall_s, result.accuracy


def swarm_per_round(spec: TaskSpec, rounds: int) -> tuple[float, float, float]:
    result = run_swarm_method(spec, rounds, engine="ray")
    walls = [r.wall_s for r in result.rounds[1:]]
    return float(np.mean(walls)), result.wall_s, result.accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    spec = TaskSpec(task="transcriptome", num_sites=args.sites)
    spec.load()
    swarm = swarm_per_round(spec, args.rounds)
    flower = flower_per_round(spec, args.rounds)
    print(
        "sites,rounds,local_steps,swarm_s_per_round,flower_s_per_round,ratio,"
        "swarm_total_s,flower_total_s,swarm_accuracy,flower_accuracy"
    )
    print(
        f"{args.sites},{args.rounds},{spec.local_steps},{swarm[0]:.2f},"
        f"{flower[0]:.2f},{swarm[0] / flower[0]:.2f},{swarm[1]:.1f},{flower[1]:.1f},"
        f"{swarm[2]:.3f},{flower[2]:.3f}"
    )


if __name__ == "__main__":
    main()
