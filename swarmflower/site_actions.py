"""What a site's protocol core and its driver say to each other.

The core (`site_core.SiteCore`) answers every event with a list of these
actions; a driver (`peer.SwarmPeer` for threads and real sites, the Ray
engine's simulated swarm) carries them out and feeds the answers back. Also
here: how a driver paces the core (`PeerConfig`) and what the core records
(`PeerLog`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from flwr.app import ArrayRecord

from swarmflower.app_calls import AppFailure
from swarmflower.ledger import Reason, SwarmParams
from swarmflower.round_rules import default_update_wait
from swarmflower.strategies.update_audit import UpdateAudit
from swarmflower.transport.base import PeerMessage

AGREED_GRACE_S = 1.5  # a finished site's stay once every site holds its head


# -- what a driver does for the core ------------------------------------------


@dataclass(frozen=True)
class Train:
    """Run the site's ClientApp on `model`; answer with `SiteCore.trained`."""

    round: int
    model: ArrayRecord
    config: dict


@dataclass(frozen=True)
class Send:
    """Deliver `message` to the site at `to` (lost if it is down)."""

    to: str
    message: PeerMessage


@dataclass(frozen=True)
class FetchBlock:
    """Ask `sources` in turn for a block by hash; answer with `block_fetched`."""

    block_hash: bytes
    sources: tuple[str, ...]


@dataclass(frozen=True)
class FetchArrays:
    """Ask `sources` for arrays by hash; answer with `arrays_fetched`."""

    digest: bytes
    sources: tuple[str, ...]


@dataclass(frozen=True)
class FetchBlob:
    """Ask `sources` for a strategy state by hash; answer with `blob_fetched`."""

    digest: bytes
    sources: tuple[str, ...]


@dataclass(frozen=True)
class FetchChain:
    """Ask any peer for canonical blocks `start` <= height < `end`; answer
    with `chain_fetched`: how a site that was away catches up."""

    start: int
    end: int


@dataclass(frozen=True)
class Crash:
    """The fault plan kills the site here; the core does nothing more."""

    why: str


Action = Train | Send | FetchBlock | FetchArrays | FetchBlob | FetchChain | Crash


# -- configuration and record ---------------------------------------------------


@dataclass(frozen=True)
class PeerConfig:
    """How a site paces a round; the swarm-wide values come from the genesis.

    The leader seals once every site's update is in, or `update_wait` seconds
    after the round started with at least `min_peers` updates; backup `v`
    may seal `v * round_timeout` seconds after the round started.
    `logical_time` stamps blocks from their parent (parent + 1 s, or the
    backup's earliest slot), so a simulation's ledger does not depend on the
    clock; otherwise the driver's time is Unix time and stamps follow it.

    `gossip_s` (None: off) is how often the driver asks a random peer for its
    head (anti-entropy). `linger_s` is how long a finished site keeps serving
    blocks and models while some site does not yet report its head: it
    leaves soon after every site agrees (`agreed_grace_s`, so that each sees
    it agree too), after `linger_s` when a majority does, and after
    `3 * linger_s` in any case.
    """

    rounds: int
    round_timeout: float
    min_peers: int
    update_wait: float
    backups: int = 2
    logical_time: bool = True
    gossip_s: float | None = None
    linger_s: float = 0.0
    agreed_grace_s: float = AGREED_GRACE_S
    start_grace: float = 0.0  # round 1's wait for every site (see SwarmParams)

    @classmethod
    def of_swarm(
        cls, params: SwarmParams, update_wait: float | None = None, **pacing
    ) -> PeerConfig:
        """The swarm-wide values from the genesis (`update_wait` defaulting
        to `round_rules`'), and a driver's own pacing (`backups`, gossip...)."""
        if update_wait is None:
            update_wait = default_update_wait(params.round_timeout)
        return cls(
            rounds=params.rounds,
            round_timeout=float(params.round_timeout),
            min_peers=params.min_peers,
            update_wait=update_wait,
            start_grace=float(params.start_grace),
            **pacing,
        )


@dataclass
class Adoption:
    """A model this site adopted, and how it knew it was the right one."""

    round: int
    block_hash: bytes
    model_hash: bytes
    recomputed: bool


@dataclass(frozen=True)
class RoundAudit:
    """What a round's merge did to each update, as a verifier redid it."""

    updates: Mapping[int, UpdateAudit]  # site index -> norm, distance
    held_back: tuple[int, ...] = ()  # sites clipped or left out


@dataclass
class PeerLog:
    """What a site did, for tests and reports."""

    adopted: list[Adoption] = field(default_factory=list)
    sealed: list[tuple[int, int, Reason]] = field(default_factory=list)
    refused: list[tuple[int, bytes, str]] = field(default_factory=list)
    trained: list[int] = field(default_factory=list)
    refused_updates: list[tuple[int, int, str]] = field(default_factory=list)
    switched: list[str] = field(default_factory=list)  # one line per fork switch
    failed: list[tuple[int, AppFailure]] = field(default_factory=list)  # app calls
    # round -> the sites it had no update from, when it waited as the
    # round's leader short of min_peers (said once a round)
    waiting: dict[int, tuple[str, ...]] = field(default_factory=dict)
    # round -> the train metrics this site's ClientApp replied with
    train_metrics: dict[int, dict[str, float]] = field(default_factory=dict)
    fetched: list[tuple[str, bytes]] = field(default_factory=list)  # kind, hash
    late: list[tuple[int, int]] = field(default_factory=list)  # (round, site)
    sat_out: list[int] = field(default_factory=list)  # rounds it was not drawn
    joined: int | None = None  # the round whose block enrolled it (newcomers)
    # (round, "enrolled" | "left", site) for each change a block it adopted made
    membership: list[tuple[int, str, str]] = field(default_factory=list)
    left: int | None = None  # the round whose block took its leave
    # (round, rank) when it began a round as its leader (0) or k-th backup
    elected: list[tuple[int, int]] = field(default_factory=list)
    # round -> what its merge did to each update (norms, distances, who was
    # clipped or left out), where this site redid the merge
    audits: dict[int, RoundAudit] = field(default_factory=dict)
