"""A site as a thread or a process: `SiteCore` driven by a transport and a clock.

`SwarmPeer` carries out what the core asks (train through the site's
ClientApp, send, fetch by hash) and feeds it what happens (messages, fetch
answers, the time, peers' heads), with no round logic of its own. The same
driver runs in-process threads (`run_swarm`) and a hospital's process over
gRPC with mutual TLS (`swarmflower peer`); the Ray engine drives the same
core in simulated time.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from flwr.app import ArrayRecord, Context

from swarmflower.app_calls import call_app
from swarmflower.faults import NO_FAULTS, FaultPlan, PeerCrashed
from swarmflower.identity import SiteIdentity
from swarmflower.ledger import BlockRef, LedgerAPI
from swarmflower.model_store import ModelStoreAPI
from swarmflower.round_protocol import train_site
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
    Send,
    Train,
)
from swarmflower.site_core import SiteCore, VetJoin
from swarmflower.strategies import LeaderStrategy
from swarmflower.transport.base import JoinRequest, PeerServiceAPI, TransportAPI

__all__ = ["Adoption", "PeerConfig", "PeerLog", "SwarmPeer"]

log = logging.getLogger("swarmflower.peer")

POLL_S = 0.02
SETTLE_POLL_S = 0.5  # how often a finished peer asks everyone for their head
MAX_ACTIONS = 100_000  # actions carried out for one event, at most


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
        on_adopted: Callable[[Adoption], None] | None = None,
        vet_join: VetJoin | None = None,
        join: JoinRequest | None = None,
    ) -> None:
        self.core = SiteCore(
            identity,
            sites,
            ledger,
            strategy,
            store,
            config,
            initial_arrays,
            faults,
            vet_join=vet_join,
            join=join,
        )
        self.identity = identity
        self.ledger = ledger
        self.client_app = client_app
        self.context = context
        self.strategy = strategy
        self.transport = transport
        self.store = store
        self.config = config
        self.on_crash = on_crash
        # Called in the loop for each adopted model, between the core's
        # events (a real site's evaluation, as Flower's between rounds).
        self.on_adopted = on_adopted
        self._seen_adoptions = 0
        # The members the gossip thread asks (set by the loop thread only).
        self._sites_seen: tuple[str, ...] = ()
        self._others: tuple[str, ...] = ()
        self.left_sites: frozenset[str] = frozenset()
        self.member_sites: frozenset[str] = frozenset()
        self._follow_membership()
        self._reports: queue.SimpleQueue[tuple[str, BlockRef]] = queue.SimpleQueue()
        # Real sites stamp blocks with the wall clock; simulations need only
        # a clock that never goes back.
        self._clock = time.monotonic if config.logical_time else time.time
        transport.serve(self)

    # -- what the rest of the swarm reads -----------------------------------

    @property
    def log(self) -> PeerLog:
        return self.core.log

    @property
    def address(self) -> str:
        return self.identity.address

    @property
    def sites(self) -> tuple[str, ...]:
        return self.core.sites

    @property
    def model(self) -> ArrayRecord | None:
        return self.core.model

    @property
    def round_in_progress(self) -> int:
        return self.core.round_in_progress

    @property
    def _limits(self):
        return self.core.limits

    # -- serving other peers (called from their threads) -----------------------

    def serve_arrays(self, digest: bytes) -> ArrayRecord | None:
        return self.store.get_arrays(digest)

    def serve_blob(self, digest: bytes) -> bytes | None:
        return self.store.get_blob(digest)

    def serve_blocks(self, start: int, end: int) -> list[bytes]:
        return self.core.chain.canonical(start, end)

    def serve_block(self, block_hash: bytes) -> bytes | None:
        return self.core.chain.block(block_hash)

    def serve_head(self) -> BlockRef:
        return self.core.chain.adopted_head

    # -- the loop --------------------------------------------------------------

    def run(self) -> PeerLog:
        """Drive the core until the swarm's last round is adopted here and the
        site has lingered (see `PeerConfig.linger_s`)."""
        stop = threading.Event()
        gossip = None
        if self.config.gossip_s:
            gossip = threading.Thread(
                target=self._gossip, args=(stop,), daemon=True, name="swarm-gossip"
            )
            gossip.start()
        try:
            self._carry_out(self.core.start(self._clock()))
            while not self.core.done:
                self._check_alive()
                message = self.transport.receive(POLL_S)
                if message is not None:
                    self._carry_out(self.core.received(message, self._clock()))
                self._reconcile()
                self._carry_out(self.core.tick(self._clock()))
                self._announce_adoptions()
                self._follow_membership()
            self._announce_adoptions()
            return self.log
        finally:
            stop.set()
            if gossip is not None:
                gossip.join(timeout=5)

    def _carry_out(self, actions: list[Action]) -> None:
        """Do what the core asks, feeding each answer back, until it asks nothing."""
        todo = deque(actions)
        for _ in range(MAX_ACTIONS):
            if not todo:
                return
            self._check_alive()
            todo.extend(self._do(todo.popleft()))
        raise RuntimeError(f"site {self.identity.name}: the core never settles")

    def _do(self, action: Action) -> list[Action]:
        core, now = self.core, self._clock
        match action:
            case Train(round, model, config):
                trained = call_app(
                    train_site,
                    self.client_app,
                    self.context,
                    model,
                    round,
                    core.identity.index,  # its roster place, once enrolled
                    config,
                )
                return core.trained(round, trained, now())
            case Send(to, message):
                self.transport.send(to, message)
                return []
            case FetchBlock(block_hash, sources):
                block = self.transport.fetch_block(block_hash, list(sources))
                return core.block_fetched(block_hash, block, sources, now())
            case FetchArrays(digest, sources):
                arrays = self.transport.fetch_arrays(digest, list(sources))
                return core.arrays_fetched(digest, arrays, now())
            case FetchBlob(digest, sources):
                blob = self.transport.fetch_blob(digest, list(sources))
                return core.blob_fetched(digest, blob, now())
            case FetchChain(start, end):
                return core.chain_fetched(
                    self.transport.fetch_blocks(start, end), now()
                )
            case Crash(why):
                self._crash(why)
        raise TypeError(f"unknown action {action!r}")

    def _follow_membership(self) -> None:
        for address, where in self.core.take_dials():
            log.info(
                "site %s: dials newcomer %s at %s", self.identity.name, address, where
            )
            self.transport.add_peer(address, where)
        sites = self.core.sites
        if sites is not self._sites_seen:  # read by the transport's threads
            self._sites_seen = sites
            self._others = tuple(a for a in sites if a != self.address)
            self.left_sites = self.core.left
            self.member_sites = frozenset(sites)

    def _announce_adoptions(self) -> None:
        if self.on_adopted is None:
            return
        adopted = self.log.adopted
        while self._seen_adoptions < len(adopted):
            self._seen_adoptions += 1
            self.on_adopted(adopted[self._seen_adoptions - 1])

    # -- anti-entropy ----------------------------------------------------------

    def _gossip(self, stop: threading.Event) -> None:
        """Ask peers for their heads (a thread: a slow answer never stalls a
        round); the loop hands the answers to the core."""
        draw = random.Random(f"gossip/{self.address}")
        assert self.config.gossip_s is not None
        while (others := self._others) and not stop.is_set():
            finishing = self.core.finishing
            interval = SETTLE_POLL_S if finishing else self.config.gossip_s
            if stop.wait(interval * draw.uniform(0.75, 1.25)):
                return
            for peer in others if finishing else [draw.choice(others)]:
                head = self.transport.peer_head(peer)
                if head is not None:
                    self._reports.put((peer, head))

    def _reconcile(self) -> None:
        while True:
            try:
                peer, head = self._reports.get_nowait()
            except queue.Empty:
                return
            self._carry_out(self.core.head_reported(peer, head, self._clock()))

    # -- dying -----------------------------------------------------------------

    def _check_alive(self) -> None:
        if not self.transport.alive:
            raise PeerCrashed(f"site {self.identity.name} is down")

    def _crash(self, why: str) -> None:
        """Die where the fault plan says: `on_crash` (a real process kills
        itself with SIGKILL), else cut the transport and stop the thread."""
        if self.on_crash is not None:
            self.on_crash(why)
        self.transport.disconnect()
        raise PeerCrashed(why)
