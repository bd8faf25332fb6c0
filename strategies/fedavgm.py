"""FedAvgM (Flower's FedAvg with server momentum) under a rotating leader.

Flower's FedAvgM keeps the last merged model (`current_arrays`) and the
momentum vector, a list in the model's key order, on the strategy object.
The model comes with the round; the momentum travels in the state blob,
keyed by array name.
"""

from __future__ import annotations

from flwr.app import ArrayRecord
from flwr.serverapp.strategy import FedAvgM, Strategy

from swarmflower.strategies.stateful import (
    ArraysByKey,
    StateFields,
    StatefulFlowerStrategy,
)


class FedAvgMStrategy(StatefulFlowerStrategy):
    """A leader running Flower's FedAvgM."""

    hyperparameters = ("server_learning_rate", "server_momentum")
    state_fields = ("momentum_vector",)

    def export_fields(self, strategy: Strategy) -> dict[str, ArraysByKey | None]:
        assert isinstance(strategy, FedAvgM)
        momentum = strategy.momentum_vector
        if momentum is None or strategy.current_arrays is None:
            return {"momentum_vector": None}
        keys = list(strategy.current_arrays.keys())
        return {"momentum_vector": dict(zip(keys, momentum, strict=True))}

    def import_fields(
        self, strategy: Strategy, current: ArrayRecord, fields: StateFields
    ) -> None:
        assert isinstance(strategy, FedAvgM)
        # A ServerApp's FedAvgM holds the last merged model: the round's current.
        strategy.current_arrays = ArrayRecord(dict(current.items()))
        momentum = fields.get("momentum_vector")
        strategy.momentum_vector = None if momentum is None else list(momentum.values())
