"""The built-in heart task, trained by its ClientApp, merged by rotating leaders."""

import pytest
from flwr.app import ArrayRecord

from swarmflower.flower_messages import TRAIN, model_instruction, site_context
from swarmflower.strategies import Update, arrays_hash, build_strategy
from swarmflower.tasks import TaskSpec, initial_model, make_client_app


@pytest.fixture(scope="module")
def spec():
    return TaskSpec(local_steps=5)


def train_round(spec, leader, server_round, current):
    """Every site trains `current` with the leader's train config."""
    data = spec.load()
    app = make_client_app(spec)
    updates = []
    for site in range(data.num_sites):
        request = model_instruction(
            current,
            TRAIN,
            server_round,
            dst_node_id=site + 1,
            config=leader.train_config(server_round),
        )
        reply = app(request, site_context(site, data.num_sites))
        metrics = reply.content["metrics"]
        updates.append(
            Update(
                site,
                reply.content["arrays"],
                int(metrics["num-examples"]),
                {"train_loss": float(metrics["train_loss"])},
            )
        )
    return updates


@pytest.mark.parametrize("name", ["FedProx", "FedAdam"])
def test_heart_rounds_recompute_identically_on_another_site(spec, name):
    data = spec.load()
    current = ArrayRecord(initial_model(spec, data.num_features).state_dict())
    state = build_strategy(name).initial_state(current)
    for server_round in (1, 2):
        updates = train_round(spec, build_strategy(name), server_round, current)
        outcome = build_strategy(name).merge(server_round, current, updates, state)
        # Any other site re-derives the committed hashes from the same updates.
        check = build_strategy(name).merge(server_round, current, updates[::-1], state)
        assert arrays_hash(check.arrays) == arrays_hash(outcome.arrays)
        assert check.state_hash == outcome.state_hash
        assert set(outcome.metrics) == {"train_loss"}
        assert list(outcome.arrays.keys()) == list(current.keys())
        current, state = outcome.arrays, outcome.state
    # The merged model loads back into the task's torch model.
    model = initial_model(spec, data.num_features)
    model.load_state_dict(current.to_torch_state_dict())
