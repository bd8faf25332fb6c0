"""Chaos benchmark: seeded runs of real peers killed at random; converged/total.

Each run: 3 real `swarmflower peer` processes, 6 rounds, three SIGKILLs at
random moments (each site restarted after a short pause), plus the
seal-before-announce drill in one random round. A run converges when every
peer exits 0 at round 6 on one ledger head and one final model hash, and
`swarmflower ledger verify` agrees at every site.

    python benchmarks/chaos.py [--runs 20] [--first-seed 0]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from swarmflower.simulations.experiments.chaos import run_chaos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=0)
    args = parser.parse_args()
    converged = fired = 0
    started = time.perf_counter()
    for seed in range(args.first_seed, args.first_seed + args.runs):
        with tempfile.TemporaryDirectory(prefix="chaos-") as folder:
            outcome = run_chaos(seed, Path(folder) / "swarm")
        converged += outcome.converged
        fired += outcome.drill_fired
        kills = ", ".join(f"{site}@{at}s" for at, site in outcome.kills)
        state = "converged" if outcome.converged else f"FAILED: {outcome.problem}"
        drill = "drill fired" if outcome.drill_fired else "drill not reached"
        print(
            f"seed {seed:3d}: {state}; kills {kills}; {drill}; "
            f"{outcome.restarts} restarts; {outcome.wall_s:.0f} s",
            flush=True,
        )
        if not outcome.converged:
            for site, output in outcome.outputs.items():
                tail = "\n    ".join(output.strip().splitlines()[-12:])
                print(f"  {site}:\n    {tail}")
    print(
        f"converged/total: {converged}/{args.runs} "
        f"(seal-before-announce drill fired in {fired}; "
        f"{time.perf_counter() - started:.0f} s)"
    )


if __name__ == "__main__":
    main()
