"""Strategy names a swarm can be configured with, and their swarm defaults."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flwr.serverapp.strategy import (
    Bulyan,
    FedAdagrad,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedMedian,
    FedProx,
    FedTrimmedAvg,
    FedYogi,
    Krum,
    MultiKrum,
    Strategy,
)

from swarmflower.errors import ConfigError
from swarmflower.strategies.base import LeaderStrategy
from swarmflower.strategies.fedavgm import FedAvgMStrategy
from swarmflower.strategies.fedopt import FedOptStrategy
from swarmflower.strategies.flower_strategy import FlowerStrategy
from swarmflower.strategies.robust import (
    AlignedAvg,
    CenteredClipping,
    GeometricMedian,
    NormBoundedAvg,
)
from swarmflower.strategies.robust_leader import RobustStrategy

# The leader merges whatever the round committed; Flower's node minimums are
# for sampling in a ServerApp and must not make a small swarm wait.
SWARM_DEFAULTS: Mapping[str, Any] = {
    "min_train_nodes": 1,
    "min_evaluate_nodes": 1,
    "min_available_nodes": 1,
}


@dataclass(frozen=True)
class StrategySpec:
    """A Flower strategy class, its leader adapter and its swarm defaults."""

    flower_class: type[Strategy]
    leader_class: type[FlowerStrategy] = FlowerStrategy
    defaults: Mapping[str, Any] = field(default_factory=dict)


SPECS: Mapping[str, StrategySpec] = {
    "FedAvg": StrategySpec(FedAvg),
    # mu=0 would make FedProx FedAvg (and Flower warns at every construction).
    "FedProx": StrategySpec(FedProx, defaults={"proximal_mu": 0.1}),
    "FedAvgM": StrategySpec(FedAvgM, FedAvgMStrategy),
    "FedMedian": StrategySpec(FedMedian),
    "FedTrimmedAvg": StrategySpec(FedTrimmedAvg, defaults={"beta": 0.2}),
    "Krum": StrategySpec(Krum, defaults={"num_malicious_nodes": 0}),
    "MultiKrum": StrategySpec(MultiKrum, defaults={"num_malicious_nodes": 0}),
    "Bulyan": StrategySpec(Bulyan, defaults={"num_malicious_nodes": 0}),
    "FedAdam": StrategySpec(FedAdam, FedOptStrategy),
    "FedYogi": StrategySpec(FedYogi, FedOptStrategy),
    "FedAdagrad": StrategySpec(FedAdagrad, FedOptStrategy),
    # robust merges of our own (robust.py), verifiable like Flower's
    "GeometricMedian": StrategySpec(GeometricMedian, RobustStrategy),
    "NormBoundedAvg": StrategySpec(NormBoundedAvg, RobustStrategy),
    "CenteredClipping": StrategySpec(CenteredClipping, RobustStrategy),
    "AlignedAvg": StrategySpec(AlignedAvg, RobustStrategy),
}

STRATEGY_NAMES: tuple[str, ...] = tuple(SPECS)
DEFAULT_STRATEGY = "FedAvg"


def canonical_name(name: str) -> str:
    """Flower's spelling of a strategy name given in any case ("fedadam")."""
    by_lower = {known.lower(): known for known in STRATEGY_NAMES}
    try:
        return by_lower[name.lower()]
    except KeyError:
        raise ConfigError(
            f"unknown strategy {name!r}; choose one of: {', '.join(STRATEGY_NAMES)}"
        ) from None


def build_strategy(
    name: str = DEFAULT_STRATEGY, bucketing: int = 0, **options: Any
) -> FlowerStrategy:
    """The leader adapter for Flower strategy `name`; options go to its class.
    `bucketing` K > 1 merges the means of random buckets of K updates."""
    name = canonical_name(name)
    spec = SPECS[name]
    if bucketing < 0 or bucketing == 1:
        raise ConfigError(f"bucketing must be 0 (off) or at least 2, got {bucketing}")
    leader = spec.leader_class(
        name, spec.flower_class, {**SWARM_DEFAULTS, **spec.defaults, **options}
    )
    leader.bucketing = bucketing
    return leader


def strategy_options(strategy: Strategy) -> dict[str, Any]:
    """The constructor options of a strategy a user's ServerApp built, read
    back from the object (Flower's strategies keep each option as an
    attribute of the same name); refused for a strategy no swarm can lead."""
    kind = type(strategy)
    spec = SPECS.get(kind.__name__)
    if spec is None or spec.flower_class is not kind:
        raise ConfigError(
            f"the ServerApp's strategy {kind.__name__} is not one a swarm can "
            f"lead yet; choose one of: {', '.join(STRATEGY_NAMES)}"
        )
    names = _option_names(kind)
    unread = [k for k in names if not hasattr(strategy, k)]
    if unread:  # a Flower version that stores an option under another name
        raise ConfigError(
            f"cannot read the ServerApp's {kind.__name__} option(s) "
            f"{', '.join(unread)} back from the strategy object"
        )
    return {key: getattr(strategy, key) for key in names}


def _option_names(kind: type) -> list[str]:
    """A strategy class's constructor options; a class that passes `**kwargs`
    on to its base (our robust merges to FedAvg) has the base's too."""
    names: list[str] = []
    for cls in kind.__mro__:
        if "__init__" not in vars(cls):
            continue
        parameters = inspect.signature(cls.__init__).parameters.values()
        names += [
            p.name
            for p in parameters
            if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        ]
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    return list(dict.fromkeys(names))


def adopt_strategy(
    strategy: Strategy, train_config: Mapping[str, Any] | None = None
) -> FlowerStrategy:
    """The leader adapter for a strategy a user's ServerApp built.

    Its constructor options are read back from the object
    (`strategy_options`); Flower's node minimums give way to the swarm's
    (`SWARM_DEFAULTS`), and `train_config` (what the ServerApp passes to
    `strategy.start`) goes into every round's train instructions.
    """
    options = strategy_options(strategy)
    leader = build_strategy(type(strategy).__name__, **{**options, **SWARM_DEFAULTS})
    leader.base_train_config = dict(train_config or {})
    return leader


def leader_strategy(strategy: str | LeaderStrategy) -> LeaderStrategy:
    """A strategy given by name (with its swarm defaults) or already built."""
    return build_strategy(strategy) if isinstance(strategy, str) else strategy
