"""Scenario files: a whole experiment (task, partition, faults, methods) in TOML.

A scenario fixes everything a comparison run needs, so an experiment from the
paper is one named file rather than a long command line. Shipped scenarios
live in `scenario_files/*.toml` next to this module; `load_scenario` takes a name
or a path and checks every key, naming the file and key in any `ConfigError`.

Schema (every table but `[task]` optional):

    name = "aml-studies"          # default: the file's stem
    description = "..."
    rounds = 20
    strategy = "FedAvg"           # the Flower strategy each leader runs
    methods = ["swarm", "local", "pooled"]   # any of compare's --methods
    round_timeout = 10.0          # seconds before a backup replaces the leader

    [task]                        # any TaskSpec field (task, num_sites, ...)
    task = "transcriptome"
    num_sites = 32
    [task.options]                # task-specific options (genes, samples, ...)

    [partition]                   # folded into the task options
    kind = "studies"              # partition = kind; other keys as they are

    [faults]
    dropout = 0.1                 # chance a site misses a given round
    leader_crash_every = 5        # the leader crashes in rounds 5, 10, ...
    leader_crash_rounds = [3]
    dishonest_leader_rounds = []
    recover_after = 1             # rounds until a crashed site comes back
    crashes = [{ site = 3, round = 4, recover = 6 }]  # site from 1
    byzantine = { sites = [2, 5], attack = "scale:-10" }  # attacks.py
    slowdown = 1.0                # default for every site
    bandwidth_mbps = 100.0
    latency_ms = 10.0
    [[faults.sites]]              # per-site overrides
    site = 2
    slowdown = 4.0
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from swarmflower.attacks import Attack
from swarmflower.errors import ConfigError
from swarmflower.faults import FaultPlan
from swarmflower.simulations.engine.timing import Heterogeneity, SiteProfile
from swarmflower.simulations.experiments.methods import METHODS
from swarmflower.strategies.registry import canonical_name
from swarmflower.tasks import TaskSpec
from swarmflower.tasks.spec import field_kind

SCENARIO_DIR = Path(__file__).parent / "scenario_files"
TOP_KEYS = ("name", "description", "rounds", "strategy", "methods", "round_timeout")
TABLES = ("task", "partition", "faults")


@dataclass(frozen=True)
class Crash:
    """A site (counted from 1) dies before training in `round`; back in `recover`."""

    site: int
    round: int
    recover: int | None = None


@dataclass(frozen=True)
class Faults:
    """What goes wrong during a run; the engine decides how to inflict it."""

    dropout: float = 0.0
    leader_crash_every: int | None = None
    leader_crash_rounds: tuple[int, ...] = ()
    dishonest_leader_rounds: tuple[int, ...] = ()
    recover_after: int = 1
    crashes: tuple[Crash, ...] = ()
    slowdown: float = 1.0
    bandwidth_mbps: float = 100.0
    latency_ms: float = 10.0
    sites: tuple[SiteProfile, ...] = ()
    byzantine: Attack | None = None  # the sites that poison what they send

    def leader_crashes(self, rounds: int) -> frozenset[int]:
        """Every round whose leader crashes, from both ways of saying it."""
        every = self.leader_crash_every
        periodic = range(every, rounds + 1, every) if every else ()
        return frozenset((*self.leader_crash_rounds, *periodic))

    def fault_plan(self, rounds: int) -> FaultPlan:
        """Crashes and dishonesty, for any engine.

        The in-process engine brings every crashed site back `recover_after`
        rounds later; the Ray engine honours each crash's own `recover` round.
        """
        return FaultPlan(
            leader_crash_rounds=self.leader_crashes(rounds),
            dishonest_leader_rounds=frozenset(self.dishonest_leader_rounds),
            site_crashes=tuple(sorted((c.site - 1, c.round) for c in self.crashes)),
            recover_after=self.recover_after,
            site_recoveries=tuple(
                sorted((c.site - 1, c.recover) for c in self.crashes if c.recover)
            ),
            attack=self.byzantine,
        )

    def heterogeneity(self, num_sites: int) -> Heterogeneity:
        """Dropout, speeds and links for the Ray engine's simulated time."""
        return Heterogeneity(
            tuple(self.profile(k + 1) for k in range(num_sites)), self.dropout
        )

    def profile(self, site: int) -> SiteProfile:
        """Site `site`'s (from 1) speed and link, defaults filled in."""
        for entry in self.sites:
            if entry.site == site:
                return entry
        return SiteProfile(site, self.slowdown, self.bandwidth_mbps, self.latency_ms)


