"""The `fedavg` baseline is Flower's own FedAvg run by Flower's simulation engine."""

import numpy as np
import pytest
from flwr.app import ArrayRecord
from flwr.serverapp.strategy import FedAvg

from swarmflower.flower_messages import TRAIN, model_instruction, site_context
from swarmflower.simulations.experiments.fedavg import run_flower_fedavg
from swarmflower.tasks import TaskSpec, initial_model, make_client_app


@pytest.fixture(scope="module")
def spec():
    return TaskSpec(local_steps=30)


@pytest.fixture(scope="module")
def one_round(spec):
    return run_flower_fedavg(spec, rounds=1)


def _direct_replies(spec):
    """Each site's reply to round 1, from calling the ClientApp directly."""
    data = spec.load()
    app = make_client_app(spec)
    start = ArrayRecord(initial_model(spec, data.num_features).state_dict())
    return [
        app(
            model_instruction(start, TRAIN, 1, dst_node_id=site + 1),
            site_context(site, data.num_sites),
        )
        for site in range(data.num_sites)
    ]


def test_one_round_equals_flowers_aggregate_train(spec, one_round):
    replies = _direct_replies(spec)
    expected, _ = FedAvg().aggregate_train(1, replies)
    expected = expected.to_numpy_ndarrays()
    assert one_round.final_arrays is not None
    for ours, flowers in zip(one_round.final_arrays, expected, strict=True):
        # Replies reach Flower's server in arrival order; float32 sums in
        # another order differ in the last bits only.
        np.testing.assert_allclose(ours, flowers, rtol=0, atol=1e-6)

    # The check can tell: an unweighted mean of the same replies is different.
    unweighted = [
        np.mean([r.content["arrays"].to_numpy_ndarrays()[i] for r in replies], axis=0)
        for i in range(len(expected))
    ]
    assert not all(
        np.allclose(a, b, atol=1e-6)
        for a, b in zip(one_round.final_arrays, unweighted, strict=True)
    )


def test_reports_flamby_metric_per_site(one_round):
    last = one_round.rounds[-1]
    assert len(last.site_accuracy) == 4
    assert last.accuracy == pytest.approx(np.mean(last.site_accuracy))
    assert one_round.wall_s > 0
