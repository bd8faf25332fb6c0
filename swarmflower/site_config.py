"""One site's `site.toml`: who it is, whom it talks to, what it trains.

What it trains is a built-in task (`[task]`), or a Flower app project
(`[app]` with the shared run config, `[node_config]` with the site's own).

Written by `swarmflower init` / `enroll` and read by the peer. Every value is
checked on load, and a bad one is reported with the file and the dotted key
(`site.toml: 'site.port' must be an integer`), because a site operator edits
this file by hand. File names inside it are relative to the file's folder,
so a site folder can be moved or copied to another machine as a whole.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import tomli_w
from eth_utils import is_address

from swarmflower.errors import ConfigError
from swarmflower.ledger import SwarmParams
from swarmflower.ledger.records import DEFAULT_MAX_EXAMPLES, DEFAULT_MAX_UPDATE_RATIO
from swarmflower.site_hosts import SiteAddress
from swarmflower.tasks import TaskSpec
from swarmflower.tasks.spec import field_kind

SITE_FILE = "site.toml"
DEFAULT_BASE_PORT = 47100


@dataclass(frozen=True)
class PeerEntry:
    """Another site: its name, where it listens, and the address it signs with."""

    name: str
    address: str  # host:port
    eth_address: str


@dataclass(frozen=True)
class TaskConfig:
    """What this site trains: a built-in task's `TaskSpec`, and its partition.

    `spec.task` is `heart`, `breast-cancer`, `csv:PATH`, or `module:app` for
    the user's own ClientApp (then only `task` and `seed` of the spec
    matter). `partition_id` is the site's part of the data (Flower's
    `node_config["partition-id"]`); the spec rebuilds the same task at
    every site.
    """

    spec: TaskSpec
    partition_id: int

    @property
    def task(self) -> str:
        return self.spec.task

    @property
    def is_user_app(self) -> bool:
        """`module:app` names the user's own ClientApp, not a built-in task."""
        return ":" in self.task and not self.task.startswith("csv:")

    def with_partition(self, partition_id: int, **spec_changes: Any) -> TaskConfig:
        return TaskConfig(self.spec.with_options(**spec_changes), partition_id)

    def to_dict(self) -> dict[str, Any]:
        spec = {k: v for k, v in self.spec.as_dict().items() if v is not None}
        return {**spec, "partition_id": self.partition_id}


NodeValue = bool | float | int | str


@dataclass(frozen=True)
class AppConfig:
    """What a site of a Flower app project's swarm runs (`init --app`).

    `directory` is the site's copy of the project (relative to the site's
    folder, or absolute); `run_config` the run config every site shares (the
    genesis holds it too); `node_config` this site's own keys, as Flower's
    `--node-config`: `partition-id`, `num-partitions`, and whatever the site
    adds (a data path, say) for its ClientApp to read.
    """

    directory: str
    run_config: Mapping[str, NodeValue]
    node_config: Mapping[str, NodeValue]

    @property
    def partition_id(self) -> int:
        return int(self.node_config.get("partition-id", 0))

    def with_partition(self, partition_id: int, **_: Any) -> AppConfig:
        node_config = {**self.node_config, "partition-id": partition_id}
        return replace(self, node_config=node_config)

    def to_dict(self) -> dict[str, Any]:
        return {
            "app": {"dir": self.directory, "run_config": dict(self.run_config)},
            "node_config": dict(self.node_config),
        }


@dataclass(frozen=True)
class SiteFiles:
    """The site's files, as written in `site.toml` (relative to its folder)."""

    eth_key: str = "site.key"
    tls_key: str = "tls.key"
    cert: str = "site.pem"
    ca_cert: str = "ca.pem"
    genesis: str = "genesis.json"
    initial_model: str = "initial_model.bin"
    ledger: str = "ledger"


