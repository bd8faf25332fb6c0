"""The swarm on one machine: Flower-equal, rotating, fault tolerant, verifying."""

from collections import Counter

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord
from flwr.clientapp import ClientApp
from swarm_helpers import first_epoch_leaders, heart_swarm, replica

from swarmflower.faults import FaultPlan
from swarmflower.ledger import Reason
from swarmflower.simulations.experiments.fedavg import run_flower_fedavg
from swarmflower.simulations.experiments.swarm import run_swarm_method
from swarmflower.strategies import arrays_hash
from swarmflower.swarm import run_swarm
from swarmflower.tasks import TaskSpec, initial_model, make_client_app


@pytest.fixture(scope="module")
def fault_free():
    return run_swarm_method(TaskSpec(), 20)


def test_equals_flower_fedavg_on_heart(fault_free):
    flower = run_flower_fedavg(TaskSpec(), 20)
    assert fault_free.final_arrays is not None and flower.final_arrays is not None
    difference = max(
        float(np.abs(ours - theirs).max())
        for ours, theirs in zip(
            fault_free.final_arrays, flower.final_arrays, strict=True
        )
    )
    assert difference <= 1e-6
    # Twenty rounds of training moved the model far from where it started.
    swarm = fault_free.details
    start = swarm.models[0].to_numpy_ndarrays()
    assert (
        max(
            float(np.abs(a - b).max())
            for a, b in zip(start, fault_free.final_arrays, strict=True)
        )
        > 0.1
    )


def test_leadership_rotates_as_the_contract_elects():
    result = heart_swarm(20)
    ledger = replica(result)
    leaders = [r.leader for r in result.rounds]
    # fair rotation: 4 sites, 20 rounds, every site leads 5 times
    assert sorted(Counter(leaders).values()) == [5, 5, 5, 5]
    for record in result.rounds:
        assert record.view == 0 and record.reason is Reason.NORMAL
        assert record.leader == ledger.electees(record.round, 1)[0]
    # Every site adopted every round, and all hold the same final model.
    finals = {arrays_hash(p.model) for p in result.sites}
    assert finals == {arrays_hash(result.final_arrays)}
    assert all(len(p.log.adopted) == 20 for p in result.sites)


def test_leader_killed_mid_round_is_replaced_by_its_backup():
    result = heart_swarm(
        3, faults=FaultPlan(leader_crash_rounds=frozenset({2})), round_timeout=1
    )
    ledger = replica(result)
    second = result.rounds[1]
    elected = ledger.electees(2, 2)
    assert second.view == 1 and second.reason is Reason.LEADER_TIMEOUT
    assert second.leader == elected[1]
    crashed = [c.site for c in result.crashes]
    names = {p.address: p.identity.name for p in result.sites}
    assert crashed == [names[elected[0]]]
    assert [r.round for r in result.rounds] == [1, 2, 3]


def test_a_leader_crash_every_fourth_round_costs_no_accuracy(fault_free):
    plan = FaultPlan.every_nth_leader(4, 20, recover_after=1)
    faulty = run_swarm_method(TaskSpec(), 20, faults=plan, round_timeout=3)
    swarm = faulty.details
    assert len(swarm.crashes) == 5
    assert [r.round for r in swarm.rounds] == list(range(1, 21))
    for record in swarm.rounds:
        sites = [c.site for c in record.commitments]
        assert len(sites) == len(set(sites))  # nobody merged twice
        assert all(c.round == record.round for c in record.commitments)
        if record.round % 4 == 0:
            assert record.reason is Reason.LEADER_TIMEOUT
    assert abs(faulty.accuracy - fault_free.accuracy) <= 0.01


