"""Faults to inject into a swarm run: crashes, lost messages, bad participants.

A plan names moments in the round protocol, so a fault hits exactly where a
test or a scenario wants it (a leader that dies holding every update, a
leader that seals a merge that does not match the committed updates).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from swarmflower.attacks import Attack
from swarmflower.errors import ConfigError

BAD_UPDATES = ("zero-examples", "huge-examples", "complex", "integer", "huge-weights")
"""What a `bad-update` drill makes a site offer (signed, as a real site would)."""


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
    - `silent_seal_rounds`: the elected leader of each of these rounds dies
      after sealing and storing its block, before announcing it.
    - `fetch_crashes`: (site index, round): that site dies in the middle of a
      fetch in that round, before what it fetched is checked and stored.
    - `write_crashes`: (site index, round): that site dies half-way through
      writing a file to its model store in that round.
    - `drop_sends`: the share (0..1) of messages each site sends that are
      lost, drawn per site from a seeded generator.
    - `bad_updates`: (site index, round, kind): that site offers a bad update
      of `kind` (see `BAD_UPDATES`), signed as an honest one would be.
    - `attack`: the sites that poison every update they send, and how
      (`attacks.py`).
    """

    leader_crash_rounds: frozenset[int] = frozenset()
    dishonest_leader_rounds: frozenset[int] = frozenset()
    site_crashes: tuple[tuple[int, int], ...] = ()
    recover_after: int = 0
    stragglers: tuple[tuple[int, int, float], ...] = ()
    site_recoveries: tuple[tuple[int, int], ...] = ()
    silent_seal_rounds: frozenset[int] = frozenset()
    fetch_crashes: tuple[tuple[int, int], ...] = ()
    write_crashes: tuple[tuple[int, int], ...] = ()
    drop_sends: float = 0.0
    bad_updates: tuple[tuple[int, int, str], ...] = ()
    attack: Attack | None = None

    def drills(self) -> set[str]:
        """The `--faults` names of the protocol-point drills this plan holds."""
        present = {
            "seal-no-announce": bool(self.silent_seal_rounds),
            "crash-mid-fetch": bool(self.fetch_crashes),
            "crash-mid-write": bool(self.write_crashes),
            "drop-sends": self.drop_sends > 0,
            "bad-update": bool(self.bad_updates),
        }
        return {name for name, held in present.items() if held}

    def refuse_drills(self, engine: str, played: set[str]) -> None:
        """A clear error for drills an engine does not play (never ignored)."""
        missing = sorted(self.drills() - played)
        if missing:
            where = "real sites (swarmflower peer --faults)"
            if "crash-mid-write" not in missing:
                where = "--engine inproc or real sites (swarmflower peer --faults)"
            raise ConfigError(
                f"the {engine} engine does not play {', '.join(missing)}: use {where}"
            )

    def crashes_before_announcing(self, round: int) -> bool:
        return round in self.silent_seal_rounds

    def crashes_mid_fetch(self, site: int, round: int) -> bool:
        return (site, round) in self.fetch_crashes

    def crashes_mid_write(self, site: int, round: int) -> bool:
        return (site, round) in self.write_crashes

    def bad_update(self, site: int, round: int) -> str | None:
        return next(
            (k for s, r, k in self.bad_updates if (s, r) == (site, round)), None
        )

    def send_filter(self, site: int):
        """A per-site predicate that says whether the next send is lost."""
        draw = random.Random(f"drop-sends/{site}").random
        return lambda: self.drop_sends > 0 and draw() < self.drop_sends

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
        `recover-after:K`, and the drills at protocol points
        `seal-no-announce:R`, `crash-mid-fetch:SITE@R`,
        `crash-mid-write:SITE@R`, `drop-sends:PERCENT`,
        `bad-update:SITE@R:KIND` (KIND one of `BAD_UPDATES`),
        `straggler:SITE@R:SECONDS`. An empty text is no faults.
        """
        lists: dict[str, list] = {name: [] for name in _SETS + _LISTS}
        scalars: dict[str, float | int] = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            name, _, value = item.partition(":")
            try:
                if name in _ITEMS:
                    field_name, read = _ITEMS[name]
                    lists[field_name] += read(value, num_sites, rounds)
                elif name in _SCALARS:
                    field_name, read_scalar = _SCALARS[name]
                    scalars[field_name] = read_scalar(value)
                else:
                    raise ConfigError(f"unknown fault '{name}'")
            except (ValueError, ConfigError) as exc:
                raise ConfigError(f"bad fault item '{item}': {exc}") from exc
        return cls(
            **{name: frozenset(lists[name]) for name in _SETS},
            **{name: tuple(sorted(lists[name])) for name in _LISTS},
            **scalars,
        )


def _every(value: str, rounds: int | None) -> list[int]:
    every = _positive(value)
    return list(range(every, (rounds or 10_000) + 1, every))


def _percentage(value: str) -> float:
    share = float(value) / 100
    if not 0 <= share <= 1:
        raise ConfigError(f"{value} is not a percentage")
    return share


def _bad_update(value: str, num_sites: int) -> tuple[int, int, str]:
    where, _, kind = value.rpartition(":")
    if kind not in BAD_UPDATES:
        raise ConfigError(f"unknown bad update '{kind}' (one of {BAD_UPDATES})")
    return (*_site_round(where, num_sites), kind)


# `--faults` items: name -> (FaultPlan field, reader of the value as a list).
_ITEMS: dict[str, tuple[str, Callable[[str, int, int | None], list]]] = {
    "leader-crash": ("leader_crash_rounds", lambda v, n, r: [_positive(v)]),
    "leader-crash-every": ("leader_crash_rounds", lambda v, n, r: _every(v, r)),
    "dishonest-leader": ("dishonest_leader_rounds", lambda v, n, r: [_positive(v)]),
    "site-crash": ("site_crashes", lambda v, n, r: [_site_round(v, n)]),
    "seal-no-announce": ("silent_seal_rounds", lambda v, n, r: [_positive(v)]),
    "crash-mid-fetch": ("fetch_crashes", lambda v, n, r: [_site_round(v, n)]),
    "crash-mid-write": ("write_crashes", lambda v, n, r: [_site_round(v, n)]),
    "bad-update": ("bad_updates", lambda v, n, r: [_bad_update(v, n)]),
    "straggler": ("stragglers", lambda v, n, r: [_straggler(v, n)]),
}
_SCALARS: dict[str, tuple[str, Callable[[str], float | int]]] = {
    "drop-sends": ("drop_sends", _percentage),
    "recover-after": ("recover_after", lambda v: _positive(v)),
}
_SETS = ("leader_crash_rounds", "dishonest_leader_rounds", "silent_seal_rounds")
_LISTS = (
    "site_crashes",
    "fetch_crashes",
    "write_crashes",
    "bad_updates",
    "stragglers",
)


def _straggler(value: str, num_sites: int) -> tuple[int, int, float]:
    """`SITE@R:SECONDS`: that site's update for round R held back that long."""
    where, _, seconds = value.rpartition(":")
    delay = float(seconds)
    if not 0 < delay <= 3600:
        raise ConfigError(f"a straggler's delay must be 0-3600 s, got {seconds}")
    return (*_site_round(where, num_sites), delay)


def _site_round(text: str, num_sites: int) -> tuple[int, int]:
    """`SITE@R` (SITE counted from 1) as (site index, round)."""
    site, _, round = text.partition("@")
    if not 1 <= int(site) <= num_sites:
        raise ConfigError(f"site {site} is not one of 1..{num_sites}")
    return int(site) - 1, _positive(round)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"{value} is not a positive number")
    return value


NO_FAULTS = FaultPlan()
