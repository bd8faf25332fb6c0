"""Simulated time: how long a round would take on the sites' real machines and links.

The Ray engine runs rounds as fast as the CPUs allow; this module says when
each update would have reached the round's proposer and when the proposer
would have sealed, from each site's speed and link. Who makes it into a
merge follows the same rules as `SwarmPeer`: the leader seals once every site
is in, or at `update_wait` with at least `min_peers` updates; backup `v`
seals `v * round_timeout` after the round began. Everything is a pure
function of the profiles, so simulated time, and the models, are
reproducible.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from swarmflower.round_rules import backup_delay, leader_may_seal

STEP_S = 0.01  # a reference site's time per local optimiser step, seconds


@dataclass(frozen=True)
class SiteProfile:
    """How one simulated site (counted from 1) is slower or worse connected."""

    site: int
    slowdown: float = 1.0  # training takes this many times longer
    bandwidth_mbps: float = 100.0
    latency_ms: float = 10.0

    def compute_s(self, steps: int, step_s: float = STEP_S) -> float:
        return steps * step_s * self.slowdown

    def transfer_s(self, num_bytes: int) -> float:
        """One message over this site's link: latency plus size over bandwidth."""
        return self.latency_ms / 1e3 + num_bytes * 8 / (self.bandwidth_mbps * 1e6)


@dataclass(frozen=True)
class Heterogeneity:
    """Every site's profile and the chance that a site misses a round."""

    profiles: tuple[SiteProfile, ...]
    dropout: float = 0.0
    step_s: float = STEP_S

    @classmethod
    def uniform(cls, num_sites: int, dropout: float = 0.0) -> Heterogeneity:
        return cls(tuple(SiteProfile(k + 1) for k in range(num_sites)), dropout)

    def dropped(self, round: int, seed: int, attempt: int = 0) -> frozenset[int]:
        """Sites (from 0) that miss `round`: an independent draw per site and round.

        A new `attempt` (the swarm waited for enough sites) draws anew.
        """
        if self.dropout <= 0:
            return frozenset()
        rng = np.random.default_rng([seed, round, attempt, 0xD20])
        draws = rng.random(len(self.profiles))
        return frozenset(int(k) for k in np.flatnonzero(draws < self.dropout))

    def arrival_s(self, site: int, steps: int, update_bytes: int, copies: int) -> float:
        """When site `site`'s update is in at the electees, from the round's start.

        The site trains, then sends `copies` copies (one per electee) over its
        own uplink.
        """
        profile = self.profiles[site]
        return profile.compute_s(steps, self.step_s) + profile.transfer_s(
            update_bytes * copies
        )

    def broadcast_s(self, sites: Iterable[int], block_bytes: int) -> float:
        """Until the last of `sites` has the sealed block."""
        return max(
            (self.profiles[k].transfer_s(block_bytes) for k in sites), default=0.0
        )


@dataclass(frozen=True)
class SealMoment:
    """When a proposer seals, and whose updates it holds by then."""

    at_s: float
    included: tuple[int, ...]


def seal_moment(
    arrivals: Mapping[int, float],
    *,
    num_sites: int,
    min_peers: int,
    view: int,
    update_wait: float,
    round_timeout: float,
    not_before: float = 0.0,
) -> SealMoment | None:
    """When the proposer of `view` seals and which updates it merges.

    `arrivals` maps each site whose update is on its way to its arrival time.
    None when fewer than `min_peers` updates ever arrive: the round cannot be
    sealed.
    """
    if len(arrivals) < min_peers:
        return None
    if view == 0:
        # the first moment `leader_may_seal` holds: all in, or the wait is over
        all_in = leader_may_seal(len(arrivals), num_sites, 0.0, update_wait)
        at = min(max(arrivals.values()), update_wait) if all_in else update_wait
    else:
        at = backup_delay(view, round_timeout)
    at = max(at, not_before)
    enough = sorted(arrivals.values())[min_peers - 1]
    at = max(at, enough)
    included = tuple(sorted(k for k, t in arrivals.items() if t <= at))
    return SealMoment(at, included)
