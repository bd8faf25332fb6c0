"""The robust merges (`robust.py`) under a rotating leader.

Their settings travel as hyperparameters in the state blob, as FedAvgM's
do; centred clipping's merged change travels as a state field. Each merge's
report (every update's weight and norm, which were clipped, the bound) goes
into the state's header, so the block that hashes the state also fixes
what the merge did to whom, and every verifier recomputes it.
"""

from __future__ import annotations

from collections.abc import Sequence

from flwr.app import Array, ArrayRecord
from flwr.serverapp.strategy import Strategy

from swarmflower.strategies.robust import (
    ROBUST_STRATEGIES,
    AlignedAvg,
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
    AlignedAvg: ("min_cosine", "bound_factor"),
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
        assert isinstance(strategy, tuple(ROBUST_STRATEGIES))
        strategy.current_arrays = ArrayRecord(dict(current.items()))
        if isinstance(strategy, CenteredClipping):
            change = fields.get("previous_change")
            if change is not None:
                strategy.previous_change = ArrayRecord(
                    {k: Array(v) for k, v in change.items()}
                )

    def held_back(self, strategy: Strategy, replies: Sequence[int]) -> tuple[int, ...]:
        assert isinstance(strategy, tuple(ROBUST_STRATEGIES))
        if strategy.last_report is None:
            return ()
        groups = self.last_buckets or [[site] for site in replies]
        return tuple(
            sorted(site for p in strategy.last_report.clipped for site in groups[p])
        )

    def report_of(self, strategy: Strategy) -> dict:
        assert isinstance(strategy, tuple(ROBUST_STRATEGIES))
        report = strategy.last_report.as_dict() if strategy.last_report else {}
        if self.last_buckets is not None:  # report positions are buckets
            report["buckets"] = self.last_buckets
        return report
