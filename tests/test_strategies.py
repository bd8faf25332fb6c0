"""A rotating leader merges exactly as one long-lived Flower strategy would."""

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAvg
from flwr.supercore.task_identity import TaskIdentity

from swarmflower.errors import ConfigError
from swarmflower.flower_messages import TRAIN, instruction
from swarmflower.strategies import (
    STRATEGY_NAMES,
    Update,
    arrays_hash,
    build_strategy,
)

NUM_SITES = 5
STATEFUL = {"FedAvgM", "FedAdam", "FedYogi", "FedAdagrad"}
# the robust merges publish what they did to each update every round
STATEFUL |= {"GeometricMedian", "NormBoundedAvg", "CenteredClipping", "AlignedAvg"}
# Options that make every strategy do something a plain mean would not.
OPTIONS = {
    "FedAvgM": {"server_momentum": 0.9, "server_learning_rate": 0.5},
    "FedProx": {"proximal_mu": 0.5},
    "MultiKrum": {"num_nodes_to_select": 3},
}


def initial_model() -> ArrayRecord:
    rng = np.random.default_rng(7)
    # Keys deliberately not sorted: the merged model keeps the model's order.
    return ArrayRecord(
        {
            "w": Array(rng.normal(size=(4, 3)).astype(np.float32)),
            "b": Array(rng.normal(size=3).astype(np.float32)),
            "a": Array(np.array(0.5, dtype=np.float32)),
        }
    )


def site_updates(current: ArrayRecord, server_round: int) -> list[Update]:
    """What training at each site might return: the model plus site noise."""
    updates = []
    for site in range(NUM_SITES):
        rng = np.random.default_rng([server_round, site])
        arrays = ArrayRecord(
            {
                key: Array(
                    np.asarray(
                        a.numpy() + rng.normal(scale=1 + site, size=a.shape),
                        dtype=a.numpy().dtype,
                    )
                )
                for key, a in current.items()
            }
        )
        metrics = {"train_loss": float(rng.uniform())}
        updates.append(Update(site, arrays, 10 * (site + 1), metrics))
    return updates


def flower_replies(server_round: int, updates: list[Update]) -> list[Message]:
    """The replies a ServerApp would receive, built here independently."""
    replies = []
    for update in updates:
        request = instruction(RecordDict(), TRAIN, dst_node_id=update.site + 1)
        content = RecordDict(
            {
                "arrays": ArrayRecord(dict(update.arrays.items())),
                "metrics": MetricRecord(
                    {**update.metrics, "num-examples": update.num_examples}
                ),
            }
        )
        replies.append(Message(content=content, reply_to=request))
    return replies


class Nodes:
    def get_node_ids(self):
        return list(range(1, NUM_SITES + 1))


