"""What every engine starts a swarm from: checked parameters, the genesis, the
leader's strategy and the sites' simulated identities.

The in-process engine (`swarm.run_swarm`), the Ray engine
(`simulations.engine.ray_engine.run_ray_swarm`) and provisioning of real sites
(`provision.init_swarm`) all set up through here, so one configuration gives
one genesis, hence one ledger, whichever engine plays it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict, Unpack

from flwr.app import ArrayRecord

from swarmflower.codec import arrays_hash
from swarmflower.errors import ConfigError
from swarmflower.identity import SiteIdentity, simulated_identities
from swarmflower.ledger import FoundingSite, Genesis, SwarmParams
from swarmflower.ledger.records import DEFAULT_MAX_EXAMPLES, DEFAULT_MAX_UPDATE_RATIO
from swarmflower.round_rules import default_update_wait
from swarmflower.strategies import LeaderStrategy, build_strategy, leader_strategy


def swarm_params(
    num_sites: int,
    rounds: int,
    round_timeout: int,
    min_peers: int | None,
    strategy: str,
    *,
    max_examples: int = DEFAULT_MAX_EXAMPLES,
    max_update_ratio: float = DEFAULT_MAX_UPDATE_RATIO,
    train_sites: int = 0,
    start_grace: int = 0,
    bucketing: int = 0,
) -> SwarmParams:
    """Checked swarm-wide parameters; `min_peers` defaults to a majority (of
    the `train_sites` drawn each round, when only some are).

    `max_examples` and `max_update_ratio` are the update limits every site
    applies to every offered update (`round_protocol.update_problem`).
    """
    if num_sites < 1:
        raise ConfigError(f"sites must be at least 1, got {num_sites}")
    if rounds < 1:
        raise ConfigError(f"rounds must be at least 1, got {rounds}")
    if round_timeout < 1:
        raise ConfigError(f"round timeout must be at least 1 s, got {round_timeout}")
    if not 0 <= train_sites <= num_sites:
        raise ConfigError(
            f"train_sites must be between 0 (all) and {num_sites}, got {train_sites}"
        )
    training = train_sites or num_sites
    min_peers = training // 2 + 1 if min_peers is None else min_peers
    if not 1 <= min_peers <= training:
        raise ConfigError(
            f"min_peers must be between 1 and {training} (the sites that train "
            f"each round), got {min_peers}"
        )
    strategy = build_strategy(strategy).name  # refuses an unknown name
    try:  # SwarmParams checks the limits; say which value was refused
        return SwarmParams(
            rounds,
            round_timeout,
            min_peers,
            strategy,
            max_examples,
            max_update_ratio,
            train_sites,
            start_grace,
            bucketing,
        )
    except ValueError as exc:
        given = {"max_examples": max_examples, "max_update_ratio": max_update_ratio}
        given |= {"bucketing": bucketing} if bucketing else {}
        raise ConfigError(f"{exc}, got {given}") from None


def make_genesis(
    identities: Sequence[SiteIdentity], initial_arrays: ArrayRecord, params: SwarmParams
) -> Genesis:
    """The swarm's founding block: its sites, initial model hash and parameters
    (with the update limits every site holds every offered update to)."""
    return Genesis(
        sites=tuple(FoundingSite(i.address, i.cert_fingerprint) for i in identities),
        initial_model_hash=arrays_hash(initial_arrays),
        params=params,
    )


def check_initial_model(arrays: ArrayRecord, genesis: Genesis, source: str) -> None:
    """Refuse an initial model that is not the one the genesis names."""
    if arrays_hash(arrays) != genesis.initial_model_hash:
        raise ConfigError(
            f"{source}: does not hash to the initial model of the genesis "
            "(damaged, or of another swarm)"
        )


class SwarmSettings(TypedDict, total=False):
    """A simulated swarm's settings, the same for every engine (all optional).

    `min_peers` (default: a majority) updates seal a round; a leader silent
    for `round_timeout` seconds (default 10) is replaced by the next backup;
    the leader waits `update_wait` seconds (default: `default_update_wait`)
    for stragglers; `site_names` default to `site-1..N`; `seed` derives the
    sites' keys; `max_examples` and `max_update_ratio` are the genesis's
    update limits (`round_protocol.update_problem`); `train_sites` how many
    sites are drawn to train each round (default 0: all).
    """

    min_peers: int | None
    round_timeout: int
    update_wait: float | None
    site_names: Sequence[str] | None
    seed: int
    max_examples: int
    train_sites: int
    max_update_ratio: float


@dataclass(frozen=True)
class SwarmSetup:
    """One simulated swarm, ready for an engine to play."""

    names: list[str]
    identities: list[SiteIdentity]
    genesis: Genesis
    strategy: LeaderStrategy
    update_wait: float
    seed: int

    @property
    def params(self) -> SwarmParams:
        return self.genesis.params


def set_up_swarm(
    num_sites: int,
    initial_arrays: ArrayRecord,
    num_rounds: int,
    strategy: str | LeaderStrategy = "FedAvg",
    **settings: Unpack[SwarmSettings],
) -> SwarmSetup:
    """Check a simulated swarm's settings and found it: names, keys, genesis."""
    if num_sites < 2:
        raise ConfigError(f"a swarm needs at least 2 sites, got {num_sites}")
    unknown = set(settings) - set(SwarmSettings.__annotations__)
    if unknown:
        raise ConfigError(f"unknown swarm setting(s): {', '.join(sorted(unknown))}")
    names = list(settings.get("site_names") or default_names(num_sites))
    if len(names) != num_sites:
        raise ConfigError(f"{len(names)} site names for {num_sites} sites")
    chosen = leader_strategy(strategy)
    round_timeout = settings.get("round_timeout", 10)
    params = swarm_params(
        num_sites,
        num_rounds,
        round_timeout,
        settings.get("min_peers"),
        chosen.name,
        max_examples=settings.get("max_examples", DEFAULT_MAX_EXAMPLES),
        max_update_ratio=settings.get("max_update_ratio", DEFAULT_MAX_UPDATE_RATIO),
        train_sites=settings.get("train_sites", 0),
        bucketing=chosen.bucketing,
    )
    seed = settings.get("seed", 0)
    identities = simulated_identities(names, seed)
    update_wait = settings.get("update_wait")
    return SwarmSetup(
        names=names,
        identities=identities,
        genesis=make_genesis(identities, initial_arrays, params),
        strategy=chosen,
        update_wait=(
            default_update_wait(round_timeout) if update_wait is None else update_wait
        ),
        seed=seed,
    )


def default_names(num_sites: int) -> list[str]:
    return [f"site-{k + 1}" for k in range(num_sites)]
