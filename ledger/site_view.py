"""Many simulated sites over one `Ledger` replica, each seeing only its own blocks.

A simulation of hundreds of sites cannot afford a replica (an EVM, a state
database) per site, nor to decode and re-execute every block once per site.
`SharedReplica` validates each block once for all; a `SiteView` keeps only
the hashes its site has received and its own canonical chain, so it answers
as a full replica holding exactly those blocks would (same head, records,
elections, outcomes)::

    shared = SharedReplica(Ledger(genesis))
    a, b = SiteView(shared), SiteView(shared)
    a.import_block(data)  # validated here, once
    b.import_block(data)  # only a lookup
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from eth_keys.datatypes import PrivateKey

from .abc import LedgerAPI
from .commitments import Commitment
from .election import MAX_VIEW
from .errors import LedgerStateError, UnknownParent
from .forkchoice import majority, preferred
from .records import (
    BlockRef,
    Enrollment,
    ImportOutcome,
    Membership,
    Reason,
    RoundRecord,
)
from .replica import Ledger


class SharedReplica:
    """One `Ledger` and the caches that all views of it share.

    Blocks are looked up by their bytes (a bytes object caches its hash), so
    the same block reaching 1000 views is decoded and validated once.
    """

    def __init__(self, ledger: Ledger):
        self.ledger = ledger
        self._blocks: dict[bytes, tuple[bytes, bytes, BlockRef]] = {}
        self._ids: dict[bytes, tuple[bytes, bytes]] = {}  # decoded, not validated
        self._data: dict[bytes, bytes] = {}  # block hash -> bytes, for serving
        self._electees: dict[bytes, tuple[str, ...]] = {}  # by parent hash

    def identify(self, data: bytes) -> tuple[bytes, bytes]:
        """(hash, parent hash) of block bytes, decoded at most once.

        MalformedBlock if the bytes are no block.
        """
        known = self._blocks.get(data)
        if known is not None:
            return known[0], known[1]
        ids = self._ids.get(data)
        if ids is None:
            ids = self._ids[data] = self.ledger.block_ids(data)
        return ids

    def admit(self, data: bytes) -> BlockRef:
        """Validate a block into the shared replica (unless it holds it); its ref.

        The replica's InvalidBlock subclasses propagate unchanged.
        """
        known = self._blocks.get(data)
        if known is not None:
            return known[2]
        block_hash, parent = self.identify(data)
        try:
            if not self.ledger.knows(block_hash):
                self.ledger.import_block(data)
        finally:
            self._ids.pop(data, None)  # refused bytes are not kept
        ref = self.ledger.block_ref(block_hash)
        self._blocks[data] = (block_hash, parent, ref)
        self._data.setdefault(block_hash, data)
        return ref

    def block_data(self, block_hash: bytes) -> bytes:
        """RLP bytes of an admitted block, without re-encoding it per view."""
        data = self._data.get(block_hash)
        return data if data is not None else self.ledger.block_data(block_hash)

    def electees(self, parent_hash: bytes, count: int = MAX_VIEW) -> tuple[str, ...]:
        """Leader then backups of the round after `parent_hash`, asked once.

        The contract's list for a smaller count is a prefix of the full one.
        """
        found = self._electees.get(parent_hash)
        if found is None:
            found = self._electees[parent_hash] = self.ledger.electees_after(
                parent_hash
            )
        return found[:count]


class SiteView(LedgerAPI):
    """One site's replica as seen by the site: only the blocks it received.

    It holds a ref per held block and its own canonical chain; everything
    else (bytes, records, elections) comes from the shared replica.
    """

    def __init__(self, shared: SharedReplica):
        self._shared = shared
        self.genesis = shared.ledger.genesis
        genesis_hash = shared.ledger.swarm_id
        self._held: dict[bytes, BlockRef] = {
            genesis_hash: shared.ledger.block_ref(genesis_hash)
        }
        self._children: dict[bytes, list[bytes]] = {}
        self._canonical: list[bytes] = [genesis_hash]

    # -- reading ------------------------------------------------------------

    @property
    def shared(self) -> SharedReplica:
        """The replica this view reads (and every other view of it)."""
        return self._shared

    @property
    def swarm_id(self) -> bytes:
        return self._canonical[0]

    def head(self) -> BlockRef:
        return self._held[self._canonical[-1]]

    def block_hash(self, height: int) -> bytes:
        return self._canonical_at(height)

    def block_bytes(self, height: int) -> bytes:
        if height == 0:
            raise LedgerStateError("genesis is rebuilt from Genesis, not shipped")
        return self._shared.block_data(self._canonical_at(height))

    def knows(self, block_hash: bytes) -> bool:
        return block_hash in self._held

    def round(self, round: int) -> RoundRecord:
        if round == 0:
            raise LedgerStateError("round 0 is genesis: no round was sealed")
        return self._shared.ledger.block_record(self._canonical_at(round))

    def rounds(self) -> Iterator[RoundRecord]:
        for block_hash in self._canonical[1:]:
            yield self._shared.ledger.block_record(block_hash)

    def membership(self, block_hash: bytes | None = None) -> Membership:
        block = self._canonical[-1] if block_hash is None else block_hash
        return self._shared.ledger.membership(block)

    def _canonical_at(self, height: int) -> bytes:
        if not 0 <= height < len(self._canonical):
            raise LedgerStateError(
                f"no block at height {height}: head is {len(self._canonical) - 1}"
            )
        return self._canonical[height]

    # -- election -----------------------------------------------------------

    def electees(self, round: int, count: int | None = None) -> tuple[str, ...]:
        if round < 1:
            raise LedgerStateError("round numbers start at 1")
        parent = self._canonical_at(round - 1)
        return self._shared.electees(parent, MAX_VIEW if count is None else count)

    def proposer(self, round: int, view: int) -> str:
        electorate = self.electees(round)
        if not 0 <= view < len(electorate):
            raise LedgerStateError(
                f"round {round} has {len(electorate)} electees; no view {view}"
            )
        return electorate[view]

    # -- producing and importing -------------------------------------------

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
        """Seal `round` on this site's block of `round - 1` and adopt it.

        A view holds nothing pending (commitments, enrollments, leaves): None
        means none.
        """
        if not 1 <= round <= self.head().height + 1:
            raise LedgerStateError(
                f"round {round} cannot be sealed: head is {self.head().height}"
            )
        data = self._shared.ledger.propose(
            key,
            round,
            model_hash,
            state_hash,
            commitments or (),
            view,
            reason,
            enrollments or (),
            timestamp,
            parent_hash=self._canonical[round - 1],
            leaves=leaves or (),
        )
        self.import_block(data)
        return data

    def import_block(self, data: bytes) -> ImportOutcome:
        """Take a block this site received; UnknownParent unless it holds the
        parent, even when the shared replica (another site) does."""
        block_hash, parent = self._shared.identify(data)
        if block_hash in self._held:
            return ImportOutcome.KNOWN
        if parent not in self._held:
            raise UnknownParent(
                f"block {block_hash.hex()}: parent {parent.hex()} unknown to this "
                "site; sync earlier blocks first",
                parent,
            )
        ref = self._shared.admit(data)
        self._held[block_hash] = ref
        self._children.setdefault(parent, []).append(block_hash)
        return self._choose(ref, parent)

    def _choose(self, ref: BlockRef, parent: bytes) -> ImportOutcome:
        """`Ledger._choose` over this site's blocks (see forkchoice.py)."""
        ledger = self._shared.ledger
        grand = parent if ref.height == 1 else ledger.block_parent(parent)
        anchor = self._held[grand]
        height, canonical = anchor.height, self._canonical
        if height >= len(canonical) or canonical[height] != anchor.hash:
            return ImportOutcome.SIDE  # extends a branch that already lost
        before = canonical[height + 1 :]
        del canonical[height + 1 :]
        while children := self._children.get(canonical[-1]):
            best = preferred((self._held[c] for c in children), self._final)
            assert best is not None
            canonical.append(best.hash)
        if before != canonical[height + 1 :]:
            return ImportOutcome.ADOPTED
        return ImportOutcome.SIDE

    def _final(self, block: BlockRef) -> bool:
        """`Ledger.is_final` over the children this site holds."""
        ledger = self._shared.ledger
        need = majority(len(ledger.membership(block.hash).members))
        return any(
            ledger.support(c) >= need for c in self._children.get(block.hash, ())
        )

    # -- verification -------------------------------------------------------

    def verify(self) -> BlockRef:
        """Re-validate this site's blocks on a fresh replica of the genesis and
        check that it reaches this site's head (fork choice included)."""
        fresh = Ledger(self.genesis, clock=None)
        held = sorted(self._held.values(), key=lambda ref: ref.height)
        for ref in held[1:]:
            fresh.import_block(self._shared.block_data(ref.hash))
        if fresh.head() != self.head():
            raise LedgerStateError(
                f"head {self.head().hash.hex()} is not the recomputed head "
                f"{fresh.head().hash.hex()}"
            )
        return fresh.head()

    def close(self) -> None:
        """Nothing to release: the shared replica owns the store."""
