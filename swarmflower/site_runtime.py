"""One real site as its own process: `swarmflower peer --config site.toml`.

Builds a `SwarmPeer` from the site's folder (as `swarmflower init` wrote it,
checked by `site_files`): its secp256k1 identity, its ledger replica and
model store on disk, its ClientApp, and a gRPC transport with mutual TLS
pinned to the swarm's CA that only talks to sites enrolled on the ledger.
Killed with SIGKILL, it resumes from its replica and store; SIGTERM stops it
cleanly.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flwr.app import ArrayRecord, Context
from flwr.clientapp import ClientApp
from flwr.serverapp.strategy import Result

from swarmflower.app_run import metric_records
from swarmflower.faults import NO_FAULTS, FaultPlan, PeerCrashed
from swarmflower.flower_app import (
    APP_OUTPUT,
    FlowerApp,
    ServerPlan,
    finish_server_app,
)
from swarmflower.flower_messages import site_context
from swarmflower.identity import SiteIdentity
from swarmflower.ledger import Genesis, Ledger, SwarmParams
from swarmflower.logs import quiet_flower
from swarmflower.peer import Adoption, PeerConfig, SwarmPeer
from swarmflower.pki import authorizer
from swarmflower.site_config import SiteConfig, load_site_config
from swarmflower.site_evaluation import METRICS_FILE, SiteEvaluation
from swarmflower.site_events import EVENTS_FILE, SiteEvents
from swarmflower.site_files import (
    check_partition,
    load_client_app,
    load_genesis,
    load_identity,
    load_initial_model,
    load_site_app,
    open_model_store,
    open_replica,
)
from swarmflower.site_membership import founders_pinned, join_vetter
from swarmflower.strategies import LeaderStrategy, adopt_strategy, build_strategy
from swarmflower.transport import GrpcTransport

log = logging.getLogger("swarmflower.site")

GOSSIP_S = 2.0  # seconds between a real site's head queries to a random peer
QUIET_S = 60.0  # a site stuck this long (or 3 round timeouts) says so


@dataclass(frozen=True)
class SiteOutcome:
    """How a site's run ended: finished, stopped by SIGTERM, or left the
    swarm (`swarmflower leave`), at some round."""

    finished: bool
    round: int
    head_hash: bytes
    model_hash: bytes | None
    left: bool = False

    @property
    def state(self) -> str:
        return "left" if self.left else "finished" if self.finished else "stopped"


def _kill_self(why: str) -> None:
    """A fault-plan crash in a real site: the process dies as if killed."""
    log.warning("%s: SIGKILL", why)
    os.kill(os.getpid(), signal.SIGKILL)


def real_site_pacing(params: SwarmParams) -> PeerConfig:
    """How a real site paces rounds: wall-clock stamps, anti-entropy every
    2 s, and a finished site serving the others for a while (at least 10 s,
    5 round timeouts when sites are slow to agree)."""
    return PeerConfig.of_swarm(
        params,
        logical_time=False,
        gossip_s=GOSSIP_S,
        linger_s=max(10.0, 5.0 * params.round_timeout),
    )


def _write_crash(
    faults: FaultPlan, site: int, playing: list[SwarmPeer]
) -> Callable[[Path], None] | None:
    """The crash-mid-write drill: SIGKILL half-way through a store write."""
    if not faults.write_crashes:
        return None

    def crash(path: Path) -> None:
        if playing and faults.crashes_mid_write(site, playing[0].round_in_progress):
            _kill_self(f"site crash mid-write of {path.name}")

    return crash


@dataclass
class _Workload:
    """What the site trains with: its ClientApp, Context and strategy; for a
    Flower app project also the app and its plan, which the site's
    evaluation and the ServerApp's ending follow."""

    client_app: ClientApp
    context: Context
    strategy: LeaderStrategy
    app: FlowerApp | None = None
    plan: ServerPlan | None = None
    report: Callable[[str], None] = print
    evaluator: SiteEvaluation | None = None

    def evaluation(
        self,
        identity: SiteIdentity,
        sites: list[str],
        store,
        folder: Path,
        own_training: Callable[[int], dict[str, float] | None],
    ) -> Callable[[Adoption], None] | None:
        """A Flower app's evaluation of every adopted model (none for tasks)."""
        if self.plan is None:
            return None
        self.evaluator = SiteEvaluation(
            self.plan,
            self.client_app,
            self.context,
            (identity.index, identity.address),
            sites,
            store,
            folder / METRICS_FILE,
            lambda line: self.report(f"{identity.name}: {line}"),
            own_training,
        )
        return self.evaluator

    def finish(self, model: ArrayRecord | None, folder: Path) -> None:
        """A Flower app's ServerApp ending (its code after `strategy.start`),
        given the swarm's final model and this site's metrics, in
        `folder/app_output`."""
        if self.app is None or self.evaluator is None or model is None:
            return
        result = Result(
            arrays=model,
            train_metrics_clientapp=metric_records(self.evaluator.trained),
            evaluate_metrics_clientapp=metric_records(self.evaluator.evaluated),
            evaluate_metrics_serverapp=metric_records(self.evaluator.central),
        )
        written = finish_server_app(self.app, result, folder / APP_OUTPUT)
        if written:
            names = ", ".join(str(p.relative_to(folder)) for p in written)
            self.report(f"the ServerApp's ending wrote {names}")


