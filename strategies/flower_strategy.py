"""A Flower strategy that keeps no state between rounds, run by a leader.

FedAvg, FedProx, FedMedian, FedTrimmedAvg, Krum and MultiKrum aggregate from
the round's replies alone, so their state is empty (`b""`).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, RecordDict
from flwr.serverapp.strategy import Strategy
from swarmflower.strategies.base import ConfigValue, LeaderStrategy

from swarmflower.errors import ConfigError, StrategyStateError

SERVER_ROUND_KEY = "server-round"


class _Nodes:
    """Just enough of a Flower `Grid` for `configure_train` to sample from."""

    def __init__(self, count: int) -> None:
        self.node_ids = list(range(1, count + 1))

    def get_node_ids(self) -> list[int]:
        return self.node_ids


@contextmanager
def _side_effect_free() -> Iterator[None]:
    """Keep `configure_train` from logging samples or moving `random`'s state."""
    logger = logging.getLogger("flwr")
    level, rng = logger.level, random.getstate()
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)
        random.setstate(rng)


class FlowerStrategy(LeaderStrategy):
    """Any Flower message-based strategy class with its constructor options."""

    def __init__(
        self, name: str, flower_class: type[Strategy], options: Mapping[str, Any]
    ) -> None:
        self.name = name
        self.flower_class = flower_class
        self.options = dict(options)
        try:  # fail on bad options now, not at the first merge
            self.check(self.flower_strategy())
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{name}: invalid options {self.options}: {err}") from err

    def check(self, strategy: Strategy) -> None:
        """Validate a freshly built strategy; subclasses check their settings."""

    def flower_strategy(self) -> Strategy:
        return self.flower_class(**self.options)

    def train_config(self, server_round: int) -> dict[str, ConfigValue]:
        """The config Flower's own `configure_train` would send, minus the round.

        Flower builds its instruction messages from the ServerApp's identity,
        which a leader does not have; the throwaway strategy hands back the
        record instead of messages.
        """
        strategy = self.flower_strategy()
        config = ConfigRecord()

        def records(record: RecordDict, *_: Any) -> list[RecordDict]:
            return [record]

        strategy._construct_messages = records  # type: ignore[attr-defined]
        needed = max(
            1,
            int(getattr(strategy, "min_available_nodes", 1)),
            int(getattr(strategy, "min_train_nodes", 1)),
        )
        with _side_effect_free():
            strategy.configure_train(
                server_round, ArrayRecord(), config, _Nodes(needed)
            )
        return {key: value for key, value in config.items() if key != SERVER_ROUND_KEY}

    def initial_state(self, arrays: ArrayRecord) -> bytes:
        return b""

    def restore(
        self, strategy: Strategy, server_round: int, current: ArrayRecord, state: bytes
    ) -> None:
        if state:
            raise StrategyStateError(
                f"{self.name} keeps no state, but got a {len(state)}-byte state"
            )

    def state_of(
        self, strategy: Strategy, server_round: int, merged: ArrayRecord
    ) -> bytes:
        return b""
