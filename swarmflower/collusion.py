"""Colluding attackers: the attacks that are computed from the honest updates.

ALIE, IPM and mimic are only as strong as what the attackers know, and we
grant them the most: the attacking sites collude and see every honest
site's update of the round before they send their own. In a simulation a
`CollusionBoard` (one per attack, shared by the sites of one process) plays
that part; the attackers still train, sign and commit as any site does.

- ALIE ("a little is enough", Baruch et al., NeurIPS 2019): every attacker
  sends the honest changes' mean minus `z` of their standard deviation, per
  coordinate, with `z` the largest that keeps the attackers inside the crowd
  (`alie_z`): enough to drag medians and trimmed means, small enough to pass
  distance and norm filters.
- IPM (inner-product manipulation, Xie et al., UAI 2020): every attacker sends
  `-EPS` times the honest mean change, so the merged change points away from
  descent while each attacker stays close to the honest ones for small EPS.
- mimic (Karimireddy et al., ICLR 2022): every attacker copies one honest
  site's change, overweighting that site's data in a non-IID swarm.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

import numpy as np
from flwr.app import ArrayRecord

Change = Mapping[str, np.ndarray]  # a site's trained model minus the round's own

BOARD_ROUNDS = 4  # rounds a board keeps (an attacker is at most this late)


def change_of(current: ArrayRecord, trained: ArrayRecord) -> dict[str, np.ndarray]:
    """`trained - current`, per key, in float64: a site's change."""
    return {
        key: array.numpy().astype(np.float64) - current[key].numpy().astype(np.float64)
        for key, array in trained.items()
    }


def alie_z(num_sites: int, num_attackers: int) -> float:
    """ALIE's `z_max`: with `s = floor(n/2 + 1) - m` honest sites to win
    over, the `z` at which a normal variable exceeds the mean by less than
    `z` standard deviations with probability `(n - s) / n`."""
    from scipy.stats import norm

    needed = num_sites // 2 + 1 - num_attackers
    share = (num_sites - needed) / num_sites
    if share <= 0.5:  # too few attackers to win over anyone: stay at the mean
        return 0.0
    return float(norm.ppf(min(share, 1.0 - 1e-9)))


def alie(honest: list[Change], z: float) -> dict[str, np.ndarray]:
    """The honest mean change minus `z` standard deviations, per coordinate."""
    return {
        key: np.mean(stack, axis=0) - z * np.std(stack, axis=0)
        for key, stack in _stacked(honest).items()
    }


def ipm(honest: list[Change], epsilon: float) -> dict[str, np.ndarray]:
    """`-epsilon` times the honest mean change."""
    return {
        key: -epsilon * np.mean(stack, axis=0)
        for key, stack in _stacked(honest).items()
    }


def _stacked(honest: list[Change]) -> dict[str, np.ndarray]:
    """Each key's honest changes as one float64 stack (sites first)."""
    return {
        key: np.stack([np.asarray(c[key], dtype=np.float64) for c in honest])
        for key in honest[0]
    }


class CollusionBoard:
    """The honest changes of recent rounds, as the colluding attackers see
    them: keyed by round and the block they were trained on, so runs and
    forks never mix. Thread-safe: a threaded swarm's sites post at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changes: dict[tuple[int, bytes], dict[int, dict[str, np.ndarray]]] = {}

    def __getstate__(self) -> dict:
        """A board sent to another process (a Ray actor) arrives empty: what
        colluders see is posted where the sites' cores run."""
        return {}

    def __setstate__(self, state: dict) -> None:
        self.__init__()

    def post(self, round: int, parent: bytes, site: int, change: Change) -> None:
        with self._lock:
            self._changes.setdefault((round, parent), {})[site] = dict(change)
            for old in [key for key in self._changes if key[0] <= round - BOARD_ROUNDS]:
                del self._changes[old]

    def seen(self, round: int, parent: bytes) -> dict[int, dict[str, np.ndarray]]:
        """Site index -> its posted change, for `round` trained on `parent`."""
        with self._lock:
            return dict(self._changes.get((round, parent), {}))
