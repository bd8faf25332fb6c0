"""What a simulated swarm run leaves, whichever engine played it.

Threads (`run_swarm`) and the Ray engine (`run_ray_swarm`) both return a
`SwarmResult`: the ledger's rounds, the final model, each site's core (its
log, model and replica), the crashes, and (from the Ray engine) a report per
round with every site's score and the round's simulated time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from flwr.app import ArrayRecord

from swarmflower.ledger import RoundRecord
from swarmflower.site_core import SiteCore


class SiteCrash(NamedTuple):
    """A site that died in a run: by its name, in which round, and why."""

    site: str
    round: int
    why: str


@dataclass(frozen=True)
class RoundReport:
    """One round as the engine saw it complete: who sealed it and how, how
    many sites took part, every site's test accuracy, wall and simulated time."""

    round: int
    leader: str
    view: int
    reason: str
    contributors: int
    up: int
    site_accuracy: tuple[float, ...]
    wall_s: float
    sim_s: float

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.site_accuracy))


@dataclass
class SwarmResult:
    """A finished swarm run.

    `rounds` are the ledger's canonical rounds; `sites` each site's last core
    (a crashed and restarted site's new one); `models` every round's model
    where the engine keeps them (threads), else only the final one.
    """

    rounds: list[RoundRecord]
    final_arrays: ArrayRecord
    sites: list[SiteCore]
    crashes: list[SiteCrash]
    wall_s: float
    reports: list[RoundReport] = field(default_factory=list)
    models: dict[int, ArrayRecord] = field(default_factory=dict)
    hosts: int = 0
    setup_s: float = 0.0

    def leader_names(self) -> dict[int, str]:
        """Round -> name of the site that sealed it."""
        names = {core.address: core.identity.name for core in self.sites}
        return {r.round: names.get(r.leader, r.leader) for r in self.rounds}

    def round_audits(
        self, attackers: frozenset[int] = frozenset()
    ) -> dict[int, dict[str, object]]:
        """Round -> what it merged, sites by name: `attackers` (site indices
        playing an attack) among the sites whose signed commitments it holds;
        each update's (site, norm, distance to the merged model), and the
        sites the merge clipped or left out, from a site that redid it."""
        names = {core.identity.index: core.identity.name for core in self.sites}
        by_address = {core.address: core.identity.name for core in self.sites}
        columns: dict[int, dict[str, object]] = {}
        for record in self.rounds:
            merged = {by_address.get(c.site, c.site) for c in record.commitments}
            playing = [names[k] for k in sorted(attackers) if names.get(k) in merged]
            found: dict[str, object] = {"attackers": ";".join(playing)}
            audit = next(
                (
                    core.log.audits[record.round]
                    for core in self.sites
                    if record.round in core.log.audits
                ),
                None,
            )
            if audit is not None:
                found["updates"] = tuple(
                    (names.get(k, str(k)), a.norm, a.distance)
                    for k, a in sorted(audit.updates.items())
                )
                found["held_back"] = tuple(
                    names.get(k, str(k)) for k in audit.held_back
                )
            columns[record.round] = found
        return columns

    @property
    def sim_s(self) -> float:
        """Simulated time at real sites (Ray engine), summed over rounds."""
        return sum(r.sim_s for r in self.reports)

    @property
    def round_wall_s(self) -> float:
        """Mean wall time per reported round after the first (which loads the
        data)."""
        later = self.reports[1:] or self.reports
        return float(np.mean([r.wall_s for r in later])) if later else 0.0
