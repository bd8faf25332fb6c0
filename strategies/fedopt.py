"""FedAdam, FedYogi and FedAdagrad (Flower's FedOpt family) under a rotating leader.

Flower's FedOpt keeps the model it sent out (`current_arrays`, set by
`configure_train`) and the moments `m_t` and `v_t` on the strategy object.
The model comes with the round; the moments travel in the state blob.
"""

from __future__ import annotations

from flwr.app import ArrayRecord
from flwr.serverapp.strategy import Strategy
from flwr.serverapp.strategy.fedopt import FedOpt

from swarmflower.strategies.stateful import (
    ArraysByKey,
    StateFields,
    StatefulFlowerStrategy,
)


class FedOptStrategy(StatefulFlowerStrategy):
    """A leader running one of Flower's FedOpt strategies."""

    hyperparameters = ("eta", "eta_l", "beta_1", "beta_2", "tau")
    state_fields = ("m_t", "v_t")

    def export_fields(self, strategy: Strategy) -> dict[str, ArraysByKey | None]:
        assert isinstance(strategy, FedOpt)
        return {"m_t": strategy.m_t, "v_t": strategy.v_t}

    def import_fields(
        self, strategy: Strategy, current: ArrayRecord, fields: StateFields
    ) -> None:
        assert isinstance(strategy, FedOpt)
        # What `configure_train` does in a ServerApp, without sending messages.
        strategy.current_arrays = {key: array.numpy() for key, array in current.items()}
        strategy.m_t = fields.get("m_t")
        strategy.v_t = fields.get("v_t")
