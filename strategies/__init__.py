"""How a round's leader merges: Flower strategies run outside a server.

`build_strategy(name, **options)` gives a `LeaderStrategy` whose `merge` runs
the Flower strategy's own `aggregate_train` and hands its state on as bytes.
"""

from swarmflower.codec import arrays_hash
from swarmflower.strategies.base import LeaderStrategy, MergeOutcome, Update
from swarmflower.strategies.registry import (
    DEFAULT_STRATEGY,
    STRATEGY_NAMES,
    adopt_strategy,
    build_strategy,
    leader_strategy,
    strategy_options,
)

__all__ = [
    "DEFAULT_STRATEGY",
    "STRATEGY_NAMES",
    "LeaderStrategy",
    "MergeOutcome",
    "Update",
    "adopt_strategy",
    "arrays_hash",
    "build_strategy",
    "leader_strategy",
    "strategy_options",
]
