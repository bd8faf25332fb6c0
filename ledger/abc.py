"""The ledger's layers, stated as interfaces (after py-evm's `eth/abc.py`).

The rest of swarmflower depends on `LedgerAPI` and `BlockSourceAPI` only;
py-evm, sqlite and the wire format stay behind them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence

from eth_keys.datatypes import PrivateKey

from .commitments import Commitment
from .records import BlockRef, Enrollment, Genesis, ImportOutcome, Reason, RoundRecord


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


class LedgerAPI(BlockSourceAPI):
    """One site's replica: validates what it imports, elects, seals rounds."""

    genesis: Genesis

    @property
    @abstractmethod
    def swarm_id(self) -> bytes:
        """The genesis hash; commitments are signed over it."""

    @abstractmethod
    def electees(self, round: int, count: int | None = None) -> tuple[str, ...]:
        """Leader then ordered backups of `round` (known once round-1 is sealed)."""

    @abstractmethod
    def leader(self, round: int) -> str:
        """The site elected to lead `round` (view 0)."""

    @abstractmethod
    def proposer(self, round: int, view: int) -> str:
        """The site that may seal `round` at `view`."""

    @abstractmethod
    def is_enrolled(self, site: str) -> bool:
        """Whether `site` (an address) is a member at the head."""

    @abstractmethod
    def knows(self, block_hash: bytes) -> bool:
        """Whether a valid block with this hash was imported here (any branch)."""

    @abstractmethod
    def model_hash(self, round: int) -> bytes:
        """The merged model's hash of a sealed round (0: the initial model)."""

    @abstractmethod
    def submit_commitment(self, commitment: Commitment) -> None:
        """Check a commitment for the next round and keep it for sealing."""

    @abstractmethod
    def pending_commitments(self) -> tuple[Commitment, ...]:
        """The checked commitments held for the next round."""

    @abstractmethod
    def commit(
        self, key: PrivateKey, round: int, update_hash: bytes, num_examples: int
    ) -> Commitment:
        """Sign this site's commitment for `round` (and hold it here)."""

    @abstractmethod
    def enroll(self, enrollment: Enrollment) -> None:
        """Hold a vetted site admission for the next round sealed here."""

    @abstractmethod
    def verify(self) -> BlockRef:
        """Re-validate everything from genesis; return the (unchanged) head."""

    @abstractmethod
    def propose(
        self,
        key: PrivateKey,
        round: int,
        model_hash: bytes,
        state_hash: bytes,
        commitments: Sequence[Commitment],
        view: int = 0,
        reason: Reason = Reason.NORMAL,
        enrollments: Sequence[Enrollment] = (),
        timestamp: int | None = None,
    ) -> bytes:
        """Build and seal the block of `round` without adopting it."""

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
    ) -> bytes:
        """Build, seal and adopt the block of `round`; return its RLP bytes.

        `commitments` and `enrollments` default to those held by
        `submit_commitment` and `enroll`.
        """

    @abstractmethod
    def import_block(self, data: bytes) -> ImportOutcome:
        """Validate and store a block; raise an InvalidBlock subclass if refused."""

    @abstractmethod
    def sync(self, peer: BlockSourceAPI) -> int:
        """Fetch and import what `peer` has that this replica lacks."""

    @abstractmethod
    def round(self, round: int) -> RoundRecord:
        """The canonical record of a sealed round."""

    @abstractmethod
    def rounds(self) -> Iterator[RoundRecord]:
        """Every sealed round on the canonical chain, in order."""

    @abstractmethod
    def close(self) -> None: ...
