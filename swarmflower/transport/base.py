"""How peers reach each other: the interface every transport implements.

The round logic lives in `SwarmPeer` only; a transport moves two kinds of
messages (an update offered to the round's electees, a sealed block for
everyone) and answers fetches by hash from other peers' stores. In-process
threads, Ray actors and gRPC over mutual TLS all implement this interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from flwr.app import ArrayRecord

from swarmflower.ledger import BlockRef, Commitment


@dataclass(frozen=True)
class UpdateOffer:
    """A site's trained update for one round, with its signed commitment."""

    round: int
    commitment: Commitment
    arrays: ArrayRecord
    site_index: int


@dataclass(frozen=True)
class BlockAnnouncement:
    """A sealed block as RLP bytes; receivers validate it on their own replica."""

    round: int
    block: bytes


@dataclass(frozen=True)
class JoinRequest:
    """A site enrolled by the coordinator asks the members to put it on the
    ledger: its certificate (issued by the swarm CA, naming its address) and
    where it listens ("" if it only dials out)."""

    address: str
    cert_fingerprint: bytes
    listen: str
    cert_pem: bytes


@dataclass(frozen=True)
class LeaveRequest:
    """A member's signed request to leave (`ledger.commitments.sign_leave`)."""

    site: str
    signature: bytes


PeerMessage = UpdateOffer | BlockAnnouncement | JoinRequest | LeaveRequest


class PeerServiceAPI(ABC):
    """What a peer answers when others fetch from it (called from their side)."""

    @abstractmethod
    def serve_arrays(self, digest: bytes) -> ArrayRecord | None: ...

    @abstractmethod
    def serve_blob(self, digest: bytes) -> bytes | None: ...

    @abstractmethod
    def serve_blocks(self, start: int, end: int) -> list[bytes]:
        """Canonical blocks `start` <= height < `end` that this peer holds."""

    @abstractmethod
    def serve_block(self, block_hash: bytes) -> bytes | None:
        """A block of this peer's chain by its hash: how a replica that lacks
        a block's parent walks back until the block connects."""

    @abstractmethod
    def serve_head(self) -> BlockRef:
        """This peer's canonical head, for anti-entropy and for knowing when
        enough of the swarm agrees to stop serving."""


class TransportAPI(ABC):
    """One peer's connection to the swarm."""

    address: str

    @abstractmethod
    def serve(self, service: PeerServiceAPI) -> None:
        """Answer other peers' fetches with `service`."""

    def add_peer(self, address: str, target: str) -> None:
        """Learn where a newly enrolled site listens (transports that dial)."""
        return None  # in-process and Ray transports reach every site already

    @abstractmethod
    def send(self, to: str, message: PeerMessage) -> None:
        """Deliver to one peer; a peer that is down simply does not get it."""

    @abstractmethod
    def broadcast(self, message: PeerMessage) -> None:
        """Deliver to every other peer."""

    @abstractmethod
    def receive(self, timeout: float) -> PeerMessage | None:
        """The next message, or None after `timeout` seconds."""

    @abstractmethod
    def fetch_arrays(self, digest: bytes, sources: Sequence[str]) -> ArrayRecord | None:
        """Ask `sources` in turn; the caller checks the hash of what comes back."""

    @abstractmethod
    def fetch_blob(self, digest: bytes, sources: Sequence[str]) -> bytes | None: ...

    @abstractmethod
    def fetch_blocks(self, start: int, end: int) -> list[bytes]:
        """Blocks from any reachable peer, for a replica that fell behind."""

    @abstractmethod
    def fetch_block(self, block_hash: bytes, sources: Sequence[str]) -> bytes | None:
        """A block by hash from `sources` in turn; the caller validates it."""

    @abstractmethod
    def peer_head(self, peer: str) -> BlockRef | None:
        """`peer`'s canonical head, or None if it cannot be reached now."""

    @abstractmethod
    def disconnect(self) -> None:
        """Leave the swarm abruptly, as a killed process does."""

    @property
    @abstractmethod
    def alive(self) -> bool:
        """False once this peer has been cut off (crashed)."""
