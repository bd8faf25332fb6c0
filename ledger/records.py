"""Plain typed values that cross the ledger's interface."""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from eth_utils import keccak, to_checksum_address


class Reason(enum.IntEnum):
    """Why a round was sealed by the elected proposer at its view."""

    NORMAL = 0
    LEADER_TIMEOUT = 1
    BAD_MERGE = 2


class ImportOutcome(enum.Enum):
    """What importing a valid block did to the replica."""

    ADOPTED = "adopted"  # the block is now on the canonical chain
    SIDE = "side"  # valid, kept, but it lost the fork choice
    KNOWN = "known"  # already imported before


@dataclass(frozen=True)
class FoundingSite:
    """A site enrolled at genesis: its address and certificate fingerprint."""

    address: str
    cert_fingerprint: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", to_checksum_address(self.address))
        if len(self.cert_fingerprint) != 32:
            raise ValueError("cert_fingerprint must be 32 bytes (a SHA-256 digest)")


DEFAULT_MAX_EXAMPLES = 10_000_000
DEFAULT_MAX_UPDATE_RATIO = 1000.0


@dataclass(frozen=True)
class SwarmParams:
    """Swarm-wide parameters fixed at genesis.

    `max_examples` and `max_update_ratio` bound what one site's update may
    weigh and how far it may move the model (see `round_protocol`): without
    them one enrolled site could take over the weighting or overflow the
    honest sites' training.
    """

    rounds: int
    round_timeout: int  # seconds a leader has before the next backup may seal
    min_peers: int
    strategy: str = "FedAvg"
    max_examples: int = DEFAULT_MAX_EXAMPLES  # largest num_examples of an update
    # ||update - model|| may be at most this times max(||model||, 1)
    max_update_ratio: float = DEFAULT_MAX_UPDATE_RATIO
    # sites drawn to train each round (0: every site), as Flower's
    # fraction_train samples nodes; see round_rules.drawn_sites
    train_sites: int = 0
    # seconds round 1 waits for every founding site before it starts with
    # min_peers (sites start their processes at different times)
    start_grace: int = 0
    # merge the means of seeded buckets of this many updates (0: off; see
    # strategies/bucketing.py); every verifier buckets alike
    bucketing: int = 0

    def __post_init__(self) -> None:
        names = ("rounds", "round_timeout", "min_peers", "train_sites", "start_grace")
        names += ("bucketing",)
        for name in names:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"SwarmParams.{name} must be a non-negative int")
        if self.bucketing == 1:
            raise ValueError("SwarmParams.bucketing must be 0 (off) or at least 2")
        if len(self.strategy.encode()) > 64:
            raise ValueError("SwarmParams.strategy is at most 64 bytes")
        count = self.max_examples
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ValueError("SwarmParams.max_examples must be an int of at least 1")
        ratio = self.max_update_ratio
        if (
            not isinstance(ratio, int | float)
            or isinstance(ratio, bool)
            or not math.isfinite(ratio)
            or ratio <= 0
        ):
            raise ValueError("SwarmParams.max_update_ratio must be finite and > 0")
        # 1000 and 1000.0 are one setting, and must give one swarm id.
        object.__setattr__(self, "max_update_ratio", float(ratio))

    def to_dict(self) -> dict[str, int | float | str]:
        """The canonical form in the genesis JSON.

        The update limits, `train_sites`, `start_grace` and `bucketing` appear
        only when
        they differ from the defaults, so a swarm founded before they existed
        keeps its swarm id; other values are in the JSON, hence in the id.
        """
        data: dict[str, int | float | str] = {
            "rounds": self.rounds,
            "round_timeout": self.round_timeout,
            "min_peers": self.min_peers,
            "strategy": self.strategy,
        }
        if self.max_examples != DEFAULT_MAX_EXAMPLES:
            data["max_examples"] = self.max_examples
        if self.max_update_ratio != DEFAULT_MAX_UPDATE_RATIO:
            data["max_update_ratio"] = self.max_update_ratio
        if self.train_sites:
            data["train_sites"] = self.train_sites
        if self.start_grace:
            data["start_grace"] = self.start_grace
        if self.bucketing:
            data["bucketing"] = self.bucketing
        return data


