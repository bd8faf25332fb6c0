"""One real site as its own process: `swarmflower peer --config site.toml`.

Builds a `SwarmPeer` from the site's folder (as `swarmflower init` wrote it):
its secp256k1 identity, its ledger replica and model store on disk, its
ClientApp, and a gRPC transport with mutual TLS pinned to the swarm's CA that
only talks to sites enrolled on the ledger. Killed with SIGKILL, it resumes
from its replica and store; SIGTERM stops it cleanly.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from eth_keys.datatypes import PrivateKey
from flwr.app import ArrayRecord

from swarmflower.errors import (
    CertificateError,
    ConfigError,
    SwarmflowerError,
    UntrustedCertificate,
)
from swarmflower.faults import NO_FAULTS, FaultPlan, PeerCrashed
from swarmflower.flower_messages import site_context
from swarmflower.identity import SiteIdentity
from swarmflower.ledger import Genesis, Ledger, StoreError, SwarmParams
from swarmflower.logs import quiet_flower
from swarmflower.model_store import DiskModelStore, arrays_from_bytes
from swarmflower.peer import PeerConfig, SwarmPeer
from swarmflower.pki import (
    authorizer,
    fingerprint,
    load_cert,
    load_eth_key,
    load_private_key,
    verify_site_cert,
)
from swarmflower.site_config import SiteConfig, load_site_config
from swarmflower.strategies import arrays_hash, build_strategy
from swarmflower.transport import GrpcTransport

log = logging.getLogger("swarmflower.site")

GOSSIP_S = 2.0  # seconds between a real site's head queries to a random peer

T = TypeVar("T")
_GENESIS_KEYS = ("sites", "initial_model_hash", "params", "timestamp")


@dataclass(frozen=True)
class SiteOutcome:
    """How a site's run ended: finished, or stopped by SIGTERM at some round."""

    finished: bool
    round: int
    head_hash: bytes
    model_hash: bytes | None


