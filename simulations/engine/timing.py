"""Simulated time: how long training and messages take at the sites' real
machines and links.

The Ray engine computes as fast as the CPUs allow; the simulated swarm
delivers each message and answers each fetch at the time these profiles
give, and a site's training ends after its compute time. Who makes it into
a merge then follows from the protocol itself (`SiteCore`, `round_rules`).
Everything is a pure function of the profiles, so simulated time, and the
models, are reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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

    def message_s(self, sender: int, receiver: int, num_bytes: int) -> float:
        """One message from site `sender` to `receiver`: the slower of their links."""
        profiles = self.profiles
        return max(
            profiles[sender].transfer_s(num_bytes),
            profiles[receiver].transfer_s(num_bytes),
        )

    def fetch_s(self, asker: int, source: int | None, num_bytes: int) -> float:
        """A request and its answer (`source` None: nobody had it, one round
        trip of asking)."""
        latency = self.profiles[asker].latency_ms / 1e3
        if source is None:
            return 2 * latency
        return latency + self.message_s(source, asker, num_bytes)