@dataclass(frozen=True)
class Genesis:
    """Everything that defines a swarm's first block; its hash is the swarm id."""

    sites: tuple[FoundingSite, ...]
    initial_model_hash: bytes
    params: SwarmParams
    timestamp: int = 0
    # A Flower app project's plan (strategy options, per-round configs, run
    # config, a hash of its files) as plain JSON values; in the JSON, hence
    # in the swarm id, only when the swarm plays such an app.
    app: Mapping[str, Any] | None = field(default=None, hash=False)

    def to_json(self) -> str:
        """Canonical JSON: the same genesis always gives the same bytes."""
        data: dict[str, Any] = {
            "sites": [[s.address, s.cert_fingerprint.hex()] for s in self.sites],
            "initial_model_hash": self.initial_model_hash.hex(),
            "params": self.params.to_dict(),
            "timestamp": self.timestamp,
        }
        if self.app is not None:
            data["app"] = self.app
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Genesis:
        data = json.loads(text)
        return cls(
            sites=tuple(
                FoundingSite(address, bytes.fromhex(fp))
                for address, fp in data["sites"]
            ),
            initial_model_hash=bytes.fromhex(data["initial_model_hash"]),
            params=SwarmParams(**data["params"]),
            timestamp=data["timestamp"],
            app=data.get("app"),
        )

    def digest(self) -> bytes:
        return keccak(text=self.to_json())


@dataclass(frozen=True)
class Enrollment(FoundingSite):
    """A site admitted at run time, carried by the next round's block, with
    the `host:port` where the members dial it ("" if it dials out only)."""

    listen: str = ""


@dataclass(frozen=True)
class Membership:
    """Who belongs to the swarm as of one block.

    `roster` lists every site ever enrolled, founding sites first (genesis
    order), then newcomers in the order the chain enrolled them: a site's
    position is its index in offers and never changes. `left` are the
    roster's sites that have left; `dial` maps newcomers to their listen
    addresses as the chain carried them.
    """

    roster: tuple[str, ...]
    left: frozenset[str] = frozenset()
    dial: tuple[tuple[str, str], ...] = ()

    @cached_property
    def members(self) -> tuple[str, ...]:
        """The sites that belong now, in roster order."""
        if not self.left:
            return self.roster
        return tuple(a for a in self.roster if a not in self.left)

    def after(self, record: RoundRecord) -> Membership:
        """The membership once `record`'s enrollments and leaves apply."""
        if not record.enrolled and not record.left:
            return self
        return Membership(
            self.roster + tuple(e.address for e in record.enrolled),
            self.left | frozenset(record.left),
            self.dial + tuple((e.address, e.listen) for e in record.enrolled),
        )


@dataclass(frozen=True)
class BlockRef:
    """A block's place: height (= round), hash, and view."""

    height: int
    hash: bytes
    view: int = 0


@dataclass(frozen=True)
class RoundRecord:
    """One sealed round as the ledger holds it."""

    round: int
    view: int
    reason: Reason
    leader: str
    block_hash: bytes
    timestamp: int
    model_hash: bytes
    state_hash: bytes
    commitments: tuple = ()  # tuple[Commitment, ...], sorted by site
    skipped: tuple[str, ...] = ()  # electees passed over by a raised view
    revived: tuple[str, ...] = ()
    enrolled: tuple[Enrollment, ...] = field(default=())
    left: tuple[str, ...] = ()  # sites that left with this block (signed requests)

    @property
    def contributors(self) -> tuple[str, ...]:
        """The sites whose updates were merged, in the fixed (address) order."""
        return tuple(c.site for c in self.commitments)