def _workload(
    config: SiteConfig, genesis: Genesis, report: Callable[[str], None]
) -> _Workload:
    """A built-in task's (or a `module:app`'s) workload, or a Flower app
    project's, whose plan must be the genesis's."""
    count = len(genesis.sites)
    if config.app is None and genesis.app is None:
        check_partition(config)
        return _Workload(
            load_client_app(config),
            site_context(config.task.partition_id, count),
            build_strategy(genesis.params.strategy, genesis.params.bucketing),
        )
    app, plan = load_site_app(config, genesis)
    assert config.app is not None  # load_site_app refuses a mixed folder
    context = site_context(
        config.app.partition_id,
        count,
        run_config=app.run_config,
        node_config=config.app.node_config,
    )
    strategy = adopt_strategy(plan.strategy, plan.train_config)
    strategy.bucketing = genesis.params.bucketing
    return _Workload(app.client_app(), context, strategy, app, plan, report)


def build_site(
    config: SiteConfig,
    faults: FaultPlan = NO_FAULTS,
    repair: bool = False,
    report: Callable[[str], None] = print,
) -> tuple[SwarmPeer, Ledger, _Workload]:
    """Everything one site runs, from its folder.

    Every file is checked before anything starts (a bad one is one
    `ConfigError` naming it, damaged models and replica included unless
    `repair` moves them aside); the replica is opened last, and the network
    only once everything else holds.
    """
    genesis = load_genesis(config)
    own = load_identity(config, genesis)
    identity = SiteIdentity(own.index, config.name, own.key)
    workload = _workload(config, genesis, report)
    initial_arrays = load_initial_model(config, genesis)
    params = genesis.params
    ledger = open_replica(config, genesis, repair)
    playing: list[SwarmPeer] = []  # the peer, once built, for the write drill
    try:
        store = open_model_store(
            config,
            repair,
            on_partial_write=_write_crash(faults, identity.index, playing),
        )
        sites = [s.address for s in genesis.sites]
        founders = frozenset(sites)
        transport = GrpcTransport(
            identity.address,
            config.listen_address,
            {peer.eth_address: peer.address for peer in config.peers},
            config.tls_material(),
            authorize=authorizer(
                own.ca_cert,
                is_member=founders_pinned(dict(own.members)),
            ),
            members=lambda: playing[0].member_sites if playing else founders,
            departed=lambda: playing[0].left_sites if playing else (),
        )
        peer = SwarmPeer(
            identity=identity,
            sites=sites,
            ledger=ledger,
            client_app=workload.client_app,
            context=workload.context,
            strategy=workload.strategy,
            transport=transport,
            store=store,
            config=real_site_pacing(params),
            initial_arrays=initial_arrays,
            faults=faults,
            on_crash=_kill_self,
            vet_join=join_vetter(own.ca_cert),
            join=own.join,
            on_adopted=workload.evaluation(
                identity,
                sites,
                store,
                config.folder,
                lambda round: playing[0].log.train_metrics.get(round),
            ),
        )
        playing.append(peer)
    except BaseException:
        ledger.close()
        raise
    return peer, ledger, workload


