"""When a round's proposers may seal: the protocol's timing rules, in one place.

Every site's `SiteCore` (threads, real sites and the Ray engine alike) and
each ledger replica, when it validates a block's timestamp, ask here. Pure
functions of the round's facts, no clocks.

- The leader (view 0) seals once every site's update is in, or once
  `update_wait` seconds have passed since the round began (with at least
  `min_peers` updates).
- Backup `v` may seal `v * round_timeout` seconds after the round began, if
  no acceptable block of the round has appeared: a silent leader costs one
  round timeout, a leader whose merge was refused costs the same.
- A block's timestamp is at least one second after its parent's, and a
  backup's at least its delay after the parent's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the ledger imports these rules: no import back at load time
    from swarmflower.ledger.records import Reason

UPDATE_WAIT_SHARE = 0.8  # of the round timeout: the leader's default wait
# How far a leader's block timestamp may lead its own clock; replicas refuse
# blocks more than 15 s ahead of theirs (ledger MAX_DRIFT): 10 s are left
# for the sites' clocks to differ.
MAX_STAMP_LEAD_S = 5


def default_update_wait(round_timeout: float) -> float:
    """How long a leader waits for stragglers unless told otherwise."""
    return UPDATE_WAIT_SHARE * round_timeout


def backup_delay(view: int, round_timeout: float) -> float:
    """Seconds after the round began from which the proposer of `view` may seal."""
    return view * round_timeout


def seal_deadline(
    view: int, update_wait: float, round_timeout: float, grace: float = 0.0
) -> float:
    """Seconds after the round began from which the proposer of `view` seals
    whatever it holds (given at least `min_peers` updates): the leader when
    its wait is over, a backup when its delay is. `grace` (round 1's start-up
    grace) holds both back: the leader waits for every site that long, and
    no backup steps in before it is over."""
    if view == 0:
        return max(update_wait, grace)
    return grace + backup_delay(view, round_timeout)


def may_seal(
    view: int,
    *,
    updates_in: int,
    num_sites: int,
    elapsed: float,
    update_wait: float,
    round_timeout: float,
    grace: float = 0.0,
) -> bool:
    """Whether the proposer of `view` may seal after `elapsed` seconds: at its
    deadline, or (the leader) as soon as every site's update is in."""
    if view == 0 and updates_in >= num_sites:
        return True
    return elapsed >= seal_deadline(view, update_wait, round_timeout, grace)


def seal_reason(view: int, current: object | None) -> Reason:
    """Why the proposer of `view` seals: the leader normally; a backup because
    the leader was silent (no block of the round yet, `current` None) or
    because the round's block was refused (a bad merge)."""
    from swarmflower.ledger.records import Reason

    if view == 0:
        return Reason.NORMAL
    return Reason.LEADER_TIMEOUT if current is None else Reason.BAD_MERGE


def earliest_timestamp(parent_timestamp: int, view: int, round_timeout: int) -> int:
    """The earliest timestamp a block of `view` may carry after its parent's."""
    return parent_timestamp + max(1, int(backup_delay(view, round_timeout)))


def drawn_sites(
    parent_hash: bytes, round: int, sites: Sequence[str], count: int
) -> frozenset[str] | None:
    """The sites drawn to train `round` (None: every site, `count` 0 or all).

    Drawn from the hash of the round's parent block, which nobody knows before
    that block is sealed, so every site draws the same sites and none can
    steer the draw to itself; as Flower's `fraction_train` draws nodes.
    """
    if count <= 0 or count >= len(sites):
        return None

    def lot(address: str) -> bytes:
        text = f"{round}/{address.lower()}".encode()
        return hashlib.sha256(parent_hash + text).digest()

    return frozenset(sorted(sites, key=lot)[:count])


def train_count(num_sites: int, fraction: float, min_nodes: int) -> int:
    """How many sites Flower's strategies sample for training: `fraction` of
    the nodes, rounded down, but at least `min_nodes` (0: every site)."""
    if fraction >= 1.0:
        return 0
    count = max(int(num_sites * fraction), min_nodes, 1)
    return 0 if count >= num_sites else count