@dataclass(frozen=True)
class SiteConfig:
    """Everything one site needs to start: identity files, network, task, swarm."""

    name: str
    index: int
    host: str
    port: int
    task: TaskConfig | AppConfig  # a built-in task or module:app; or a project
    swarm: SwarmParams  # as fixed in the genesis
    files: SiteFiles = field(default_factory=SiteFiles)
    peers: tuple[PeerEntry, ...] = ()
    # what the other sites dial, when not `host` (a DNS name, an address
    # behind NAT, or the real address of a site bound to 0.0.0.0)
    advertise: str = ""
    # listens nowhere (a firewall that lets no connection in): it dials its
    # peers, which relay its traffic; `host` and `port` are then unused
    outbound_only: bool = False
    folder: Path = Path(".")  # where the file was loaded from; not written
    file_name: str = SITE_FILE  # its name there; not written

    @property
    def config_file(self) -> Path:
        """The `site.toml` this config was read from: what errors name."""
        return self.folder / self.file_name

    @property
    def listen_address(self) -> str:
        """The interface and port the site binds ("" if it only dials out)."""
        if self.outbound_only:
            return ""
        return SiteAddress(self.host, self.port).listen

    @property
    def dialled_address(self) -> str:
        """Where the other sites reach it ("" if only through its relays)."""
        if self.outbound_only:
            return ""
        return SiteAddress(self.host, self.port, self.advertise).dialled

    def path(self, name: str) -> Path:
        """The absolute path of one of `files` (e.g. `config.path("cert")`)."""
        return self.folder / getattr(self.files, name)

    def tls_material(self):
        """The PEM bytes the gRPC transport serves and dials with."""
        from swarmflower.transport import TlsMaterial

        return TlsMaterial(
            ca_cert=self.path("ca_cert").read_bytes(),
            cert=self.path("cert").read_bytes(),
            key=self.path("tls_key").read_bytes(),
        )

    @property
    def app(self) -> AppConfig | None:
        """The Flower app project this site runs, if it runs one."""
        return self.task if isinstance(self.task, AppConfig) else None

    def app_directory(self) -> Path:
        """Where the site's copy of the app project is."""
        assert self.app is not None
        return self.folder / self.app.directory

    def with_peers(self, peers: tuple[PeerEntry, ...]) -> SiteConfig:
        return replace(self, peers=peers)

    def to_dict(self) -> dict[str, Any]:
        where = (
            {"outbound_only": True}
            if self.outbound_only
            else {
                "host": self.host,
                "port": self.port,
                **({"advertise": self.advertise} if self.advertise else {}),
            }
        )
        return {
            "site": {"name": self.name, "index": self.index, **where},
            "files": dict(vars(self.files)),
            "swarm": dict(vars(self.swarm)),
            **(
                self.task.to_dict()
                if isinstance(self.task, AppConfig)
                else {"task": self.task.to_dict()}
            ),
            "peers": [dict(vars(p)) for p in self.peers],
        }


def write_site_config(config: SiteConfig, path: Path | None = None) -> Path:
    """Write `config` as TOML (to `config.folder / site.toml` by default)."""
    path = Path(path) if path else config.folder / SITE_FILE
    path.write_text(tomli_w.dumps(config.to_dict()))
    return path


class _Table:
    """A TOML table read with the file and key named in every error."""

    def __init__(self, data: Mapping[str, Any], path: Path, prefix: str) -> None:
        self.data, self.path, self.prefix = data, path, prefix

    def _fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.path}: '{self.prefix}{key}' {problem}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        if key not in self.data:
            if default is ...:
                raise self._fail(key, "is missing")
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and bool not in kinds:
            value = None  # a TOML boolean is not a number
        if not isinstance(value, kinds):
            names = " or ".join(_KIND_NAMES[k] for k in kinds)
            raise self._fail(key, f"must be {names}, got {self.data[key]!r}")
        return value

    def table(self, key: str) -> _Table:
        return _Table(self.get(key, dict), self.path, f"{self.prefix}{key}.")

    def port(self, key: str) -> int:
        value = self.get(key, int)
        if not 1 <= value <= 65535:
            raise self._fail(key, f"must be a port between 1 and 65535, got {value}")
        return value

    def positive(self, key: str, default: Any = ..., minimum: int = 1) -> int:
        value = self.get(key, int, default)
        if value < minimum:
            raise self._fail(key, f"must be at least {minimum}, got {value}")
        return value


_KIND_NAMES = {
    bool: "true or false",
    str: "a string",
    int: "an integer",
    float: "a number",
    dict: "a table",
    list: "an array",
}


def _host_port(table: _Table, key: str) -> str:
    value = table.get(key, str)
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise table._fail(key, f"must be host:port, got {value!r}")
    return value