def run_site(
    config_path: str | Path,
    report=print,
    faults: FaultPlan = NO_FAULTS,
    repair: bool = False,
) -> SiteOutcome:
    """Run one site until the swarm's last round is adopted (or SIGTERM).

    `faults` is for fault drills: a crash it names kills this process with
    SIGKILL at that moment of the round. `repair` moves a damaged replica
    and damaged model files aside (else they stop the site).
    """
    config = load_site_config(config_path)
    peer, ledger, workload = build_site(config, faults, repair, report)
    stop = threading.Event()

    def on_sigterm(signum, frame) -> None:
        stop.set()
        peer.transport.disconnect()

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    events = SiteEvents(config.folder / EVENTS_FILE, config.name)
    events.write("started", round=ledger.head().height)
    watcher = threading.Thread(
        target=_report_progress, args=(peer, stop, report, events), daemon=True
    )
    watcher.start()
    finished = False
    try:
        with quiet_flower():
            peer.run()  # lingers until the swarm holds its head (PeerConfig)
        finished = True
    except PeerCrashed:
        if not stop.is_set():
            raise
    finally:
        stop.set()
        signal.signal(signal.SIGTERM, previous)
        watcher.join(timeout=2)
        if finished:
            peer.transport.close()
        head = ledger.head()
        ledger.close()
    events.follow(peer.log)
    events.follow_links(getattr(peer.transport, "link_changes", []))
    model_hash = peer.log.adopted[-1].model_hash if peer.log.adopted else None
    left = peer.log.left is not None
    result = SiteOutcome(finished, head.height, head.hash, model_hash, left)
    events.write(
        result.state,
        round=head.height,
        block="0x" + head.hash.hex(),
        model="0x" + model_hash.hex() if model_hash else None,
    )
    if finished and not left:
        workload.finish(peer.model, config.folder)
    return result


def _report_progress(
    peer: SwarmPeer, stop: threading.Event, report, events: SiteEvents
) -> None:
    """One line per adopted round: the site's status as it goes; everything
    its log records into its events file."""
    shown = switched = 0
    links = getattr(peer.transport, "link_changes", [])
    quiet_s = max(QUIET_S, 3 * peer.config.round_timeout)
    moved = said = time.monotonic()  # when it last moved on (or started)
    while not stop.is_set() or shown < len(peer.log.adopted):
        events.follow(peer.log)
        events.follow_links(links)
        now = time.monotonic()
        if now - max(moved, said) > quiet_s and not peer.core.done:
            report(_waiting_line(peer, now - moved, shown))
            said = now  # said: again after as long
        while switched < len(peer.log.switched):
            report(peer.log.switched[switched])
            switched += 1
        adopted = peer.log.adopted
        while shown < len(adopted):
            a = adopted[shown]
            how = "recomputed" if a.recomputed else "fetched by hash"
            report(
                f"{peer.identity.name}: round {a.round}/{peer.config.rounds} adopted, "
                f"model 0x{a.model_hash.hex()[:12]} ({how})"
            )
            shown += 1
            moved = time.monotonic()
        if stop.is_set():
            return
        time.sleep(0.1)


def _waiting_line(peer: SwarmPeer, quiet: float, adopted: int) -> str:
    """What a site that has not moved on for a while says (never silent)."""
    name = peer.identity.name
    if adopted == 0 and peer.log.joined is None and peer.core.join is not None:
        return (
            f"{name}: not enrolled yet after {quiet:.0f} s: asking the members "
            "to join; are they running and reachable from here?"
        )
    return (
        f"{name}: no round adopted for {quiet:.0f} s; waiting for the other "
        "sites (are they running and reachable from here?)"
    )
