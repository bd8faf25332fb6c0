"""When a crashed simulated site comes back, from the fault plan."""

from __future__ import annotations

from swarmflower.faults import FaultPlan


class Availability:
    """Each crash's round of return, and the record of every crash.

    A crashed site is down until its recovery round (the plan's own for that
    site, else `recover_after` rounds after the crash, never if that is 0).
    Dropout needs no record: a dropped site misses only its round.
    """

    def __init__(self, plan: FaultPlan) -> None:
        self.plan = plan
        self.crashes: list[tuple[int, int, str]] = []
        self._recoveries = dict(plan.site_recoveries)

    def crash(self, site: int, round: int, why: str) -> int | None:
        """Record the crash; the round from which the site plays again."""
        self.crashes.append((site, round, why))
        if site in self._recoveries and self._recoveries[site] > round:
            return self._recoveries[site]
        if self.plan.recover_after:
            return round + self.plan.recover_after
        return None
