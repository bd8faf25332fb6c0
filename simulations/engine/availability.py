"""Who is up in a round: planned crashes and recoveries, and random dropout."""

from __future__ import annotations

from swarmflower.faults import FaultPlan
from swarmflower.simulations.engine.timing import Heterogeneity


class Availability:
    """Tracks crashed sites and draws each round's dropouts, reproducibly.

    A crashed site is down until its recovery round (the plan's own for that
    site, else `recover_after` rounds after the crash, never if that is 0); a
    dropped site misses only the round it was drawn for.
    """

    def __init__(
        self, plan: FaultPlan, heterogeneity: Heterogeneity, num_sites: int, seed: int
    ) -> None:
        self.plan = plan
        self.heterogeneity = heterogeneity
        self.num_sites = num_sites
        self.seed = seed
        self.down_until: dict[int, int | None] = {}
        self.crashes: list[tuple[int, int, str]] = []
        self._recoveries = dict(plan.site_recoveries)

    def begin(self, round: int) -> None:
        """Bring back the sites due to recover, and crash those the plan kills."""
        for site, back in list(self.down_until.items()):
            if back is not None and back <= round:
                del self.down_until[site]
        for site in range(self.num_sites):
            if self.plan.crashes_before_training(site, round):
                self.crash(site, round, "site crash before training")

    def up(self, round: int, attempt: int = 0) -> list[int]:
        """Sites that train in `round`, in site order.

        `attempt` counts the swarm's waits for enough sites: each wait draws
        the dropouts anew, as missing sites come back online.
        """
        dropped = self.heterogeneity.dropped(round, self.seed, attempt)
        return [
            k
            for k in range(self.num_sites)
            if k not in self.down_until and k not in dropped
        ]

    def alive(self) -> int:
        """Sites not crashed (dropouts aside)."""
        return self.num_sites - len(self.down_until)

    def crash(self, site: int, round: int, why: str) -> None:
        if site in self._recoveries and self._recoveries[site] > round:
            back: int | None = self._recoveries[site]
        elif self.plan.recover_after:
            back = round + self.plan.recover_after
        else:
            back = None
        self.down_until[site] = back
        self.crashes.append((site, round, why))