def _task(table: _Table) -> TaskConfig:
    """The [task] table: every `TaskSpec` field, typed by its annotation."""
    values: dict[str, Any] = {"task": table.get("task", str)}
    for spec_field in fields(TaskSpec):
        if spec_field.name == "task" or spec_field.name not in table.data:
            continue
        # `options` (task-specific settings) is a TOML table; TaskSpec takes
        # a mapping and freezes it.
        name = spec_field.name
        kind = dict if name == "options" else field_kind(name)
        values[name] = table.get(name, kind)
    try:
        spec = TaskSpec(**values)
    except ConfigError as exc:
        raise ConfigError(f"{table.path}: [task] {exc}") from None
    return TaskConfig(spec, table.positive("partition_id", minimum=0))


def _app(root: _Table) -> AppConfig:
    """The [app] and [node_config] tables of a Flower app project's site."""
    app = root.table("app")
    node_config = _flat_values(root.table("node_config"))
    for key in ("partition-id", "num-partitions"):
        value = node_config.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise root._fail(
                f"node_config.{key}", f"must be a non-negative integer, got {value!r}"
            )
    return AppConfig(
        directory=_non_empty(app, "dir"),
        run_config=_flat_values(app.table("run_config")),
        node_config=node_config,
    )


def _flat_values(table: _Table) -> dict[str, NodeValue]:
    """A table of Flower config values: strings, numbers and booleans."""
    for key, value in table.data.items():
        if not isinstance(value, bool | float | int | str):
            problem = f"must be a string, number or boolean, got {value!r}"
            raise table._fail(key, problem)
    return dict(table.data)


def load_site_config(path: Path | str) -> SiteConfig:
    """Read and check a `site.toml` (or the `site.toml` in a site folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / SITE_FILE
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such site configuration file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the file ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    root = _Table(data, path, "")
    site, files, swarm = (root.table(k) for k in ("site", "files", "swarm"))
    task = _app(root) if "app" in data else _task(root.table("task"))
    defaults = SiteFiles()
    peers = []
    raw_peers = root.get("peers", list, [])
    for i, raw in enumerate(raw_peers):
        if not isinstance(raw, dict):
            raise root._fail(f"peers[{i}]", "must be a table")
        peer = _Table(raw, path, f"peers[{i}].")
        peers.append(
            PeerEntry(
                name=peer.get("name", str),
                address=_host_port(peer, "address"),
                eth_address=_eth_address(peer, "eth_address"),
            )
        )
    outbound_only = site.get("outbound_only", bool, False)
    return SiteConfig(
        name=_non_empty(site, "name"),
        index=site.positive("index"),
        host="" if outbound_only else _non_empty(site, "host"),
        port=0 if outbound_only else site.port("port"),
        outbound_only=outbound_only,
        task=task,
        swarm=_swarm(swarm),
        files=SiteFiles(
            **{k: _non_empty(files, k, getattr(defaults, k)) for k in vars(defaults)}
        ),
        peers=tuple(peers),
        advertise=site.get("advertise", str, ""),
        folder=path.parent,
        file_name=path.name,
    )


def _non_empty(table: _Table, key: str, default: Any = ...) -> str:
    value = table.get(key, str, default)
    if not value.strip():
        raise table._fail(key, "must not be empty")
    return value


def _eth_address(table: _Table, key: str) -> str:
    value = table.get(key, str)
    if not is_address(value):
        raise table._fail(key, f"must be an Ethereum address (0x...), got {value!r}")
    return value


def _swarm(table: _Table) -> SwarmParams:
    """The [swarm] table: the swarm's parameters as fixed in the genesis."""
    try:
        return SwarmParams(
            rounds=table.positive("rounds"),
            round_timeout=table.positive("round_timeout"),
            min_peers=table.positive("min_peers"),
            strategy=table.get("strategy", str, "FedAvg"),
            max_examples=table.positive("max_examples", DEFAULT_MAX_EXAMPLES),
            max_update_ratio=table.get(
                "max_update_ratio", float, DEFAULT_MAX_UPDATE_RATIO
            ),
            train_sites=table.positive("train_sites", 0, minimum=0),
            start_grace=table.positive("start_grace", 0, minimum=0),
            bucketing=table.positive("bucketing", 0, minimum=0),
        )
    except ValueError as exc:
        raise ConfigError(f"{table.path}: [swarm] {exc}") from None
