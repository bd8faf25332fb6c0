"""The robust merges (`robust.py`) under a rotating leader.

Their settings travel as hyperparameters in the state blob, as FedAvgM's
do; centred clipping's merged change travels as a state field. Each merge's
report (every update's weight and norm, which were clipped, the bound) goes
into the state's header, so the block that hashes the state also fixes
what the merge did to whom, and every verifier recomputes it.
"""

from __future__ import annotations

from flwr.app import ArrayRecord
from flwr.serverapp.strategy import Strategy

from swarmflower.codec import arrays_hash
from swarmflower.strategies.helpers import StateSnapshot, encode_state
from swarmflower.strategies.robust import (
    CenteredClipping,
    GeometricMedian,
    NormBoundedAvg,
)
from swarmflower.strategies.stateful import (
    ArraysByKey,
    StateFields,
    StatefulFlowerStrategy,
)

HYPERPARAMETERS = {
    GeometricMedian: ("max_iterations", "tolerance", "distance_floor"),
    NormBoundedAvg: ("bound_factor",),
    CenteredClipping: ("clip_radius", "momentum", "iterations"),
}


class RobustStrategy(StatefulFlowerStrategy):
    """A leader running one of the robust merges."""

    def check(self, strategy: Strategy) -> None:
        self.hyperparameters = HYPERPARAMETERS[type(strategy)]
        self.state_fields = (
            ("previous_change",) if isinstance(strategy, CenteredClipping) else ()
        )
        super().check(strategy)

    def export_fields(self, strategy: Strategy) -> dict[str, ArraysByKey | None]:
        if not isinstance(strategy, CenteredClipping):
            return {}
        change = strategy.previous_change
        if change is None:
            return {"previous_change": None}
        return {"previous_change": {k: a.numpy() for k, a in change.items()}}

    def import_fields(
        self, strategy: Strategy, current: ArrayRecord, fields: StateFields
    ) -> None:
        assert isinstance(strategy, GeometricMedian | NormBoundedAvg | CenteredClipping)
        strategy.current_arrays = ArrayRecord(dict(current.items()))
        if isinstance(strategy, CenteredClipping):
            change = fields.get("previous_change")
            if change is not None:
                from flwr.app import Array

                strategy.previous_change = ArrayRecord(
                    {k: Array(v) for k, v in change.items()}
                )

    def state_of(
        self, strategy: Strategy, server_round: int, merged: ArrayRecord
    ) -> bytes:
        assert isinstance(strategy, GeometricMedian | NormBoundedAvg | CenteredClipping)
        fields = {
            name: arrays
            for name, arrays in self.export_fields(strategy).items()
            if arrays is not None
        }
        report = strategy.last_report.as_dict() if strategy.last_report else {}
        if self.last_buckets is not None:  # report positions are buckets
            report["buckets"] = self.last_buckets
        return encode_state(
            StateSnapshot(
                self.name,
                self.settings,
                server_round,
                arrays_hash(merged),
                fields,
                report=report,
            )
        )
