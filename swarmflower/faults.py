"""Faults to inject into a swarm run: crashes and dishonest leaders.

A plan names moments in the round protocol, so a fault hits exactly where a
test or a scenario wants it (a leader that dies holding every update, a
leader that seals a merge that does not match the committed updates).
"""

from __future__ import annotations

from dataclasses import dataclass


class PeerCrashed(Exception):
    """Raised inside a peer's thread when the fault plan kills it."""


@dataclass(frozen=True)
class FaultPlan:
    """Which faults happen in which rounds.

    - `leader_crash_rounds`: the elected leader of each of these rounds dies
      after it has gathered the updates and before it seals.
    - `dishonest_leader_rounds`: the elected leader seals a merged model that
      is not the merge of the committed updates.
    - `site_crashes`: site index -> round in which that site dies before
      training.
    - `recover_after`: a crashed site comes back this many rounds later
      (0: never).
    """

    leader_crash_rounds: frozenset[int] = frozenset()
    dishonest_leader_rounds: frozenset[int] = frozenset()
    site_crashes: tuple[tuple[int, int], ...] = ()
    recover_after: int = 0

    def crashes_while_leading(self, round: int) -> bool:
        return round in self.leader_crash_rounds

    def is_dishonest(self, round: int) -> bool:
        return round in self.dishonest_leader_rounds

    def crashes_before_training(self, site: int, round: int) -> bool:
        return (site, round) in self.site_crashes

    @classmethod
    def every_nth_leader(cls, n: int, rounds: int, recover_after: int = 1) -> FaultPlan:
        """A leader crash in every `n`-th round, the crashed site back later."""
        return cls(
            leader_crash_rounds=frozenset(range(n, rounds + 1, n)),
            recover_after=recover_after,
        )


NO_FAULTS = FaultPlan()
