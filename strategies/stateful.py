"""Flower strategies whose state must travel from leader to leader.

A ServerApp keeps one strategy object for the whole run; a swarm has a new
leader each round. The state those objects keep on attributes (moments,
momentum) is exported after each merge as a canonical blob and imported into
the next leader's fresh object. The blob also records the settings, the round
and the merged model's hash, so a leader refuses state that does not belong
to its strategy or to the model it is asked to merge from.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping

from flwr.app import ArrayRecord
from flwr.serverapp.strategy import Strategy

from swarmflower.codec import NDArray, arrays_hash
from swarmflower.errors import StrategyStateError
from swarmflower.strategies.flower_strategy import FlowerStrategy
from swarmflower.strategies.helpers import (
    StateSnapshot,
    decode_state,
    encode_state,
    hyperparameter_values,
)

ArraysByKey = Mapping[str, NDArray]
StateFields = Mapping[str, dict[str, NDArray]]


class StatefulFlowerStrategy(FlowerStrategy):
    """A Flower strategy with per-run state, exported and imported as bytes."""

    hyperparameters: tuple[str, ...] = ()
    state_fields: tuple[str, ...] = ()

    @abstractmethod
    def export_fields(self, strategy: Strategy) -> dict[str, ArraysByKey | None]:
        """The strategy's state attributes, each as named arrays (None: unset)."""

    @abstractmethod
    def import_fields(
        self, strategy: Strategy, current: ArrayRecord, fields: StateFields
    ) -> None:
        """Set the state attributes and current model on a fresh strategy."""

    def check(self, strategy: Strategy) -> None:
        self.settings = hyperparameter_values(strategy, self.hyperparameters)

    def initial_state(self, arrays: ArrayRecord) -> bytes:
        return encode_state(
            StateSnapshot(self.name, self.settings, 0, arrays_hash(arrays))
        )

    def restore(
        self, strategy: Strategy, server_round: int, current: ArrayRecord, state: bytes
    ) -> None:
        snapshot = decode_state(state)
        expected = {"strategy": self.name, "hyperparameters": self.settings}
        found = {
            "strategy": snapshot.strategy,
            "hyperparameters": dict(snapshot.hyperparameters),
        }
        if found != expected:
            raise StrategyStateError(
                f"state belongs to {found}, this leader runs {expected}"
            )
        if snapshot.server_round >= server_round:
            raise StrategyStateError(
                f"state is from round {snapshot.server_round}, "
                f"cannot merge round {server_round} from it"
            )
        if snapshot.model_hash != arrays_hash(current):
            raise StrategyStateError(
                f"state of round {snapshot.server_round} was made with model "
                f"0x{snapshot.model_hash.hex()}, not the current model "
                f"0x{arrays_hash(current).hex()}"
            )
        unknown = sorted(set(snapshot.fields) - set(self.state_fields))
        if unknown:
            raise StrategyStateError(f"{self.name} state has unknown fields {unknown}")
        shapes = {key: tuple(array.shape) for key, array in current.items()}
        for name, arrays in snapshot.fields.items():
            found_shapes = {key: array.shape for key, array in arrays.items()}
            if found_shapes != shapes:
                raise StrategyStateError(
                    f"{self.name} state field {name!r} does not fit the current "
                    f"model: {found_shapes} vs {shapes}"
                )
        ordered = {
            name: {key: arrays[key] for key in current}
            for name, arrays in snapshot.fields.items()
        }
        self.import_fields(strategy, current, ordered)

    def state_of(
        self, strategy: Strategy, server_round: int, merged: ArrayRecord
    ) -> bytes:
        fields = {
            name: arrays
            for name, arrays in self.export_fields(strategy).items()
            if arrays is not None
        }
        return encode_state(
            StateSnapshot(
                self.name,
                self.settings,
                server_round,
                arrays_hash(merged),
                fields,
                report=self.report_of(strategy),
            )
        )

    def report_of(self, strategy: Strategy) -> dict:
        """What the merge did to each update, for the state's header (none)."""
        return {}
