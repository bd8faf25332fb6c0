"""Many sites' `SiteCore`s played against simulated time: the Ray engine's heart.

Every simulated site runs the same core as a thread or a hospital's process;
this driver delivers what the cores send at the times the sites' profiles
say (`timing.Heterogeneity`: compute speed, latency, bandwidth), answers
their fetches from the peers that hold what is asked for, and ticks each
core when it has asked to be woken. So late updates, blocks that arrive
before their parents, missed rounds and catch-up by fetch happen here as
they do at real sites. Training and scoring, the heavy part, go to a
`Trainer` (Ray actors in `ray_engine`); the cores share one ledger replica
and one store through per-site views (`ledger.site_view`, `shared_state`).

A site that drops out of a round, or crashes, is down: it receives nothing
and sends nothing. It comes back as a restarted site does, from its own
replica and store, and must fetch the blocks and the model it missed.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from flwr.app import ArrayRecord

from swarmflower.app_calls import AppFailure, unsealable
from swarmflower.errors import SwarmflowerError
from swarmflower.identity import SiteIdentity
from swarmflower.ledger import InvalidBlock, RoundRecord, SiteView
from swarmflower.simulations.engine.availability import Availability
from swarmflower.simulations.engine.shared_state import SiteStore
from swarmflower.simulations.engine.timing import Heterogeneity
from swarmflower.site_actions import (
    Action,
    Crash,
    FetchArrays,
    FetchBlob,
    FetchBlock,
    FetchChain,
    PeerConfig,
    Send,
    Train,
)
from swarmflower.site_core import SiteCore
from swarmflower.transport.base import BlockAnnouncement, UpdateOffer

log = logging.getLogger("swarmflower.simulated_swarm")

MAX_EVENTS_PER_SITE_ROUND = 200  # events per site and round before giving up
MAX_WAITS = 100  # round timeouts a round may take before it is declared lost


class RoundLost(SwarmflowerError):
    """No electee could seal a round (too few sites up, or every proposer down)."""


@dataclass(frozen=True)
class TrainJob:
    """One site's training for one round, as its core asked."""

    site: int
    round: int
    model: ArrayRecord
    config: dict


class Trainer(ABC):
    """Runs the sites' ClientApps: training on request, scoring per round."""

    @abstractmethod
    def submit(self, jobs: Sequence[TrainJob]) -> None:
        """Start `jobs` (possibly in the background)."""

    @abstractmethod
    def result(self, job: TrainJob) -> tuple[int, ArrayRecord] | AppFailure:
        """A submitted job's (examples, update), or how the app failed."""

    @abstractmethod
    def score(
        self, model: ArrayRecord, round: int
    ) -> tuple[dict[int, float], dict[int, AppFailure]]:
        """Every site's test accuracy of `model`, and the apps that failed."""


@dataclass(frozen=True)
class SimRound:
    """One round as the simulation saw it, when every site up had adopted it."""

    record: RoundRecord
    up: int  # sites that trained (or tried to) in the round
    site_accuracy: tuple[float, ...]
    failed_scores: tuple[tuple[int, AppFailure], ...]
    wall_s: float
    sim_s: float


@dataclass
class SimSite:
    """One simulated site: its core, its own view of the ledger, its store."""

    identity: SiteIdentity
    view: SiteView
    store: SiteStore
    core: SiteCore
    down: bool = False
    back_after: int | None = None  # back once the swarm has sealed this height
    back_at_s: float | None = None  # or at this simulated time (a dropout)
    attempts: dict[int, int] = field(default_factory=dict)  # dropout draws


@dataclass(order=True)
class _Event:
    at: float
    seq: int
    site: int = field(compare=False)
    kind: str = field(compare=False)
    payload: object = field(compare=False, default=None)


