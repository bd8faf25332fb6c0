"""Ledger cost per round: produce (leader) and import (every other replica).

One CSV line per swarm size: `sites,produce_ms,import_ms,block_bytes`.
Every site commits each round; the importer checks every signature and
re-executes the block. Figures are medians over a few rounds after warm-up.

    python benchmarks/ledger_bench.py [--rounds 5] [--sizes 10,100,1000]
"""

from __future__ import annotations

import argparse
import statistics
import time

from eth_keys import keys
from eth_utils import keccak

from swarmflower.ledger import Commitment, FoundingSite, Genesis, Ledger, SwarmParams


def bench(n: int, rounds: int) -> tuple[float, float, int]:
    site_keys = [keys.PrivateKey(keccak(text=f"bench-{i}")) for i in range(n)]
    by_address = {k.public_key.to_checksum_address(): k for k in site_keys}
    genesis = Genesis(
        sites=tuple(
            FoundingSite(a, keccak(k.to_bytes())) for a, k in by_address.items()
        ),
        initial_model_hash=keccak(b"model-0"),
        params=SwarmParams(rounds=rounds + 1, round_timeout=60, min_peers=1),
        timestamp=1_700_000_000,
    )
    leader_side, importer = Ledger(genesis), Ledger(genesis)
    produce, imports, size = [], [], 0
    for r in range(1, rounds + 2):
        signed = [
            Commitment.sign(
                k,
                leader_side.swarm_id,
                r,
                keccak(text=f"u{r}{i}"),
                100,
                leader_side.block_hash(r - 1),
            )
            for i, k in enumerate(site_keys)
        ]
        proposer = by_address[leader_side.proposer(r, 0)]
        start = time.perf_counter()
        data = leader_side.seal_round(
            proposer,
            r,
            keccak(text=f"m{r}"),
            keccak(text=f"s{r}"),
            signed,
            timestamp=genesis.timestamp + r,
        )
        middle = time.perf_counter()
        importer.import_block(data)
        end = time.perf_counter()
        if r > 1:  # round 1 warms caches
            produce.append((middle - start) * 1000)
            imports.append((end - middle) * 1000)
            size = len(data)
    assert importer.head() == leader_side.head()
    return statistics.median(produce), statistics.median(imports), size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sizes", default="10,100,1000")
    args = parser.parse_args()
    print("sites,produce_ms,import_ms,block_bytes")
    for n in (int(s) for s in args.sizes.split(",")):
        produce_ms, import_ms, size = bench(n, args.rounds)
        print(f"{n},{produce_ms:.1f},{import_ms:.1f},{size}", flush=True)


if __name__ == "__main__":
    main()
