"""Fork choice: one deterministic rule so that all honest replicas converge.

At a height with several valid blocks, a final block wins: one that a
majority of the swarm's members built on (a known child carries commitments
from more than half of them, and every commitment names the block it was
trained on). Between blocks that are both final or both not, the higher
view wins (a backup that took over beats the late leader it replaced), ties
by the lowest block hash. So a site cut off from the others may seal a
round at a raised view, but once the majority has built on its own block of
that round, the cut site's block never replaces it. The canonical chain is
the greedy descent from genesis under this rule, which depends only on the
set of valid blocks known, never on arrival order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .records import BlockRef


def majority(members: int) -> int:
    """Commitments that make a block's parent final: more than half."""
    return members // 2 + 1


def rank(block: BlockRef, final: bool = False) -> tuple[bool, int, bytes]:
    """Sort key: the smallest key is the preferred block at its height."""
    return (not final, -block.view, block.hash)


def preferred(
    blocks: Iterable[BlockRef], is_final: Callable[[BlockRef], bool] = lambda b: False
) -> BlockRef | None:
    return min(blocks, key=lambda b: rank(b, is_final(b)), default=None)
