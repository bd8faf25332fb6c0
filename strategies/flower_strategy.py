"""A Flower strategy that keeps no state between rounds, run by a leader.

FedAvg, FedProx, FedMedian, FedTrimmedAvg, Krum and MultiKrum aggregate from
the round's replies alone, so their state is empty (`b""`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, RecordDict
from flwr.serverapp.strategy import Strategy

from swarmflower.errors import ConfigError, StrategyStateError
from swarmflower.strategies.base import ConfigValue, LeaderStrategy

SERVER_ROUND_KEY = "server-round"


class _NoNodes:
    """A Flower `Grid` with no nodes: `configure_train` samples nothing.

    Sampling no node draws nothing from the process-wide `random`, so asking
    for the config leaves other users of `random` (and other threads) alone.
    """

    def get_node_ids(self) -> list[int]:
        return []


class _ThisThreadBelow(logging.Filter):
    """Drops one thread's records below a level (Flower's sampling chatter)."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level
        self.thread = threading.get_ident()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread != self.thread or record.levelno >= self.level


@contextmanager
def _quiet_flower() -> Iterator[None]:
    logger = logging.getLogger("flwr")
    quiet = _ThisThreadBelow(logging.WARNING)
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


class FlowerStrategy(LeaderStrategy):
    """Any Flower message-based strategy class with its constructor options."""

    def __init__(
        self, name: str, flower_class: type[Strategy], options: Mapping[str, Any]
    ) -> None:
        self.name = name
        self.flower_class = flower_class
        self.options = dict(options)
        # What a ServerApp passes to `strategy.start(train_config=...)`.
        self.base_train_config: dict[str, ConfigValue] = {}
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
        config = ConfigRecord(dict(self.base_train_config))

        def records(record: RecordDict, *_: Any) -> list[RecordDict]:
            return [record]

        # A throwaway object: it may sample zero nodes and return the record.
        strategy._construct_messages = records  # type: ignore[attr-defined]
        strategy.min_train_nodes = strategy.min_available_nodes = 0
        with _quiet_flower():
            strategy.configure_train(server_round, ArrayRecord(), config, _NoNodes())
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
