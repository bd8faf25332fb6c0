"""One site's side of the protocol as a state machine, with no I/O of its own.

`SiteCore` is the round: train, commit, offer, elect, merge or wait, seal,
verify, adopt, catch up, settle. It owns no threads, sockets or clocks:
a driver feeds it events (time passing, an offer or block arriving, a fetch
answered, training finished, a peer's head reported), each with the
driver's time, and carries out the actions it returns (train, send, fetch
by hash, crash). Threads with the in-process transport and real sites over
gRPC drive it through `SwarmPeer`; the Ray engine drives many cores in
simulated time. Every rule of the round is here or in the modules it calls
(`round_rules` for timing, `round_protocol` for checks and merges), so the
engines cannot drift apart.

Its state objects are its ledger replica (or a per-site view of a shared
one) and its model store: data structures, not I/O channels.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from flwr.app import Array, ArrayRecord

from swarmflower.app_calls import AppFailure, FailureLog
from swarmflower.attacks import Attack
from swarmflower.codec import arrays_hash, content_hash
from swarmflower.collusion import change_of
from swarmflower.faults import NO_FAULTS, FaultPlan
from swarmflower.identity import SiteIdentity
from swarmflower.ledger import (
    BlockRef,
    Enrollment,
    InvalidBlock,
    LedgerAPI,
    Membership,
    Reason,
    RoundRecord,
    UnknownParent,
)
from swarmflower.ledger.commitments import verify_leave
from swarmflower.model_store import ModelStoreAPI
from swarmflower.round_protocol import (
    LocalUpdate,
    UpdateLimits,
    committed_updates,
    hash_or_none,
    leader_merge,
    offer_problem,
    sign_offer,
    verify_merge,
)
from swarmflower.round_rules import (
    MAX_STAMP_LEAD_S,
    drawn_sites,
    earliest_timestamp,
    may_seal,
    seal_deadline,
    seal_reason,
)
from swarmflower.served_chain import ServedChain
from swarmflower.site_actions import (
    Action,
    Adoption,
    Crash,
    FetchArrays,
    FetchBlob,
    FetchBlock,
    FetchChain,
    PeerConfig,
    PeerLog,
    RoundAudit,
    Send,
    Train,
)
from swarmflower.strategies import LeaderStrategy, MergeOutcome, Update
from swarmflower.swarm_setup import check_initial_model
from swarmflower.transport.base import (
    BlockAnnouncement,
    JoinRequest,
    LeaveRequest,
    PeerMessage,
    UpdateOffer,
)

log = logging.getLogger("swarmflower.peer")

LOOKAHEAD = 2  # updates for rounds further ahead than this are dropped
DRAWS_KEPT = 4  # draws of trainers remembered (by parent block): recent rounds
FETCH_RETRY_S = 0.05  # a fetch that found nothing is asked again after this
COLLUSION_WAIT_SHARE = 0.5  # of update_wait: a colluder's wait for the honest
COLLUSION_POLL_S = 0.05  # how often a waiting colluder looks at the board

VetJoin = Callable[[JoinRequest], Enrollment]
"""A join request -> the enrollment to seal; raises ValueError naming why not."""


@dataclass
class _Orphan:
    """A block waiting for its parent, and whom to ask for ancestors."""

    block: bytes
    sources: tuple[str, ...]
    parent: bytes


class Checks:
    """How a site checks offers and redoes merges: on its own, every time.

    Sites simulated together on one host may share one `Checks` that
    remembers answers (`simulations.engine.shared_checks`): both checks are
    pure functions of what they are given, so sharing the answer changes the
    cost, never the outcome.
    """

    def offer(
        self,
        offer: UpdateOffer,
        expected_index: int | None,
        model: ArrayRecord | None,
        model_block: bytes | None,
        swarm_id: bytes,
        limits: UpdateLimits,
    ) -> tuple[bytes, str | None]:
        """The offer's hash and why it must be refused, if it must (`offer_problem`)."""
        return offer_problem(offer, expected_index, model, swarm_id, limits)

    def known_merge(self, record: RoundRecord) -> MergeOutcome | None | bool:
        """A verdict on the block's merge reached before: the outcome, or False
        (refused); None when there is none, so the merge must be redone."""
        return None

    def merge(
        self,
        strategy: LeaderStrategy,
        record: RoundRecord,
        model: ArrayRecord | None,
        state: bytes,
        updates: Sequence[Update],
    ) -> MergeOutcome | None:
        """Redo a sealed round's merge (`verify_merge`)."""
        return verify_merge(strategy, record, model, state, updates)


# -- the core ---------------------------------------------------------------------


