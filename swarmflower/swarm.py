"""`run_swarm`: a whole swarm in one process, the swarm's `run_simulation`.

Every site is a `SwarmPeer` thread with its own ledger replica, model store
and in-process transport; nothing is shared but the wires. A Flower user
swaps `run_simulation(server_app, client_app, n)` for
`run_swarm(client_app, n, initial_arrays, rounds, strategy)`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Unpack

from flwr.app import ArrayRecord, Context
from flwr.clientapp import ClientApp

from swarmflower.app_calls import AppFailure, unsealable
from swarmflower.errors import AppFailedError
from swarmflower.faults import NO_FAULTS, FaultPlan, PeerCrashed
from swarmflower.flower_messages import site_context
from swarmflower.identity import SiteIdentity
from swarmflower.ledger import Genesis, Ledger
from swarmflower.logs import quiet_flower
from swarmflower.model_store import MemoryModelStore
from swarmflower.peer import PeerConfig, SwarmPeer
from swarmflower.strategies import LeaderStrategy
from swarmflower.swarm_result import SiteCrash, SwarmResult
from swarmflower.swarm_setup import SwarmSettings, SwarmSetup, set_up_swarm
from swarmflower.transport import InProcNetwork

log = logging.getLogger("swarmflower.swarm")

GOSSIP_S = 1.0  # anti-entropy between site threads: a lost announcement heals


def run_swarm(
    client_app: ClientApp,
    num_sites: int,
    initial_arrays: ArrayRecord,
    num_rounds: int,
    strategy: str | LeaderStrategy = "FedAvg",
    *,
    backups: int = 2,
    faults: FaultPlan = NO_FAULTS,
    contexts: Sequence[Context] | None = None,
    progress: Callable[[int], None] | None = None,
    ledger_dir: Path | None = None,
    **settings: Unpack[SwarmSettings],
) -> SwarmResult:
    """Run `num_rounds` swarm rounds of `client_app` over `num_sites` sites.

    Each site's `ClientApp` gets the `Context` Flower's simulation engine would
    give partition `k` (or `contexts[k]`). `settings` are the swarm's
    (`SwarmSettings`: min_peers, round_timeout, update_wait, site_names, seed
    and the update limits); a swarm whose updates are all refused seals
    nothing. With `ledger_dir`, each site keeps its replica on disk in
    `ledger_dir/<site>/ledger`, for `swarmflower ledger show|verify`.
    """
    setup = set_up_swarm(num_sites, initial_arrays, num_rounds, strategy, **settings)
    supervisor = _Supervisor(
        identities=setup.identities,
        genesis=setup.genesis,
        client_app=client_app,
        contexts=list(
            contexts or [site_context(k, num_sites) for k in range(num_sites)]
        ),
        strategy=setup.strategy,
        config=thread_pacing(setup, backups),
        initial_arrays=initial_arrays,
        faults=faults,
        ledger_dir=ledger_dir,
    )
    with quiet_flower():
        return supervisor.run(progress)


def thread_pacing(setup: SwarmSetup, backups: int) -> PeerConfig:
    """How site threads pace rounds: logical time, anti-entropy every second,
    and a finished site lingering until every site holds its head (its service
    outlives it, so it needs no grace, only to see everyone agree)."""
    params = setup.params
    return PeerConfig.of_swarm(
        params,
        setup.update_wait,
        backups=backups,
        gossip_s=GOSSIP_S,
        linger_s=2.0 * params.round_timeout,
        agreed_grace_s=0.0,
    )


class _Supervisor:
    """Starts the peer threads, restarts crashed sites, and collects the result."""

    def __init__(
        self,
        identities: list[SiteIdentity],
        genesis: Genesis,
        client_app: ClientApp,
        contexts: list[Context],
        strategy: LeaderStrategy,
        config: PeerConfig,
        initial_arrays: ArrayRecord,
        faults: FaultPlan,
        ledger_dir: Path | None,
    ) -> None:
        self.identities = identities
        self.client_app = client_app
        self.contexts = contexts
        self.strategy = strategy
        self.config = config
        self.initial_arrays = initial_arrays
        self.faults = faults
        self.network = InProcNetwork()
        self.ledgers = [
            Ledger.create(
                genesis, None if ledger_dir is None else ledger_dir / i.name / "ledger"
            )
            for i in identities
        ]
        self.stores = [MemoryModelStore() for _ in identities]
        self.peers: list[SwarmPeer] = [None] * len(identities)  # type: ignore[list-item]
        self.threads: list[threading.Thread] = [None] * len(identities)  # type: ignore[list-item]
        self.crashed_at: dict[int, int] = {}
        self.crashes: list[SiteCrash] = []
        self.errors: list[BaseException] = []

    def _connect(self, k: int) -> None:
        """Build site `k`'s peer and plug it into the network (not running yet)."""
        identity = self.identities[k]
        self.peers[k] = SwarmPeer(
            identity=identity,
            sites=[i.address for i in self.identities],
            ledger=self.ledgers[k],
            client_app=self.client_app,
            context=self.contexts[k],
            strategy=self.strategy,
            transport=self.network.connect(identity.address),
            store=self.stores[k],
            config=self.config,
            initial_arrays=self.initial_arrays,
            faults=self.faults,
        )

    def _start(self, k: int) -> None:
        peer = self.peers[k]
        thread = threading.Thread(target=self._run_peer, args=(k, peer), daemon=True)
        thread.name = f"swarm-{peer.identity.name}"
        self.threads[k] = thread
        thread.start()

    def _run_peer(self, k: int, peer: SwarmPeer) -> None:
        try:
            peer.run()
        except PeerCrashed as exc:
            crash = SiteCrash(peer.identity.name, peer.round_in_progress, str(exc))
            self.crashes.append(crash)
            self.crashed_at[k] = self._progress()
        except BaseException as exc:  # surfaced by run() in the caller's thread
            log.exception("site %s failed", peer.identity.name)
            self.errors.append(exc)
            self.network.crash(peer.address)

    def _progress(self) -> int:
        """The latest round any running site has adopted."""
        done = [p.log.adopted[-1].round for p in self.peers if p and p.log.adopted]
        return max(done, default=0)

    def run(self, progress: Callable[[int], None] | None) -> SwarmResult:
        started = time.perf_counter()
        # Every site is on the network before any starts: an update sent to a
        # leader that is not connected yet would be lost.
        for k in range(len(self.identities)):
            self._connect(k)
        for k in range(len(self.identities)):
            self._start(k)
        reported = 0
        while any(t.is_alive() for t in self.threads) or self._due_restarts():
            for k in self._due_restarts():
                del self.crashed_at[k]
                self._connect(k)
                self._start(k)
            if self.errors:
                raise self.errors[0]
            stuck = self._unsealable()
            if stuck is not None:
                self._stop()
                raise stuck
            now = self._progress()
            while progress and reported < now:
                reported += 1
                progress(reported)
            time.sleep(0.01)
        for ledger in self.ledgers:
            ledger.close()
        if self.errors:
            raise self.errors[0]
        if progress:
            for r in range(reported + 1, self.config.rounds + 1):
                progress(r)
        return self._result(time.perf_counter() - started)

    def _unsealable(self) -> AppFailedError | None:
        """A round that ClientApp failures leave short of `min_peers` updates.

        A site whose app failed waits out the round without training again,
        so once every site has trained or failed in the round (and still
        waits for it), too many failures mean that it will never be sealed.
        """
        failed: dict[int, list[AppFailure]] = {}
        trained: Counter[int] = Counter()
        for peer in self.peers:
            round = peer.round_in_progress
            if peer.log.failed and peer.log.failed[-1][0] == round:
                failed.setdefault(round, []).append(peer.log.failed[-1][1])
            elif peer.log.trained and peer.log.trained[-1] == round:
                trained[round] += 1
        sites = len(self.peers)
        for round, failures in failed.items():
            if len(failures) + trained[round] == sites:
                return unsealable(round, failures, sites, self.config.min_peers)
        return None

    def _stop(self) -> None:
        """Take every site off the network, let its thread end, close the replicas."""
        for peer in self.peers:
            self.network.crash(peer.address)
        for thread in self.threads:
            thread.join(timeout=5)
        for ledger in self.ledgers:
            ledger.close()

    def _due_restarts(self) -> list[int]:
        if not self.faults.recover_after:
            return []
        if all(not t.is_alive() for t in self.threads) and self.crashed_at:
            # The others finished: a crashed site still comes back to catch up.
            return list(self.crashed_at)
        now = self._progress()
        return [
            k
            for k, at in self.crashed_at.items()
            if now >= at + self.faults.recover_after and not self.threads[k].is_alive()
        ]

    def _result(self, wall_s: float) -> SwarmResult:
        finished = [
            k
            for k, p in enumerate(self.peers)
            if p.log.adopted and self.network.is_up(p.address)
        ]
        if not finished:
            raise RuntimeError("no site finished the swarm")
        ledger = self.ledgers[finished[0]]
        rounds = list(ledger.rounds())
        if len(rounds) < self.config.rounds:
            raise RuntimeError(
                f"the swarm sealed {len(rounds)} of {self.config.rounds} rounds"
            )
        models = {0: self.initial_arrays}
        for record in rounds:
            models[record.round] = next(
                store.get_arrays(record.model_hash)
                for store in self.stores
                if store.get_arrays(record.model_hash) is not None
            )
        return SwarmResult(
            rounds=rounds,
            final_arrays=models[max(models)],
            sites=[peer.core for peer in self.peers],
            crashes=self.crashes,
            wall_s=wall_s,
            models=models,
        )
