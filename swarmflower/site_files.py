"""A site's folder, read and checked before anything starts.

Every file `swarmflower init` wrote for a site (its `site.toml`, the genesis,
the keys and certificates, the initial model, the ledger replica) is loaded
here, and a missing or damaged one is one `ConfigError` naming the file: a
hospital's operator can fix a file, not a traceback. A damaged replica is
the exception: it is moved aside and rebuilt from the peers.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

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
from swarmflower.ledger import Genesis, Ledger, StoreError
from swarmflower.model_store import arrays_from_bytes
from swarmflower.pki import (
    fingerprint,
    load_cert,
    load_eth_key,
    load_private_key,
    verify_site_cert,
)
from swarmflower.site_config import SiteConfig
from swarmflower.strategies import arrays_hash
from swarmflower.transport.base import JoinRequest

if TYPE_CHECKING:
    from swarmflower.flower_app import FlowerApp, ServerPlan

log = logging.getLogger("swarmflower.site")

T = TypeVar("T")
_GENESIS_KEYS = ("sites", "initial_model_hash", "params", "timestamp")


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


def open_replica(config: SiteConfig, genesis: Genesis, repair: bool = False) -> Ledger:
    """The site's replica on disk: created on first start, reopened (and fully
    re-validated) after a stop or a crash.

    A damaged replica (sqlite damage, a block failing its checksum or its
    re-validation) stops the site with one line naming it, the replica left
    as it is: damage on disk may be a failing disk, which an operator should
    see. With `repair`, it is moved aside, kept for inspection, and replaced
    by a fresh one: the peer then syncs every block again from its peers and
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
        problem = " ".join(str(exc).split())
        if not repair:
            raise ConfigError(
                f"{folder}: damaged replica ({problem}); left as it is. "
                f"`swarmflower peer --repair` moves it aside and rebuilds it "
                f"from the genesis and the peers"
            ) from None
        moved = _move_aside(folder)
        log.warning(
            "%s: damaged replica (%s); moved to %s; rebuilding from genesis and peers",
            folder,
            problem,
            moved,
        )
        return Ledger.create(genesis, folder)
    return ledger


def open_model_store(config: SiteConfig, repair: bool = False, **options):
    """The site's model store, every file checked against its name first.

    A damaged file stops the site with one line naming it (left as it is),
    as a damaged replica does; with `repair` each is moved into the store's
    `damaged/` folder and fetched again by hash when needed.
    """
    from swarmflower.model_store import DiskModelStore

    store = DiskModelStore(config.folder / "models", **options)
    damaged = store.damaged_files()
    if damaged and not repair:
        path, problem = damaged[0]
        more = f" (and {len(damaged) - 1} more)" if len(damaged) > 1 else ""
        raise ConfigError(
            f"{path}: damaged model file{more}: {problem}; left as it is. "
            f"`swarmflower peer --repair` moves damaged files aside and fetches "
            f"them again from the peers"
        )
    for path, problem in damaged:
        store.move_aside(path, problem)
    return store


def _refuse_other_swarm(config: SiteConfig, genesis: Genesis) -> None:
    """A replica whose stored genesis is not the site's: refused, left as is.

    Only the stored genesis is read (no re-validation), so a replica of
    another swarm is recognised even when its blocks are damaged. A stored
    genesis that cannot be read at all, or that differs from the site's while
    the replica's recorded swarm id is this swarm's, is damage (`StoreError`).
    """
    from swarmflower.ledger.store import SqliteBlockStore

    folder = config.path("ledger")
    store = SqliteBlockStore(folder)
    try:
        text = store.genesis_json()
        swarm_id = store.genesis_hash()
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
        if swarm_id == Ledger(genesis, clock=None).swarm_id:
            raise StoreError(
                f"{folder}: the stored genesis is damaged (it differs from "
                f"{config.path('genesis')}, yet the replica records this swarm's id)"
            )
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


def load_site_app(config: SiteConfig, genesis: Genesis) -> tuple[FlowerApp, ServerPlan]:
    """The site's copy of the swarm's Flower app project, with the plan its
    ServerApp gives, checked against the plan the genesis fixed."""
    from swarmflower.app_plan import check_plan, plan_record
    from swarmflower.flower_app import load_flower_app, server_plan

    genesis_path = config.path("genesis")
    if config.app is None or genesis.app is None:
        has, lacks = (config.config_file, genesis_path)
        if config.app is None:
            has, lacks = lacks, has
        raise ConfigError(
            f"{has} is for a Flower app project's swarm, {lacks} is not "
            "(the site folder mixes two swarms)"
        )
    if not isinstance(genesis.app, dict):
        raise ConfigError(f"{genesis_path}: not a swarm genesis ('app' not a table)")
    app = replace(
        load_flower_app(config.app_directory()),
        run_config=dict(config.app.run_config),
    )
    plan = server_plan(app)
    check_plan(genesis.app, plan_record(app, plan), str(config.config_file))
    return app, plan


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
    if config.app is not None or config.task.is_user_app:
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
    join: JoinRequest | None = None  # a newcomer's request to be enrolled


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
        return _Identity(
            key=key,
            index=config.index,  # until the ledger gives it its roster place
            ca_cert=ca_cert,
            members=frozenset(founders.items()),
            join=_join_request(config, address, cert, ca_path, genesis_path),
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


def _join_request(
    config: SiteConfig,
    address: str,
    cert: x509.Certificate,
    ca_path: Path,
    genesis_path: Path,
) -> JoinRequest:
    """A site enrolled after the genesis asks the members to seal its
    enrollment (`swarmflower enroll` wrote it next to the site.toml)."""
    from swarmflower.provision import ENROLLMENT_FILE, load_enrollment

    path = config.folder / ENROLLMENT_FILE
    if not path.exists():
        raise ConfigError(
            f"{genesis_path}: {address} is not a founding site of this swarm, "
            f"and {path} (written by `swarmflower enroll`) is missing"
        )
    enrollment = load_enrollment(path, ca_path)
    if (enrollment.address, enrollment.cert_fingerprint) != (
        address,
        fingerprint(cert),
    ):
        raise ConfigError(f"{path}: enrolls another site than {config.path('cert')}")
    return JoinRequest(
        address,
        enrollment.cert_fingerprint,
        enrollment.listen,
        cert.public_bytes(serialization.Encoding.PEM),
    )


def _common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def _spki(public_key) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
