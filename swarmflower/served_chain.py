"""The blocks a peer serves to others, readable from their threads.

A replica (py-evm) has one owner thread; other peers' fetches arrive on
transport threads. The owner copies what it may serve here after each change
(its canonical chain, and the block whose model it adopted), so serving
never touches the replica.
"""

from __future__ import annotations

import threading

from swarmflower.ledger import BlockRef, LedgerAPI


class ServedChain:
    """A thread-safe copy of a replica's canonical chain, by height and hash."""

    def __init__(self, genesis: BlockRef) -> None:
        self._lock = threading.Lock()
        self._hashes: list[bytes] = []  # canonical block hashes, height 1 first
        self._blocks: dict[bytes, bytes] = {}
        self._head = genesis
        self._adopted = genesis

    def refresh(self, ledger: LedgerAPI) -> None:
        """Copy the replica's canonical chain where it changed (owner thread)."""
        head = ledger.head()
        with self._lock:
            if head == self._head:
                return
            keep = min(len(self._hashes), head.height)
        while keep > 0 and ledger.block_hash(keep) != self._hashes[keep - 1]:
            keep -= 1
        added = [
            (ledger.block_hash(h), ledger.block_bytes(h))
            for h in range(keep + 1, head.height + 1)
        ]
        with self._lock:
            del self._hashes[keep:]
            for block_hash, data in added:
                self._hashes.append(block_hash)
                self._blocks[block_hash] = data
            self._head = head

    def adopted(self, ref: BlockRef) -> None:
        """The block whose model the owner now holds: what it reports as head."""
        with self._lock:
            self._adopted = ref

    @property
    def adopted_head(self) -> BlockRef:
        with self._lock:
            return self._adopted

    def block(self, block_hash: bytes) -> bytes | None:
        with self._lock:
            return self._blocks.get(block_hash)

    def canonical(self, start: int, end: int) -> list[bytes]:
        """Canonical blocks `start` <= height < `end` (heights from 1)."""
        with self._lock:
            hashes = self._hashes[max(start, 1) - 1 : max(end - 1, 0)]
            return [self._blocks[h] for h in hashes]