def test_dishonest_leader_is_caught_and_its_model_never_adopted():
    honest = heart_swarm(3)
    result = heart_swarm(
        3, faults=FaultPlan(dishonest_leader_rounds=frozenset({2})), round_timeout=3
    )
    ledger = replica(result)
    second = result.rounds[1]
    assert second.view == 1 and second.reason is Reason.BAD_MERGE
    refused = {h for p in result.sites for (r, h, _) in p.log.refused if r == 2}
    assert len(refused) == 1
    (bad_block,) = refused
    redo_model = ledger.round(2).model_hash
    adopted = {(a.round, a.block_hash) for p in result.sites for a in p.log.adopted}
    assert all(block != bad_block for _, block in adopted)
    # The backup that redid the round recomputed the merge and refused it.
    redoer = next(p for p in result.sites if p.address == second.leader)
    assert [h for r, h, _ in redoer.log.refused if r == 2] == [bad_block]
    # The redo is the honest merge: the swarm ends where the honest one does.
    assert all(len(r.commitments) == 4 for r in honest.rounds + result.rounds)
    assert redo_model == honest.rounds[1].model_hash
    assert arrays_hash(result.final_arrays) == arrays_hash(honest.final_arrays)


def test_a_site_that_missed_rounds_adopts_the_merged_model():
    plan = FaultPlan(site_crashes=((2, 2),), recover_after=1)
    result = heart_swarm(4, faults=plan, round_timeout=1)
    switzerland = result.sites[2]  # the restarted site
    assert [(c.site, c.round) for c in result.crashes] == [("switzerland", 2)]
    assert switzerland.address not in result.rounds[1].contributors
    # Back one round later: it fetched the merged model by its ledger hash...
    first = switzerland.log.adopted[0]
    assert first.round >= 2 and not first.recomputed
    assert first.model_hash == result.rounds[first.round - 1].model_hash
    # ...and trained and contributed again before the end.
    assert switzerland.address in result.rounds[-1].contributors
    assert switzerland.log.adopted[-1].model_hash == result.rounds[-1].model_hash


def test_a_late_update_is_never_merged_into_another_round():
    # Round 1's leader (never round 2's: each site leads once per epoch)
    # trains round 2, but its update arrives well after the leader's wait.
    late = first_epoch_leaders()[0]
    plan = FaultPlan(stragglers=((late, 2, 1.0),))
    result = heart_swarm(6, faults=plan, round_timeout=2, update_wait=0.4)
    straggler = result.sites[late]
    assert straggler.address not in result.rounds[1].contributors
    assert len(result.rounds[1].commitments) == 3
    for record in result.rounds:
        assert all(c.round == record.round for c in record.commitments)
    # It caught up with the merged model and contributed again later.
    assert any(straggler.address in r.contributors for r in result.rounds[2:])
    assert straggler.log.adopted[-1].model_hash == result.rounds[-1].model_hash


def test_nan_or_misshapen_updates_are_refused_and_the_swarm_goes_on():
    spec = TaskSpec(local_steps=10)
    data = spec.load()
    inner = make_client_app(spec)
    app = ClientApp()

    @app.train()
    def train(msg, context):
        reply = inner(msg, context)
        site = context.node_config["partition-id"]
        if site in (1, 2):  # Hungary sends NaNs, Switzerland a wrong shape
            arrays = reply.content["arrays"]
            weight = arrays["0.weight"].numpy().copy()
            broken = np.full_like(weight, np.nan) if site == 1 else weight[:, :5]
            arrays["0.weight"] = Array(broken)
        return reply

    @app.evaluate()
    def evaluate(msg, context):
        return inner(msg, context)

    initial = ArrayRecord(initial_model(spec, data.num_features).state_dict())
    result = run_swarm(app, 4, initial, 3, min_peers=2, round_timeout=2)
    hungary, switzerland = result.sites[1].address, result.sites[2].address
    for record in result.rounds:
        assert set(record.contributors).isdisjoint({hungary, switzerland})
        assert len(record.commitments) == 2
    final = result.final_arrays.to_numpy_ndarrays()
    assert all(np.isfinite(a).all() for a in final)
