"""Set up a real swarm on disk (`swarmflower init`) and admit a site later (`enroll`).

A swarm folder holds the swarm's CA (`ca/`), the canonical `genesis.json`,
and one folder per site with everything that site needs and nothing another
site needs: its own keys (mode 0600), its certificate, the CA certificate,
a copy of the genesis and of the initial model, and its `site.toml`. A site
folder can be shipped to its hospital as is; the CA key stays with whoever
runs `init` and `enroll`.

Everything is checked before the first file is written, so a bad option
leaves no half-made swarm behind.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flwr.app import ArrayRecord

from swarmflower import pki
from swarmflower.codec import arrays_hash, encode_arrays
from swarmflower.errors import ConfigError, SwarmExistsError
from swarmflower.ledger import Enrollment, FoundingSite, Genesis, SwarmParams
from swarmflower.ledger.records import DEFAULT_MAX_EXAMPLES, DEFAULT_MAX_UPDATE_RATIO
from swarmflower.site_config import (
    DEFAULT_BASE_PORT,
    SITE_FILE,
    AppConfig,
    PeerEntry,
    SiteConfig,
    SiteFiles,
    TaskConfig,
    load_site_config,
    write_site_config,
)
from swarmflower.site_hosts import SiteAddress, check_host, same_host
from swarmflower.swarm_setup import swarm_params

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    from swarmflower.flower_app import FlowerApp

CA_DIR = "ca"
CA_CERT = "ca.pem"
CA_KEY = "ca.key"
GENESIS_FILE = "genesis.json"
ENROLLMENT_FILE = "enrollment.json"
MIN_BASE_PORT = 1024  # ports below need root privileges
_SITE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class SwarmLayout:
    """A swarm written by `init_swarm`: its folder, genesis and site configs."""

    folder: Path
    genesis: Genesis
    sites: tuple[SiteConfig, ...]


@dataclass(frozen=True)
class EnrolledSite:
    """A site admitted by `enroll_site`: its config and its ledger enrollment."""

    config: SiteConfig
    enrollment: Enrollment
    enrollment_path: Path


# --- the task's sites and initial model ---------------------------------------


def _load_attr(reference: str, what: str) -> object:
    """`module:attr`, importable from the current folder as well (as with
    `python -m`), since the console script does not put it on the path."""
    module_name, _, attr = reference.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load {what} '{reference}': {exc}") from None


def _as_arrays(model: object, reference: str) -> ArrayRecord:
    """An ArrayRecord from what a user's `--initial-model` gives us."""
    if isinstance(model, type) or (
        callable(model) and not hasattr(model, "state_dict")
    ):
        model = model()  # a class (e.g. the user's `Net`) or a factory function
    if isinstance(model, ArrayRecord):
        return model
    if hasattr(model, "state_dict"):
        return ArrayRecord(model.state_dict())
    raise ConfigError(
        f"initial model '{reference}' must be (or return) a torch module "
        f"or a flwr ArrayRecord, got {type(model).__name__}"
    )


def task_sites(
    template: TaskConfig, num_sites: int | None, initial_model: str | None
) -> tuple[list[str], ArrayRecord]:
    """The site names for `template`'s task and the swarm's initial model.

    A built-in or csv task names its sites after its data (the heart task's
    hospitals) and takes the first `num_sites` of them; a user's `module:app`
    gets `site-1..N` and its initial model from `initial_model`
    (`module:attr`, a torch module, an ArrayRecord or a function giving one).
    """
    if num_sites is not None and num_sites < 1:
        raise ConfigError(f"--sites must be at least 1, got {num_sites}")
    if template.is_user_app:
        if num_sites is None:
            raise ConfigError("--sites is required for a module:app task")
        if initial_model is None:
            raise ConfigError(
                "a module:app task needs --initial-model MODULE:ATTR "
                "(a torch module, an ArrayRecord, or a function returning one)"
            )
        _load_attr(template.task, "ClientApp")
        arrays = _as_arrays(_load_attr(initial_model, "initial model"), initial_model)
        return [f"site-{k}" for k in range(1, num_sites + 1)], arrays
    from swarmflower.tasks import initial_model as build_initial

    spec = template.spec
    data = spec.load()
    wanted = data.num_sites if num_sites is None else num_sites
    if wanted > data.num_sites:
        raise ConfigError(
            f"task '{template.task}' has {data.num_sites} sites, cannot make {wanted}"
        )
    arrays = ArrayRecord(build_initial(spec, data.num_features).state_dict())
    return [site.name for site in data.sites[:wanted]], arrays


