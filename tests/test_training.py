"""The built-in ClientApp: deterministic, Flower-shaped replies."""

import math

import numpy as np
import pandas as pd
import pytest
from flwr.app import ArrayRecord
from sklearn.metrics import roc_auc_score

from swarmflower.errors import ConfigError
from swarmflower.flower_messages import EVALUATE, TRAIN, model_instruction, site_context
from swarmflower.tasks import TaskSpec, initial_model, make_client_app
from swarmflower.tasks.training import binary_auc


@pytest.fixture(scope="module")
def spec():
    return TaskSpec(local_steps=20)


def _train(spec, site, server_round, arrays=None, config=None):
    data = spec.load()
    app = make_client_app(spec)
    arrays = arrays or ArrayRecord(initial_model(spec, data.num_features).state_dict())
    message = model_instruction(
        arrays, TRAIN, server_round, dst_node_id=site + 1, config=config
    )
    return app(message, site_context(site, data.num_sites))


def test_train_reply_carries_arrays_and_num_examples(spec):
    reply = _train(spec, site=1, server_round=1)
    metrics = reply.content["metrics"]
    assert metrics["num-examples"] == 172
    assert reply.content["arrays"]["0.weight"].shape == (1, 13)


def test_same_site_and_round_give_identical_weights(spec):
    first = _train(spec, 0, 3).content["arrays"].to_numpy_ndarrays()
    again = _train(spec, 0, 3).content["arrays"].to_numpy_ndarrays()
    other_round = _train(spec, 0, 4).content["arrays"].to_numpy_ndarrays()
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(
        np.array_equal(a, b) for a, b in zip(first, other_round, strict=True)
    )


def test_proximal_term_keeps_weights_closer_to_the_start(spec):
    start = ArrayRecord(initial_model(spec, 13).state_dict()).to_numpy_ndarrays()

    def drift(config):
        trained = _train(spec, 0, 1, config=config).content["arrays"]
        return sum(
            np.abs(a - b).sum()
            for a, b in zip(trained.to_numpy_ndarrays(), start, strict=True)
        )

    assert drift({"proximal-mu": 5.0}) < drift(None)


def test_evaluate_reports_accuracy_auc_and_site(spec):
    data = spec.load()
    app = make_client_app(spec)
    trained = _train(spec, 0, 1).content["arrays"]
    reply = app(
        model_instruction(trained, EVALUATE, 1, dst_node_id=1),
        site_context(0, data.num_sites),
    )
    metrics = reply.content["metrics"]
    assert 0.5 < metrics["accuracy"] <= 1.0
    assert 0.5 < metrics["auc"] <= 1.0
    assert metrics["num-examples"] == 104 and metrics["site"] == 0


def test_a_one_class_test_set_replies_with_the_same_keys(tmp_path):
    # Flower's FedAvg refuses to aggregate replies whose metric keys differ.
    rng = np.random.default_rng(0)
    table = pd.DataFrame(
        {
            "clinic": ["a"] * 20 + ["b"] * 20,
            "x": rng.normal(size=40),
            "outcome": ["yes", "no"] * 10 + ["no"] * 20,
        }
    )
    table.to_csv(tmp_path / "t.csv", index=False)
    task = f"csv:{tmp_path / 't.csv'}"
    spec = TaskSpec(task=task, site_column="clinic", target="outcome")
    app = make_client_app(spec)
    model = ArrayRecord(initial_model(spec, 1).state_dict())
    replies = [
        app(
            model_instruction(model, EVALUATE, 1, dst_node_id=site + 1),
            site_context(site, 2),
        ).content["metrics"]
        for site in (0, 1)
    ]
    assert set(replies[0]) == set(replies[1])
    assert 0 <= replies[0]["auc"] <= 1 and math.isnan(replies[1]["auc"])


def test_switzerland_trains_on_one_class_as_flamby_published_it():
    # FLamby's split puts Switzerland's one healthy patient in the test set.
    spec = TaskSpec(local_steps=300)
    switzerland = spec.load().sites[2]
    assert set(switzerland.y_train.tolist()) == {1.0}
    reply = _train(spec, 2, 1)
    app = make_client_app(spec)
    evaluation = app(
        model_instruction(reply.content["arrays"], EVALUATE, 1, dst_node_id=3),
        site_context(2, 4),
    ).content["metrics"]
    assert evaluation["accuracy"] == pytest.approx(15 / 16)


def test_unknown_site_is_refused(spec):
    with pytest.raises(ValueError, match="partition-id 9"):
        _train(spec, 9, 1)


def test_bad_task_options_are_refused():
    with pytest.raises(ConfigError, match="unknown model"):
        TaskSpec(model="resnet")
    with pytest.raises(ConfigError, match="learning_rate"):
        TaskSpec(learning_rate=0)


@pytest.mark.parametrize("seed", range(5))
def test_binary_auc_matches_scikit_learn_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 40)
    y[:2] = [0, 1]
    scores = rng.integers(0, 6, 40).astype(float)  # many ties
    assert binary_auc(y, scores) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
