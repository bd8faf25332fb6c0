"""One real site as its own process: `swarmflower peer --config site.toml`.

Builds a `SwarmPeer` from the site's folder (as `swarmflower init` wrote it):
its secp256k1 identity, its ledger replica and model store on disk, its
ClientApp, and a gRPC transport with mutual TLS pinned to the swarm's CA that
only talks to sites enrolled on the ledger. Killed with SIGKILL, it resumes
from its replica and store; SIGTERM stops it cleanly.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from flwr.app import ArrayRecord

from swarmflower.errors import ConfigError
from swarmflower.faults import NO_FAULTS, FaultPlan, PeerCrashed
from swarmflower.flower_messages import site_context
from swarmflower.identity import SiteIdentity
from swarmflower.ledger import Genesis, Ledger
from swarmflower.logs import quiet_flower
from swarmflower.model_store import DiskModelStore, arrays_from_bytes
from swarmflower.peer import PeerConfig, SwarmPeer
from swarmflower.pki import authorizer, fingerprint, load_cert, load_eth_key
from swarmflower.site_config import SiteConfig, load_site_config
from swarmflower.strategies import arrays_hash, build_strategy
from swarmflower.transport import GrpcTransport

log = logging.getLogger("swarmflower.site")


@dataclass(frozen=True)
class SiteOutcome:
    """How a site's run ended: finished, or stopped by SIGTERM at some round."""

    finished: bool
    round: int
    head_hash: bytes
    model_hash: bytes | None


def open_replica(config: SiteConfig, genesis: Genesis) -> Ledger:
    """The site's replica on disk: created on first start, reopened (and fully
    re-validated) after a stop or a crash."""
    folder = config.path("ledger")
    if folder.exists() and any(folder.iterdir()):
        ledger = Ledger.open(folder)
        if ledger.genesis.digest() != genesis.digest():
            raise ConfigError(f"{folder} holds the replica of another swarm")
        return ledger
    return Ledger.create(genesis, folder)


def load_initial_model(config: SiteConfig, genesis: Genesis) -> ArrayRecord:
    path = config.path("initial_model")
    if not path.is_file():
        raise ConfigError(f"initial model not found: {path}")
    arrays = arrays_from_bytes(path.read_bytes())
    if arrays_hash(arrays) != genesis.initial_model_hash:
        raise ConfigError(f"{path} does not hash to the genesis's initial model")
    return arrays


def load_client_app(config: SiteConfig):
    """The site's Flower ClientApp: a built-in task's, or the user's `module:app`."""
    if config.task.is_user_app:
        from swarmflower.provision import _load_attr

        return _load_attr(config.task.task, "ClientApp")
    from swarmflower.tasks import make_client_app

    return make_client_app(config.task.spec)


def _kill_self(why: str) -> None:
    """A fault-plan crash in a real site: the process dies as if killed."""
    log.warning("%s: SIGKILL", why)
    os.kill(os.getpid(), signal.SIGKILL)


def build_site(
    config: SiteConfig, faults: FaultPlan = NO_FAULTS
) -> tuple[SwarmPeer, Ledger]:
    """Everything one site runs, from its folder."""
    genesis = Genesis.from_json(config.path("genesis").read_text())
    ledger = open_replica(config, genesis)
    key = load_eth_key(config.path("eth_key"))
    addresses = [s.address for s in genesis.sites]
    address = key.public_key.to_checksum_address()
    members = {(s.address, s.cert_fingerprint) for s in genesis.sites}
    if (address, _own_fingerprint(config)) not in members:
        raise ConfigError(
            f"site {config.name} ({address}) is not a founding site of this swarm"
        )
    identity = SiteIdentity(addresses.index(address), config.name, key)
    transport = GrpcTransport(
        identity.address,
        config.listen_address,
        {peer.eth_address: peer.address for peer in config.peers},
        config.tls_material(),
        authorize=authorizer(
            load_cert(config.path("ca_cert")),
            is_member=lambda address, fp: (address, fp) in members,
        ),
    )
    params = genesis.params
    peer = SwarmPeer(
        identity=identity,
        sites=[s.address for s in genesis.sites],
        ledger=ledger,
        client_app=load_client_app(config),
        context=site_context(config.task.partition_id, len(genesis.sites)),
        strategy=build_strategy(params.strategy),
        transport=transport,
        store=DiskModelStore(config.folder / "models"),
        config=PeerConfig(
            rounds=params.rounds,
            round_timeout=float(params.round_timeout),
            min_peers=params.min_peers,
            update_wait=0.8 * params.round_timeout,
            logical_time=False,
        ),
        initial_arrays=load_initial_model(config, genesis),
        faults=faults,
        on_crash=_kill_self,
    )
    return peer, ledger


def _own_fingerprint(config: SiteConfig) -> bytes:
    return fingerprint(load_cert(config.path("cert")))


def run_site(
    config_path: str | Path, report=print, faults: FaultPlan = NO_FAULTS
) -> SiteOutcome:
    """Run one site until the swarm's last round is adopted (or SIGTERM).

    `faults` is for fault drills: a crash it names kills this process with
    SIGKILL at that moment of the round.
    """
    config = load_site_config(config_path)
    peer, ledger = build_site(config, faults)
    stop = threading.Event()

    def on_sigterm(signum, frame) -> None:
        stop.set()
        peer.transport.disconnect()

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    watcher = threading.Thread(
        target=_report_progress, args=(peer, stop, report), daemon=True
    )
    watcher.start()
    finished = False
    try:
        with quiet_flower():
            peer.run()
        finished = True
        # Stay reachable for a while: slower sites may still fetch updates,
        # models or blocks from this one.
        stop.wait(peer.config.round_timeout)
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
    model_hash = peer.log.adopted[-1].model_hash if peer.log.adopted else None
    return SiteOutcome(finished, head.height, head.hash, model_hash)


def _report_progress(peer: SwarmPeer, stop: threading.Event, report) -> None:
    """One line per adopted round: the site's status as it goes."""
    shown = 0
    while not stop.is_set() or shown < len(peer.log.adopted):
        adopted = peer.log.adopted
        while shown < len(adopted):
            a = adopted[shown]
            how = "recomputed" if a.recomputed else "fetched by hash"
            report(
                f"{peer.identity.name}: round {a.round}/{peer.config.rounds} adopted, "
                f"model 0x{a.model_hash.hex()[:12]} ({how})"
            )
            shown += 1
        if stop.is_set():
            return
        time.sleep(0.1)
