"""Every supported Flower strategy runs the swarm, merged by a rotating leader."""

import pytest
from swarm_helpers import heart_swarm, replica

from swarmflower.strategies import STRATEGY_NAMES, arrays_hash, build_strategy


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_three_rounds_with_the_rotating_leader(name):
    result = heart_swarm(3, local_steps=5, strategy=build_strategy(name))
    ledger = replica(result)
    assert [r.round for r in result.rounds] == [1, 2, 3]
    for record in result.rounds:
        assert record.leader == ledger.electees(record.round, 1)[0]
        assert len(record.commitments) == 4
    # Every site recomputed the merge itself and reached the same model and state.
    finals = {arrays_hash(p.model) for p in result.sites}
    assert finals == {result.rounds[-1].model_hash}
    assert all(a.recomputed for p in result.sites for a in p.log.adopted)
    stateful = name in {"FedAvgM", "FedAdam", "FedYogi", "FedAdagrad"}
    stateful |= name in {
        "GeometricMedian",
        "NormBoundedAvg",
        "CenteredClipping",
        "AlignedAvg",
    }
    state_hashes = {r.state_hash for r in result.rounds}
    assert (len(state_hashes) == 3) == stateful