@pytest.fixture
def in_server_app(monkeypatch):
    """The identity Flower's ServerApp runtime sets before `configure_train`."""
    for attribute in ("_task_id", "_run_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, attribute, 1)


def exact(record: ArrayRecord) -> list[tuple[str, str, tuple, bytes]]:
    return [
        (key, a.numpy().dtype.str, a.numpy().shape, a.numpy().tobytes())
        for key, a in record.items()
    ]


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_rotating_leaders_match_one_long_lived_flower_strategy(name, in_server_app):
    options = OPTIONS.get(name, {})
    reference = build_strategy(name, **options)
    flower = reference.flower_strategy()  # lives for the whole run
    flower_model = swarm_model = initial_model()
    state = build_strategy(name, **options).initial_state(swarm_model)
    states = [state]
    for server_round in (1, 2, 3):
        list(
            flower.configure_train(server_round, flower_model, ConfigRecord(), Nodes())
        )
        flower_model, _ = flower.aggregate_train(
            server_round,
            flower_replies(server_round, site_updates(flower_model, server_round)),
        )
        flower_state = reference.state_of(flower, server_round, flower_model)

        leader = build_strategy(name, **options)  # a new leader every round
        outcome = leader.merge(
            server_round, swarm_model, site_updates(swarm_model, server_round), state
        )
        swarm_model, state = outcome.arrays, outcome.state

        assert exact(swarm_model) == exact(flower_model)
        assert state == flower_state
        states.append(state)
    assert list(swarm_model.keys()) == ["w", "b", "a"]
    if name in STATEFUL:
        assert len(set(states)) == len(states)  # the state moved every round
    else:
        assert set(states) == {b""}


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_merge_ignores_update_order_and_key_order(name):
    leader = build_strategy(name, **OPTIONS.get(name, {}))
    current = initial_model()
    state = leader.initial_state(current)
    updates = site_updates(current, 1)
    expected = leader.merge(1, current, updates, state)

    shuffled = updates[:]
    random.Random(3).shuffle(shuffled)
    reordered = [
        Update(
            u.site,
            ArrayRecord(dict(reversed(u.arrays.items()))),
            u.num_examples,
            u.metrics,
        )
        for u in shuffled
    ]
    before = exact(current)
    again = build_strategy(name, **OPTIONS.get(name, {})).merge(
        1, current, reordered, state
    )
    assert exact(current) == before
    assert exact(again.arrays) == exact(expected.arrays)
    assert arrays_hash(again.arrays) == arrays_hash(expected.arrays)
    assert again.state_hash == expected.state_hash
    assert again.metrics == expected.metrics


@pytest.mark.parametrize("name", ["FedMedian", "FedTrimmedAvg"])
def test_popping_strategies_leave_the_callers_updates_intact(name):
    current = initial_model()
    updates = site_updates(current, 1)
    before = [(list(u.arrays.keys()), arrays_hash(u.arrays)) for u in updates]
    build_strategy(name).merge(1, current, updates, b"")
    assert [(list(u.arrays.keys()), arrays_hash(u.arrays)) for u in updates] == before


def test_fedavg_merge_is_flowers_weighted_fedavg():
    current = initial_model()
    updates = site_updates(current, 1)
    outcome = build_strategy("FedAvg").merge(1, current, updates[::-1], b"")
    arrays, metrics = FedAvg().aggregate_train(1, flower_replies(1, updates))
    assert exact(outcome.arrays) == exact(arrays)
    assert outcome.metrics == dict(metrics)
    assert outcome.state == b""
    # Weighted by num_examples: the unweighted mean is measurably different.
    unweighted = np.mean([u.arrays["w"].numpy() for u in updates], axis=0)
    assert not np.allclose(outcome.arrays["w"].numpy(), unweighted, atol=1e-3)


def test_fedprox_train_config_comes_from_flowers_configure_train():
    rng_state = random.getstate()
    assert build_strategy("FedProx", proximal_mu=0.25).train_config(3) == {
        "proximal-mu": 0.25
    }
    assert build_strategy("FedProx").train_config(1) == {"proximal-mu": 0.1}
    for name in sorted(set(STRATEGY_NAMES) - {"FedProx"}):
        assert build_strategy(name).train_config(1) == {}
    assert random.getstate() == rng_state  # Flower's sampling left no trace


def test_names_are_flowers_and_case_insensitive():
    assert STRATEGY_NAMES == (
        "FedAvg", "FedProx", "FedAvgM", "FedMedian", "FedTrimmedAvg",
        "Krum", "MultiKrum", "Bulyan", "FedAdam", "FedYogi", "FedAdagrad",
        "GeometricMedian", "NormBoundedAvg", "CenteredClipping", "AlignedAvg",
    )  # fmt: skip
    assert build_strategy("fedadam").name == "FedAdam"
    assert build_strategy("normboundedavg").name == "NormBoundedAvg"
    assert build_strategy().name == "FedAvg"


def test_unknown_strategy_names_the_choices():
    with pytest.raises(ConfigError, match="FedAvg, FedProx.*FedAdagrad"):
        build_strategy("FedSomething")


@pytest.mark.parametrize(
    ("name", "options", "match"),
    [
        ("FedTrimmedAvg", {"beta": 0.7}, "beta"),
        ("FedAdam", {"learning_rate": 0.1}, "learning_rate"),
        ("FedAdam", {"eta": float("nan")}, "eta"),
    ],
)
def test_bad_options_are_config_errors(name, options, match):
    with pytest.raises(ConfigError, match=match):
        build_strategy(name, **options)


def test_aggregate_evaluate_is_flowers_weighted_mean():
    leader = build_strategy("FedAvg")
    result = leader.aggregate_evaluate(
        2, [(1, {"accuracy": 0.5}, 30), (0, {"accuracy": 1.0}, 10)]
    )
    assert result == {"accuracy": pytest.approx(0.625)}


def three_rounds_of_every_strategy() -> dict[str, list[str]]:
    """Model and state hashes of three merges per strategy, as hex."""
    hashes = {}
    for name in STRATEGY_NAMES:
        leader = build_strategy(name, **OPTIONS.get(name, {}))
        model = initial_model()
        state = leader.initial_state(model)
        for server_round in (1, 2, 3):
            updates = site_updates(model, server_round)
            outcome = leader.merge(server_round, model, updates, state)
            model, state = outcome.arrays, outcome.state
        hashes[name] = [arrays_hash(model).hex(), outcome.state_hash.hex()]
    return hashes


def test_another_process_recomputes_the_same_hashes():
    child = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); "
        "import test_strategies as t; "
        "print(json.dumps(t.three_rounds_of_every_strategy()))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "FLWR_TELEMETRY_ENABLED": "0"}
    result = subprocess.run(
        [sys.executable, "-c", child, str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert json.loads(result.stdout) == three_rounds_of_every_strategy()
