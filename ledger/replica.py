"""`Ledger`: one site's replica of the swarm chain, behind `LedgerAPI`.

Every block is checked in the same order, cheapest first: seal, elected
proposer (asked of the contract on the parent state), transaction and nonce,
commitments and their signatures, then full re-execution against the
header's state root. Only then is it stored and offered to the fork choice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from eth_keys.datatypes import PrivateKey
from eth_utils import to_canonical_address, to_checksum_address

from swarmflower.round_rules import backup_delay

from .abc import BlockSourceAPI, BlockStoreAPI, ElectionAPI, LedgerAPI
from .commitments import (
    Commitment,
    canonical,
    pack_commitments,
    unpack_commitments,
    verify_all,
    verify_leave,
)
from .election import MAX_VIEW, ContractElection
from .errors import (
    BadRound,
    FutureBlock,
    InvalidBlock,
    LedgerStateError,
    MalformedBlock,
    ReplayedTransaction,
    StoreError,
    UnknownParent,
    UnknownSite,
    WrongProposer,
)
from .evm import CONTRACT_ADDRESS, EvmChain
from .forkchoice import majority, preferred
from .records import (
    BlockRef,
    Enrollment,
    Genesis,
    ImportOutcome,
    Membership,
    Reason,
    RoundRecord,
)
from .seal import parse_vanity, seal_header, seal_signer, vanity
from .store import SqliteBlockStore, resolve

SYNC_BATCH = 64
RECORD_CACHE = 16
MAX_DRIFT = 15  # seconds a block's timestamp may run ahead of the local clock


@dataclass(frozen=True)
class _Node:
    """A valid block known to this replica."""

    ref: BlockRef
    parent: bytes
    header: object
    record: RoundRecord | None
    sites: frozenset[bytes]  # enrolled after this block
    live: frozenset[bytes]  # electable after this block (mirrors the contract)
    support: int = 0  # commitments in it: sites that built on its parent


def _constructor_args(genesis: Genesis) -> tuple:
    p = genesis.params
    return (
        [to_canonical_address(s.address) for s in genesis.sites],
        [s.cert_fingerprint for s in genesis.sites],
        genesis.initial_model_hash,
        p.rounds,
        p.round_timeout,
        p.min_peers,
        p.strategy,
    )


class Ledger(LedgerAPI, BlockSourceAPI):
    """A replica: in memory, or on disk when given a store; a block source for
    another replica's `sync`."""

    def __init__(
        self,
        genesis: Genesis,
        store: BlockStoreAPI | None = None,
        clock: Callable[[], float] | None = time.time,
    ):
        """`clock` bounds how far in the future a block may be stamped (None: no
        bound, as when re-verifying history); a backup cannot claim its leader
        timed out before the timeout has really passed.
        """
        if len(genesis.initial_model_hash) != 32:
            raise ValueError("initial_model_hash must be 32 bytes")
        self.genesis = genesis
        self.clock = clock
        self._evm = EvmChain(
            _constructor_args(genesis), genesis.digest(), genesis.timestamp
        )
        header = self._evm.genesis_header
        sites = frozenset(to_canonical_address(s.address) for s in genesis.sites)
        root = _Node(BlockRef(0, header.hash), b"", header, None, sites, sites)
        self._nodes: dict[bytes, _Node] = {header.hash: root}
        self._children: dict[bytes, list[bytes]] = {}
        self._canonical: list[bytes] = [header.hash]
        self._records: dict[bytes, RoundRecord] = {}
        self._election: ElectionAPI = ContractElection(self._evm)
        self._pending: dict[str, Commitment] = {}
        self._pending_enrollments: dict[str, Enrollment] = {}
        self._pending_leaves: dict[str, bytes] = {}  # site -> its signature
        founding = tuple(s.address for s in genesis.sites)
        self._memberships: dict[bytes, Membership] = {header.hash: Membership(founding)}
        self._store = store

    # -- opening ------------------------------------------------------------

    @classmethod
    def create(
        cls,
        genesis: Genesis,
        path: str | Path | None = None,
        clock: Callable[[], float] | None = time.time,
    ) -> Ledger:
        """A new replica of `genesis`, kept on disk in folder `path` if given."""
        if path is None:
            return cls(genesis, clock=clock)
        store = SqliteBlockStore(path, create=True)
        if store.genesis_json() is not None:
            store.close()
            raise StoreError(f"{path} already holds a replica; use Ledger.open")
        ledger = cls(genesis, store, clock)
        store.initialize(genesis.to_json(), ledger.swarm_id)
        return ledger

    @classmethod
    def open(
        cls, path: str | Path, clock: Callable[[], float] | None = time.time
    ) -> Ledger:
        """Reopen a replica on disk, re-validating every stored block from genesis.

        `path` is the replica folder or a site folder holding it in `ledger/`.
        """
        store = SqliteBlockStore(resolve(path))
        try:
            text = store.genesis_json()
            if text is None:
                raise StoreError(f"{path}: the replica has no genesis")
            try:
                genesis = Genesis.from_json(text)
                # History is re-verified without the clock: checked on arrival.
                ledger = cls(genesis, clock=None)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                why = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
                raise StoreError(
                    f"{path}: the stored genesis is damaged ({why})"
                ) from exc
            if ledger.swarm_id != store.genesis_hash():
                raise StoreError(
                    f"{path}: stored genesis does not hash to its swarm id"
                )
            for number, data in enumerate(store.blocks(), start=1):
                try:
                    ledger._import(data)
                except InvalidBlock as exc:
                    raise StoreError(
                        f"{path}: stored block {number} (in import order): {exc}"
                    ) from exc
            if store.stored_head() != ledger.head().hash:
                raise StoreError(
                    f"{path}: stored head {(store.stored_head() or b'').hex()} is not "
                    f"the head {ledger.head().hash.hex()} recomputed from its blocks"
                )
        except BaseException:
            store.close()
            raise
        ledger._store = store
        ledger.clock = clock
        return ledger

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    # -- reading ------------------------------------------------------------

    @property
    def swarm_id(self) -> bytes:
        return self._canonical[0]

    def head(self) -> BlockRef:
        return self._nodes[self._canonical[-1]].ref

    def block_hash(self, height: int) -> bytes:
        return self._canonical_node(height).ref.hash

    def block_bytes(self, height: int) -> bytes:
        if height == 0:
            raise LedgerStateError("genesis is rebuilt from Genesis, not shipped")
        return self._evm.block_bytes(self._canonical_node(height).header)

    def blocks_range(self, start: int, end: int) -> list[bytes]:
        end = min(end, len(self._canonical))
        return [self.block_bytes(h) for h in range(max(start, 1), end)]

    def round(self, round: int) -> RoundRecord:
        if round == 0:
            raise LedgerStateError("round 0 is genesis: no round was sealed")
        return self._full_record(self._canonical_node(round))

    def rounds(self) -> Iterator[RoundRecord]:
        for block_hash in self._canonical[1:]:
            yield self._full_record(self._nodes[block_hash])

    def is_enrolled(self, site: str) -> bool:
        head = self._nodes[self._canonical[-1]]
        return to_canonical_address(site) in head.sites

    def knows(self, block_hash: bytes) -> bool:
        return block_hash in self._nodes

    def electable(self, site: str) -> bool:
        """Whether the contract may elect `site` to seal the next round: a
        member that has not been skipped as a silent electee since it last
        contributed (newcomers: once they have contributed)."""
        return to_canonical_address(site) in self._nodes[self._canonical[-1]].live

    def membership(self, block_hash: bytes | None = None) -> Membership:
        """Who belongs as of a known block (default: the head), on any branch.

        Walks back to the nearest block whose membership is known, then
        forward: a swarm whose members never change costs a dict lookup.
        """
        block_hash = self._canonical[-1] if block_hash is None else block_hash
        path: list[_Node] = []
        while block_hash not in self._memberships:
            node = self._known_node(block_hash)
            path.append(node)
            block_hash = node.parent
        membership = self._memberships[block_hash]
        for node in reversed(path):
            assert node.record is not None
            membership = membership.after(node.record)
            self._memberships[node.ref.hash] = membership
        return membership

    def _full_record(self, node: _Node) -> RoundRecord:
        """The node's round record with its commitments decoded from the block.

        Nodes keep no decoded commitments (a 1000-site round would hold ~250 KB
        of Python objects per block); a few recent records are cached.
        """
        cached = self._records.get(node.ref.hash)
        if cached is None:
            (tx,) = self._evm.block_transactions(node.header)
            blob = self._evm.artifact.function("sealRound").decode_call(tx.data)[5]
            cached = replace(
                node.record, commitments=unpack_commitments(blob, node.ref.height)
            )
            if len(self._records) >= RECORD_CACHE:
                self._records.pop(next(iter(self._records)))
            self._records[node.ref.hash] = cached
        return cached

    def _canonical_node(self, height: int) -> _Node:
        if not 0 <= height < len(self._canonical):
            raise LedgerStateError(
                f"no block at height {height}: head is {len(self._canonical) - 1}"
            )
        return self._nodes[self._canonical[height]]

    # -- by hash (site views over a shared replica) -------------------------

    def block_ref(self, block_hash: bytes) -> BlockRef:
        """A known block's place, on any branch: views keep no nodes of their own."""
        return self._known_node(block_hash).ref

    def block_record(self, block_hash: bytes) -> RoundRecord:
        """The full record (commitments too) of a known block, on any branch."""
        node = self._known_node(block_hash)
        if node.record is None:
            raise LedgerStateError("genesis: no round was sealed")
        return self._full_record(node)

    def block_data(self, block_hash: bytes) -> bytes:
        """RLP bytes of a known block, on any branch (not genesis)."""
        node = self._known_node(block_hash)
        if node.record is None:
            raise LedgerStateError("genesis is rebuilt from Genesis, not shipped")
        return self._evm.block_bytes(node.header)

    def electees_after(
        self, block_hash: bytes, count: int | None = None
    ) -> tuple[str, ...]:
        """Leader then backups of the round after a known block, on any branch."""
        node = self._known_node(block_hash)
        return self._electorate(node, MAX_VIEW if count is None else count)

    @staticmethod
    def block_ids(data: bytes) -> tuple[bytes, bytes]:
        """(hash, parent hash) of block bytes, decoded but not validated: enough
        to tell whether a site holds the block or its parent. MalformedBlock if
        the bytes are no block."""
        header = EvmChain.decode_block(data).header
        return header.hash, header.parent_hash

    def _known_node(self, block_hash: bytes) -> _Node:
        node = self._nodes.get(block_hash)
        if node is None:
            raise LedgerStateError(f"block {block_hash.hex()} is not known here")
        return node

    # -- election -----------------------------------------------------------

    def electees(self, round: int, count: int | None = None) -> tuple[str, ...]:
        parent = self._canonical_node(round - 1) if round >= 1 else None
        if parent is None:
            raise LedgerStateError("round numbers start at 1")
        return self._electorate(parent, MAX_VIEW if count is None else count)

    def leader(self, round: int) -> str:
        """The site elected to lead `round` (view 0)."""
        return self.proposer(round, 0)

    def proposer(self, round: int, view: int) -> str:
        electorate = self.electees(round)
        if not 0 <= view < len(electorate):
            raise LedgerStateError(
                f"round {round} has {len(electorate)} electees; no view {view}"
            )
        return electorate[view]

    def _electorate(self, parent: _Node, count: int) -> tuple[str, ...]:
        return self._election.electees(parent.header, count)

    # -- commitments --------------------------------------------------------

    def submit_commitment(self, commitment: Commitment) -> None:
        next_round = self.head().height + 1
        if commitment.round != next_round:
            raise LedgerStateError(
                f"commitment of {commitment.site} is for round {commitment.round}, "
                f"the open round is {next_round}"
            )
        if not self.is_enrolled(commitment.site):
            raise UnknownSite(f"commitment from {commitment.site}: site not enrolled")
        if commitment.parent != self.head().hash:
            raise LedgerStateError(
                f"commitment of {commitment.site} was made on another block than "
                "this replica's head"
            )
        commitment.verify(self.swarm_id)
        self._pending[commitment.site] = commitment

    def pending_commitments(self) -> tuple[Commitment, ...]:
        next_round = self.head().height + 1
        return tuple(c for c in self._pending.values() if c.round == next_round)

    def commit(
        self, key: PrivateKey, round: int, update_hash: bytes, num_examples: int
    ) -> Commitment:
        """Sign this site's commitment for `round` and hold it for sealing here.

        Ship the returned commitment to the round's leader (its replica's
        `submit_commitment`) when this site does not lead.
        """
        commitment = Commitment.sign(
            key, self.swarm_id, round, update_hash, num_examples, self.head().hash
        )
        self.submit_commitment(commitment)
        return commitment

    def enroll(self, enrollment: Enrollment) -> None:
        """Hold a site admission (already vetted off-chain, e.g. its certificate
        checked against the swarm CA) for the next round this replica seals.
        """
        if self.is_enrolled(enrollment.address):
            raise LedgerStateError(f"{enrollment.address} is already enrolled")
        self._pending_enrollments[enrollment.address] = enrollment

    def pending_enrollments(self) -> tuple[Enrollment, ...]:
        left = self.membership().left
        return tuple(
            e
            for e in self._pending_enrollments.values()
            if not self.is_enrolled(e.address) and e.address not in left
        )

    def request_leave(self, site: str, signature: bytes) -> None:
        """Hold a member's signed request to leave for the next round sealed here."""
        if not self.is_enrolled(site):
            raise UnknownSite(f"leave of {site}: site not enrolled")
        verify_leave(self.swarm_id, site, signature)
        self._pending_leaves[to_checksum_address(site)] = signature

    def pending_leaves(self) -> tuple[tuple[str, bytes], ...]:
        return tuple(
            (site, sig)
            for site, sig in self._pending_leaves.items()
            if self.is_enrolled(site)
        )

    # -- producing ----------------------------------------------------------

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
        parent_hash: bytes | None = None,
        leaves: Sequence[tuple[str, bytes]] = (),
    ) -> bytes:
        """Build and seal the block of `round`, without adopting it.

        `round` is usually the next one; a backup redoing a round after a bad
        merge builds on the canonical block of `round - 1` with a raised view.
        `parent_hash` builds on that known block instead (a site view's own).
        """
        head = self._proposal_parent(round, parent_hash)
        parent_ts = head.header.timestamp
        earliest = parent_ts + backup_delay(view, self.genesis.params.round_timeout)
        if timestamp is None:
            timestamp = max(int(time.time()), parent_ts + 1)
            if timestamp < earliest:
                raise LedgerStateError(
                    f"round {round} view {view} may be sealed from t={earliest} only"
                )
        address = key.public_key.to_canonical_address()
        contributors = {canonical(c.site) for c in commitments}
        skipped = (
            {to_canonical_address(a) for a in self._electorate(head, view)}
            if view
            else set()
        )
        leaving = {canonical(site) for site, _ in leaves}
        revived = sorted((contributors & head.sites) - (head.live - skipped) - leaving)
        fn = self._evm.artifact.function("sealRound")
        data = fn.encode_call(
            round,
            view,
            int(reason),
            model_hash,
            state_hash,
            pack_commitments(commitments),
            revived,
            [to_canonical_address(e.address) for e in enrollments],
            [e.cert_fingerprint for e in enrollments],
            [e.listen for e in enrollments],
            [canonical(site) for site, _ in leaves],
            [sig for _, sig in leaves],
        )
        tx = self._evm.seal_round_tx(key, self._evm.nonce(head.header, address), data)
        block = self._evm.build(
            head.header, address, timestamp, vanity(view, reason), [tx]
        )
        return self._evm.encode_block(block.copy(header=seal_header(block.header, key)))

    def _proposal_parent(self, round: int, parent_hash: bytes | None) -> _Node:
        """The block that `round` builds on: canonical, or the one asked for."""
        if parent_hash is None:
            if not 1 <= round <= self.head().height + 1:
                raise LedgerStateError(
                    f"round {round} cannot be sealed: head is {self.head().height}"
                )
            return self._canonical_node(round - 1)
        parent = self._known_node(parent_hash)
        if parent.ref.height != round - 1:
            raise LedgerStateError(
                f"round {round} cannot be sealed on block #{parent.ref.height} "
                f"{parent_hash.hex()}"
            )
        return parent

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
        if commitments is None:
            commitments = self.pending_commitments()
        if enrollments is None:
            enrollments = self.pending_enrollments()
        if leaves is None:
            leaves = self.pending_leaves()
        data = self.propose(
            key,
            round,
            model_hash,
            state_hash,
            commitments,
            view,
            reason,
            enrollments,
            timestamp,
            leaves=leaves,
        )
        self.import_block(data)
        height = self.head().height
        self._pending = {s: c for s, c in self._pending.items() if c.round > height}
        self._pending_enrollments = {
            a: e
            for a, e in self._pending_enrollments.items()
            if not self.is_enrolled(a)
        }
        self._pending_leaves = {
            a: sig for a, sig in self._pending_leaves.items() if self.is_enrolled(a)
        }
        return data

    # -- importing ----------------------------------------------------------

    def import_block(self, data: bytes) -> ImportOutcome:
        outcome, ref = self._import(data)
        if outcome is not ImportOutcome.KNOWN and self._store is not None:
            self._store.append(ref.hash, ref.height, data, self.head().hash)
        return outcome

    def _import(self, data: bytes) -> tuple[ImportOutcome, BlockRef]:
        block = self._evm.decode_block(data)
        header = block.header
        if header.hash in self._nodes:
            return ImportOutcome.KNOWN, self._nodes[header.hash].ref
        parent = self._nodes.get(header.parent_hash)
        if parent is None:
            raise UnknownParent(
                f"block #{header.block_number} {header.hash.hex()}: parent "
                f"{header.parent_hash.hex()} unknown; sync earlier blocks first",
                header.parent_hash,
            )
        if header.block_number != parent.ref.height + 1:
            raise MalformedBlock(
                f"block #{header.block_number} does not follow its parent "
                f"#{parent.ref.height}"
            )
        if self.clock is not None and header.timestamp > self.clock() + MAX_DRIFT:
            raise FutureBlock(
                f"block #{header.block_number} is stamped t={header.timestamp}, "
                f"more than {MAX_DRIFT}s ahead of this replica's clock; retry later"
            )
        view, reason = parse_vanity(header.extra_data)
        signer = seal_signer(header)
        self._check_proposer(header, parent, signer, view, reason)
        record, sites, live, support = self._check_body(
            block, parent, signer, view, reason
        )
        self._evm.execute(block, parent.header)
        node = _Node(
            BlockRef(header.block_number, header.hash, view),
            parent.ref.hash,
            header,
            record,
            sites,
            live,
            support,
        )
        self._nodes[header.hash] = node
        self._children.setdefault(parent.ref.hash, []).append(header.hash)
        return self._choose(node), node.ref

    def _check_proposer(
        self, header, parent: _Node, signer: bytes, view: int, reason: Reason
    ) -> None:
        round = header.block_number
        if (view == 0) != (reason is Reason.NORMAL):
            raise BadRound(f"round {round}: view {view} with reason {reason.name}")
        earliest = parent.header.timestamp + backup_delay(
            view, self.genesis.params.round_timeout
        )
        if view and header.timestamp < earliest:
            raise BadRound(
                f"round {round}: view {view} sealed at t={header.timestamp}, before "
                f"its leader's timeout at t={earliest}"
            )
        electorate = self._electorate(parent, view + 1)
        if view >= len(electorate):
            raise WrongProposer(
                f"round {round}: view {view} but only {len(electorate)} electees"
            )
        if to_canonical_address(electorate[view]) != signer:
            raise WrongProposer(
                f"round {round} view {view}: sealed by {to_checksum_address(signer)}, "
                f"the contract elected {electorate[view]}"
            )

    def _check_tx(self, block, parent: _Node, signer: bytes):
        """The block's one transaction: the proposer's next call of the swarm."""
        round = block.header.block_number
        if len(block.transactions) != 1:
            raise BadRound(
                f"round {round}: {len(block.transactions)} transactions, not 1"
            )
        tx = block.transactions[0]
        try:
            sender = tx.sender
        except Exception as exc:  # eth-keys raises several types on bad signatures
            raise MalformedBlock(f"round {round}: unreadable tx signature") from exc
        if sender != signer or tx.to != CONTRACT_ADDRESS:
            raise BadRound(
                f"round {round}: the tx is not the proposer's call of the swarm"
            )
        expected_nonce = self._evm.nonce(parent.header, sender)
        if tx.nonce < expected_nonce:
            raise ReplayedTransaction(
                f"round {round}: tx {tx.hash.hex()} of {to_checksum_address(sender)} "
                f"has nonce {tx.nonce}, already used (next is {expected_nonce})"
            )
        if tx.nonce != expected_nonce:
            raise BadRound(
                f"round {round}: tx nonce {tx.nonce}, expected {expected_nonce}"
            )
        return tx

    def _seal_call(self, tx, round: int) -> tuple:
        """The arguments of the transaction's `sealRound` call."""
        try:
            return self._evm.artifact.function("sealRound").decode_call(tx.data)
        except Exception as exc:  # eth-abi raises many decoding errors
            raise BadRound(
                f"round {round}: the tx is not a sealRound call ({exc})"
            ) from exc

    def _check_body(
        self, block, parent: _Node, signer: bytes, view: int, reason: Reason
    ) -> tuple[RoundRecord, frozenset[bytes], frozenset[bytes], int]:
        header = block.header
        round = header.block_number
        tx = self._check_tx(block, parent, signer)
        (
            a_round,
            a_view,
            a_reason,
            model_hash,
            state_hash,
            blob,
            revived,
            new_sites,
            new_fps,
            new_listen,
            leaving,
            leave_sigs,
        ) = self._seal_call(tx, round)
        if (a_round, a_view, a_reason) != (round, view, int(reason)):
            raise BadRound(
                f"round {round}: header says view {view} {reason.name}, the call says "
                f"round {a_round} view {a_view} reason {a_reason}"
            )
        commitments = unpack_commitments(blob, round)
        for commitment in commitments:
            if canonical(commitment.site) not in parent.sites:
                raise UnknownSite(
                    f"round {round}: commitment from unenrolled {commitment.site}"
                )
            if commitment.parent != parent.ref.hash:
                raise BadRound(
                    f"round {round}: the update of {commitment.site} was trained "
                    f"on block 0x{commitment.parent.hex()[:12]}, not on this "
                    f"block's parent 0x{parent.ref.hash.hex()[:12]}"
                )
        verify_all(commitments, self.swarm_id)
        contributors = {canonical(c.site) for c in commitments}
        revived_set = {to_canonical_address(a) for a in revived}
        if len(revived_set) != len(revived) or not revived_set <= contributors:
            raise BadRound(
                f"round {round}: revived sites must be distinct contributors"
            )
        enrolled = tuple(
            Enrollment(a, fp, listen)
            for a, fp, listen in zip(new_sites, new_fps, new_listen, strict=True)
        )
        left = self._check_leaves(round, parent, leaving, leave_sigs)
        sites, live = parent.sites, parent.live
        skipped = self._electorate(parent, view) if view else ()
        if skipped or revived_set or enrolled or left:
            joined = {to_canonical_address(e.address) for e in enrolled}
            gone = {to_canonical_address(a) for a in left}
            sites = (sites | joined) - gone
            skipped_set = {to_canonical_address(a) for a in skipped}
            live = ((live - skipped_set) | revived_set) - gone
        record = RoundRecord(
            round=round,
            view=view,
            reason=reason,
            leader=to_checksum_address(signer),
            block_hash=header.hash,
            timestamp=header.timestamp,
            model_hash=model_hash,
            state_hash=state_hash,
            commitments=(),  # kept in the block; see _full_record
            skipped=skipped,
            revived=tuple(to_checksum_address(a) for a in revived),
            enrolled=enrolled,
            left=left,
        )
        return record, sites, live, len(commitments)

    def _check_leaves(
        self, round: int, parent: _Node, leaving: Sequence, signatures: Sequence
    ) -> tuple[str, ...]:
        """The sites leaving with this block, each by its own signed request."""
        left = tuple(to_checksum_address(a) for a in leaving)
        if len(set(left)) != len(left):
            raise BadRound(f"round {round}: a site leaves twice")
        for site, signature in zip(left, signatures, strict=True):
            if canonical(site) not in parent.sites:
                raise UnknownSite(f"round {round}: leave of unenrolled {site}")
            verify_leave(self.swarm_id, site, signature)
        return left

    def _choose(self, node: _Node) -> ImportOutcome:
        """Apply the fork choice to a newly valid block (see forkchoice.py).

        The block may make its parent final, which can change the choice
        among its parent's siblings: the chain is chosen again from the
        grandparent on, when that is canonical.
        """
        parent = self._nodes[node.parent]
        anchor = parent if parent.record is None else self._nodes[parent.parent]
        height, canonical = anchor.ref.height, self._canonical
        if height >= len(canonical) or canonical[height] != anchor.ref.hash:
            return ImportOutcome.SIDE  # extends a branch that already lost
        before = canonical[height + 1 :]
        del canonical[height + 1 :]
        while children := self._children.get(canonical[-1]):
            canonical.append(self._preferred(children).hash)
        changed = before != canonical[height + 1 :]
        return ImportOutcome.ADOPTED if changed else ImportOutcome.SIDE

    def _preferred(self, children: Sequence[bytes]) -> BlockRef:
        best = preferred(
            (self._nodes[c].ref for c in children),
            lambda ref: self.is_final(ref.hash),
        )
        assert best is not None
        return best

    def is_final(self, block_hash: bytes) -> bool:
        """Whether a majority of the members as of this block built on it:
        a known child carries their commitments (see forkchoice.py)."""
        node = self._known_node(block_hash)
        need = majority(len(node.sites))
        return any(
            self._nodes[c].support >= need for c in self._children.get(block_hash, ())
        )

    def final_round(self) -> int:
        """The last round whose canonical block is final here (0: none yet).

        Raises LedgerStateError if this replica knows a final block that is
        not on its canonical chain: a fork choice that gave up a round a
        majority had built on, which the rule in forkchoice.py forbids.
        """
        last = 0
        for block_hash, node in self._nodes.items():
            height = node.ref.height
            if height == 0 or not self.is_final(block_hash):
                continue
            if height >= len(self._canonical) or self._canonical[height] != block_hash:
                raise LedgerStateError(
                    f"round {height}: block 0x{block_hash.hex()} is final (a "
                    "majority built on it) but not on the canonical chain"
                )
            last = max(last, height)
        return last

    def block_parent(self, block_hash: bytes) -> bytes:
        """The parent hash of a known block (genesis: its own hash)."""
        node = self._known_node(block_hash)
        return node.parent if node.record is not None else block_hash

    def support(self, block_hash: bytes) -> int:
        """How many commitments a known block carries (sites on its parent)."""
        return self._known_node(block_hash).support

    # -- verification -------------------------------------------------------

    def verify(self) -> BlockRef:
        """Re-validate every block known here on a fresh replica of the genesis.

        Elections, seals, commitments and state roots are all recomputed;
        raises InvalidBlock or LedgerStateError on any mismatch, else returns
        the head, which equals this replica's.
        """
        fresh = Ledger(self.genesis, clock=None)
        for node in sorted(self._nodes.values(), key=lambda n: n.ref.height):
            if node.ref.height:
                fresh._import(self._evm.block_bytes(node.header))
        if fresh.head() != self.head():
            raise LedgerStateError(
                f"head {self.head().hash.hex()} is not the recomputed head "
                f"{fresh.head().hash.hex()}"
            )
        return fresh.head()

    # -- replication --------------------------------------------------------

    def sync(self, peer: BlockSourceAPI) -> int:
        """Pull the peer's canonical blocks this replica lacks; return how many."""
        peer_head = peer.head()
        height = min(len(self._canonical) - 1, peer_head.height)
        while height > 0 and peer.block_hash(height) not in self._nodes:
            height -= 1
        imported = 0
        for start in range(height + 1, peer_head.height + 1, SYNC_BATCH):
            end = min(start + SYNC_BATCH, peer_head.height + 1)
            for data in peer.blocks_range(start, end):
                if self.import_block(data) is not ImportOutcome.KNOWN:
                    imported += 1
        return imported