class SiteCore:
    """One site's protocol state: its identity, replica, store and strategy."""

    def __init__(
        self,
        identity: SiteIdentity,
        sites: Sequence[str],
        ledger: LedgerAPI,
        strategy: LeaderStrategy,
        store: ModelStoreAPI,
        config: PeerConfig,
        initial_arrays: ArrayRecord | None = None,
        faults: FaultPlan = NO_FAULTS,
        checks: Checks | None = None,
        vet_join: VetJoin | None = None,
        join: JoinRequest | None = None,
    ) -> None:
        """`sites` are the founding sites in genesis order; who belongs later
        is read from the ledger (`membership`). `vet_join` admits sites that
        ask to join (None: joins are not heard); `join` is this site's own
        request when the coordinator enrolled it after the genesis."""
        self.identity = identity
        self.ledger = ledger
        self.strategy = strategy
        self.store = store
        self.config = config
        self.faults = faults
        self.checks = checks or Checks()
        self.log = PeerLog()
        self._failures = FailureLog()  # each failure of the app named once
        self.chain = ServedChain(BlockRef(0, ledger.swarm_id))
        self.chain.refresh(ledger)
        self.done = False
        self.crashed = False
        self.vet_join = vet_join
        self.join = join
        self._membership = Membership(tuple(sites))
        self._membership_at: bytes | None = None
        self._roster_index = {a: i for i, a in enumerate(self._membership.roster)}
        self._dialled = 0  # dial entries of the membership handed out
        self._joins: dict[str, Enrollment] = {}  # heard, vetted, not sealed yet
        self._leaves: dict[str, bytes] = {}  # site -> its signed leave
        self._leaving = False  # this site asked to leave (`swarmflower leave`)
        self._limits = UpdateLimits.from_params(ledger.genesis.params)
        self._lost = faults.send_filter(identity.index)
        self._resumed = ledger.head()
        self._model: ArrayRecord | None = None
        self._state = b""
        self._model_block: bytes | None = None
        self._model_round = -1
        self._round_state_reset()
        self._refused: set[bytes] = set()
        self._orphans: list[_Orphan] = []
        self._fetching: dict[bytes, float] = {}  # digest -> when asked
        self._no_source: dict[bytes, float] = {}  # digest -> when found nowhere
        self._peer_heads: dict[str, bytes] = {}
        self._draws: dict[bytes, frozenset[str] | None] = {}  # by parent hash
        self._finished_at: float | None = None
        self._agreed_at: float | None = None
        if initial_arrays is not None:
            self._remember_initial(initial_arrays)

    def _round_state_reset(self) -> None:
        """Forget every round above the adopted one (after a fork switch)."""
        self._offers: dict[int, dict[str, UpdateOffer]] = {}
        self._mine: dict[int, UpdateOffer] = {}
        self._offered_at: dict[int, float] = {}
        self._held: dict[int, tuple[UpdateOffer, float]] = {}  # a straggler's
        self._crafting: dict[int, tuple[int, ArrayRecord, float]] = {}  # colluder
        self._started: dict[int, float] = {}
        self._training: int | None = None
        self._trained_round = self._model_round

    # -- membership ---------------------------------------------------------

    def _current(self) -> Membership:
        """The membership as of this replica's head (cached per head)."""
        head = self.ledger.head().hash
        if head != self._membership_at:
            membership = self.ledger.membership(head)
            if membership.roster is not self._membership.roster:
                roster = membership.roster
                self._roster_index = {a: i for i, a in enumerate(roster)}
                mine = self._roster_index.get(self.address)
                if mine is not None and mine != self.identity.index:
                    self.identity = replace(self.identity, index=mine)
            self._membership, self._membership_at = membership, head
        return self._membership

    @property
    def sites(self) -> tuple[str, ...]:
        """The swarm's members now, in roster order."""
        return self._current().members

    @property
    def _index_of(self) -> dict[str, int]:
        """Each site's index in offers: its place in the roster, for good."""
        self._current()
        return self._roster_index

    @property
    def left(self) -> frozenset[str]:
        """Sites that left the swarm (never heard, never served a model)."""
        return self._current().left

    def _is_member(self, site: str) -> bool:
        """In O(1), unlike `site in self.sites` (a Ray host runs 1000 cores)."""
        return site in self._index_of and site not in self.left

    def take_dials(self) -> tuple[tuple[str, str], ...]:
        """Sites enrolled since the last call, with where they listen: a
        driver whose transport dials tells it (addresses travel on the
        ledger, never in files)."""
        dial = self._current().dial
        if len(dial) < self._dialled:  # a fork switch undid an enrollment
            self._dialled = 0
        new, self._dialled = dial[self._dialled :], len(dial)
        return tuple((a, where) for a, where in new if a != self.address and where)

    # -- what drivers read -------------------------------------------------

    @property
    def address(self) -> str:
        return self.identity.address

    @property
    def model(self) -> ArrayRecord | None:
        return self._model

    @property
    def limits(self) -> UpdateLimits:
        return self._limits

    @property
    def round_in_progress(self) -> int:
        """The round this site is working towards (its adopted round + 1)."""
        return self._model_round + 1

    @property
    def finishing(self) -> bool:
        """Whether the site has played every round and is serving the others."""
        return self._finished_at is not None

    def wakeup(self, now: float) -> float | None:
        """The next time after `now` at which `tick` may have something to do
        (a held update's release, a resend, this site's turn to seal, a fetch
        to retry); None if only an event can move it. Drivers that poll may
        ignore it; a simulation schedules its next tick by it."""
        if self.crashed or self.done:
            return None
        times = [t for _, t in self._held.values()]
        times += [min(t, now + COLLUSION_POLL_S) for _, _, t in self._crafting.values()]
        times += [t + self.config.round_timeout for t in self._offered_at.values()]
        times += [t + FETCH_RETRY_S for t in self._no_source.values()]
        round = self._model_round + 1
        started = self._started.get(round)
        if started is not None and round <= self.config.rounds:
            for view, electee in enumerate(self._electees(round)):
                if electee == self.address:
                    times.append(started + self._deadline(view, round))
        later = [t for t in times if t > now]
        return min(later, default=None)

    def _deadline(self, view: int, round: int) -> float:
        config = self.config
        return seal_deadline(
            view, config.update_wait, config.round_timeout, self._grace(round)
        )

    def _grace(self, round: int) -> float:
        """Round 1 waits for every site's start (`PeerConfig.start_grace`)."""
        return self.config.start_grace if round == 1 else 0.0

    # -- events --------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        """Begin (or resume): ask for the blocks this replica lacks."""
        return [FetchChain(self.ledger.head().height + 1, self.config.rounds + 1)]

    def chain_fetched(self, blocks: Sequence[bytes], now: float) -> list[Action]:
        """Import caught-up blocks in order, up to the first that does not fit."""
        actions: list[Action] = []
        for block in blocks:
            fetches = self._connect(block, (), now)
            actions += fetches
            if fetches:
                break
        return actions + self.tick(now)

    def tick(self, now: float) -> list[Action]:
        """Time has passed: do whatever the protocol asks of this site now."""
        if self.crashed or self.done:
            return []
        actions: list[Action] = []
        for _ in range(self.config.rounds + 2):  # adopt, at most, every round
            stepped, more = self._step(now)
            actions += more
            if not stepped or self.crashed:
                break
        return actions

    def received(self, message: PeerMessage, now: float) -> list[Action]:
        """An offer or a block from another site."""
        if self.crashed:
            return []
        actions: list[Action] = []
        if isinstance(message, UpdateOffer):
            self._accept_offer(message)
        elif isinstance(message, BlockAnnouncement):
            actions += self._connect(message.block, (), now)
        elif isinstance(message, JoinRequest):
            self._hear_join(message)
        elif isinstance(message, LeaveRequest):
            self._hear_leave(message)
        return actions + self.tick(now)

    def trained(
        self,
        round: int,
        result: LocalUpdate | tuple[int, ArrayRecord] | AppFailure,
        now: float,
    ) -> list[Action]:
        """The site's ClientApp answered the `Train` of `round`: its update
        (examples, arrays and, optionally, train metrics) or its failure."""
        if self.crashed or self._training != round:
            return []
        self._training, self._trained_round = None, round
        if isinstance(result, AppFailure):
            self._failures(self.identity.name, round, result)
            self.log.failed.append((round, result))
            return self.tick(now)
        self.log.trained.append(round)
        log.info(
            "site %s trained round %d after %.2f s",
            self.identity.name,
            round,
            now - self._started.get(round, now),
        )
        trained = LocalUpdate(*result)
        self.log.train_metrics[round] = dict(trained.metrics or {})
        num_examples, update = self._tamper(round, trained.num_examples, trained.arrays)
        attack = self.faults.attack
        if attack is not None and self._model is not None:
            if attack.colludes:
                return self._collude(attack, round, num_examples, update, now)
            update = attack.poison(self.identity.index, round, self._model, update)
        self._hold(round, num_examples, update, now)
        return self.tick(now)

    def _hold(
        self, round: int, num_examples: int, update: ArrayRecord, now: float
    ) -> None:
        """Sign this site's update of `round`; it leaves when its delay is over."""
        digest = self.store.put_arrays(update)
        offer = sign_offer(
            self.identity,
            self.ledger.swarm_id,
            round,
            num_examples,
            update,
            digest,
            parent=self._model_block or self.ledger.swarm_id,  # trained on it
        )
        self._held[round] = (offer, now + self.faults.delay(self.identity.index, round))

    def _collude(
        self,
        attack: Attack,
        round: int,
        num_examples: int,
        update: ArrayRecord,
        now: float,
    ) -> list[Action]:
        """A colluding attack: honest sites show their change on the board;
        an attacker waits (bounded) until every honest site's is there, then
        crafts its update from them (`collusion.py`)."""
        me, model = self.identity.index, self._model
        parent = self._model_block or self.ledger.swarm_id
        if not attack.plays(me):
            attack.board.post(round, parent, me, change_of(model, update))
            self._hold(round, num_examples, update, now)
        else:
            wait = COLLUSION_WAIT_SHARE * self.config.update_wait
            self._crafting[round] = (num_examples, update, now + wait)
        return self.tick(now)

    def _crafted(self, round: int, now: float) -> bool:
        """Whether an attacker's update of `round` is crafted and held (or
        it was never waiting): once every honest drawn site has shown its
        change, or when its wait is over, with what it has seen."""
        waiting = self._crafting.get(round)
        attack = self.faults.attack
        if waiting is None or attack is None or self._model is None:
            return True
        num_examples, update, until = waiting
        parent = self._model_block or self.ledger.swarm_id
        seen = attack.board.seen(round, parent)
        drawn = self._drawn(round)
        honest = {
            self._index_of[site]
            for site in (drawn if drawn is not None else self.sites)
            if site in self._index_of and site not in self.left
        } - attack.sites
        if now < until and not honest <= seen.keys():
            return False
        del self._crafting[round]
        me = self.identity.index
        crafted = attack.poison(me, round, self._model, update, seen)
        self._hold(round, num_examples, crafted, now)
        return True

    def block_fetched(
        self, block_hash: bytes, block: bytes | None, sources: Sequence[str], now: float
    ) -> list[Action]:
        """A block asked for by hash, or None if no source had it."""
        if self.crashed:
            return []
        self._fetching.pop(block_hash, None)
        if block is None:
            log.info(
                "site %s: no peer has block 0x%s yet",
                self.identity.name,
                block_hash.hex()[:12],
            )
            if any(o.parent == block_hash for o in self._orphans):
                self._orphans = []  # the chain they wait on cannot be had now
            return self.tick(now)
        self.log.fetched.append(("block", block_hash))
        return self._connect(block, tuple(sources), now) + self.tick(now)

    def arrays_fetched(
        self, digest: bytes, arrays: ArrayRecord | None, now: float
    ) -> list[Action]:
        """Arrays asked for by hash; kept only if they hash to `digest`."""
        if self.crashed:
            return []
        self._fetching.pop(digest, None)
        if self.faults.crashes_mid_fetch(self.identity.index, self.round_in_progress):
            return self._crash(
                f"site crash mid-fetch in round {self.round_in_progress}"
            )
        if arrays is not None and hash_or_none(arrays) == digest:
            self.store.put_arrays(arrays, digest)
            self.log.fetched.append(("arrays", digest))
        else:
            self._no_source[digest] = now
        return self.tick(now)

    def blob_fetched(
        self, digest: bytes, blob: bytes | None, now: float
    ) -> list[Action]:
        """A strategy state asked for by hash; kept only if it hashes to `digest`."""
        if self.crashed:
            return []
        self._fetching.pop(digest, None)
        if blob is not None and content_hash(blob) == digest:
            self.store.put_blob(blob)
            self.log.fetched.append(("blob", digest))
        else:
            self._no_source[digest] = now
        return self.tick(now)

    def head_reported(self, peer: str, head: BlockRef, now: float) -> list[Action]:
        """A peer's head (anti-entropy): pull what this replica lacks, push this
        site's head to a peer that holds another."""
        if self.crashed:
            return []
        self._peer_heads[peer] = head.hash
        known = (
            head.hash == self.ledger.swarm_id
            if head.height == 0
            else self.ledger.knows(head.hash)
        )
        if not known:
            return self._fetch_block(head.hash, (peer,), now)
        mine = self.ledger.head()
        if mine.height > 0 and head.hash != mine.hash:
            return self._send(
                peer,
                BlockAnnouncement(mine.height, self.ledger.block_bytes(mine.height)),
            )
        return []

    # -- the step -------------------------------------------------------------

    def _step(self, now: float) -> tuple[bool, list[Action]]:
        """One move of the round loop: (whether the site moved on: adopted or
        sealed, so that it may move again at once; actions)."""
        if self.address in self.left:
            return False, self._leave()
        head = self.ledger.head()
        if head.height > 0 and head.hash != self._model_block:
            if head.hash in self._refused:
                self._started.setdefault(head.height, now)
                return self._sealing(head.height, now)
            adopted, actions = self._adopt(head.height, now)
            return adopted, actions
        if self._model_round >= self.config.rounds:
            self.done = self._settled(now)
            return False, []
        self._finished_at = None
        round = self._model_round + 1
        if self._trained_round < round and self._training is None:
            return False, self._begin(round, now)
        if self._training is not None:
            return False, []
        return self._sealing(round, now)

    def _sealing(self, round: int, now: float) -> tuple[bool, list[Action]]:
        sealed = len(self.log.sealed)
        actions = self._in_round(round, now)
        return len(self.log.sealed) > sealed, actions

    def _begin(self, round: int, now: float) -> list[Action]:
        self._started.setdefault(round, now)
        if self.faults.crashes_before_training(self.identity.index, round):
            return self._crash(f"site crash before training round {round}")
        if not self._is_member(self.address):
            self._trained_round = round
            return self._ask_to_join(round)
        if self._leaving:  # asked to leave: no more updates from this site
            self._trained_round = round
            return []
        if self.log.joined is None and self.join is not None:
            self.log.joined = self._enrolled_with(round - 1)
            log.warning(
                "site %s joined the swarm with round %d; trains from round %d",
                self.identity.name,
                self.log.joined,
                round,
            )
        electees = self._electees(round)
        if self.address in electees:
            self.log.elected.append((round, electees.index(self.address)))
        drawn = self._drawn(round)
        if drawn is not None and self.address not in drawn:
            log.info("site %s: not drawn to train round %d", self.identity.name, round)
            self.log.sat_out.append(round)
            self._trained_round = round
            return []
        assert self._model is not None
        self._training = round
        config = dict(self.strategy.train_config(round))
        if self.faults.attack is not None:  # label-flip: the app trains poisoned
            config.update(self.faults.attack.train_config(self.identity.index))
        return [Train(round, self._model, config)]

    def _in_round(self, round: int, now: float) -> list[Action]:
        """While a round is open: send a held update when its delay is over,
        send it again if it may have been lost, and seal when it is this
        site's turn."""
        if not self._crafted(round, now):  # a colluder still waiting may lead
            return self._maybe_seal(round, now)
        held = self._held.get(round)
        if held is not None:
            if now < held[1]:
                return []
            del self._held[round]
            self._mine[round] = held[0]
            return self._offer_to_electees(held[0], now, include_self=True)
        actions = self._offer_again(round, now)
        return actions + self._maybe_seal(round, now)

    # -- offering -----------------------------------------------------------

    def _electees(self, round: int) -> tuple[str, ...]:
        return self.ledger.electees(
            round, min(1 + self.config.backups, len(self.sites))
        )

    def _drawn(self, round: int) -> frozenset[str] | None:
        """The sites drawn to train `round` (None: all), from the hash of the
        round's parent on this replica (`round_rules.drawn_sites`)."""
        count = self.ledger.genesis.params.train_sites
        if not count or self.ledger.head().height < round - 1:
            return None
        parent = self.ledger.block_hash(round - 1)
        if parent not in self._draws:
            if len(self._draws) >= DRAWS_KEPT:
                self._draws.pop(next(iter(self._draws)))
            self._draws[parent] = drawn_sites(parent, round, self.sites, count)
        return self._draws[parent]

    def _offer_to_electees(
        self, offer: UpdateOffer, now: float, include_self: bool
    ) -> list[Action]:
        self._offered_at[offer.round] = now
        actions: list[Action] = []
        for electee in self._electees(offer.round):
            if electee != self.address:
                actions += self._send(electee, offer)
            elif include_self:
                self._accept_offer(offer)
        return actions

    def _offer_again(self, round: int, now: float) -> list[Action]:
        """Send this site's update again while its round stays open: an offer
        lost on the way must not leave every electee short of `min_peers`."""
        offer, sent = self._mine.get(round), self._offered_at.get(round)
        if offer is None or sent is None or now - sent < self.config.round_timeout:
            return []
        return self._offer_to_electees(offer, now, include_self=False)

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

    def _send(self, to: str, message: PeerMessage) -> list[Action]:
        if self._lost():
            log.info("site %s: a message to %s is lost (drill)", self.identity.name, to)
            return []
        return [Send(to, message)]

    # -- receiving offers -------------------------------------------------------

    def _accept_offer(self, offer: UpdateOffer) -> None:
        """Keep a valid update for its round; a late one is never merged elsewhere."""
        commitment = offer.commitment
        if offer.round <= self._model_round:
            log.info(
                "site %s: the round-%d update of site %d came after the round "
                "was sealed here; not merged",
                self.identity.name,
                offer.round,
                offer.site_index + 1,
            )
            self.log.late.append((offer.round, offer.site_index))
            return
        if offer.round > self._model_round + LOOKAHEAD:
            return
        drawn = (
            self._drawn(offer.round) if offer.round == self.round_in_progress else None
        )
        if drawn is not None and commitment.site not in drawn:
            why = f"site not drawn to train round {offer.round}"
            self._refuse_update(offer.round, offer.site_index, commitment.site, why)
            return
        index = self._index_of.get(commitment.site)  # None: never enrolled
        digest, reason = self.checks.offer(
            offer,
            None if commitment.site in self.left else index,
            self._model,
            self._model_block,
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

    # -- leading -----------------------------------------------------------------

    def _maybe_seal(self, round: int, now: float) -> list[Action]:
        """Seal if this site is the proposer whose turn it is (`round_rules`)."""
        offers = self._drawn_offers(round)
        if self._leaving:
            return []  # a leaving site seals no block that could outlive its leave
        if len(offers) < self.config.min_peers:
            self._say_short(round, offers, now)
            return []
        current = (
            self.ledger.round(round) if self.ledger.head().height >= round else None
        )
        if current is not None and current.block_hash not in self._refused:
            return []
        for view, electee in enumerate(self._electees(round)):
            if electee != self.address or (
                current is not None and view <= current.view
            ):
                continue
            if may_seal(
                view,
                updates_in=len(offers),
                num_sites=len(self._drawn(round) or self.sites),
                elapsed=now - self._started.setdefault(round, now),
                update_wait=self.config.update_wait,
                round_timeout=self.config.round_timeout,
                grace=self._grace(round),
            ):
                if self._stamp_ahead(round, view, now):
                    return []  # wait: the tick after the clock catches up seals
                return self._seal(round, view, seal_reason(view, current), now)
            return []
        return []

    def _stamp_ahead(self, round: int, view: int, now: float) -> bool:
        """Whether this block's timestamp would run too far ahead of the clock.

        Timestamps are whole seconds and rise by at least one a block, so
        rounds faster than one a second stamp blocks ahead of the wall clock
        until replicas refuse them as from the future (`MAX_DRIFT`). A real
        site's leader lets its stamps lead its clock by `MAX_STAMP_LEAD_S`
        at most, then waits: fast swarms slow to a round a second."""
        if self.config.logical_time:
            return False
        return self._timestamp(round, view, now) > now + MAX_STAMP_LEAD_S

    def _say_short(self, round: int, offers: Mapping[str, object], now: float) -> None:
        """Once a round, when this site is the round's leader and its time to
        seal has come with fewer than `min_peers` updates in: the round waits,
        and for whom (the sites drawn to train that sent nothing)."""
        if round in self.log.waiting or self._electees(round)[:1] != (self.address,):
            return
        elapsed = now - self._started.setdefault(round, now)
        if elapsed < self.config.round_timeout + self._grace(round):
            return
        missing = self._missing(round, offers)
        self.log.waiting[round] = missing
        who = self._named(missing)
        log.warning(
            "site %s: round %d waits: %d of the %d updates needed to seal are in; "
            "no update from %s",
            self.identity.name,
            round,
            len(offers),
            self.config.min_peers,
            who or "nobody (updates refused)",
        )

    def _missing(self, round: int, offers: Mapping[str, object]) -> tuple[str, ...]:
        """The sites drawn to train `round` whose update is not in `offers`."""
        expected = self._drawn(round) or self.sites
        return tuple(a for a in self.sites if a in expected and a not in offers)

    def _named(self, sites: Sequence[str]) -> str:
        return ", ".join(f"site {self._index_of[a] + 1} ({a})" for a in sites)

    def _drawn_offers(self, round: int) -> dict[str, UpdateOffer]:
        """The round's offers held here from sites drawn to train it (offers
        held ahead of the draw are sorted out now)."""
        offers = self._offers.get(round, {})
        if self.ledger.head().height >= round - 1:
            # an update trained on another block can only be sealed there
            parent = self.ledger.block_hash(round - 1)
            offers = {
                site: offer
                for site, offer in offers.items()
                if offer.commitment.parent == parent
            }
        drawn = self._drawn(round)
        if drawn is None:
            return offers
        return {site: offer for site, offer in offers.items() if site in drawn}

    def _seal(self, round: int, view: int, reason: Reason, now: float) -> list[Action]:
        if view == 0 and self.faults.crashes_while_leading(round):
            return self._crash(f"leader crash in round {round}")
        drawn = self._drawn_offers(round)
        if self._grace(round) and (missing := self._missing(round, drawn)):
            log.warning(
                "site %s: round %d starts without %s after the %.0f s start-up grace",
                self.identity.name,
                round,
                self._named(missing),
                self._grace(round),
            )
        offers = sorted(drawn.values(), key=lambda o: o.site_index)
        before = self.sites  # a site leaving with this block hears of it too
        log.info(
            "site %s seals round %d view %d with %d updates (%s) after %.2f s",
            self.identity.name,
            round,
            view,
            len(offers),
            reason.name,
            now - self._started.get(round, now),
        )
        merge = leader_merge(
            self.strategy,
            round,
            self._model,
            self._state,
            offers,
            dishonest=view == 0 and self.faults.is_dishonest(round),
        )
        roster = self._current().roster
        for site, why in merge.refused:
            self._refuse_update(round, site, roster[site], f"merge failed: {why}")
            del self._offers[round][roster[site]]
        outcome = merge.outcome
        if outcome is None or len(merge.merged) < self.config.min_peers:
            return []  # too few mergeable updates yet: wait for more
        self.store.put_arrays(outcome.arrays)
        self.store.put_blob(outcome.state)
        block = self.ledger.seal_round(
            self.identity.key,
            round,
            arrays_hash(outcome.arrays),
            outcome.state_hash,
            [o.commitment for o in merge.merged],
            view=view,
            reason=reason,
            enrollments=self._sealable_joins(),
            timestamp=self._timestamp(round, view, now),
            leaves=self._sealable_leaves(),
        )
        self.log.sealed.append((round, view, reason))
        self._after_import()
        if view == 0 and self.faults.crashes_before_announcing(round):
            return self._crash(
                f"leader crash after sealing round {round}, not announced"
            )
        announcement = BlockAnnouncement(round, block)
        return [
            a
            for s in dict.fromkeys((*before, *self.sites))
            if s != self.address
            for a in self._send(s, announcement)
        ]

    # -- joining and leaving ------------------------------------------------------

    def _ask_to_join(self, round: int) -> list[Action]:
        """Not a member yet: ask every member to put this site on the ledger
        (again each round until a block does)."""
        if self.join is None:
            log.warning(
                "site %s is not a member of the swarm as of round %d",
                self.identity.name,
                round - 1,
            )
            return []
        log.info("site %s asks to join before round %d", self.identity.name, round)
        return [a for s in self.sites for a in self._send(s, self.join)]

    def _enrolled_with(self, adopted: int) -> int:
        """The round whose block enrolled this site (it may have adopted a
        later one first, catching up), at most `adopted`."""
        for round in range(adopted, 0, -1):
            enrolled = self.ledger.round(round).enrolled
            if any(e.address == self.address for e in enrolled):
                return round
        return adopted

    def _hear_join(self, request: JoinRequest) -> None:
        if self.vet_join is None or request.address in self._current().roster:
            return
        if request.address in self._joins:
            return
        try:
            enrollment = self.vet_join(request)
        except ValueError as exc:
            log.warning(
                "site %s: refused the join of %s: %s",
                self.identity.name,
                request.address,
                exc,
            )
            return
        log.info(
            "site %s: %s asks to join (listens at %s)",
            self.identity.name,
            request.address,
            request.listen or "nowhere",
        )
        self._joins[request.address] = enrollment

    def _leave(self) -> list[Action]:
        """A block this replica holds took this site's leave: stop here."""
        round = self.ledger.head().height
        log.warning("site %s left the swarm with round %d", self.identity.name, round)
        self.log.left = round
        self.done = True
        return []

    def _hear_leave(self, request: LeaveRequest) -> None:
        if not self._is_member(request.site) or request.site in self._leaves:
            return
        try:
            verify_leave(self.ledger.swarm_id, request.site, request.signature)
        except InvalidBlock as exc:
            log.warning("site %s: refused a leave: %s", self.identity.name, exc)
            return
        log.info("site %s: %s asks to leave", self.identity.name, request.site)
        self._leaves[request.site] = request.signature
        if request.site == self.address and not self._leaving:
            self._leaving = True
            log.warning(
                "site %s asked to leave: it trains and seals no more, and stops "
                "once a block takes its leave",
                self.identity.name,
            )

    def _sealable_joins(self) -> list[Enrollment]:
        roster = self._current().roster
        self._joins = {a: e for a, e in self._joins.items() if a not in roster}
        return list(self._joins.values())

    def _sealable_leaves(self) -> list[tuple[str, bytes]]:
        self._leaves = {a: s for a, s in self._leaves.items() if self._is_member(a)}
        return list(self._leaves.items())

    def _timestamp(self, round: int, view: int, now: float) -> int:
        parent = (
            self.ledger.genesis.timestamp
            if round == 1
            else self.ledger.round(round - 1).timestamp
        )
        earliest = earliest_timestamp(parent, view, int(self.config.round_timeout))
        return earliest if self.config.logical_time else max(int(now), earliest)

    # -- blocks ---------------------------------------------------------------

    def _connect(
        self, block: bytes, sources: tuple[str, ...], now: float
    ) -> list[Action]:
        """Import `block`; if its parent is missing, keep it and ask for the
        parent by hash (from `sources`, then every site), walking back until
        it connects."""
        try:
            self.ledger.import_block(block)
        except UnknownParent as exc:
            if len(self._orphans) > self.config.rounds:
                log.warning("site %s: a block never connects", self.identity.name)
                self._orphans = []
                return []
            self._orphans.append(_Orphan(block, sources, exc.parent_hash))
            everyone = (*sources, *(a for a in self.sites if a not in sources))
            return self._fetch_block(exc.parent_hash, everyone, now)
        except InvalidBlock as exc:
            log.warning("site %s: refused a block: %s", self.identity.name, exc)
            self._orphans = []
            return []
        self._adopt_orphans()
        self._after_import()
        return []

    def _adopt_orphans(self) -> None:
        """Import waiting blocks whose parents are now here, nearest ancestor first."""
        while self._orphans:
            orphan = self._orphans.pop()
            try:
                self.ledger.import_block(orphan.block)
            except UnknownParent:
                self._orphans.append(orphan)
                return
            except InvalidBlock as exc:
                log.warning("site %s: refused a block: %s", self.identity.name, exc)
                self._orphans = []
                return

    def _fetch_block(
        self, block_hash: bytes, sources: tuple[str, ...], now: float
    ) -> list[Action]:
        if block_hash in self._fetching:
            return []
        self._fetching[block_hash] = now
        return [FetchBlock(block_hash, sources)]

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
        started = {r: t for r, t in self._started.items() if r <= head.height}
        self._round_state_reset()
        self._started = started

    # -- adopting ----------------------------------------------------------------

    def _adopt(self, height: int, now: float) -> tuple[bool, list[Action]]:
        """Verify and adopt the canonical model of round `height`, or say
        what must be fetched first."""
        record = self.ledger.round(height)
        parent_is_mine = height == self._model_round + 1 and (
            height == 1 or self.ledger.block_hash(height - 1) == self._model_block
        )
        if parent_is_mine:
            outcome, actions = self._recompute(record, now)
            if outcome is None:
                return False, actions
            arrays, state, recomputed = outcome.arrays, outcome.state, True
            self.log.audits[height] = RoundAudit(outcome.audit, outcome.held_back)
        else:
            found, actions = self._model_of(record, now)
            if found is None:
                return False, actions
            (arrays, state), recomputed = found, False
        self._take(record, arrays, state, recomputed)
        return True, []

    def _recompute(
        self, record: RoundRecord, now: float
    ) -> tuple[MergeOutcome | None, list[Action]]:
        """The block's merge redone from the committed updates (fetching those
        this site lacks); None, and the block refused, if it does not match."""
        drawn = self._drawn(record.round)
        if drawn is not None and not set(record.contributors) <= drawn:
            self._refuse(record, "it merges a site not drawn to train the round")
            return None, []
        outcome = self.checks.known_merge(record)
        if outcome is None:
            updates, missing = self._committed_updates(record)
            if missing:
                return None, self._fetch_all(FetchArrays, missing, record, now)
            outcome = self.checks.merge(
                self.strategy, record, self._model, self._state, updates
            )
        if not outcome:
            self._refuse(record, "merged model does not match the committed updates")
            return None, []
        return outcome, []

    def _take(
        self, record: RoundRecord, arrays: ArrayRecord, state: bytes, recomputed: bool
    ) -> None:
        self.store.put_arrays(arrays, record.model_hash)  # checked against it
        self.store.put_blob(state)
        self._model, self._state = arrays, state
        self._model_block, self._model_round = record.block_hash, record.round
        self.chain.adopted(BlockRef(record.round, record.block_hash, record.view))
        later = {r: o for r, o in self._offers.items() if r > record.round}
        mine = {r: o for r, o in self._mine.items() if r > record.round}
        self._offers, self._mine = later, mine
        self._held = {r: h for r, h in self._held.items() if r > record.round}
        self._offered_at = {
            r: t for r, t in self._offered_at.items() if r > record.round
        }
        self._no_source = {}
        self._trained_round, self._training = record.round, None
        self.log.adopted.append(
            Adoption(record.round, record.block_hash, record.model_hash, recomputed)
        )
        for enrolled in record.enrolled:
            self.log.membership.append((record.round, "enrolled", enrolled.address))
        for site in record.left:
            self.log.membership.append((record.round, "left", site))

    def _committed_updates(
        self, record: RoundRecord
    ) -> tuple[list[Update], list[bytes]]:
        """The updates behind a block's commitments (offers held, else the
        store), each checked against its hash; and the hashes to fetch."""
        held = self._offers.get(record.round, {})
        stored: dict[bytes, ArrayRecord] = {}
        missing: list[bytes] = []
        for commitment in record.commitments:
            offer = held.get(commitment.site)
            if offer and offer.commitment.update_hash == commitment.update_hash:
                continue
            arrays = self.store.get_arrays(commitment.update_hash)
            if arrays is None:
                missing.append(commitment.update_hash)
            else:
                stored[commitment.update_hash] = arrays
        if missing:
            return [], missing
        updates = committed_updates(record, held, self._index_of, stored.get)
        if updates is None:  # a stored update no longer matches its hash
            return [], list(stored)
        return updates, []

    def _model_of(
        self, record: RoundRecord, now: float
    ) -> tuple[tuple[ArrayRecord, bytes] | None, list[Action]]:
        """A missed round's model and strategy state by their ledger hashes,
        from the store, else fetched."""
        arrays = self.store.get_arrays(record.model_hash)
        if arrays is not None and hash_or_none(arrays) != record.model_hash:
            arrays = None
        state = self.store.get_blob(record.state_hash)
        if state is not None and content_hash(state) != record.state_hash:
            state = None
        if arrays is not None and state is not None:
            return (arrays, state), []
        actions: list[Action] = []
        if arrays is None:
            actions += self._fetch_all(FetchArrays, [record.model_hash], record, now)
        if state is None:
            actions += self._fetch_all(FetchBlob, [record.state_hash], record, now)
        return None, actions

    def _fetch_all(
        self,
        kind: type[FetchArrays] | type[FetchBlob],
        digests: Sequence[bytes],
        record: RoundRecord,
        now: float,
    ) -> list[Action]:
        """Fetches for `digests` not already asked for, nor found nowhere just now."""
        sources = (record.leader, *(a for a in self.sites if a != record.leader))
        actions: list[Action] = []
        for digest in dict.fromkeys(digests):
            failed_at = self._no_source.get(digest)
            if digest in self._fetching or (
                failed_at is not None and now - failed_at < FETCH_RETRY_S
            ):
                continue
            self._fetching[digest] = now
            actions.append(kind(digest, sources))
        return actions

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

    # -- finishing ---------------------------------------------------------------

    def _settled(self, now: float) -> bool:
        """Whether this finished site may stop serving (see `PeerConfig`)."""
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

    # -- bookkeeping --------------------------------------------------------------

    def _remember_initial(self, arrays: ArrayRecord) -> None:
        check_initial_model(arrays, self.ledger.genesis, f"site {self.identity.name}")
        self.store.put_arrays(arrays)
        self._model = arrays
        self._state = self.strategy.initial_state(arrays)
        self._model_round = 0
        self._trained_round = 0

    def _crash(self, why: str) -> list[Action]:
        log.info("site %s: %s", self.identity.name, why)
        self.crashed = True
        return [Crash(why)]
