"""Plain typed values that cross the ledger's interface."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class SwarmParams:
    """Swarm-wide parameters fixed at genesis."""

    rounds: int
    round_timeout: int  # seconds a leader has before the next backup may seal
    min_peers: int
    strategy: str = "FedAvg"

    def __post_init__(self) -> None:
        for name in ("rounds", "round_timeout", "min_peers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"SwarmParams.{name} must be a non-negative int")
        if len(self.strategy.encode()) > 64:
            raise ValueError("SwarmParams.strategy is at most 64 bytes")


@dataclass(frozen=True)
class Genesis:
    """Everything that defines a swarm's first block; its hash is the swarm id."""

    sites: tuple[FoundingSite, ...]
    initial_model_hash: bytes
    params: SwarmParams
    timestamp: int = 0

    def to_json(self) -> str:
        """Canonical JSON: the same genesis always gives the same bytes."""
        return json.dumps(
            {
                "sites": [[s.address, s.cert_fingerprint.hex()] for s in self.sites],
                "initial_model_hash": self.initial_model_hash.hex(),
                "params": {
                    "rounds": self.params.rounds,
                    "round_timeout": self.params.round_timeout,
                    "min_peers": self.params.min_peers,
                    "strategy": self.params.strategy,
                },
                "timestamp": self.timestamp,
            },
            sort_keys=True,
            separators=(",", ":"),
        )

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
        )

    def digest(self) -> bytes:
        return keccak(text=self.to_json())


class Enrollment(FoundingSite):
    """A site admitted at run time, carried by the next round's block."""


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

    @property
    def contributors(self) -> tuple[str, ...]:
        """The sites whose updates were merged, in the fixed (address) order."""
        return tuple(c.site for c in self.commitments)
