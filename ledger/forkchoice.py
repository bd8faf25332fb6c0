"""Fork choice: one deterministic rule so that all honest replicas converge.

At a height with several valid blocks, the higher view wins (a backup that
took over beats the late leader it replaced), ties by the lowest block hash.
The canonical chain is the greedy descent from genesis under that rule, which
depends only on the set of valid blocks known, never on arrival order.
"""

from __future__ import annotations

from collections.abc import Iterable

from .records import BlockRef


def rank(block: BlockRef) -> tuple[int, bytes]:
    """Sort key: the smallest key is the preferred block at its height."""
    return (-block.view, block.hash)


def preferred(blocks: Iterable[BlockRef]) -> BlockRef | None:
    return min(blocks, key=rank, default=None)


def beats(challenger: BlockRef, incumbent: BlockRef) -> bool:
    return rank(challenger) < rank(incumbent)
