"""One site's round loop: train, commit, elect, merge or wait, verify, adopt.

`SwarmPeer` holds all the round logic and talks to other sites only through a
`TransportAPI`, so the same loop runs as a thread, in a Ray actor, or as a
hospital's process speaking gRPC. Its replica of the ledger decides who leads;
it adopts a model only after recomputing the merge from the committed updates
(or, for a round it missed, after checking the model's hash on the ledger).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from eth_utils import keccak
from flwr.app import ArrayRecord, Context

from swarmflower.faults import NO_FAULTS, FaultPlan, PeerCrashed
from swarmflower.identity import SiteIdentity
from swarmflower.ledger import (
    InvalidBlock,
    LedgerAPI,
    Reason,
    RoundRecord,
    UnknownParent,
)
from swarmflower.model_store import ModelStoreAPI
from swarmflower.round_protocol import (
    committed_updates,
    leader_merge,
    offer_problem,
    sign_offer,
    train_site,
    verify_merge,
)
from swarmflower.strategies import LeaderStrategy, Update
from swarmflower.strategies.helpers import arrays_hash
from swarmflower.transport.base import (
    BlockAnnouncement,
    PeerServiceAPI,
    TransportAPI,
    UpdateOffer,
)

log = logging.getLogger("swarmflower.peer")

POLL_S = 0.02
LOOKAHEAD = 2  # updates for rounds further ahead than this are dropped


@dataclass(frozen=True)
class PeerConfig:
    """How a peer paces a round; the swarm-wide values come from the genesis.

    The leader seals once every site's update is in, or `update_wait` seconds
    after the round started with at least `min_peers` updates; backup `v`
    may seal `v * round_timeout` seconds after the round started.
    `logical_time` stamps blocks from their parent (parent + 1 s, or the
    backup's earliest slot), so a simulation's ledger does not depend on the
    wall clock; real sites stamp with the wall clock.
    """

    rounds: int
    round_timeout: float
    min_peers: int
    update_wait: float
    backups: int = 2
    logical_time: bool = True


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
        self._blocks: dict[int, bytes] = {}
        self._blocks_lock = threading.Lock()
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
        with self._blocks_lock:
            found = []
            for height in range(start, end):
                if height not in self._blocks:
                    break
                found.append(self._blocks[height])
            return found

    # -- the loop --------------------------------------------------------------

    @property
    def address(self) -> str:
        return self.identity.address

    @property
    def model(self) -> ArrayRecord | None:
        return self._model

    def run(self) -> PeerLog:
        """Play rounds until the swarm's last round is sealed and adopted here."""
        self._catch_up()
        while True:
            self._check_alive()
            head = self.ledger.head()
            if head.height > 0 and head.hash != self._model_block:
                if head.hash in self._refused:
                    started = self._started.setdefault(head.height, time.monotonic())
                    self._wait_for_round(head.height, started)
                elif not self._adopt(head.height):
                    self._handle(self.transport.receive(POLL_S))
                continue
            if self._model_round >= self.config.rounds:
                return self.log
            self._play(self._model_round + 1)

    # -- one round -------------------------------------------------------------

    def _play(self, round: int) -> None:
        started = self._started.setdefault(round, time.monotonic())
        if self.faults.crashes_before_training(self.identity.index, round):
            self._crash(f"site crash before training round {round}")
        arrays = self._train(round)
        log.info(
            "site %s trained round %d after %.2f s",
            self.identity.name,
            round,
            time.monotonic() - started,
        )
        if arrays is not None:
            num_examples, update = arrays
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
            for electee in self._electees(round):
                if electee == self.address:
                    self._accept_offer(offer)
                else:
                    self.transport.send(electee, offer)
        self._wait_for_round(round, started)

    def _straggle(self, round: int) -> None:
        """Hold the update back if the fault plan makes this site slow this round."""
        until = time.monotonic() + self.faults.delay(self.identity.index, round)
        while time.monotonic() < until:
            self._check_alive()
            self._handle(self.transport.receive(min(POLL_S, until - time.monotonic())))

    def _train(self, round: int) -> tuple[int, ArrayRecord] | None:
        assert self._model is not None
        trained = train_site(
            self.client_app,
            self.context,
            self._model,
            round,
            self.identity.index,
            self.strategy.train_config(round),
        )
        if trained is None:
            log.warning(
                "site %s: training failed in round %d", self.identity.name, round
            )
            return None
        self.log.trained.append(round)
        return trained

    def _electees(self, round: int) -> tuple[str, ...]:
        count = min(1 + self.config.backups, len(self.sites))
        return self.ledger.electees(round, count)

    def _wait_for_round(self, round: int, started: float) -> None:
        """Handle messages until an acceptable block of `round` is canonical here."""
        while True:
            self._check_alive()
            head = self.ledger.head()
            if head.height >= round and head.hash not in self._refused:
                return
            self._maybe_seal(round, started)
            self._handle(self.transport.receive(POLL_S))

    def _handle(self, message: UpdateOffer | BlockAnnouncement | None) -> None:
        if isinstance(message, UpdateOffer):
            self._accept_offer(message)
        elif isinstance(message, BlockAnnouncement):
            self._import(message.block)

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
            if view == 0:
                if len(offers) == len(self.sites) or elapsed >= self.config.update_wait:
                    self._seal(round, view, Reason.NORMAL)
            elif elapsed >= view * self.config.round_timeout:
                reason = Reason.LEADER_TIMEOUT if current is None else Reason.BAD_MERGE
                self._seal(round, view, reason)
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
        outcome = leader_merge(
            self.strategy,
            round,
            self._model,
            self._state,
            offers,
            dishonest=view == 0 and self.faults.is_dishonest(round),
        )
        merged = outcome.arrays
        model_hash = self.store.put_arrays(merged)
        self.store.put_blob(outcome.state)
        block = self.ledger.seal_round(
            self.identity.key,
            round,
            model_hash,
            outcome.state_hash,
            [o.commitment for o in offers],
            view=view,
            reason=reason,
            timestamp=self._timestamp(round, view),
        )
        self.log.sealed.append((round, view, reason))
        self._remember_block(round, block)
        self.transport.broadcast(BlockAnnouncement(round, block))

    def _timestamp(self, round: int, view: int) -> int | None:
        parent = self._parent_timestamp(round)
        earliest = parent + max(1, view * int(self.config.round_timeout))
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
        )
        if reason:
            log.warning(
                "site %s: refused the round-%d update of site %d: %s",
                self.identity.name,
                offer.round,
                offer.site_index,
                reason,
            )
            return
        self.store.put_arrays(offer.arrays, digest)
        self._offers.setdefault(offer.round, {})[commitment.site] = offer

    def _import(self, block: bytes) -> None:
        try:
            self.ledger.import_block(block)
        except UnknownParent:
            self._catch_up()
        except InvalidBlock as exc:
            log.warning("site %s: refused a block: %s", self.identity.name, exc)

    def _catch_up(self) -> None:
        """Import the blocks this replica lacks from any reachable peer."""
        start = self.ledger.head().height + 1
        for block in self.transport.fetch_blocks(start, self.config.rounds + 1):
            try:
                self.ledger.import_block(block)
            except InvalidBlock as exc:
                log.warning(
                    "site %s: refused a synced block: %s", self.identity.name, exc
                )
                return

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
        self._remember_block(height, self.ledger.block_bytes(height))
        self._offers = {r: o for r, o in self._offers.items() if r > height}
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
            lambda digest: self.transport.fetch_arrays(digest, self._sources(record)),
        )

    def _fetch_model(self, record: RoundRecord) -> tuple[ArrayRecord, bytes] | None:
        """A missed round's model and strategy state, fetched by their ledger hashes."""
        sources = self._sources(record)
        arrays = self.store.get_arrays(
            record.model_hash
        ) or self.transport.fetch_arrays(record.model_hash, sources)
        state = self.store.get_blob(record.state_hash)
        if state is None:
            state = self.transport.fetch_blob(record.state_hash, sources)
        if arrays is None or state is None:
            return None
        if (
            arrays_hash(arrays) != record.model_hash
            or keccak(state) != record.state_hash
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
        digest = self.store.put_arrays(arrays)
        if digest != self.ledger.genesis.initial_model_hash:
            raise ValueError("the initial model does not match the genesis hash")
        self._model = arrays
        self._state = self.strategy.initial_state(arrays)
        self._model_round = 0

    def _remember_block(self, height: int, block: bytes) -> None:
        with self._blocks_lock:
            self._blocks[height] = block
            for stale in [h for h in self._blocks if h > height]:
                del self._blocks[stale]

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
