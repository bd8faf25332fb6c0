"""A Ray engine host without Ray: the leader's checks and every host's verdict."""

import functools

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord

from swarmflower.identity import simulated_identities
from swarmflower.ledger import Reason, SwarmParams
from swarmflower.simulations.engine.site_host import SiteHost, TrainedBatch
from swarmflower.swarm_setup import make_genesis
from swarmflower.tasks import TaskSpec, initial_model, make_client_app

SPEC = TaskSpec(local_steps=5)


def _founding():
    """The heart sites' names, initial model and genesis (3 rounds, FedAvg)."""
    data = SPEC.load()
    names = [s.name for s in data.sites]
    initial = ArrayRecord(initial_model(SPEC, data.num_features).state_dict())
    genesis = make_genesis(
        simulated_identities(names, 0), initial, SwarmParams(3, 10, 2, "FedAvg")
    )
    return names, initial, genesis


@pytest.fixture
def hosts():
    names, initial, genesis = _founding()
    factory = functools.partial(make_client_app, SPEC)
    return [
        SiteHost(genesis, sites, names, factory, initial, "FedAvg", 0)
        for sites in ((0, 1), (2, 3))
    ]


def _leader(hosts, round, view=0):
    address = hosts[0].ledger.proposer(round, view)
    site = next(
        k for k, s in enumerate(hosts[0].ledger.genesis.sites) if s.address == address
    )
    return site, hosts[0 if site < 2 else 1]


def _poisoned(batch: TrainedBatch, site: int) -> TrainedBatch:
    """The batch with `site`'s update replaced by NaNs, its commitment kept."""
    offers = []
    for offer in batch.offers:
        if offer.site_index == site:
            arrays = ArrayRecord(
                {
                    k: Array(np.full_like(a.numpy(), np.nan))
                    for k, a in offer.arrays.items()
                }
            )
            offer = type(offer)(offer.round, offer.commitment, arrays, offer.site_index)
        offers.append(offer)
    return TrainedBatch(batch.round, tuple(offers), batch.failed)


def test_the_leader_refuses_an_update_that_breaks_its_commitment(hosts):
    batches = [hosts[0].train(1, [0, 1]), hosts[1].train(1, [2, 3])]
    site, leader = _leader(hosts, 1)
    victim = 3 if site != 3 else 2
    batches[1] = _poisoned(batches[1], victim)
    sealed = leader.seal(1, 0, Reason.NORMAL, site, [0, 1, 2, 3], False, *batches)
    assert [k for k, _ in sealed.refused] == [victim]
    assert "does not match its commitment" in sealed.refused[0][1]
    verdicts = [h.adopt(sealed.block, *batches) for h in hosts]
    assert all(v.adopted for v in verdicts)
    assert len(hosts[0].ledger.round(1).commitments) == 3
    assert {k for v in verdicts for k, _ in v.accuracies} == {0, 1, 2, 3}


def test_only_the_elected_proposer_may_seal(hosts):
    batches = [hosts[0].train(1, [0, 1]), hosts[1].train(1, [2, 3])]
    site, _ = _leader(hosts, 1)
    other = next(k for k in range(4) if k != site)
    host = hosts[0 if other < 2 else 1]
    with pytest.raises(ValueError, match="not the proposer of round 1 view 0"):
        host.seal(1, 0, Reason.NORMAL, other, [0, 1, 2, 3], False, *batches)


def test_a_host_refuses_a_block_whose_updates_it_cannot_check(hosts):
    batches = [hosts[0].train(1, [0, 1]), hosts[1].train(1, [2, 3])]
    site, leader = _leader(hosts, 1)
    sealed = leader.seal(1, 0, Reason.NORMAL, site, [0, 1, 2, 3], False, *batches)
    follower = hosts[1] if leader is hosts[0] else hosts[0]
    verdict = follower.adopt(sealed.block, batches[0])  # half the updates missing
    assert not verdict.adopted
    assert verdict.reason == "a committed update is missing"
    assert follower.model_round == 0


def test_a_follower_hashes_every_update_before_redoing_the_merge(hosts):
    """An update swapped after sealing is caught by its hash, not trusted."""
    batches = [hosts[0].train(1, [0, 1]), hosts[1].train(1, [2, 3])]
    site, leader = _leader(hosts, 1)
    sealed = leader.seal(1, 0, Reason.NORMAL, site, [0, 1, 2, 3], False, *batches)
    follower = hosts[1] if leader is hosts[0] else hosts[0]
    victim = follower.sites[0]
    swapped = [_poisoned(b, victim) for b in batches]
    verdict = follower.adopt(sealed.block, *swapped)
    assert not verdict.adopted
    assert verdict.reason == "a committed update is missing"
    assert follower.adopt(sealed.block, *batches).adopted


def _counting_app(spec: TaskSpec):
    """The task's ClientApp, which also needs a run config key and counts, in
    the site's Context state, how often it trained (as a Flower app may)."""
    from flwr.app import MetricRecord
    from flwr.clientapp import ClientApp

    inner = make_client_app(spec)
    app = ClientApp()

    @app.train()
    def train(msg, context):
        assert context.run_config["scale"] == 1.0  # a KeyError without it
        calls = context.state.metric_records.get("calls", MetricRecord({"n": 0}))
        context.state.metric_records["calls"] = MetricRecord({"n": calls["n"] + 1})
        reply = inner(msg, context)
        reply.content["metrics"]["calls"] = calls["n"] + 1
        return reply

    @app.evaluate()
    def evaluate(msg, context):
        return inner(msg, context)

    return app


def test_a_site_keeps_its_context_across_rounds_with_the_run_config():
    names, initial, genesis = _founding()
    host = SiteHost(
        genesis,
        (0, 1, 2, 3),
        names,
        functools.partial(_counting_app, SPEC),
        initial,
        "FedAvg",
        0,
        run_config={"scale": 1.0},
    )
    for round in (1, 2):
        batch = host.train(round, [0, 1, 2, 3])
        assert not batch.failed
        site, _ = _leader([host, host], round)
        sealed = host.seal(round, 0, Reason.NORMAL, site, [0, 1, 2, 3], False, batch)
        assert host.adopt(sealed.block, batch).adopted
    # every site's state saw both rounds: the Context outlived the first call
    assert {host.contexts[k].state.metric_records["calls"]["n"] for k in range(4)} == {
        2
    }
