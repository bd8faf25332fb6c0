"""The ledger's layers, stated as interfaces (after py-evm's `eth/abc.py`).

The rest of swarmflower depends on `LedgerAPI` only; py-evm, sqlite and the
wire format stay behind it. `BlockSourceAPI` is what `Ledger.sync` pulls from.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence

from eth_keys.datatypes import PrivateKey

from .commitments import Commitment
from .records import (
    BlockRef,
    Enrollment,
    Genesis,
    ImportOutcome,
    Membership,
    Reason,
    RoundRecord,
)


class BlockSourceAPI(ABC):
    """Anything that serves canonical blocks as RLP bytes: a replica or a peer stub."""

    @abstractmethod
    def head(self) -> BlockRef:
        """The canonical head."""

    @abstractmethod
    def block_hash(self, height: int) -> bytes:
        """Hash of the canonical block at `height`."""

    @abstractmethod
    def block_bytes(self, height: int) -> bytes:
        """RLP bytes of the canonical block at `height`."""

    @abstractmethod
    def blocks_range(self, start: int, end: int) -> list[bytes]:
        """RLP bytes of canonical blocks `start` <= height < `end`."""


class BlockStoreAPI(ABC):
    """Durable storage of a replica: genesis and every valid block, in import order."""

    @abstractmethod
    def genesis_json(self) -> str | None:
        """The stored genesis, or None for an empty store."""

    @abstractmethod
    def initialize(self, genesis_json: str, genesis_hash: bytes) -> None:
        """Record the genesis of a new replica (once)."""

    @abstractmethod
    def append(self, block_hash: bytes, height: int, data: bytes, head: bytes) -> None:
        """Store one imported block and the resulting head, atomically."""

    @abstractmethod
    def blocks(self) -> Iterator[bytes]:
        """Every stored block, in the order it was imported (parents first)."""

    @abstractmethod
    def stored_head(self) -> bytes | None:
        """The head hash recorded with the last committed block."""

    @abstractmethod
    def close(self) -> None: ...


class ElectionAPI(ABC):
    """Who may seal the round after a given block, from on-chain data only."""

    @abstractmethod
    def electees(self, parent_header, count: int) -> tuple[str, ...]:
        """Leader then ordered backups (at most `count`) of the next round."""


class LedgerAPI(ABC):
    """One site's replica, as the engines use it (peer, in-process, Ray).

    Each member says what an engine needs it for. `Ledger` offers more to the
    ledger's own tests and tools (`commit`, `enroll`, `propose`, `sync`,
    `leader`, ...); engines do not depend on those.
    """

    genesis: Genesis  # swarm params, genesis time, initial model hash

    @property
    @abstractmethod
    def swarm_id(self) -> bytes:
        """The genesis hash: commitments are signed and checked over it."""

    @abstractmethod
    def head(self) -> BlockRef:
        """The canonical head: how far this site is, what it announces."""

    @abstractmethod
    def block_hash(self, height: int) -> bytes:
        """Hash of the canonical block at `height`: is an adopted block still there."""

    @abstractmethod
    def block_bytes(self, height: int) -> bytes:
        """RLP bytes of the canonical block at `height`: what a site serves."""

    @abstractmethod
    def knows(self, block_hash: bytes) -> bool:
        """Whether a peer's announced head is already here (any branch)."""

    @abstractmethod
    def electees(self, round: int, count: int | None = None) -> tuple[str, ...]:
        """Leader then ordered backups of `round`: where updates go, who waits."""

    @abstractmethod
    def proposer(self, round: int, view: int) -> str:
        """The site that may seal `round` at `view`: checked before sealing."""

    @abstractmethod
    def seal_round(
        self,
        key: PrivateKey,
        round: int,
        model_hash: bytes,
        state_hash: bytes,
        commitments: Sequence[Commitment] | None = None,
        view: int = 0,
        reason: Reason = Reason.NORMAL,
        enrollments: Sequence[Enrollment] | None = None,
        timestamp: int | None = None,
        leaves: Sequence[tuple[str, bytes]] | None = None,
    ) -> bytes:
        """Seal `round` as its leader or a backup and adopt it; the block's bytes.

        `enrollments` admit new sites; `leaves` are (site, its signed leave).
        """

    @abstractmethod
    def membership(self, block_hash: bytes | None = None) -> Membership:
        """Who belongs as of a block held here (default: the head)."""

    @abstractmethod
    def import_block(self, data: bytes) -> ImportOutcome:
        """Validate and store a peer's block; an InvalidBlock subclass if refused."""

    @abstractmethod
    def round(self, round: int) -> RoundRecord:
        """A sealed round's record: the model to adopt, its time, its commitments."""

    @abstractmethod
    def rounds(self) -> Iterator[RoundRecord]:
        """Every sealed round on the canonical chain, in order: the run's report."""

    @abstractmethod
    def verify(self) -> BlockRef:
        """Re-validate everything from genesis (audits, fault drills); the head."""

    @abstractmethod
    def close(self) -> None:
        """Release the on-disk store when the site stops."""