@dataclass(frozen=True)
class Scenario:
    """One experiment: which data and sites, how long, which faults, which methods."""

    name: str
    spec: TaskSpec
    rounds: int
    strategy: str = "FedAvg"
    methods: tuple[str, ...] = ("swarm", "local", "pooled")
    round_timeout: float = 10.0
    faults: Faults = Faults()
    description: str = ""

    @property
    def num_sites(self) -> int:
        return self.spec.num_sites

    @property
    def partition(self) -> str | None:
        """The partition named in the task options, if the task takes one."""
        value = dict(self.spec.options).get("partition")
        return None if value is None else str(value)


class _Reader:
    """Reads one table of a scenario file, naming file and key in every error."""

    def __init__(self, data: Mapping[str, Any], path: Path, prefix: str = "") -> None:
        self.data, self.path, self.prefix = data, path, prefix

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.path}: '{self.prefix}{key}' {problem}")

    def only(self, allowed: tuple[str, ...]) -> None:
        for key in self.data:
            if key not in allowed:
                raise self.fail(key, f"is not a known key (use {', '.join(allowed)})")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        if key not in self.data:
            if default is ...:
                raise self.fail(key, "is missing")
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if (
            isinstance(value, bool)
            and bool not in kinds
            or not isinstance(value, kinds)
        ):
            wanted = " or ".join(k.__name__ for k in kinds)
            raise self.fail(key, f"must be {wanted}, got {self.data[key]!r}")
        return value

    def number(self, key: str, default: Any, minimum: float, kind: type) -> Any:
        value = self.get(key, kind, default)
        if value is not None and value < minimum:
            raise self.fail(key, f"must be at least {minimum}, got {value}")
        return value

    def rounds(self, key: str) -> tuple[int, ...]:
        values = self.get(key, list, [])
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise self.fail(key, f"must be a list of round numbers, got {values!r}")
        if any(v < 1 for v in values):
            raise self.fail(key, f"rounds count from 1, got {values!r}")
        return tuple(values)

    def table(self, key: str) -> _Reader:
        return _Reader(self.get(key, dict, {}), self.path, f"{self.prefix}{key}.")

    def tables(self, key: str) -> list[_Reader]:
        items = self.get(key, list, [])
        if not all(isinstance(item, dict) for item in items):
            raise self.fail(key, "must be a list of tables")
        return [
            _Reader(item, self.path, f"{self.prefix}{key}[{i}].")
            for i, item in enumerate(items)
        ]


def _task(root: _Reader) -> TaskSpec:
    """[task] (TaskSpec fields typed by their defaults), [task.options], [partition]."""
    table = root.table("task")
    names = tuple(f.name for f in fields(TaskSpec))
    table.only(names)
    values: dict[str, Any] = {"task": table.get("task", str)}
    for spec_field in fields(TaskSpec):
        name = spec_field.name
        if name in ("task", "options") or name not in table.data:
            continue
        values[name] = table.get(name, field_kind(name))
    options = dict(table.table("options").data)
    partition = root.table("partition")
    if partition.data:
        options["partition"] = partition.get("kind", str)
        if "alpha" in partition.data:  # Dirichlet alpha is a TaskSpec field
            values["alpha"] = partition.get("alpha", float)
        skip = ("kind", "alpha")
        options.update((k, v) for k, v in partition.data.items() if k not in skip)
    try:
        return TaskSpec(**values, options=options)
    except ConfigError as exc:
        raise ConfigError(f"{root.path}: [task] {exc}") from None


