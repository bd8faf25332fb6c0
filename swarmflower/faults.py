"""Faults to inject into a swarm run: crashes and dishonest leaders.

A plan names moments in the round protocol, so a fault hits exactly where a
test or a scenario wants it (a leader that dies holding every update, a
leader that seals a merge that does not match the committed updates).
"""

from __future__ import annotations

from dataclasses import dataclass

from swarmflower.errors import ConfigError


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
    - `site_recoveries`: site index -> round in which a crashed site is back,
      overriding `recover_after` for that site (the Ray engine honours it).
    - `stragglers`: (site index, round, seconds): that site's update for that
      round is held back this long after training, as a slow site's would.
    """

    leader_crash_rounds: frozenset[int] = frozenset()
    dishonest_leader_rounds: frozenset[int] = frozenset()
    site_crashes: tuple[tuple[int, int], ...] = ()
    recover_after: int = 0
    stragglers: tuple[tuple[int, int, float], ...] = ()
    site_recoveries: tuple[tuple[int, int], ...] = ()

    def delay(self, site: int, round: int) -> float:
        return sum(s for k, r, s in self.stragglers if (k, r) == (site, round))

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

    @classmethod
    def parse(cls, spec: str, num_sites: int, rounds: int | None = None) -> FaultPlan:
        """Read a plan from the command line's `--faults` text.

        Comma-separated items: `leader-crash:R`, `leader-crash-every:N`,
        `dishonest-leader:R`, `site-crash:SITE@R` (SITE counted from 1),
        `recover-after:K`. An empty text is no faults.
        """
        crash_rounds: set[int] = set()
        dishonest: set[int] = set()
        site_crashes: list[tuple[int, int]] = []
        recover_after = 0
        for item in filter(None, (part.strip() for part in spec.split(","))):
            name, _, value = item.partition(":")
            try:
                if name == "leader-crash":
                    crash_rounds.add(_positive(value))
                elif name == "leader-crash-every":
                    every = _positive(value)
                    crash_rounds.update(range(every, (rounds or 10_000) + 1, every))
                elif name == "dishonest-leader":
                    dishonest.add(_positive(value))
                elif name == "site-crash":
                    site, _, round = value.partition("@")
                    if not 1 <= int(site) <= num_sites:
                        raise ConfigError(f"site {site} is not one of 1..{num_sites}")
                    site_crashes.append((int(site) - 1, _positive(round)))
                elif name == "recover-after":
                    recover_after = _positive(value)
                else:
                    raise ConfigError(f"unknown fault '{name}'")
            except ValueError as exc:
                raise ConfigError(f"bad fault item '{item}': {exc}") from exc
            except ConfigError as exc:
                raise ConfigError(f"bad fault item '{item}': {exc}") from exc
        return cls(
            leader_crash_rounds=frozenset(crash_rounds),
            dishonest_leader_rounds=frozenset(dishonest),
            site_crashes=tuple(sorted(site_crashes)),
            recover_after=recover_after,
        )


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"{value} is not a positive number")
    return value


NO_FAULTS = FaultPlan()