def read_site_file(path: Path, what: str, load: Callable[[Path], T]) -> T:
    """`load(path)`, with a missing, unreadable or malformed file reported as
    one `ConfigError` that names the file (a site operator can fix that)."""
    try:
        return load(path)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (the site's {what})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what} ({exc.strerror})") from None
    except ValueError as exc:  # the pki loaders name the file themselves
        problem = str(exc)
        if not problem.startswith(str(path)):
            problem = f"{path}: not a valid {what} ({problem})"
        raise ConfigError(problem) from None


def load_genesis(config: SiteConfig) -> Genesis:
    """The swarm's genesis as the site holds it, checked for shape."""
    path = config.path("genesis")
    raw = read_site_file(path, "genesis", Path.read_bytes)
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid JSON (not UTF-8 text)") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or any(k not in data for k in _GENESIS_KEYS):
        raise ConfigError(
            f"{path}: not a swarm genesis (a JSON object with "
            f"{', '.join(_GENESIS_KEYS)} is expected)"
        )
    try:
        genesis = Genesis.from_json(text)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{path}: not a swarm genesis ({_why(exc)})") from None
    if not genesis.sites or len(genesis.initial_model_hash) != 32:
        raise ConfigError(
            f"{path}: not a swarm genesis (it needs founding sites and a "
            "32-byte initial_model_hash)"
        )
    if not isinstance(genesis.timestamp, int) or isinstance(genesis.timestamp, bool):
        raise ConfigError(f"{path}: not a swarm genesis ('timestamp' not an integer)")
    return genesis


def open_replica(config: SiteConfig, genesis: Genesis) -> Ledger:
    """The site's replica on disk: created on first start, reopened (and fully
    re-validated) after a stop or a crash.

    A damaged replica (sqlite damage, a block failing its checksum or its
    re-validation) is moved aside, kept for inspection, and replaced by a
    fresh one: the peer then syncs every block again from its peers and
    validates each on import. A replica of another swarm is never touched.
    """
    folder = config.path("ledger")
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder}: not a folder (the site's ledger replica)")
    if not folder.exists() or not any(folder.iterdir()):
        return Ledger.create(genesis, folder)
    try:
        _refuse_other_swarm(config, genesis)
        ledger = Ledger.open(folder)
    except (StoreError, sqlite3.DatabaseError) as exc:
        if isinstance(exc.__cause__ or exc, sqlite3.OperationalError):
            # Locked, unreadable, disk full: the file may be fine; keep it.
            raise ConfigError(f"{folder}: cannot open the replica ({exc})") from None
        moved = _move_aside(folder)
        log.warning(
            "%s: damaged replica (%s); moved to %s; rebuilding from genesis and peers",
            folder,
            " ".join(str(exc).split()),
            moved,
        )
        return Ledger.create(genesis, folder)
    return ledger


def _refuse_other_swarm(config: SiteConfig, genesis: Genesis) -> None:
    """A replica whose stored genesis is not the site's: refused, left as is.

    Only the stored genesis is read (no re-validation), so a replica of
    another swarm is recognised even when its blocks are damaged; a stored
    genesis that cannot be read at all is damage (`StoreError`).
    """
    from swarmflower.ledger.store import SqliteBlockStore

    folder = config.path("ledger")
    store = SqliteBlockStore(folder)
    try:
        text = store.genesis_json()
    finally:
        store.close()
    if text is None:
        raise StoreError(f"{folder}: the replica has no genesis")
    try:
        stored = Genesis.from_json(text)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise StoreError(
            f"{folder}: the stored genesis is damaged ({_why(exc)})"
        ) from None
    if stored.digest() != genesis.digest():
        raise ConfigError(
            f"{folder}: holds the replica of another swarm (its genesis is not "
            f"{config.path('genesis')}); move it away to start this swarm's replica"
        )


def _why(exc: Exception) -> str:
    """A parse error as a short phrase (a KeyError alone says only the key)."""
    return f"missing {exc}" if isinstance(exc, KeyError) else str(exc)


def _move_aside(folder: Path) -> Path:
    """Rename `folder` to `<name>.damaged-<UTC time>` next to it; the new name."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    target = folder.with_name(f"{folder.name}.damaged-{stamp}")
    extra = 1
    while target.exists():
        target = folder.with_name(f"{folder.name}.damaged-{stamp}-{extra}")
        extra += 1
    folder.rename(target)
    return target


def load_initial_model(config: SiteConfig, genesis: Genesis) -> ArrayRecord:
    """The swarm's initial model, checked against the genesis's hash."""
    path = config.path("initial_model")
    raw = read_site_file(path, "initial model", Path.read_bytes)
    try:
        arrays = arrays_from_bytes(raw)
    except (SwarmflowerError, ValueError, TypeError, OverflowError):
        raise ConfigError(
            f"{path}: damaged, or not a model file (its bytes do not decode to arrays)"
        ) from None
    if arrays_hash(arrays) != genesis.initial_model_hash:
        raise ConfigError(
            f"{path}: does not hash to the initial model of "
            f"{config.path('genesis')} (damaged, or of another swarm)"
        )
    return arrays


def load_client_app(config: SiteConfig):
    """The site's Flower ClientApp: a built-in task's, or the user's `module:app`."""
    if config.task.is_user_app:
        from swarmflower.provision import _load_attr

        try:
            return _load_attr(config.task.task, "ClientApp")
        except ConfigError as exc:
            raise ConfigError(f"{config.config_file}: [task] {exc}") from None
    from swarmflower.tasks import make_client_app

    return make_client_app(config.task.spec)


def check_partition(config: SiteConfig) -> None:
    """A built-in task's `partition_id` must name one of its sites' data."""
    if config.task.is_user_app:
        return
    try:
        available = config.task.spec.load().num_sites
    except SwarmflowerError as exc:
        raise ConfigError(f"{config.config_file}: [task] {exc}") from None
    partition = config.task.partition_id
    if not 0 <= partition < available:
        raise ConfigError(
            f"{config.config_file}: 'task.partition_id' must be between 0 and "
            f"{available - 1} for task '{config.task.task}' ({available} "
            f"partitions), got {partition}"
        )


@dataclass(frozen=True)
class _Identity:
    """The site's key and certificate, checked against each other, the CA and
    the genesis."""

    key: PrivateKey
    index: int  # among the genesis's founding sites
    ca_cert: x509.Certificate
    members: frozenset[tuple[str, bytes]]  # (address, cert fingerprint)


def load_identity(config: SiteConfig, genesis: Genesis) -> _Identity:
    """Load and cross-check the site key, TLS key, certificate and CA.

    Each file is blamed by name: a key of another site, a TLS key that is
    not the certificate's, a certificate from another CA or not the one
    the genesis enrolled, an address that is not a founding site.
    """
    key_path, tls_path = config.path("eth_key"), config.path("tls_key")
    cert_path, ca_path = config.path("cert"), config.path("ca_cert")
    key = read_site_file(key_path, "secp256k1 key", load_eth_key)
    ca_cert = read_site_file(ca_path, "CA certificate", load_cert)
    cert = read_site_file(cert_path, "certificate", load_cert)
    tls_key = read_site_file(tls_path, "TLS key", load_private_key)
    try:
        bound = verify_site_cert(cert, ca_cert)
    except UntrustedCertificate:
        raise ConfigError(
            f"{cert_path}: not issued by the swarm CA in {ca_path}"
        ) from None
    except CertificateError as exc:
        raise ConfigError(f"{cert_path}: {exc}") from None
    address = key.public_key.to_checksum_address()
    named = _common_name(cert)
    if bound != address and named != config.name:
        raise ConfigError(
            f"{cert_path}: the certificate of site '{named}' ({bound}), but this "
            f"is site '{config.name}' (its key {key_path} is {address})"
        )
    if bound != address:
        raise ConfigError(
            f"{key_path}: holds the key of {address}, but the certificate "
            f"{cert_path} is bound to {bound} (another site's key?)"
        )
    if _spki(tls_key.public_key()) != _spki(cert.public_key()):
        raise ConfigError(
            f"{tls_path}: not the private key of the certificate {cert_path}"
        )
    founders = {s.address: s.cert_fingerprint for s in genesis.sites}
    genesis_path = config.path("genesis")
    if address not in founders:
        raise ConfigError(
            f"{genesis_path}: the site key {key_path} ({address}) is not a "
            "founding site of this swarm"
        )
    if founders[address] != fingerprint(cert):
        raise ConfigError(
            f"{cert_path}: not the certificate {genesis_path} enrolled for {address}"
        )
    return _Identity(
        key=key,
        index=list(founders).index(address),
        ca_cert=ca_cert,
        members=frozenset(founders.items()),
    )


def _common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def _spki(public_key) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _kill_self(why: str) -> None:
    """A fault-plan crash in a real site: the process dies as if killed."""
    log.warning("%s: SIGKILL", why)
    os.kill(os.getpid(), signal.SIGKILL)


def real_site_pacing(params: SwarmParams) -> PeerConfig:
    """How a real site paces rounds: wall-clock stamps, anti-entropy every
    2 s, and a finished site serving the others for a while (at least 10 s,
    5 round timeouts when sites are slow to agree)."""
    return PeerConfig(
        rounds=params.rounds,
        round_timeout=float(params.round_timeout),
        min_peers=params.min_peers,
        update_wait=0.8 * params.round_timeout,
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


def build_site(
    config: SiteConfig, faults: FaultPlan = NO_FAULTS
) -> tuple[SwarmPeer, Ledger]:
    """Everything one site runs, from its folder.

    Every file is checked before anything starts (a bad one is one
    `ConfigError` naming it); the replica is opened last, and the network
    only once everything else holds.
    """
    genesis = load_genesis(config)
    own = load_identity(config, genesis)
    identity = SiteIdentity(own.index, config.name, own.key)
    check_partition(config)
    client_app = load_client_app(config)
    initial_arrays = load_initial_model(config, genesis)
    params = genesis.params
    strategy = build_strategy(params.strategy)
    ledger = open_replica(config, genesis)
    playing: list[SwarmPeer] = []  # the peer, once built, for the write drill
    try:
        transport = GrpcTransport(
            identity.address,
            config.listen_address,
            {peer.eth_address: peer.address for peer in config.peers},
            config.tls_material(),
            authorize=authorizer(
                own.ca_cert,
                is_member=lambda address, fp: (address, fp) in own.members,
            ),
        )
        peer = SwarmPeer(
            identity=identity,
            sites=[s.address for s in genesis.sites],
            ledger=ledger,
            client_app=client_app,
            context=site_context(config.task.partition_id, len(genesis.sites)),
            strategy=strategy,
            transport=transport,
            store=DiskModelStore(
                config.folder / "models",
                on_partial_write=_write_crash(faults, identity.index, playing),
            ),
            config=real_site_pacing(params),
            initial_arrays=initial_arrays,
            faults=faults,
            on_crash=_kill_self,
        )
        playing.append(peer)
    except BaseException:
        ledger.close()
        raise
    return peer, ledger


def _own_fingerprint(config: SiteConfig) -> bytes:
    return fingerprint(read_site_file(config.path("cert"), "certificate", load_cert))


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
    model_hash = peer.log.adopted[-1].model_hash if peer.log.adopted else None
    return SiteOutcome(finished, head.height, head.hash, model_hash)


def _report_progress(peer: SwarmPeer, stop: threading.Event, report) -> None:
    """One line per adopted round: the site's status as it goes."""
    shown = switched = 0
    while not stop.is_set() or shown < len(peer.log.adopted):
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
        if stop.is_set():
            return
        time.sleep(0.1)