def _faults(root: _Reader, num_sites: int) -> Faults:
    table = root.table("faults")
    table.only(tuple(f.name for f in fields(Faults)))
    dropout = table.get("dropout", float, 0.0)
    if not 0.0 <= dropout < 1.0:
        raise table.fail("dropout", f"must be in [0, 1), got {dropout}")

    def site_number(reader: _Reader) -> int:
        site = reader.get("site", int)
        if not 1 <= site <= num_sites:
            raise reader.fail("site", f"must be between 1 and {num_sites}, got {site}")
        return site

    crashes = []
    for entry in table.tables("crashes"):
        entry.only(("site", "round", "recover"))
        crash = Crash(
            site_number(entry),
            entry.number("round", ..., 1, int),
            entry.number("recover", None, 1, int),
        )
        if crash.recover is not None and crash.recover <= crash.round:
            raise entry.fail("recover", f"must come after round {crash.round}")
        crashes.append(crash)
    profiles = []
    for entry in table.tables("sites"):
        entry.only(tuple(f.name for f in fields(SiteProfile)))
        profiles.append(
            SiteProfile(
                site_number(entry),
                entry.number("slowdown", 1.0, 1.0, float),
                entry.number("bandwidth_mbps", 100.0, 0.001, float),
                entry.number("latency_ms", 10.0, 0.0, float),
            )
        )
    return Faults(
        byzantine=_byzantine(table, num_sites),
        dropout=dropout,
        leader_crash_every=table.number("leader_crash_every", None, 1, int),
        leader_crash_rounds=table.rounds("leader_crash_rounds"),
        dishonest_leader_rounds=table.rounds("dishonest_leader_rounds"),
        recover_after=table.number("recover_after", 1, 0, int),
        crashes=tuple(crashes),
        slowdown=table.number("slowdown", 1.0, 1.0, float),
        bandwidth_mbps=table.number("bandwidth_mbps", 100.0, 0.001, float),
        latency_ms=table.number("latency_ms", 10.0, 0.0, float),
        sites=tuple(profiles),
    )


def _byzantine(table: _Reader, num_sites: int) -> Attack | None:
    """`byzantine = { sites = [...], attack = "KIND[:PARAM]" }`, sites from 1."""
    if "byzantine" not in table.data:
        return None
    entry = table.table("byzantine")
    entry.only(("sites", "attack"))
    sites = entry.get("sites", list)
    if not sites or any(
        isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= num_sites
        for s in sites
    ):
        raise entry.fail("sites", f"must list sites between 1 and {num_sites}")
    try:
        return Attack.parse(entry.get("attack", str), [s - 1 for s in sites])
    except ConfigError as exc:
        raise entry.fail("attack", str(exc)) from None


def _methods(root: _Reader) -> tuple[str, ...]:
    methods = root.get("methods", list, ["swarm", "local", "pooled"])
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise root.fail("methods", f"must name some of {METHODS}, got {methods!r}")
    return tuple(methods)


def _strategy(root: _Reader) -> str:
    try:
        return canonical_name(root.get("strategy", str, "FedAvg"))
    except ConfigError as exc:
        raise root.fail("strategy", str(exc)) from None


def list_scenarios() -> tuple[str, ...]:
    """The names of the shipped scenarios, sorted."""
    return tuple(sorted(p.stem for p in SCENARIO_DIR.glob("*.toml")))


def _resolve(name_or_path: str | Path) -> Path:
    shipped = SCENARIO_DIR / f"{name_or_path}.toml"
    if isinstance(name_or_path, str) and "/" not in name_or_path and shipped.exists():
        return shipped
    path = Path(name_or_path)
    if path.is_file():
        return path
    raise ConfigError(
        f"no scenario '{name_or_path}': use a file or one of "
        f"{', '.join(list_scenarios())}"
    )


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A shipped scenario by name, or a scenario file by path, fully checked."""
    path = _resolve(name_or_path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    root = _Reader(data, path)
    root.only(TOP_KEYS + TABLES)
    spec = _task(root)
    return Scenario(
        name=root.get("name", str, path.stem),
        description=root.get("description", str, ""),
        spec=spec,
        rounds=root.number("rounds", ..., 1, int),
        strategy=_strategy(root),
        methods=_methods(root),
        round_timeout=root.number("round_timeout", 10.0, 0.001, float),
        faults=_faults(root, spec.num_sites),
    )
