"""Poisoned sites: what they send, that the ledger names them, and what a
robust merge makes of them (the in-process swarm on heart)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord
from swarm_helpers import heart_swarm

from swarmflower.attacks import (
    Attack,
    ColludingFedAvg,
    attacked_client_app,
    attacker_sites,
)
from swarmflower.collusion import alie_z
from swarmflower.errors import ConfigError
from swarmflower.faults import FaultPlan
from swarmflower.flower_messages import TRAIN, model_instruction, site_context
from swarmflower.strategies import build_strategy
from swarmflower.tasks import TaskSpec, initial_model, make_client_app
from swarmflower.tasks.models import build_model
from swarmflower.tasks.training import evaluate

ATTACKER = 3  # VA, the second smallest of heart's hospitals
CURRENT = ArrayRecord({"w": Array(np.array([1.0, 2.0], dtype=np.float32))})
TRAINED = ArrayRecord({"w": Array(np.array([1.5, 1.0], dtype=np.float32))})


@pytest.mark.parametrize(
    ("spec", "sent"),
    [("sign-flip", [0.5, 3.0]), ("scale:10", [6.0, -8.0]), ("scale:-1", [0.5, 3.0])],
)
def test_an_attacker_sends_its_change_reversed_or_scaled(spec, sent):
    attack = Attack.parse(spec, [1])
    poisoned = attack.poison(1, 3, CURRENT, TRAINED)
    np.testing.assert_allclose(poisoned["w"].numpy(), sent)
    assert poisoned["w"].numpy().dtype == np.float32
    assert attack.poison(0, 3, CURRENT, TRAINED) is TRAINED  # honest sites


def test_gaussian_noise_is_seeded_by_site_and_round():
    attack = Attack.parse("gaussian:0.5", [0, 1])
    first = attack.poison(0, 2, CURRENT, TRAINED)["w"].numpy()
    assert np.array_equal(first, attack.poison(0, 2, CURRENT, TRAINED)["w"].numpy())
    assert not np.array_equal(first, attack.poison(1, 2, CURRENT, TRAINED)["w"].numpy())


def test_label_flip_tells_only_the_attackers_app():
    attack = Attack.parse("label-flip", [2])
    assert attack.train_config(2) == {"label-flip": True}
    assert attack.train_config(0) == {}
    assert attack.poison(2, 1, CURRENT, TRAINED) is TRAINED  # it trains poisoned


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("krum", "unknown attack 'krum'"),
        ("scale", "needs its K"),
        ("ipm", "needs its EPS"),
        ("ipm:0", "EPS must be a positive number"),
        ("mimic:1", "mimic:1: that site attacks"),
        ("mimic:1.5", "SITE is a site number from 1"),
        ("mimic:9", "mimic:9: only 4 sites"),
        ("gaussian:-1", "SIGMA must be a positive number"),
        ("sign-flip:3", "takes no parameter"),
    ],
)
def test_a_bad_attack_is_one_clear_error(spec, match):
    with pytest.raises(ConfigError, match=match):
        Attack.parse(spec, [0], num_sites=4)


HONEST = {
    0: {"w": np.array([1.0, 0.0])},
    2: {"w": np.array([3.0, 2.0])},
}  # site index -> change; the current model is CURRENT


@pytest.mark.parametrize(
    ("spec", "change"),
    [
        ("alie:1", [2.0 - 1.0, 1.0 - 1.0]),  # mean - 1 * std
        ("ipm:0.5", [-1.0, -0.5]),  # -0.5 * mean
        ("mimic:3", [3.0, 2.0]),  # site 3's change
    ],
)
def test_colluders_craft_from_the_honest_changes(spec, change):
    attack = Attack.parse(spec, [1, 3])
    assert attack.colludes
    sent = attack.poison(1, 4, CURRENT, TRAINED, HONEST)["w"].numpy()
    np.testing.assert_allclose(sent, CURRENT["w"].numpy() + np.array(change))
    assert attack.poison(1, 4, CURRENT, TRAINED, {}) is TRAINED  # saw no one


def test_alie_z_follows_the_count_of_sites_and_attackers():
    assert alie_z(25, 5) == pytest.approx(0.4677, abs=1e-4)  # Phi^-1(17/25)
    assert alie_z(4, 1) == 0.0  # too few to win anyone over: the mean
    # Without Z: computed from the sites seen (2 honest + 1 attacker).
    sent = Attack.parse("alie", [1]).poison(1, 4, CURRENT, TRAINED, HONEST)
    expected = CURRENT["w"].numpy() + np.array([2.0, 1.0]) - alie_z(3, 1)
    np.testing.assert_allclose(sent["w"].numpy(), expected, rtol=1e-6)


def test_attackers_are_a_count_or_a_list_of_sites():
    assert attacker_sites("2", 5) == {0, 1}
    assert attacker_sites("1,3", 5) == {0, 2}
    with pytest.raises(ConfigError, match="choose 1..4"):
        attacker_sites("5", 5)
    with pytest.raises(ConfigError, match=r"sites \[9\] are not among 1..5"):
        attacker_sites("1,9", 5)


def union_accuracy(arrays: ArrayRecord) -> float:
    spec = TaskSpec(local_steps=10)
    data = spec.load()
    model = build_model(spec, data.num_features)
    model.load_state_dict(arrays.to_torch_state_dict())
    x = np.concatenate([s.x_test for s in data.sites])
    y = np.concatenate([s.y_test for s in data.sites])
    return evaluate(model, x, y).accuracy


@pytest.fixture(scope="module")
def accuracies() -> dict[tuple[str, bool], tuple[float, list]]:
    """Heart, 6 rounds, site 4 of 4 (VA, 17% of the examples) sending its
    change 30 times reversed."""
    torch.manual_seed(0)
    attack = FaultPlan(attack=Attack.parse("scale:-30", [ATTACKER]))
    found = {}
    for name in ("FedAvg", "NormBoundedAvg", "GeometricMedian"):
        for attacked in (False, True):
            result = heart_swarm(
                6,
                strategy=build_strategy(name),
                faults=attack if attacked else FaultPlan(),
            )
            found[name, attacked] = (union_accuracy(result.final_arrays), result)
    return found


def test_the_attacker_signs_what_it_sends_so_the_ledger_names_it(accuracies):
    _, result = accuracies["FedAvg", True]
    attacker = result.sites[ATTACKER].address
    assert all(attacker in r.contributors for r in result.rounds)


@pytest.mark.parametrize("merge", ["NormBoundedAvg", "GeometricMedian"])
def test_one_attacker_ruins_fedavg_and_not_a_robust_merge(accuracies, merge):
    clean = accuracies["FedAvg", False][0]
    assert accuracies["FedAvg", True][0] < clean - 0.15
    robust_clean = accuracies[merge, False][0]
    assert abs(robust_clean - clean) <= 0.03  # no attack: it costs little
    assert accuracies[merge, True][0] >= robust_clean - 0.05


def test_flowers_baseline_faces_the_same_attack_through_its_clientapp():
    """Flower's FedAvg runs the task's ClientApp on its own engine: wrapped,
    the attacking partition sends what it would send in the swarm."""
    spec = TaskSpec(local_steps=2)
    data = spec.load()
    current = ArrayRecord(initial_model(spec, data.num_features).state_dict())
    attack = Attack.parse("sign-flip", [1])
    plain, wrapped = (
        make_client_app(spec),
        attacked_client_app(make_client_app(spec), attack),
    )

    def train(app, site: int) -> ArrayRecord:
        message = model_instruction(current, TRAIN, 2, dst_node_id=site + 1)
        return app(message, site_context(site, data.num_sites)).content["arrays"]

    honest, poisoned = train(plain, 1), train(wrapped, 1)
    expected = attack.poison(1, 2, current, honest)
    for key in honest:
        np.testing.assert_array_equal(poisoned[key].numpy(), expected[key].numpy())
    untouched = train(wrapped, 0)  # an honest partition trains as before
    for key, array in train(plain, 0).items():
        np.testing.assert_array_equal(untouched[key].numpy(), array.numpy())


def test_colluders_in_a_swarm_see_the_honest_updates_of_the_round():
    """mimic: the attacker's signed update, on the ledger, is the very update
    of the site it copies, every round (the attackers waited for it)."""
    attack = Attack.parse("mimic:1", [ATTACKER], num_sites=4)
    result = heart_swarm(3, faults=FaultPlan(attack=attack))
    names = {core.address: core.identity.name for core in result.sites}
    for record in result.rounds:
        sent = {names[c.site]: c.update_hash for c in record.commitments}
        assert sent["va"] == sent[result.sites[0].identity.name]


def test_flowers_fedavg_faces_colluders_crafted_from_the_honest_replies():
    """On Flower's engine the replies meet only at the strategy: there
    `ColludingFedAvg` crafts the attackers' updates before FedAvg averages."""
    spec = TaskSpec(local_steps=2)
    data = spec.load()
    current = ArrayRecord(initial_model(spec, data.num_features).state_dict())
    attack = Attack.parse("mimic:2", [ATTACKER], num_sites=data.num_sites)
    app = attacked_client_app(make_client_app(spec), attack)
    replies = [
        app(
            model_instruction(current, TRAIN, 1, dst_node_id=site + 1),
            site_context(site, data.num_sites),
        )
        for site in range(data.num_sites)
    ]
    fedavg = ColludingFedAvg(attack)
    fedavg._current = current  # what configure_train keeps (it needs a Grid)
    merged, _ = fedavg.aggregate_train(1, replies)
    copied, copy = replies[1].content["arrays"], replies[ATTACKER].content["arrays"]
    for key in copied:
        np.testing.assert_array_equal(copy[key].numpy(), copied[key].numpy())
    assert merged is not None


def test_an_attack_travels_to_ray_actors_with_an_empty_board():
    """Flower's engine pickles the attacked ClientApp for its actors: the
    board's lock must not stop it, and what colluders saw stays home."""
    attack = Attack.parse("ipm:10", [3])
    attack.board.post(1, b"block", 0, {"w": np.ones(2)})
    copy = pickle.loads(pickle.dumps(attack))
    assert copy == attack and copy.board.seen(1, b"block") == {}
    assert set(attack.board.seen(1, b"block")) == {0}
