"""Bucketing: merge bucket means instead of single updates.

Karimireddy, He and Jaggi (ICLR 2022) show that averaging updates in small
random buckets before a robust merge keeps the merge robust when honest
sites' data differ (non-IID), where robust merges alone mistake honest
outliers for attackers. The buckets are drawn from the round's current model
hash (on the ledger) and the round, so every verifier draws the same ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from eth_utils import keccak
from flwr.app import Array, ArrayRecord

from swarmflower.codec import arrays_hash
from swarmflower.strategies.base import Update


def bucket_sites(
    current: ArrayRecord, server_round: int, sites: Sequence[int], size: int
) -> list[list[int]]:
    """`sites` shuffled by the round's seed and cut into buckets of `size`
    (the last one may be smaller)."""
    seed = keccak(arrays_hash(current) + server_round.to_bytes(8, "big"))
    order = np.random.default_rng(int.from_bytes(seed[:8], "big")).permutation(
        len(sites)
    )
    shuffled = [sites[i] for i in order]
    return [shuffled[i : i + size] for i in range(0, len(shuffled), size)]


def bucketed(
    current: ArrayRecord, server_round: int, updates: Sequence[Update], size: int
) -> tuple[list[Update], list[list[int]]]:
    """One update per bucket: the example-weighted mean of its members
    (float64, cast back to each array's dtype), their examples summed and
    their metrics averaged the same way. Also the buckets' member sites."""
    by_site = {update.site: update for update in updates}
    buckets = bucket_sites(current, server_round, list(by_site), size)
    merged = []
    for index, members in enumerate(buckets):
        group = [by_site[site] for site in sorted(members)]
        weights = np.array([u.num_examples for u in group], dtype=np.float64)
        share = weights / weights.sum()
        arrays = {}
        for key in group[0].arrays:
            dtype = group[0].arrays[key].numpy().dtype
            total = np.zeros(group[0].arrays[key].numpy().shape, dtype=np.float64)
            for update, part in zip(group, share, strict=True):
                total += part * update.arrays[key].numpy().astype(np.float64)
            arrays[key] = Array(np.asarray(total.astype(dtype)))
        pairs = list(zip(group, share, strict=True))
        metrics = {
            name: float(sum(part * u.metrics[name] for u, part in pairs))
            for name in group[0].metrics
        }
        merged.append(Update(index, ArrayRecord(arrays), int(weights.sum()), metrics))
    return merged, buckets
