"""One site's round loop: train, commit, elect, merge or wait, verify, adopt.

`SwarmPeer` holds all the round logic and talks to other sites only through a
`TransportAPI`, so the same loop runs as a thread, in a Ray actor, or as a
hospital's process speaking gRPC. Its replica of the ledger decides who leads;
it adopts a model only after recomputing the merge from the committed updates
(or, for a round it missed, after checking the model's hash on the ledger).
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from flwr.app import Array, ArrayRecord, Context

from swarmflower.app_calls import AppFailure, call_app, log_failure
from swarmflower.codec import arrays_hash, content_hash
from swarmflower.faults import NO_FAULTS, FaultPlan, PeerCrashed
from swarmflower.identity import SiteIdentity
from swarmflower.ledger import (
    BlockRef,
    InvalidBlock,
    LedgerAPI,
    Reason,
    RoundRecord,
    UnknownParent,
)
from swarmflower.model_store import ModelStoreAPI
from swarmflower.round_protocol import (
    UpdateLimits,
    committed_updates,
    leader_merge,
    offer_problem,
    sign_offer,
    train_site,
    verify_merge,
)
from swarmflower.round_rules import earliest_timestamp, may_seal, seal_reason
from swarmflower.served_chain import ServedChain
from swarmflower.strategies import LeaderStrategy, Update
from swarmflower.swarm_setup import check_initial_model
from swarmflower.transport.base import (
    BlockAnnouncement,
    PeerServiceAPI,
    TransportAPI,
    UpdateOffer,
)

log = logging.getLogger("swarmflower.peer")

POLL_S = 0.02
LOOKAHEAD = 2  # updates for rounds further ahead than this are dropped
SETTLE_POLL_S = 0.5  # how often a finished peer asks everyone for their head
AGREED_GRACE_S = 3 * SETTLE_POLL_S  # a finished peer's stay once all agree


@dataclass(frozen=True)
class PeerConfig:
    """How a peer paces a round; the swarm-wide values come from the genesis.

    The leader seals once every site's update is in, or `update_wait` seconds
    after the round started with at least `min_peers` updates; backup `v`
    may seal `v * round_timeout` seconds after the round started.
    `logical_time` stamps blocks from their parent (parent + 1 s, or the
    backup's earliest slot), so a simulation's ledger does not depend on the
    wall clock; real sites stamp with the wall clock.

    `gossip_s` (None: off) is how often the peer asks a random peer for its
    head and syncs on any difference, both ways (anti-entropy: a lost block
    announcement or a fork left by a crash heals without a new round).
    `linger_s` is how long a finished peer keeps serving blocks and models
    while some site does not yet report its head: it leaves soon after every
    site agrees (`agreed_grace_s`, so that each sees it agree too), after
    `linger_s` when a majority does, and after `3 * linger_s` in any case.
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


@dataclass
class Adoption:
    """A model this site adopted, and how it knew it was the right one."""

    round: int
    block_hash: bytes
    model_hash: bytes
    recomputed: bool


@dataclass
class PeerLog:
    """What a peer did, for tests and reports."""

    adopted: list[Adoption] = field(default_factory=list)
    sealed: list[tuple[int, int, Reason]] = field(default_factory=list)
    refused: list[tuple[int, bytes, str]] = field(default_factory=list)
    trained: list[int] = field(default_factory=list)
    refused_updates: list[tuple[int, int, str]] = field(default_factory=list)
    switched: list[str] = field(default_factory=list)  # one line per fork switch
    failed: list[tuple[int, AppFailure]] = field(default_factory=list)  # app calls


class SwarmPeer(PeerServiceAPI):
    """A site of the swarm: its ClientApp, ledger replica, store and transport."""

    def __init__(
        self,
        identity: SiteIdentity,
        sites: Sequence[str],
        ledger: LedgerAPI,
        client_app,
        context: Context,
        strategy: LeaderStrategy,
        transport: TransportAPI,
        store: ModelStoreAPI,
        config: PeerConfig,
        initial_arrays: ArrayRecord | None = None,
        faults: FaultPlan = NO_FAULTS,
        on_crash: Callable[[str], None] | None = None,
    ) -> None:
        self.identity = identity
        self.sites = tuple(sites)
        self.ledger = ledger
        self.client_app = client_app
        self.context = context
        self.strategy = strategy
        self.transport = transport
        self.store = store
        self.config = config
        self.faults = faults
        self.on_crash = on_crash
        self.log = PeerLog()
        self._index_of = {address: i for i, address in enumerate(self.sites)}
        self._offers: dict[int, dict[str, UpdateOffer]] = {}
        self._refused: set[bytes] = set()
        self._resumed = ledger.head()
        self.chain = ServedChain(BlockRef(0, ledger.swarm_id))
        self.chain.refresh(ledger)
        self._reports: queue.SimpleQueue[tuple[str, BlockRef]] = queue.SimpleQueue()
        self._peer_heads: dict[str, bytes] = {}
        self._finished_at: float | None = None
        self._agreed_at: float | None = None
        self._mine: dict[int, UpdateOffer] = {}  # this site's offer per round
        self._offered_at: dict[int, float] = {}
        self._lost = faults.send_filter(identity.index)
        self._limits = UpdateLimits.from_params(ledger.genesis.params)
        self._model: ArrayRecord | None = None
        self._state = b""
        self._model_block: bytes | None = None
        self._model_round = -1
        self._started: dict[int, float] = {}
        if initial_arrays is not None:
            self._remember_initial(initial_arrays)
        transport.serve(self)

    # -- serving other peers (called from their threads) -----------------------

    def serve_arrays(self, digest: bytes) -> ArrayRecord | None:
        return self.store.get_arrays(digest)

    def serve_blob(self, digest: bytes) -> bytes | None:
        return self.store.get_blob(digest)

    def serve_blocks(self, start: int, end: int) -> list[bytes]:
        return self.chain.canonical(start, end)

    def serve_block(self, block_hash: bytes) -> bytes | None:
        return self.chain.block(block_hash)

    def serve_head(self) -> BlockRef:
        return self.chain.adopted_head

    # -- the loop --------------------------------------------------------------

    @property
    def address(self) -> str:
        return self.identity.address

    @property
    def model(self) -> ArrayRecord | None:
        return self._model

    @property
    def round_in_progress(self) -> int:
        """The round this site is working towards (its adopted round + 1)."""
        return self._model_round + 1

    def run(self) -> PeerLog:
        """Play rounds until the swarm's last round is sealed and adopted here,
        then linger (see `PeerConfig.linger_s`) so that no site is left
        without a source of blocks and models."""
        stop = threading.Event()
        gossip = None
        if self.config.gossip_s:
            gossip = threading.Thread(
                target=self._gossip, args=(stop,), daemon=True, name="swarm-gossip"
            )
            gossip.start()
        try:
            self._catch_up()
            while True:
                self._check_alive()
                head = self.ledger.head()
                if head.height > 0 and head.hash != self._model_block:
                    if head.hash in self._refused:
                        started = self._started.setdefault(
                            head.height, time.monotonic()
                        )
                        self._wait_for_round(head.height, started)
                    elif not self._adopt(head.height):
                        self._handle(self.transport.receive(POLL_S))
                    continue
                if self._model_round >= self.config.rounds:
                    if self._settled():
                        return self.log
                    self._handle(self.transport.receive(POLL_S))
                    continue
                self._finished_at = None
                self._play(self._model_round + 1)
        finally:
            stop.set()
            if gossip is not None:
                gossip.join(timeout=5)

    def _settled(self) -> bool:
        """Whether this finished peer may stop serving (see `PeerConfig`)."""
        now = time.monotonic()
        if self._finished_at is None:
            self._finished_at = now
        lingered = now - self._finished_at
        if lingered >= 3 * self.config.linger_s:
            return True
        head = self.ledger.head().hash
        agree = 1 + sum(
            1 for a, h in self._peer_heads.items() if h == head and a != self.address
        )
        if agree < len(self.sites):
            self._agreed_at = None
            return agree > len(self.sites) // 2 and lingered >= self.config.linger_s
        # Everyone holds this head; stay for a few more of their head queries
        # so that each of them sees this site agree before it goes.
        if self._agreed_at is None:
            self._agreed_at = now
        return now - self._agreed_at >= self.config.agreed_grace_s

    # -- anti-entropy ----------------------------------------------------------

    def _gossip(self, stop: threading.Event) -> None:
        """Ask peers for their heads (a thread: a slow answer never stalls a
        round); the round loop acts on the answers."""
        others = [a for a in self.sites if a != self.address]
        draw = random.Random(f"gossip/{self.address}")
        assert self.config.gossip_s is not None
        while others and not stop.is_set():
            finishing = self._finished_at is not None
            interval = SETTLE_POLL_S if finishing else self.config.gossip_s
            if stop.wait(interval * draw.uniform(0.75, 1.25)):
                return
            for peer in others if finishing else [draw.choice(others)]:
                head = self.transport.peer_head(peer)
                if head is not None:
                    self._reports.put((peer, head))

    def _reconcile(self) -> None:
        """Sync with the heads peers reported: pull what this replica lacks,
        push this head to a peer that reports a different one."""
        while True:
            try:
                peer, head = self._reports.get_nowait()
            except queue.Empty:
                return
            self._peer_heads[peer] = head.hash
            if head.height == 0:
                known = head.hash == self.ledger.swarm_id
            else:
                known = self.ledger.knows(head.hash)
            if not known:
                block = self.transport.fetch_block(head.hash, [peer])
                if block is not None:
                    self._connect(block, [peer])
                continue
            mine = self.ledger.head()
            if mine.height > 0 and head.hash != mine.hash:
                block = self.ledger.block_bytes(mine.height)
                self._send(peer, BlockAnnouncement(mine.height, block))

    # -- one round -------------------------------------------------------------

    def _play(self, round: int) -> None:
        started = self._started.setdefault(round, time.monotonic())
        if self.faults.crashes_before_training(self.identity.index, round):
            self._crash(f"site crash before training round {round}")
        arrays = self._train(round)
        if arrays is not None:
            log.info(
                "site %s trained round %d after %.2f s",
                self.identity.name,
                round,
                time.monotonic() - started,
            )
            num_examples, update = self._tamper(round, *arrays)
            update_hash = self.store.put_arrays(update)
            offer = sign_offer(
                self.identity,
                self.ledger.swarm_id,
                round,
                num_examples,
                update,
                update_hash,
            )
            self._straggle(round)
            self._mine[round] = offer
            self._offer_to_electees(offer, include_self=True)
        self._wait_for_round(round, started)

    def _offer_to_electees(self, offer: UpdateOffer, include_self: bool) -> None:
        self._offered_at[offer.round] = time.monotonic()
        for electee in self._electees(offer.round):
            if electee == self.address:
                if include_self:
                    self._accept_offer(offer)
            else:
                self._send(electee, offer)

    def _offer_again(self, round: int) -> None:
        """Send this site's update again while its round stays open: an offer
        lost on the way must not leave every electee short of `min_peers`."""
        offer = self._mine.get(round)
        sent = self._offered_at.get(round)
        if offer is None or sent is None:
            return
        if time.monotonic() - sent >= self.config.round_timeout:
            self._offer_to_electees(offer, include_self=False)

    def _tamper(
        self, round: int, num_examples: int, update: ArrayRecord
    ) -> tuple[int, ArrayRecord]:
        """What a `bad-update` drill makes this site offer instead of its update."""
        kind = self.faults.bad_update(self.identity.index, round)
        if kind is None:
            return num_examples, update
        log.warning("site %s offers a %s update (drill)", self.identity.name, kind)
        if kind == "zero-examples":
            return 0, update
        if kind == "huge-examples":
            return 2**63, update
        cast = {
            "complex": lambda a: a.astype(np.complex64),
            "integer": lambda a: a.astype(np.int32),
            "huge-weights": lambda a: np.full_like(a, 1e30),
        }[kind]
        tampered = {k: Array(cast(a.numpy())) for k, a in update.items()}
        return num_examples, ArrayRecord(tampered)

    def _send(self, to: str, message: UpdateOffer | BlockAnnouncement) -> None:
        if self._lost():
            log.info("site %s: a message to %s is lost (drill)", self.identity.name, to)
            return
        self.transport.send(to, message)

    def _broadcast(self, message: BlockAnnouncement) -> None:
        for site in self.sites:
            if site != self.address:
                self._send(site, message)

    def _straggle(self, round: int) -> None:
        """Hold the update back if the fault plan makes this site slow this round."""
        until = time.monotonic() + self.faults.delay(self.identity.index, round)
        while time.monotonic() < until:
            self._check_alive()
            self._handle(self.transport.receive(min(POLL_S, until - time.monotonic())))

    def _train(self, round: int) -> tuple[int, ArrayRecord] | None:
        """This site's update for `round`; None if its ClientApp failed (as in
        Flower, the failure is the site's: it sits the round out)."""
        assert self._model is not None
        trained = call_app(
            train_site,
            self.client_app,
            self.context,
            self._model,
            round,
            self.identity.index,
            self.strategy.train_config(round),
        )
        if isinstance(trained, AppFailure):
            log_failure(self.identity.name, round, trained)
            self.log.failed.append((round, trained))
            return None
        self.log.trained.append(round)
        return trained

    def _electees(self, round: int) -> tuple[str, ...]:
        count = min(1 + self.config.backups, len(self.sites))
        return self.ledger.electees(round, count)

    def _wait_for_round(self, round: int, started: float) -> None:
        """Handle messages until an acceptable block of `round` is canonical
        here, or until the block this site adopted loses a fork (the chain
        may then be shorter than `round`: the run loop adopts its head)."""
        while True:
            self._check_alive()
            head = self.ledger.head()
            if head.height >= round and head.hash not in self._refused:
                return
            if not self._on_adopted_chain():
                return
            self._offer_again(round)
            self._maybe_seal(round, started)
            self._handle(self.transport.receive(POLL_S))

    def _handle(self, message: UpdateOffer | BlockAnnouncement | None) -> None:
        if isinstance(message, UpdateOffer):
            self._accept_offer(message)
        elif isinstance(message, BlockAnnouncement):
            self._connect(message.block)
        self._reconcile()

    # -- leading ---------------------------------------------------------------

    def _maybe_seal(self, round: int, started: float) -> None:
        """Seal if this site is the proposer whose turn it is.

        The leader (view 0) seals once every site's update is in, or after
        `update_wait`; backup `v` seals `v * round_timeout` after the round
        began if no acceptable block of the round has appeared by then.
        """
        offers = self._offers.get(round, {})
        if len(offers) < self.config.min_peers:
            return
        current = (
            self.ledger.round(round) if self.ledger.head().height >= round else None
        )
        if current is not None and current.block_hash not in self._refused:
            return
        elapsed = time.monotonic() - started
        for view, electee in enumerate(self._electees(round)):
            if electee != self.address or (
                current is not None and view <= current.view
            ):
                continue
            if may_seal(
                view,
                updates_in=len(offers),
                num_sites=len(self.sites),
                elapsed=elapsed,
                update_wait=self.config.update_wait,
                round_timeout=self.config.round_timeout,
            ):
                self._seal(round, view, seal_reason(view, current))
            return

    def _seal(self, round: int, view: int, reason: Reason) -> None:
        if view == 0 and self.faults.crashes_while_leading(round):
            self._crash(f"leader crash in round {round}")
        offers = sorted(self._offers[round].values(), key=lambda o: o.site_index)
        log.info(
            "site %s seals round %d view %d with %d updates (%s) after %.2f s",
            self.identity.name,
            round,
            view,
            len(offers),
            reason.name,
            time.monotonic() - self._started.get(round, time.monotonic()),
        )
        merge = leader_merge(
            self.strategy,
            round,
            self._model,
            self._state,
            offers,
            dishonest=view == 0 and self.faults.is_dishonest(round),
        )
        for site, why in merge.refused:
            self._refuse_update(round, site, self.sites[site], f"merge failed: {why}")
            del self._offers[round][self.sites[site]]
        outcome = merge.outcome
        if outcome is None or len(merge.merged) < self.config.min_peers:
            return  # too few mergeable updates yet: wait for more
        model_hash = self.store.put_arrays(outcome.arrays)
        self.store.put_blob(outcome.state)
        block = self.ledger.seal_round(
            self.identity.key,
            round,
            model_hash,
            outcome.state_hash,
            [o.commitment for o in merge.merged],
            view=view,
            reason=reason,
            timestamp=self._timestamp(round, view),
        )
        self.log.sealed.append((round, view, reason))
        self._after_import()
        if view == 0 and self.faults.crashes_before_announcing(round):
            self._crash(f"leader crash after sealing round {round}, not announced")
        self._broadcast(BlockAnnouncement(round, block))

    def _timestamp(self, round: int, view: int) -> int | None:
        parent = self._parent_timestamp(round)
        earliest = earliest_timestamp(parent, view, int(self.config.round_timeout))
        if self.config.logical_time:
            return earliest
        return max(int(time.time()), earliest)

    def _parent_timestamp(self, round: int) -> int:
        if round == 1:
            return self.ledger.genesis.timestamp
        return self.ledger.round(round - 1).timestamp

    # -- receiving -------------------------------------------------------------

    def _accept_offer(self, offer: UpdateOffer) -> None:
        """Keep a valid update for its round; a late one is never merged elsewhere."""
        commitment = offer.commitment
        if not self._model_round < offer.round <= self._model_round + LOOKAHEAD:
            return
        # The arrays are deserialised and hashed once: the hash check, the
        # finiteness check and the store all use the same bytes.
        digest, reason = offer_problem(
            offer,
            self._index_of.get(commitment.site),
            self._model,
            self.ledger.swarm_id,
            self._limits,
        )
        if reason:
            self._refuse_update(offer.round, offer.site_index, commitment.site, reason)
            return
        self.store.put_arrays(offer.arrays, digest)
        self._offers.setdefault(offer.round, {})[commitment.site] = offer

    def _refuse_update(self, round: int, site: int, address: str, why: str) -> None:
        """Refuse one site's update, naming the site; the round goes on."""
        log.warning(
            "site %s: refused the round-%d update of site %d (%s): %s",
            self.identity.name,
            round,
            site + 1,
            address,
            why,
        )
        self.log.refused_updates.append((round, site, why))

    def _connect(self, block: bytes, sources: Sequence[str] = ()) -> bool:
        """Import `block`, first fetching by hash the ancestors this replica
        lacks (from `sources`, then every site) until it connects."""
        waiting = [block]
        everyone = [*sources, *(a for a in self.sites if a not in sources)]
        fetched = 0
        while waiting:
            try:
                self.ledger.import_block(waiting[-1])
            except UnknownParent as exc:
                # Heights fall by one per ancestor: a chain is at most `rounds` long.
                if fetched > self.config.rounds:
                    log.warning("site %s: a block never connects", self.identity.name)
                    break
                parent = self.transport.fetch_block(exc.parent_hash, everyone)
                if parent is None:
                    log.info(
                        "site %s: no peer has block 0x%s yet",
                        self.identity.name,
                        exc.parent_hash.hex()[:12],
                    )
                    break
                fetched += 1
                waiting.append(parent)
                continue
            except InvalidBlock as exc:
                log.warning("site %s: refused a block: %s", self.identity.name, exc)
                break
            waiting.pop()
        self._after_import()
        return not waiting

    def _catch_up(self) -> None:
        """Import the blocks this replica lacks from any reachable peer."""
        start = self.ledger.head().height + 1
        for block in self.transport.fetch_blocks(start, self.config.rounds + 1):
            if not self._connect(block):
                return

    def _on_adopted_chain(self) -> bool:
        """Whether the canonical chain still holds the block adopted here."""
        if self._model_round < 1 or self._model_block is None:
            return True
        return self._canonical(BlockRef(self._model_round, self._model_block))

    def _canonical(self, block: BlockRef) -> bool:
        head = self.ledger.head()
        return (
            head.height >= block.height
            and self.ledger.block_hash(block.height) == block.hash
        )

    def _after_import(self) -> None:
        """Serve the new chain; say so once if this site's block lost a fork."""
        self.chain.refresh(self.ledger)
        # Where this site stands: the block it adopted, or (just restarted)
        # the head its replica had when it came back.
        stand = self._resumed
        if self._model_round >= 1 and self._model_block is not None:
            stand = BlockRef(self._model_round, self._model_block)
        if stand.height < 1 or self._canonical(stand):
            return
        head = self.ledger.head()
        switch = (
            f"site {self.identity.name}: on a losing fork at round {stand.height} "
            f"(block 0x{stand.hash.hex()[:12]}); switching to block "
            f"0x{head.hash.hex()[:12]} (round {head.height}, view {head.view})"
        )
        if not self.log.switched or self.log.switched[-1] != switch:
            log.info(switch)
            self.log.switched.append(switch)
        self._resumed = BlockRef(0, b"")
        # Updates held for later rounds were trained on the losing model, and
        # rounds above the new head start again when it is adopted.
        self._offers, self._mine = {}, {}
        self._started = {r: t for r, t in self._started.items() if r <= head.height}

    # -- adopting --------------------------------------------------------------

    def _adopt(self, height: int) -> bool:
        """Verify and adopt the canonical model of round `height`."""
        record = self.ledger.round(height)
        if record.block_hash in self._refused:
            return False
        parent_is_mine = height == self._model_round + 1 and (
            height == 1 or self.ledger.block_hash(height - 1) == self._model_block
        )
        updates = self._committed_updates(record) if parent_is_mine else None
        if updates is not None:
            outcome = verify_merge(
                self.strategy, record, self._model, self._state, updates
            )
            if outcome is None:
                self._refuse(
                    record, "merged model does not match the committed updates"
                )
                return False
            arrays, state, recomputed = outcome.arrays, outcome.state, True
        else:
            fetched = self._fetch_model(record)
            if fetched is None:
                return False
            arrays, state = fetched
            recomputed = False
        self.store.put_arrays(arrays)
        self.store.put_blob(state)
        self._model, self._state = arrays, state
        self._model_block, self._model_round = record.block_hash, height
        self.chain.adopted(BlockRef(height, record.block_hash, record.view))
        self._offers = {r: o for r, o in self._offers.items() if r > height}
        self._mine = {r: o for r, o in self._mine.items() if r > height}
        self.log.adopted.append(
            Adoption(height, record.block_hash, record.model_hash, recomputed)
        )
        return True

    def _committed_updates(self, record: RoundRecord) -> list[Update] | None:
        """The updates behind a block's commitments, each checked against its hash."""
        return committed_updates(
            record,
            self._offers.get(record.round, {}),
            self._index_of,
            lambda digest: self._fetch_arrays(digest, self._sources(record)),
        )

    def _fetch_arrays(
        self, digest: bytes, sources: Sequence[str]
    ) -> ArrayRecord | None:
        fetched = self.transport.fetch_arrays(digest, sources)
        if self.faults.crashes_mid_fetch(self.identity.index, self.round_in_progress):
            self._crash(f"site crash mid-fetch in round {self.round_in_progress}")
        return fetched

    def _fetch_model(self, record: RoundRecord) -> tuple[ArrayRecord, bytes] | None:
        """A missed round's model and strategy state, fetched by their ledger hashes."""
        sources = self._sources(record)
        arrays = self.store.get_arrays(record.model_hash) or self._fetch_arrays(
            record.model_hash, sources
        )
        state = self.store.get_blob(record.state_hash)
        if state is None:
            state = self.transport.fetch_blob(record.state_hash, sources)
        if arrays is None or state is None:
            return None
        if (
            arrays_hash(arrays) != record.model_hash
            or content_hash(state) != record.state_hash
        ):
            return None
        return arrays, state

    def _sources(self, record: RoundRecord) -> list[str]:
        return [record.leader, *(a for a in self.sites if a != record.leader)]

    def _refuse(self, record: RoundRecord, why: str) -> None:
        """Refuse a block's model; the next backup in line redoes the round.

        The ledger keeps the refused block (it is valid as a block); the redo
        at a higher view wins the fork choice on every replica.
        """
        log.warning(
            "site %s: refused round %d view %d from %s: %s",
            self.identity.name,
            record.round,
            record.view,
            record.leader,
            why,
        )
        self._refused.add(record.block_hash)
        self.log.refused.append((record.round, record.block_hash, why))

    # -- bookkeeping -----------------------------------------------------------

    def _remember_initial(self, arrays: ArrayRecord) -> None:
        check_initial_model(arrays, self.ledger.genesis, f"site {self.identity.name}")
        self.store.put_arrays(arrays)
        self._model = arrays
        self._state = self.strategy.initial_state(arrays)
        self._model_round = 0

    def _check_alive(self) -> None:
        if not self.transport.alive:
            raise PeerCrashed(f"site {self.identity.name} is down")

    def _crash(self, why: str) -> None:
        """Die where the fault plan says: `on_crash` (a real process kills
        itself with SIGKILL), else cut the transport and stop the thread."""
        log.info("site %s: %s", self.identity.name, why)
        if self.on_crash is not None:
            self.on_crash(why)
        self.transport.disconnect()
        raise PeerCrashed(why)