# --- init -----------------------------------------------------------------


def _check_empty(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SwarmExistsError(
            f"{out} already exists and is not empty: choose a new folder"
        )


def _write_site_files(
    folder: Path,
    creds: pki.SiteCredentials,
    ca_cert_pem: bytes,
    genesis_json: str,
    model_bytes: bytes,
    files: SiteFiles,
) -> None:
    folder.mkdir(parents=True)
    pki.save_eth_key(creds.eth_key, folder / files.eth_key)
    pki.save_private_key(creds.tls_key, folder / files.tls_key)
    pki.save_cert(creds.cert, folder / files.cert)
    (folder / files.ca_cert).write_bytes(ca_cert_pem)
    (folder / files.genesis).write_text(genesis_json)
    (folder / files.initial_model).write_bytes(model_bytes)


def init_swarm(
    out: Path,
    template: TaskConfig,
    *,
    num_sites: int | None = None,
    rounds: int,
    round_timeout: int = 10,
    min_peers: int | None = None,
    strategy: str = "FedAvg",
    initial_model: str | None = None,
    **founding: Any,
) -> SwarmLayout:
    """Create a new swarm in the empty folder `out`; returns what was written.

    Site `K` (1..N) gets `out/site-K/`, listens on `host:base_port+K` (or
    at `addresses[K-1]`), holds
    partition `K-1` of the task, and is a founding site of the genesis.
    `max_examples` and `max_update_ratio` bound every site's updates
    (`SwarmParams`); the genesis fixes them.
    """
    out = Path(out)
    _check_empty(out)
    names, arrays = task_sites(template, num_sites, initial_model)
    params = swarm_params(
        len(names),
        rounds,
        round_timeout,
        min_peers,
        strategy,
        max_examples=founding.pop("max_examples", DEFAULT_MAX_EXAMPLES),
        max_update_ratio=founding.pop("max_update_ratio", DEFAULT_MAX_UPDATE_RATIO),
        start_grace=founding.pop("start_grace", 0),
        bucketing=founding.pop("bucketing", 0),
    )
    return _found_swarm(out, names, arrays, params, template, **founding)


def init_app_swarm(
    out: Path,
    app: FlowerApp,
    *,
    num_sites: int | None = None,
    round_timeout: int = 10,
    min_peers: int | None = None,
    **founding: Any,
) -> SwarmLayout:
    """A new swarm that plays the Flower app project `app` at real sites.

    The app's `ServerApp.main` gives the strategy, its options, the rounds
    and the initial model, all fixed in the genesis (`app_plan`); each site
    folder gets a copy of the project (`app/`) and a `site.toml` with the
    run config and its own node config (`partition-id`, `num-partitions`).
    """
    from swarmflower.app_plan import APP_FOLDER, plan_record
    from swarmflower.app_run import drawn_per_round, sites_for
    from swarmflower.flower_app import server_plan
    from swarmflower.strategies import adopt_strategy

    out = Path(out)
    _check_empty(out)
    count = sites_for(app, num_sites)
    plan = server_plan(app)
    adopt_strategy(plan.strategy, plan.train_config)  # refuses what no swarm leads
    params = swarm_params(
        count,
        plan.num_rounds,
        round_timeout,
        min_peers,
        type(plan.strategy).__name__,
        max_examples=founding.pop("max_examples", DEFAULT_MAX_EXAMPLES),
        max_update_ratio=founding.pop("max_update_ratio", DEFAULT_MAX_UPDATE_RATIO),
        start_grace=founding.pop("start_grace", 0),
        bucketing=founding.pop("bucketing", 0),
        train_sites=drawn_per_round(plan, count),
    )
    template = AppConfig(
        APP_FOLDER,
        run_config=dict(app.run_config),
        node_config={"partition-id": 0, "num-partitions": count},
    )
    names = [f"site-{k}" for k in range(1, count + 1)]
    return _found_swarm(
        out,
        names,
        plan.initial_arrays,
        params,
        template,
        app=(plan_record(app, plan), app.directory),
        **founding,
    )


def _found_swarm(
    out: Path,
    names: Sequence[str],
    arrays: ArrayRecord,
    params: SwarmParams,
    template: TaskConfig | AppConfig,
    *,
    base_port: int = DEFAULT_BASE_PORT,
    host: str = "127.0.0.1",
    addresses: Sequence[SiteAddress] | None = None,
    ca_name: str = "swarmflower swarm CA",
    app: tuple[dict[str, Any], Path] | None = None,
) -> SwarmLayout:
    """The CA, every founding site's keys and folder, and the genesis (with
    the app's plan, and the app copied into every site, when `app` is given).

    Site K listens at `addresses[K-1]` (`init --hosts`), by default on
    `host:base_port+K`; its certificate names where it listens and where the
    others dial it."""
    count = len(names)
    _check_base_port(base_port, count)
    if addresses is None:
        addresses = same_host(count, host, base_port)
    if len(addresses) != count:
        raise ConfigError(
            f"--hosts names {len(addresses)} sites, but the swarm has {count} "
            "(give --sites, or one host per site)"
        )
    ca_key, ca_cert = pki.create_ca(ca_name)
    creds = [
        pki.issue_site(ca_key, ca_cert, name, pki.new_eth_key(), where.cert_hosts())
        for name, where in zip(names, addresses, strict=True)
    ]
    genesis = Genesis(
        sites=tuple(FoundingSite(c.address, c.fingerprint) for c in creds),
        initial_model_hash=arrays_hash(arrays),
        params=params,
        timestamp=int(time.time()),
        app=app[0] if app else None,
    )
    files = _FoundingFiles(
        pki.cert_pem(ca_cert), genesis.to_json(), encode_arrays(arrays)
    )
    _write_swarm_folder(out, ca_key, ca_cert, files.genesis_json)
    configs = _write_founding_sites(out, creds, files, template, params, addresses)
    if app is not None:
        from swarmflower.app_plan import copy_app

        for config in configs:
            copy_app(app[1], config.app_directory())
    return SwarmLayout(out, genesis, tuple(configs))


def _write_swarm_folder(out: Path, ca_key, ca_cert, genesis_json: str) -> None:
    """The swarm folder's own files: the CA's key and certificate, the genesis."""
    out.mkdir(parents=True, exist_ok=True)
    (out / CA_DIR).mkdir()
    pki.save_private_key(ca_key, out / CA_DIR / CA_KEY)
    pki.save_cert(ca_cert, out / CA_DIR / CA_CERT)
    (out / GENESIS_FILE).write_text(genesis_json)


@dataclass(frozen=True)
class _FoundingFiles:
    """What every founding site's folder holds a copy of."""

    ca_pem: bytes
    genesis_json: str
    model_bytes: bytes


def _write_founding_sites(
    out: Path,
    creds: Sequence,
    files: _FoundingFiles,
    template: TaskConfig | AppConfig,
    params: SwarmParams,
    addresses: Sequence[SiteAddress],
) -> list[SiteConfig]:
    """Site K's folder `out/site-K` and its `site.toml`: it listens at
    `addresses[K-1]`, holds partition K-1 and knows where every other site
    is dialled."""
    count = len(creds)
    peers = [
        PeerEntry(c.name, where.dialled, c.address)
        for c, where in zip(creds, addresses, strict=True)
    ]
    configs = []
    for k, (c, where) in enumerate(zip(creds, addresses, strict=True), start=1):
        folder = out / f"site-{k}"
        _write_site_files(
            folder, c, files.ca_pem, files.genesis_json, files.model_bytes, SiteFiles()
        )
        config = SiteConfig(
            name=c.name,
            index=k,
            host=where.host,
            port=where.port,
            advertise=where.advertise,
            task=template.with_partition(k - 1, num_sites=count),
            swarm=params,
            peers=tuple(p for p in peers if p.name != c.name),
            folder=folder,
        )
        write_site_config(config)
        configs.append(config)
    return configs


def _check_base_port(base_port: int, count: int) -> None:
    """Site K listens on BASE+K: every port must be a real, unprivileged one
    (0 would not mean "any free port" here, it would give ports 1..N)."""
    highest = 65535 - count
    if not MIN_BASE_PORT <= base_port <= highest:
        raise ConfigError(
            f"--base-port must be between {MIN_BASE_PORT} and {highest} for "
            f"{count} sites (site K listens on BASE+K), got {base_port}"
        )


# --- enroll ---------------------------------------------------------------


def swarm_sites(swarm: Path) -> list[SiteConfig]:
    """The configs of the sites in a swarm folder, in index order."""
    configs = [load_site_config(p) for p in Path(swarm).glob(f"*/{SITE_FILE}")]
    return sorted(configs, key=lambda c: c.index)


def write_enrollment(path: Path, **fields: object) -> None:
    """An enrollment as JSON: name, address, fingerprint, listen address, cert."""
    path.write_text(json.dumps(fields, indent=2, sort_keys=True) + "\n")


def load_enrollment(path: Path | str, ca_cert_path: Path | None = None) -> Enrollment:
    """Read an `enrollment.json`; check its certificate against its claims.

    The certificate in the file must have the stated fingerprint and be
    bound to the stated address; with `ca_cert_path` it must also be issued
    by the swarm CA. Members submit the result with `Ledger.enroll(...)`, and
    the next round they seal (`seal_round`) carries it on the ledger.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        enrollment = Enrollment(
            data["address"],
            bytes.fromhex(data["cert_fingerprint"]),
            str(data.get("listen", "")),
        )
        cert_text = data["cert"]
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such enrollment file") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a valid enrollment ({exc!r})") from None
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(cert_text.encode())
    except ValueError:
        raise ConfigError(f"{path}: 'cert' is not a PEM certificate") from None
    if pki.fingerprint(cert) != enrollment.cert_fingerprint:
        raise ConfigError(f"{path}: 'cert_fingerprint' does not match 'cert'")
    if ca_cert_path is not None:
        address = pki.verify_site_cert(cert, pki.load_cert(ca_cert_path))
    else:
        address = pki.site_address_of(cert)
    if address != enrollment.address:
        raise ConfigError(f"{path}: 'address' is not the address 'cert' is bound to")
    return enrollment


def _free_port(configs: Sequence[SiteConfig], host: str) -> int:
    taken = {c.port for c in configs if c.host == host}
    port = max(taken, default=DEFAULT_BASE_PORT) + 1
    while port in taken:
        port += 1
    return port


def enroll_site(
    swarm: Path,
    name: str,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    partition_id: int | None = None,
    advertise: str = "",
    outbound_only: bool = False,
) -> EnrolledSite:
    """Admit site `name` to the swarm in `swarm`: keys, certificate, folder, peers.

    Writes `swarm/<name>/` (like an `init` site folder, plus its
    `enrollment.json`). Nothing of the members changes: the newcomer's
    `peer` asks the running members to join, the next block enrolls it with
    its address, and every member dials it from then on. An `outbound_only`
    site listens nowhere: the members it dials relay its traffic.
    """
    swarm = Path(swarm)
    members = _enrolment_members(swarm, name)
    if outbound_only:
        host, port, advertise = "", 0, ""
    else:
        port = _newcomer_port(members, host, port)
    first = members[0]
    task = _newcomer_task(members, partition_id)
    folder = swarm / name

    ca_key, ca_cert, genesis_json, model_bytes = _swarm_files(swarm, first)
    hosts: tuple[str, ...] = ()
    if not outbound_only:
        hosts = SiteAddress(check_host(host, "--host"), port, advertise).cert_hosts()
    creds = pki.issue_site(ca_key, ca_cert, name, pki.new_eth_key(), hosts)
    _write_site_files(
        folder, creds, pki.cert_pem(ca_cert), genesis_json, model_bytes, SiteFiles()
    )
    config = SiteConfig(
        name=name,
        index=max(c.index for c in members) + 1,
        host=host,
        port=port,
        advertise=advertise,
        outbound_only=outbound_only,
        task=task,
        swarm=first.swarm,
        peers=tuple(
            PeerEntry(c.name, c.dialled_address, _address(c))
            for c in members
            if c.dialled_address  # members that only dial out cannot be dialled
        ),
        folder=folder,
    )
    if config.app is not None:  # the swarm's app, as the members hold it
        from swarmflower.app_plan import copy_app

        copy_app(first.app_directory(), config.app_directory())
    write_site_config(config)
    enrollment = Enrollment(creds.address, creds.fingerprint, config.dialled_address)
    enrollment_path = folder / ENROLLMENT_FILE
    write_enrollment(
        enrollment_path,
        name=name,
        address=creds.address,
        cert_fingerprint=creds.fingerprint.hex(),
        listen=config.dialled_address,
        cert=pki.cert_pem(creds.cert).decode(),
    )
    return EnrolledSite(config, enrollment, enrollment_path)


def _enrolment_members(swarm: Path, name: str) -> list[SiteConfig]:
    """The swarm's sites, once `swarm` is checked to be a swarm folder in
    which `name` is a new, valid site name."""
    if not _SITE_NAME.match(name):
        raise ConfigError(
            f"site name '{name}' must be letters, digits, '.', '_' or '-' "
            "(at most 64, starting with a letter or digit)"
        )
    ca_dir = swarm / CA_DIR
    for path in (ca_dir / CA_KEY, ca_dir / CA_CERT, swarm / GENESIS_FILE):
        if not path.is_file():
            raise ConfigError(
                f"{path}: no such file ({swarm} is not a swarm folder made by "
                "'swarmflower init', or the file was moved)"
            )
    members = swarm_sites(swarm)
    if not members:
        raise ConfigError(f"{swarm} holds no site folders")
    if (swarm / name).exists() or any(c.name == name for c in members):
        raise SwarmExistsError(f"a site named '{name}' already exists in {swarm}")
    return members


def _newcomer_port(members: Sequence[SiteConfig], host: str, port: int | None) -> int:
    """The new site's port: as asked, or the next free one on its host."""
    port = _free_port(members, host) if port is None else port
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port must be between 1 and 65535, got {port}")
    if any(c.host == host and c.port == port for c in members):
        raise ConfigError(f"{host}:{port} is already used by another site")
    return port


def _newcomer_task(members: Sequence[SiteConfig], partition_id: int | None):
    """The new site's task: the swarm's, on the next (or the asked) partition."""
    if partition_id is None:
        partition_id = max(c.task.partition_id for c in members) + 1
    task = members[0].task.with_partition(partition_id)
    if isinstance(task, TaskConfig) and not task.is_user_app:
        available = task.spec.load().num_sites
        if not 0 <= partition_id < available:
            raise ConfigError(
                f"task '{task.task}' has partitions 0..{available - 1}; "
                f"choose one with --partition-id"
            )
    if isinstance(task, AppConfig):
        available = int(task.node_config.get("num-partitions", 0))
        if not 0 <= partition_id < available:
            raise ConfigError(
                f"the app's sites split its data into {available} partitions "
                f"(node_config num-partitions), so partition-id {partition_id} "
                f"would read none; choose 0..{available - 1} with --partition-id, "
                "or give the new site its own data in its site.toml [node_config]"
            )
    return task


def _swarm_files(
    swarm: Path, first: SiteConfig
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, str, bytes]:
    """The CA key and certificate, the genesis text and the initial model a
    new site is made from, each checked: a missing, unreadable or damaged
    file is one `ConfigError` naming it, before anything is written."""
    from swarmflower.site_files import load_genesis, read_site_file

    ca_dir = swarm / CA_DIR
    ca_key = read_site_file(ca_dir / CA_KEY, "swarm CA key", pki.load_private_key)
    ca_cert = read_site_file(ca_dir / CA_CERT, "swarm CA certificate", pki.load_cert)
    if ca_cert.public_key().public_numbers() != ca_key.public_key().public_numbers():
        raise ConfigError(
            f"{ca_dir / CA_CERT}: not the certificate of {ca_dir / CA_KEY} "
            "(the CA key and certificate are from different swarms)"
        )
    # load_genesis reads a site's genesis; the swarm folder's is the same file.
    load_genesis(replace(first, folder=swarm, files=SiteFiles()))
    genesis_json = read_site_file(swarm / GENESIS_FILE, "genesis", Path.read_text)
    model = first.path("initial_model")
    model_bytes = read_site_file(model, "initial model", Path.read_bytes)
    return ca_key, ca_cert, genesis_json, model_bytes


def _address(config: SiteConfig) -> str:
    """A site's Ethereum address, read from its certificate's verified binding."""
    return pki.site_address_of(pki.load_cert(config.path("cert")))
