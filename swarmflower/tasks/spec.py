"""A task: which data, which model, and how each site trains in one round."""

from __future__ import annotations

import functools
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace

from swarmflower.datasets import FederatedDataset, check_task_options, load_dataset
from swarmflower.errors import ConfigError

MODELS = ("logreg", "mlp")
# Local steps per round when a task does not say: FLamby's 100 for the small
# clinical tables; 20 for transcriptome, whose thousand-site runs have ~10
# training rows per site (100 steps would be 40 passes over them per round).
DEFAULT_LOCAL_STEPS = {"transcriptome": 20}
OPTIMIZERS = ("sgd", "adam")

TaskOptions = tuple[tuple[str, object], ...]


def _frozen(value: object) -> object:
    """A hashable copy of an option value (TOML arrays arrive as lists)."""
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    return value


def normalise_options(options: Mapping[str, object] | TaskOptions) -> TaskOptions:
    """Options as sorted (name, value) pairs, so equal options hash equal."""
    pairs = options.items() if isinstance(options, Mapping) else options
    result = tuple(sorted((str(k), _frozen(v)) for k, v in pairs))
    names = [k for k, _ in result]
    if len(set(names)) != len(names):
        raise ConfigError(f"an option is given twice in {names}")
    return result


@dataclass(frozen=True)
class TaskSpec:
    """Everything a site needs to rebuild its data and train identically anywhere.

    Frozen and hashable: it travels to Ray actors and keys the data cache.
    Defaults follow FLamby's Fed-Heart-Disease benchmark (logistic regression,
    batch 4, 100 local updates per round).
    """

    task: str = "heart"
    num_sites: int = 4
    alpha: float = 1.0
    site_column: str | None = None
    target: str | None = None
    model: str = "logreg"
    hidden: int = 32
    local_steps: int | None = None  # default: DEFAULT_LOCAL_STEPS, else 100
    batch_size: int = 4
    learning_rate: float = 0.01
    optimizer: str = "sgd"
    seed: int = 0
    # Task-specific options as (name, value) pairs, e.g. (("partition", "studies"),);
    # a mapping is accepted and normalised.
    options: TaskOptions = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", normalise_options(self.options))
        if self.local_steps is None:
            steps = DEFAULT_LOCAL_STEPS.get(self.task, 100)
            object.__setattr__(self, "local_steps", steps)
        check_task_options(self.task, dict(self.options))
        if self.model not in MODELS:
            raise ConfigError(f"unknown model '{self.model}': use one of {MODELS}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"unknown optimizer '{self.optimizer}': use one of {OPTIMIZERS}"
            )
        for name in ("num_sites", "local_steps", "batch_size", "hidden"):
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"{name} must be at least 1, got {getattr(self, name)}"
                )
        if not self.learning_rate > 0:
            raise ConfigError(
                f"learning_rate must be positive, got {self.learning_rate}"
            )

    def load(self) -> FederatedDataset:
        """The task's per-site data, loaded once per process."""
        return _load_cached(
            self.task,
            self.num_sites,
            self.alpha,
            self.seed,
            self.site_column,
            self.target,
            self.options,
        )

    def with_options(self, **changes: object) -> TaskSpec:
        return replace(self, **changes)

    def as_dict(self) -> dict[str, object]:
        """Plain values; `options` as a table, and left out when there are none."""
        values = asdict(self)
        options = values.pop("options")
        if options:
            values["options"] = dict(options)
        return values


@functools.lru_cache(maxsize=8)
def _load_cached(
    task: str,
    num_sites: int,
    alpha: float,
    seed: int,
    site_column: str | None,
    target: str | None,
    options: TaskOptions,
) -> FederatedDataset:
    return load_dataset(
        task,
        num_sites=num_sites,
        alpha=alpha,
        seed=seed,
        site_column=site_column,
        target=target,
        **dict(options),
    )


def field_kind(name: str) -> type:
    """The plain type a `TaskSpec` field takes in a config file (`int | None`
    gives `int`); config readers check values against it."""
    hint = typing.get_type_hints(TaskSpec)[name]
    kinds = [k for k in typing.get_args(hint) if k is not type(None)]
    kind = kinds[0] if kinds and typing.get_origin(hint) is not tuple else hint
    return typing.get_origin(kind) or kind
