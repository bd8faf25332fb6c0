"""The robust merges: what one poisoned update can do to them, what they
report, and that a leader who skips the clipping is refused."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord

from swarmflower.codec import arrays_hash
from swarmflower.errors import ConfigError
from swarmflower.round_protocol import verify_merge
from swarmflower.strategies import Update, adopt_strategy, build_strategy
from swarmflower.strategies.bucketing import bucket_sites, bucketed
from swarmflower.strategies.helpers import decode_state
from swarmflower.strategies.robust import NormBoundedAvg, geometric_median

ROBUST = ("GeometricMedian", "NormBoundedAvg", "CenteredClipping", "AlignedAvg")
ATTACKER = 4  # the last of five sites


def model(values) -> ArrayRecord:
    values = np.asarray(values, dtype=np.float32)
    return ArrayRecord({"w": Array(values[:3]), "b": Array(values[3:])})


def vector(record: ArrayRecord) -> np.ndarray:
    return np.concatenate([record["w"].numpy(), record["b"].numpy()]).astype(float)


CURRENT = model([0.0, 0.0, 0.0, 0.0])


def round_updates(scale: float = 1.0) -> list[Update]:
    """Five sites of unequal size whose changes agree roughly; the last one's
    change multiplied by `scale` (and its sign flipped if negative)."""
    rng = np.random.default_rng(7)
    honest = np.array([0.1, -0.2, 0.3, 0.05])
    updates = []
    for site, examples in enumerate((40, 120, 60, 300, 80)):
        change = honest + rng.normal(0, 0.02, 4)
        if site == ATTACKER:
            change = scale * change
        updates.append(Update(site, model(change), examples))
    return updates


def merged(name: str, updates: list[Update], **options) -> tuple[np.ndarray, dict]:
    leader = build_strategy(name, **options)
    outcome = leader.merge(1, CURRENT, updates, leader.initial_state(CURRENT))
    report = decode_state(outcome.state).report if outcome.state else {}
    return vector(outcome.arrays), report


@pytest.mark.parametrize("name", ROBUST)
def test_one_scaled_update_cannot_steer_a_robust_merge(name):
    honest, _ = merged("FedAvg", round_updates()[:ATTACKER])
    fedavg, _ = merged("FedAvg", round_updates(scale=-50.0))
    robust, report = merged(name, round_updates(scale=-50.0))
    assert np.linalg.norm(fedavg - honest) > 1.0  # the mean follows the attacker
    # its pull is bounded: a tenth of the mean's, and the honest direction kept
    assert np.linalg.norm(robust - honest) < 0.1 * np.linalg.norm(fedavg - honest)
    assert np.linalg.norm(robust - honest) < 0.5 * np.linalg.norm(honest)
    if name == "GeometricMedian":
        assert report["weights"][ATTACKER] < 0.01  # down-weighted to nearly nothing
    else:
        assert ATTACKER in report["clipped"]


def test_without_an_attacker_the_norm_bound_clips_nothing_and_equals_fedavg():
    fedavg, _ = merged("FedAvg", round_updates())
    bounded, report = merged("NormBoundedAvg", round_updates())
    assert report["clipped"] == []
    np.testing.assert_allclose(bounded, fedavg, rtol=1e-6)
    assert report["bound"] == pytest.approx(2.0 * np.median(report["norms"]))


def test_aligned_avg_leaves_out_a_reversed_change_whatever_weight_it_claims():
    """IPM-like: the attacker sends a small change against the others' mean
    (its norm passes any norm bound) and claims most of the examples."""
    updates = round_updates()
    mean = np.mean([vector(u.arrays) for u in updates[:ATTACKER]], axis=0)
    updates[ATTACKER] = Update(ATTACKER, model(-1.5 * mean), 10**6)
    honest, _ = merged("FedAvg", round_updates()[:ATTACKER])
    bounded, _ = merged("NormBoundedAvg", updates)
    aligned, report = merged("AlignedAvg", updates)
    assert float(np.sum(bounded * honest)) < 0  # the norm bound goes backwards
    np.testing.assert_allclose(aligned, honest, rtol=1e-6)
    assert report["left_out"] == [ATTACKER] and report["weights"][ATTACKER] == 0
    assert report["cosines"][ATTACKER] < 0 < min(report["cosines"][:ATTACKER])
    clean, clean_report = merged("AlignedAvg", round_updates())
    np.testing.assert_allclose(clean, merged("FedAvg", round_updates())[0], rtol=1e-6)
    assert clean_report["left_out"] == []


def test_a_leader_that_skips_the_clipping_is_refused():
    """The block says NormBoundedAvg; its leader sealed the plain mean."""
    updates = round_updates(scale=-50.0)
    strategy = build_strategy("NormBoundedAvg")
    state = strategy.initial_state(CURRENT)
    honest = strategy.merge(1, CURRENT, updates, state)
    plain = build_strategy("FedAvg").merge(1, CURRENT, updates, b"")

    def block(outcome) -> SimpleNamespace:  # what verify_merge reads of a block
        return SimpleNamespace(
            round=1,
            model_hash=arrays_hash(outcome.arrays),
            state_hash=honest.state_hash,
        )

    assert verify_merge(strategy, block(honest), CURRENT, state, updates) is not None
    assert verify_merge(strategy, block(plain), CURRENT, state, updates) is None
    # nor may it claim it clipped no one: the report is in the hashed state
    quiet = SimpleNamespace(
        round=1, model_hash=arrays_hash(honest.arrays), state_hash=plain.state_hash
    )
    assert verify_merge(strategy, quiet, CURRENT, state, updates) is None


def test_centred_clipping_carries_its_change_to_the_next_leader():
    leader = build_strategy("CenteredClipping", momentum=0.5)
    first = leader.merge(1, CURRENT, round_updates(), leader.initial_state(CURRENT))
    snapshot = decode_state(first.state)
    carried = snapshot.fields["previous_change"]
    np.testing.assert_allclose(
        np.concatenate([carried["w"], carried["b"]]), vector(first.arrays), atol=1e-6
    )
    again = [Update(u.site, u.arrays, u.num_examples) for u in round_updates()]
    second = build_strategy("CenteredClipping", momentum=0.5).merge(
        2, first.arrays, again, first.state
    )
    assert decode_state(second.state).server_round == 2


def test_weiszfeld_ends_on_the_point_nearest_to_all():
    """A cross and one far point: the median moves a little towards it, and
    no step away from it lowers the summed distance."""
    points = np.array([[1.0, 0], [-1, 0], [0, 1], [0, -1], [50, 50]])
    median, shares = geometric_median(points, np.ones(5), 64, 1e-12, 1e-12)

    def total(z: np.ndarray) -> float:
        return float(np.sqrt(((points - z) ** 2).sum(axis=1)).sum())

    steps = [np.array([dx, dy]) for dx in (-1e-4, 0, 1e-4) for dy in (-1e-4, 0, 1e-4)]
    assert all(total(median) <= total(median + step) + 1e-12 for step in steps)
    assert np.linalg.norm(median) < 0.5 and shares[4] < 0.01


@pytest.mark.parametrize(
    ("name", "options", "match"),
    [
        ("NormBoundedAvg", {"bound_factor": 0.0}, "bound_factor > 0"),
        ("CenteredClipping", {"momentum": 1.0}, "0 <= momentum < 1"),
        ("GeometricMedian", {"max_iterations": 0}, "max_iterations >= 1"),
    ],
)
def test_bad_options_are_one_clear_error(name, options, match):
    with pytest.raises(ConfigError, match=match):
        build_strategy(name, **options)


def test_a_server_apps_robust_strategy_is_adopted_with_its_options():
    leader = adopt_strategy(NormBoundedAvg(bound_factor=3.0, fraction_train=0.5))
    assert leader.name == "NormBoundedAvg"
    assert leader.options["bound_factor"] == 3.0
    assert leader.options["fraction_train"] == 0.5


def test_buckets_are_drawn_from_the_round_and_cover_every_site_once():
    sites = list(range(7))
    first = bucket_sites(CURRENT, 3, sites, 2)
    assert first == bucket_sites(CURRENT, 3, sites, 2)  # every verifier agrees
    assert sorted(s for bucket in first for s in bucket) == sites
    assert [len(b) for b in first] == [2, 2, 2, 1]
    assert first != bucket_sites(CURRENT, 4, sites, 2)  # a new draw each round


@pytest.mark.parametrize("name", ["GeometricMedian", "FedMedian", "Krum"])
def test_bucketing_merges_the_bucket_means_with_any_strategy(name):
    updates = round_updates(scale=-50.0)
    leader = build_strategy(name, bucketing=2)
    outcome = leader.merge(1, CURRENT, updates, leader.initial_state(CURRENT))
    means, buckets = bucketed(CURRENT, 1, updates, 2)
    assert leader.last_buckets == buckets and len(means) == 3
    plain = build_strategy(name)
    expected = plain.merge(1, CURRENT, means, plain.initial_state(CURRENT))
    assert arrays_hash(outcome.arrays) == arrays_hash(expected.arrays)
    if name == "GeometricMedian":  # the report says which sites each bucket held
        assert decode_state(outcome.state).report["buckets"] == buckets


def test_bucketing_of_one_is_refused():
    with pytest.raises(ConfigError, match="bucketing must be 0 .off. or at least 2"):
        build_strategy("FedAvg", bucketing=1)
