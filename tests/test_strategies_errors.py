"""Malformed merge input gets a typed error that names the problem."""

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord

from swarmflower.errors import (
    EmptyMergeError,
    InvalidUpdateError,
    MergeError,
    NonFiniteUpdateError,
    StrategyStateError,
    SwarmflowerError,
    UpdateMismatchError,
)
from swarmflower.strategies import Update, build_strategy

LOSS = {"train_loss": 0.1}


def model(**overrides: np.ndarray) -> ArrayRecord:
    arrays = {"w": np.ones((2, 3), np.float32), "b": np.zeros(3, np.float32)}
    arrays.update(overrides)
    return ArrayRecord({key: Array(value) for key, value in arrays.items()})


def updates(bad: Update | None = None) -> list[Update]:
    good = [Update(site, model(), 5, LOSS) for site in (0, 1, 3)]
    return good if bad is None else [*good, bad]


def merge(name: str, items: list[Update], state: bytes | None = None):
    leader = build_strategy(name)
    current = model()
    if state is None:
        state = leader.initial_state(current)
    return leader.merge(1, current, items, state)


@pytest.mark.parametrize("name", ["FedAvg", "FedAdam", "FedMedian"])
def test_no_updates(name):
    with pytest.raises(EmptyMergeError, match="round 1: no updates"):
        merge(name, [])


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        (
            Update(
                2,
                ArrayRecord({"w": Array(np.ones((2, 3), np.float32))}),
                5,
                LOSS,
            ),
            UpdateMismatchError,
            r"site 2: .*missing keys \['b'\]",
        ),
        (
            Update(2, model(extra=np.ones(1, np.float32)), 5, LOSS),
            UpdateMismatchError,
            r"site 2: .*unexpected keys \['extra'\]",
        ),
        (
            Update(2, model(w=np.ones((3, 2), np.float32)), 5, LOSS),
            UpdateMismatchError,
            r"site 2: array 'w' has shape \(3, 2\), the current model has \(2, 3\)",
        ),
        (
            Update(2, model(b=np.array([0, np.nan, 0], np.float32)), 5, LOSS),
            NonFiniteUpdateError,
            "site 2: array 'b' contains NaN or infinity",
        ),
        (
            Update(2, model(w=np.full((2, 3), -np.inf, np.float32)), 5, LOSS),
            NonFiniteUpdateError,
            "site 2: array 'w' contains NaN or infinity",
        ),
        (
            Update(2, model(), 5, {"train_loss": float("nan")}),
            NonFiniteUpdateError,
            "site 2: metric 'train_loss'",
        ),
        (
            Update(2, model(), 0, LOSS),
            InvalidUpdateError,
            "site 2: num_examples must be a positive int",
        ),
        (
            Update(2, model(), 5, {"accuracy": 0.1}),
            InvalidUpdateError,
            r"site 2: metrics \['accuracy'\] differ",
        ),
        (
            Update(3, model(), 5, LOSS),
            InvalidUpdateError,
            "site 3 sent two updates",
        ),
        (
            Update(2, model(), 5, {"train_loss": 0.1, "num-examples": 7}),
            InvalidUpdateError,
            "site 2: metric 'num-examples'=7 differs from num_examples=5",
        ),
    ],
)
@pytest.mark.parametrize("name", ["FedAvg", "FedAdam", "FedTrimmedAvg"])
def test_bad_update_is_named(name, bad, error, match):
    with pytest.raises(error, match=match):
        merge(name, updates(bad))


def test_errors_share_one_base():
    for error in (
        EmptyMergeError,
        UpdateMismatchError,
        NonFiniteUpdateError,
        StrategyStateError,
    ):
        assert issubclass(error, MergeError)
        assert issubclass(error, SwarmflowerError)


def test_integer_arrays_need_no_finiteness_and_merge():
    counts = {"steps": np.array([3], np.int64)}
    items = [Update(site, model(**counts), 5) for site in (0, 1)]
    leader = build_strategy("FedAvg")
    outcome = leader.merge(1, model(**counts), items, b"")
    assert outcome.arrays["steps"].numpy().tolist() == [3.0]


def test_numpy_numbers_are_accepted_as_counts_and_metrics():
    items = [
        Update(site, model(), np.int64(5), {"train_loss": np.float32(0.5)})
        for site in (0, 1)
    ]
    outcome = build_strategy("FedAvg").merge(1, model(), items, b"")
    assert outcome.metrics == {"train_loss": 0.5}