class SimulatedSwarm:
    """The event loop: cores, simulated network, availability, rounds."""

    def __init__(
        self,
        sites: list[SimSite],
        make_core: Callable[[SiteIdentity, SiteView, SiteStore], SiteCore],
        observer: SiteView,
        trainer: Trainer,
        heterogeneity: Heterogeneity,
        availability: Availability,
        config: PeerConfig,
        local_steps: int,
        seed: int,
    ) -> None:
        self.sites = sites
        self.make_core = make_core
        self.observer = observer
        self.trainer = trainer
        self.heterogeneity = heterogeneity
        self.availability = availability
        self.config = config
        self.local_steps = local_steps
        self.seed = seed
        self.address_of = [s.identity.address for s in sites]
        self.index_of = {a: k for k, a in enumerate(self.address_of)}
        self._queue: list[_Event] = []
        self._seq = itertools.count()
        self._ticks: dict[int, float] = {}
        self._pending: list[TrainJob] = []
        self._trained: dict[int, set[int]] = {}  # round -> sites that trained
        self._adopters: dict[int, set[int]] = {}
        self._seen_adoptions = [0] * len(sites)
        self._down = 0  # sites down now
        self._seen_at: dict[bytes, float] = {}  # canonical block -> first seen
        self._dropped: dict[tuple[int, int], frozenset[int]] = {}
        self._draw = random.Random(seed)
        # Called with each round as it completes (the engine frees memory).
        self.on_complete: Callable[[int], None] | None = None
        self.now = 0.0

    # -- running -------------------------------------------------------------

    def run(self, rounds: int, on_round: Callable[[SimRound], None]) -> None:
        """Play until every round is complete; `on_round` gets each in turn."""
        for k in range(len(self.sites)):
            self._push(0.0, k, "start")
            self._next_gossip(k, 0.0)
        reported, wall = 0, time.perf_counter()
        limit = MAX_EVENTS_PER_SITE_ROUND * len(self.sites) * (rounds + 1)
        for _ in range(limit):
            while reported < rounds and self._complete(reported + 1):
                reported += 1
                on_round(self._report(reported, wall))
                if self.on_complete:
                    self.on_complete(reported)
                wall = time.perf_counter()
            if reported >= rounds:
                return
            if not self._queue:
                raise self._stuck(reported + 1)
            event = heapq.heappop(self._queue)
            if event.at > (reported + 1) * MAX_WAITS * self.config.round_timeout:
                raise self._stuck(reported + 1)
            self.now = event.at
            self._handle(event)
        raise RoundLost(f"round {reported + 1}: more than {limit} events")

    def _stuck(self, round: int) -> SwarmflowerError:
        """Why `round` can never be sealed: too many app failures, or too few sites."""
        failed = [f for s in self.sites for r, f in s.core.log.failed if r == round]
        up = len(self._trained.get(round, ()))
        stuck = unsealable(round, failed, up, self.observer.genesis.params.min_peers)
        if stuck is not None:
            return stuck
        return RoundLost(
            f"round {round}: no electee could seal it ({up} sites trained, "
            f"{self.observer.genesis.params.min_peers} updates needed; "
            f"{sum(s.down for s in self.sites)} sites down)"
        )

    def _push(self, at: float, site: int, kind: str, payload: object = None) -> None:
        heapq.heappush(self._queue, _Event(at, next(self._seq), site, kind, payload))

    # -- one event -------------------------------------------------------------

    def _handle(self, event: _Event) -> None:
        k, now = event.site, event.at
        site = self.sites[k]
        if event.kind == "restart":
            self._restart(k, now)
            return
        if site.down:
            return  # a message or answer to a site that is down is lost
        core = site.core
        if event.kind == "gossip":
            self._gossip(k, now)
            return
        if event.kind == "head":
            actions = core.head_reported(*event.payload, now)
        elif event.kind == "start":
            actions = core.start(now)
        elif event.kind == "tick":
            if self._ticks.get(k) == now:
                del self._ticks[k]
            actions = core.tick(now)
        elif event.kind == "deliver":
            self._observe(event.payload)
            actions = core.received(event.payload, now)
        elif event.kind == "trained":
            job, trained_by = event.payload
            result = self._training_result(job)
            if trained_by is not core:
                return  # asked by the site before it went down and came back
            actions = core.trained(job.round, result, now)
        else:
            actions = self._answer(core, event.payload, now)
        self._carry_out(k, actions, now)

    def _carry_out(self, k: int, actions: list[Action], now: float) -> None:
        for action in actions:
            self._route(k, action, now)
        site = self.sites[k]
        self._note_adoptions(k)
        if site.down or site.core.crashed:
            return
        wake = site.core.wakeup(now)
        if wake is not None and self._ticks.get(k) != wake:
            self._ticks[k] = wake
            self._push(wake, k, "tick")

    def _route(self, k: int, action: Action, now: float) -> None:
        match action:
            case Train():
                self._train(k, action, now)
            case Send(to, message):
                size = _size(message, self._update_bytes(message))
                to_k = self.index_of[to]
                at = now + self.heterogeneity.message_s(k, to_k, size)
                self._push(at, to_k, "deliver", message)
            case FetchBlock() | FetchArrays() | FetchBlob() | FetchChain():
                self._fetch(k, action, now)
            case Crash(why):
                self._go_down(k, self.sites[k].core.round_in_progress, why, now)

    # -- training ----------------------------------------------------------------

    def _train(self, k: int, action: Train, now: float) -> None:
        site = self.sites[k]
        attempt = site.attempts.get(action.round, 0)
        key = (action.round, attempt)
        if key not in self._dropped:
            self._dropped[key] = self.heterogeneity.dropped(
                action.round, self.seed, attempt
            )
        if k in self._dropped[key]:
            site.attempts[action.round] = attempt + 1
            self._drop_out(k, action.round, now)
            return
        job = TrainJob(k, action.round, action.model, action.config)
        self._pending.append(job)
        self._trained.setdefault(action.round, set()).add(k)
        done = now + self.heterogeneity.profiles[k].compute_s(
            self.local_steps, self.heterogeneity.step_s
        )
        self._push(done, k, "trained", (job, site.core))

    def _training_result(self, job: TrainJob) -> tuple[int, ArrayRecord] | AppFailure:
        """The job's result, all jobs asked for so far sent off first in one batch."""
        if self._pending:
            self.trainer.submit(self._pending)
            self._pending = []
        return self.trainer.result(job)

    # -- anti-entropy ---------------------------------------------------------

    def _next_gossip(self, k: int, now: float) -> None:
        if self.config.gossip_s:
            jitter = self._draw.uniform(0.75, 1.25)
            self._push(now + self.config.gossip_s * jitter, k, "gossip")

    def _gossip(self, k: int, now: float) -> None:
        """Site `k` asks a random peer for its head, as `SwarmPeer`'s gossip
        thread does; the answer reaches its core a round trip later."""
        if self.sites[k].core.done:
            return
        j = self._draw.choice([j for j in range(len(self.sites)) if j != k])
        peer = self.sites[j]
        if not peer.down:
            head = peer.core.chain.adopted_head
            at = now + self.heterogeneity.fetch_s(k, j, 0)
            self._push(at, k, "head", (self.address_of[j], head))
        self._next_gossip(k, now)

    # -- fetching -------------------------------------------------------------

    def _fetch(self, k: int, action: Action, now: float) -> None:
        """Answer a fetch from the first source up that holds what is asked,
        after the time the request and the answer take."""
        if isinstance(action, FetchChain):
            source, answer = self._chain_source(k, action)
        else:
            source, answer = self._source(k, action)
        size = _answer_size(answer)
        at = now + self.heterogeneity.fetch_s(k, source, size)
        self._push(at, k, "answer", (action, answer))

    def _source(self, k: int, action) -> tuple[int | None, object]:
        for address in action.sources:
            j = self.index_of.get(address)
            if j is None or j == k or self.sites[j].down:
                continue
            site = self.sites[j]
            if isinstance(action, FetchBlock):
                if site.view.knows(action.block_hash):
                    return j, self.observer_bytes(action.block_hash)
            elif isinstance(action, FetchArrays):
                arrays = site.store.get_arrays(action.digest)
                if arrays is not None:
                    return j, arrays
            elif (blob := site.store.get_blob(action.digest)) is not None:
                return j, blob
        return None, None

    def _chain_source(self, k: int, action: FetchChain) -> tuple[int | None, object]:
        """Blocks from a site up that holds the swarm's head (else the longest
        chain up): a returning site asks any reachable peer."""
        peers = [j for j, s in enumerate(self.sites) if j != k and not s.down]
        if not peers:
            return None, []
        top = self.observer.head().hash
        holders = (j for j in peers if self.sites[j].view.knows(top))
        best = next(holders, None)
        if best is None:
            best = max(peers, key=lambda j: (self.sites[j].view.head().height, -j))
        view = self.sites[best].view
        end = min(action.end, view.head().height + 1)
        return best, [view.block_bytes(h) for h in range(max(action.start, 1), end)]

    def observer_bytes(self, block_hash: bytes) -> bytes:
        return self.observer.shared.block_data(block_hash)

    def _answer(self, core: SiteCore, payload, now: float) -> list[Action]:
        action, answer = payload
        match action:
            case FetchBlock(block_hash, sources):
                if answer is not None:
                    self._observe(BlockAnnouncement(0, answer))
                return core.block_fetched(block_hash, answer, sources, now)
            case FetchArrays(digest):
                return core.arrays_fetched(digest, answer, now)
            case FetchBlob(digest):
                return core.blob_fetched(digest, answer, now)
            case FetchChain():
                return core.chain_fetched(answer, now)
        raise TypeError(f"unknown fetch {action!r}")

    # -- sites going down and coming back --------------------------------------

    def _drop_out(self, k: int, round: int, now: float) -> None:
        """Site `k` misses `round`: back when it is sealed, or a round timeout
        later (then it draws again whether it is there)."""
        site = self.sites[k]
        self._set_down(site, round, now + self.config.round_timeout)
        self._push(site.back_at_s, k, "restart")

    def _go_down(self, k: int, round: int, why: str, now: float) -> None:
        """A crash from the fault plan: down until the plan brings it back."""
        back = self.availability.crash(k, round, why)
        self._set_down(self.sites[k], None if back is None else back - 1, None)
        self._check_returns()

    def _set_down(self, site: SimSite, after: int | None, at_s: float | None) -> None:
        if not site.down:
            self._down += 1
        site.down, site.back_after, site.back_at_s = True, after, at_s

    def _restart(self, k: int, now: float) -> None:
        """Bring site `k` back, as a restarted process, if it is due."""
        site = self.sites[k]
        if not site.down:
            return
        sealed = self.observer.head().height
        due = (site.back_after is not None and sealed >= site.back_after) or (
            site.back_at_s is not None and now >= site.back_at_s
        )
        if not due:
            return
        site.down, site.back_after, site.back_at_s = False, None, None
        self._down -= 1
        site.core = self.make_core(site.identity, site.view, site.store)
        self._ticks.pop(k, None)
        self._carry_out(k, site.core.start(now), now)
        self._next_gossip(k, now)

    def _check_returns(self) -> None:
        """Sites waiting for the swarm to reach a height: bring back those due."""
        sealed = self.observer.head().height
        for k, site in enumerate(self.sites):
            if site.down and site.back_after is not None and sealed >= site.back_after:
                self._push(self.now, k, "restart")

    def _observe(self, message) -> None:
        """The observer replica follows every block that reaches a site."""
        if not isinstance(message, BlockAnnouncement):
            return
        before = self.observer.head().height
        try:
            self.observer.import_block(message.block)
        except InvalidBlock:
            return
        head = self.observer.head()
        self._seen_at.setdefault(head.hash, self.now)
        if head.height > before:
            self._check_returns()

    # -- rounds ------------------------------------------------------------------

    def _note_adoptions(self, k: int) -> None:
        adopted = self.sites[k].core.log.adopted
        for adoption in adopted[self._seen_adoptions[k] :]:
            self._adopters.setdefault(adoption.round, set()).add(k)
        self._seen_adoptions[k] = len(adopted)

    def _complete(self, round: int) -> bool:
        """Whether every site up holds `round`'s canonical model (or the swarm
        has moved past it)."""
        if self.observer.head().height < round:
            return False
        if self._adopters.get(round + 1):
            return True
        adopters = self._adopters.get(round, set())
        if len(adopters) + self._down < len(self.sites):
            return False
        return all(k in adopters for k, s in enumerate(self.sites) if not s.down)

    def _report(self, round: int, wall: float) -> SimRound:
        """Round `round`'s record, scores, and times: `sim_s` from the block
        of the round before first reaching a site to this one's."""
        record = self.observer.round(round)
        before = (
            0.0 if round == 1 else self._seen_at[self.observer.block_hash(round - 1)]
        )
        model = self.observer_model(record)
        scores, failed = self.trainer.score(model, round)
        return SimRound(
            record=record,
            up=len(self._trained.get(round, ())),
            site_accuracy=tuple(scores[k] for k in range(len(self.sites))),
            failed_scores=tuple(sorted(failed.items())),
            wall_s=time.perf_counter() - wall,
            sim_s=self._seen_at[record.block_hash] - before,
        )

    def observer_model(self, record: RoundRecord) -> ArrayRecord:
        return self.sites[0].store.shared.arrays[record.model_hash]

    def _update_bytes(self, message) -> int:
        if isinstance(message, UpdateOffer):
            return _arrays_bytes(message.arrays)
        return 0


def _size(message, update_bytes: int) -> int:
    if isinstance(message, BlockAnnouncement):
        return len(message.block)
    return update_bytes


def _answer_size(answer) -> int:
    if answer is None:
        return 0
    if isinstance(answer, bytes):
        return len(answer)
    if isinstance(answer, list):
        return sum(len(b) for b in answer)
    return _arrays_bytes(answer)


def _arrays_bytes(arrays: ArrayRecord) -> int:
    """Bytes on the wire, without decoding the arrays."""
    return sum(len(a.data) for a in arrays.values())
