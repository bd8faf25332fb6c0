"""The leader's side of a round: run a Flower strategy's aggregation, no server.

In a swarm the leader changes every round, so the Flower strategy object
cannot live across rounds as it does in a ServerApp. Each merge builds a fresh
one, restores the state the previous leader published (as bytes, hashed on
the ledger), aggregates, and publishes the new state.
"""

from __future__ import annotations

import gc
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from flwr.app import ArrayRecord, MetricRecord
from flwr.serverapp.exception import AggregationError, InconsistentMessageReplies
from flwr.serverapp.strategy import Strategy

from swarmflower.codec import content_hash
from swarmflower.errors import MergeError
from swarmflower.strategies.helpers import (
    checked_updates,
    evaluate_reply,
    metrics_dict,
    train_reply,
)
from swarmflower.strategies.update_audit import UpdateAudit, audit_updates

ConfigValue = int | float | str | bool
T = TypeVar("T")
DEFAULT_WEIGHT_KEY = "num-examples"


@dataclass(frozen=True)
class Update:
    """One site's committed training result."""

    site: int
    arrays: ArrayRecord
    num_examples: int
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class MergeOutcome:
    """A round's merged model and the strategy state the next leader needs."""

    arrays: ArrayRecord
    state: bytes
    state_hash: bytes
    metrics: Mapping[str, float]
    # site index -> its update's norm and distance to `arrays` (update_audit)
    audit: Mapping[int, UpdateAudit] = field(default_factory=dict)
    held_back: tuple[int, ...] = ()  # sites the merge clipped or left out


class LeaderStrategy(ABC):
    """A Flower strategy run by whichever site leads the round.

    `merge` is a template method and pure: the same inputs give bit-identical
    arrays and state on any site, in any process. Subclasses say how to build
    the Flower strategy and how its state goes to and from bytes.
    """

    name: str
    # merge bucket means of this many updates (bucketing.py); 0 or 1: off
    bucketing: int = 0
    last_buckets: list[list[int]] | None = None  # the sites of each, last merge

    @abstractmethod
    def flower_strategy(self) -> Strategy:
        """A fresh Flower strategy object with this leader's settings."""

    @abstractmethod
    def train_config(self, server_round: int) -> dict[str, ConfigValue]:
        """What sites get in the train config besides "server-round"."""

    @abstractmethod
    def initial_state(self, arrays: ArrayRecord) -> bytes:
        """The state before round 1, for the initial model `arrays`."""

    @abstractmethod
    def restore(
        self, strategy: Strategy, server_round: int, current: ArrayRecord, state: bytes
    ) -> None:
        """Load `state` and the round's `current` model into a fresh strategy."""

    @abstractmethod
    def state_of(
        self, strategy: Strategy, server_round: int, merged: ArrayRecord
    ) -> bytes:
        """The canonical bytes of a strategy's state after it merged a round."""

    def merge(
        self,
        server_round: int,
        current: ArrayRecord,
        updates: Sequence[Update],
        state: bytes,
    ) -> MergeOutcome:
        """Merge the round's updates in site order with Flower's `aggregate_train`."""
        strategy = self.flower_strategy()
        weight_key = weighted_by_key(strategy)
        ordered = checked_updates(server_round, current, updates, weight_key)
        self.last_buckets = None
        if self.bucketing > 1:
            from swarmflower.strategies.bucketing import bucketed

            ordered, self.last_buckets = bucketed(
                current, server_round, ordered, self.bucketing
            )
        self.restore(strategy, server_round, current, state)
        replies = [
            train_reply(server_round, update, current.keys(), weight_key)
            for update in ordered
        ]
        arrays, metrics = _flower_call(
            self.name, lambda: strategy.aggregate_train(server_round, replies)
        )
        if arrays is None:
            raise MergeError(f"{self.name} merged round {server_round} into nothing")
        new_state = self.state_of(strategy, server_round, arrays)
        return MergeOutcome(
            arrays=arrays,
            state=new_state,
            state_hash=content_hash(new_state),
            metrics=metrics_dict(metrics),
            audit=audit_updates(current, updates, arrays),
            held_back=self.held_back(strategy, [u.site for u in ordered]),
        )

    def held_back(self, strategy: Strategy, replies: Sequence[int]) -> tuple[int, ...]:
        """The sites whose updates the last merge clipped or left out, from
        the sites (or buckets, `last_buckets`) of its replies in order; a
        plain Flower strategy does not say."""
        return ()

    def aggregate_evaluate(
        self,
        server_round: int,
        replies_metrics: Sequence[tuple[int, Mapping[str, float], int]],
    ) -> Mapping[str, float]:
        """Flower's `aggregate_evaluate` over (site, metrics, num_examples)."""
        strategy = self.flower_strategy()
        weight_key = weighted_by_key(strategy)
        replies = [
            evaluate_reply(server_round, site, metrics, num_examples, weight_key)
            for site, metrics, num_examples in sorted(
                replies_metrics, key=lambda reply: reply[0]
            )
        ]
        record: MetricRecord | None = _flower_call(
            self.name, lambda: strategy.aggregate_evaluate(server_round, replies)
        )
        return metrics_dict(record)


def weighted_by_key(strategy: Strategy) -> str:
    """The metric Flower weights replies by (FedAvg and its subclasses say)."""
    return str(getattr(strategy, "weighted_by_key", DEFAULT_WEIGHT_KEY))


@contextmanager
def _heap_frozen() -> Iterator[None]:
    """Some Flower strategies (Bulyan) force a full `gc.collect()` for every
    reply they convert; in a process holding torch, Flower and a ledger each
    takes a fraction of a second. Frozen, the existing heap is skipped and a
    collection walks only what the merge made (the cycles it frees are the
    same; frozen objects are collected later, once thawed). A process that
    froze its heap itself is left as it is."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _flower_call(name: str, call: Callable[[], T]) -> T:
    """Run a Flower aggregation, turning its refusals into `MergeError`.

    NumPy's own failures inside the aggregation (an array it cannot add or
    cast) are refusals of the replies too, not bugs of the leader.
    """
    try:
        with _heap_frozen():
            return call()
    except (AggregationError, InconsistentMessageReplies) as err:
        raise MergeError(f"{name} refused to aggregate: {err}") from err
    except (ArithmeticError, TypeError, ValueError) as err:
        raise MergeError(
            f"{name} failed to aggregate: {type(err).__name__}: {err}"
        ) from err
