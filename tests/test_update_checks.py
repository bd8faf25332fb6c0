"""One site's update cannot crash or stall the swarm.

Every offered update is checked at the door against the model and the
genesis limits; a merge that still raises on one update refuses that update
and merges the others; a verifier whose recomputed merge raises refuses the
block instead of crashing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord
from flwr.serverapp.strategy import Strategy

from swarmflower.codec import record_items
from swarmflower.errors import ConfigError
from swarmflower.identity import simulated_identity
from swarmflower.ledger import (
    FoundingSite,
    Genesis,
    Reason,
    RoundRecord,
    SwarmParams,
)
from swarmflower.ledger.records import DEFAULT_MAX_EXAMPLES, DEFAULT_MAX_UPDATE_RATIO
from swarmflower.provision import init_swarm
from swarmflower.round_protocol import (
    DEFAULT_LIMITS,
    LeaderMerge,
    UpdateLimits,
    leader_merge,
    offer_problem,
    sign_offer,
    update_problem,
    verify_merge,
)
from swarmflower.site_config import TaskConfig
from swarmflower.strategies import (
    LeaderStrategy,
    MergeOutcome,
    Update,
    arrays_hash,
    build_strategy,
)
from swarmflower.strategies.helpers import in_dtypes_of, update_distance
from swarmflower.tasks import TaskSpec

SWARM_ID = bytes(range(32))
ROUND = 1
PARENT = SWARM_ID  # round 1 is trained on the genesis block


def model(dtype=np.float32, w=None, b=None) -> ArrayRecord:
    """A small two-array model; `w`/`b` replace the default values."""
    arrays = {
        "w": np.asarray(np.full((2, 3), 0.5) if w is None else w, dtype=dtype),
        "b": np.asarray(np.zeros(3) if b is None else b, dtype=dtype),
    }
    return ArrayRecord({key: Array(value) for key, value in arrays.items()})


def trained(site: int) -> ArrayRecord:
    """What honest training might return: the model, moved a little."""
    rng = np.random.default_rng(site)
    return model(w=0.5 + rng.normal(scale=0.1, size=(2, 3)), b=rng.normal(size=3))


def offer(site: int, arrays: ArrayRecord | None = None, num_examples: int = 10):
    identity = simulated_identity(site, f"site-{site + 1}", 0)
    arrays = trained(site) if arrays is None else arrays
    return sign_offer(identity, SWARM_ID, ROUND, num_examples, arrays, parent=PARENT)


def problem(arrays=None, num_examples=10, limits=DEFAULT_LIMITS) -> str | None:
    sent = offer(1, arrays, num_examples)
    digest, reason = offer_problem(sent, 1, model(), SWARM_ID, limits)
    if reason is None:
        assert digest == arrays_hash(sent.arrays)
    return reason


# --- at the door --------------------------------------------------------------


def test_an_honest_update_passes():
    assert problem() is None
    assert problem(num_examples=DEFAULT_MAX_EXAMPLES) is None


def test_the_old_call_form_checks_with_the_default_limits():
    sent = offer(1, num_examples=2**63)
    _, reason = offer_problem(sent, 1, model(), SWARM_ID)
    assert reason is not None and "num_examples" in reason


@pytest.mark.parametrize("count", [0, 2**63, DEFAULT_MAX_EXAMPLES + 1])
def test_num_examples_outside_the_bounds_is_refused(count):
    assert problem(num_examples=count) == (
        f"num_examples {count} is outside 1..max_examples ({DEFAULT_MAX_EXAMPLES})"
    )


def test_max_examples_is_the_swarms_own():
    limits = UpdateLimits(max_examples=100)
    assert problem(num_examples=100, limits=limits) is None
    assert "max_examples (100)" in problem(num_examples=101, limits=limits)


@pytest.mark.parametrize("dtype", [np.complex64, np.int32, np.float64])
def test_an_array_of_another_dtype_is_refused(dtype):
    reason = problem(model(dtype=dtype))
    assert reason == (f"array 'w' has dtype {np.dtype(dtype)}, the model has float32")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused(value):
    assert problem(model(b=[0.0, value, 0.0])) == "non-finite values in 'b'"


@pytest.mark.parametrize("value", [1e30, 3e38])
def test_finite_but_huge_weights_are_refused(value):
    reason = problem(model(w=np.full((2, 3), value)))
    assert reason is not None and reason.startswith("update too far from the model")


def test_the_norm_bound_is_measured_in_float64():
    # 3e38 squared overflows float32; in float64 the distance is exact enough.
    far = {"w": np.full((2, 3), 3e38, np.float32), "b": np.zeros(3, np.float32)}
    near = dict(model().items())
    moved, size = update_distance({k: a.numpy() for k, a in near.items()}, far)
    assert np.isfinite(moved) and moved == pytest.approx(3e38 * np.sqrt(6), rel=1e-6)
    assert size == pytest.approx(0.5 * np.sqrt(6))


def test_the_norm_bound_scales_with_the_model_but_not_below_one():
    limits = UpdateLimits(max_update_ratio=10.0)

    def moved(current: ArrayRecord, b0: float) -> str | None:
        update = model(w=np.zeros((2, 3)), b=[b0, 0.0, 0.0])
        return update_problem(current, record_items(update), 10, limits)

    zero = model(w=np.zeros((2, 3)))  # ||model|| = 0: the bound is 10 * 1
    assert moved(zero, 9.9) is None
    assert "max_update_ratio 10 x max(||model||, 1) = 10" in moved(zero, 10.1)
    two = model(w=np.zeros((2, 3)), b=[2.0, 0.0, 0.0])  # the bound is 10 * 2
    assert moved(two, 21.9) is None
    assert "= 20" in moved(two, 22.1)


@pytest.mark.parametrize(
    ("arrays", "reason"),
    [
        (
            ArrayRecord(
                {
                    "w": Array(np.zeros((3, 2), np.float32)),
                    "b": Array(np.zeros(3, np.float32)),
                }
            ),
            "array 'w' has shape (3, 2), the model has (2, 3)",
        ),
        (
            ArrayRecord({"w": Array(np.zeros((2, 3), np.float32))}),
            "arrays differ from the model's: missing keys ['b'], unexpected keys []",
        ),
        (
            ArrayRecord(
                {
                    **dict(model().items()),
                    "extra": Array(np.zeros(1, np.float32)),
                }
            ),
            "arrays differ from the model's: missing keys [], "
            "unexpected keys ['extra']",
        ),
    ],
)
def test_other_keys_or_shapes_are_refused(arrays, reason):
    assert problem(arrays) == reason


def test_protocol_checks_still_come_first():
    sent = offer(1)
    assert offer_problem(sent, None, model(), SWARM_ID)[1] == (
        "signer is not a site of this swarm"
    )
    assert offer_problem(sent, 2, model(), SWARM_ID)[1] == (
        "site index does not match the signer"
    )
    forged = replace(sent, arrays=trained(2))
    assert offer_problem(forged, 1, model(), SWARM_ID)[1] == (
        "update does not match its commitment hash"
    )


def test_arrays_without_canonical_bytes_are_refused_not_raised():
    text = ArrayRecord({"w": Array(np.array(["x", "y"])), "b": model()["b"]})
    digest, reason = offer_problem(replace(offer(1), arrays=text), 1, model(), SWARM_ID)
    assert digest == b"" and reason.startswith("arrays cannot be read: TypeError")


def test_a_site_sends_its_update_in_the_models_dtypes():
    # Flower's FedAdam hands out a float64 model; torch trains it in float32.
    wide = model(dtype=np.float64)
    update = model(w=np.full((2, 3), 0.25))
    cast = in_dtypes_of(wide, update)
    assert {key: a.numpy().dtype for key, a in cast.items()} == {
        "w": np.float64,
        "b": np.float64,
    }
    assert np.array_equal(cast["w"].numpy(), update["w"].numpy())
    assert in_dtypes_of(model(), update) is update
    odd = model(dtype=np.complex64)  # left as is, for the leader to refuse
    assert in_dtypes_of(model(), odd)["w"].numpy().dtype == np.complex64


# --- merge isolation ------------------------------------------------------------


class FailsOn(LeaderStrategy):
    """FedAvg that raises when the updates include all of `sites`."""

    name = "FailsOn"

    def __init__(self, *sites: int, error: type[Exception] = RuntimeError) -> None:
        self.inner = build_strategy("FedAvg")
        self.sites, self.error = set(sites), error

    def merge(self, server_round, current, updates: Sequence[Update], state):
        if self.sites <= {u.site for u in updates}:
            raise self.error(f"cannot merge sites {sorted(self.sites)}")
        return self.inner.merge(server_round, current, updates, state)

    def flower_strategy(self) -> Strategy:
        return self.inner.flower_strategy()

    def train_config(self, server_round):
        return {}

    def initial_state(self, arrays):
        return b""

    def restore(self, strategy, server_round, current, state):
        pass

    def state_of(self, strategy, server_round, merged):
        return b""


def merge_of(strategy: LeaderStrategy, sites: Sequence[int]) -> MergeOutcome:
    offers = [offer(k) for k in sites]
    updates = [
        Update(o.site_index, o.arrays, o.commitment.num_examples) for o in offers
    ]
    return strategy.merge(ROUND, model(), updates, b"")


def test_an_honest_merge_refuses_nobody():
    merge = leader_merge(
        build_strategy("FedAvg"), ROUND, model(), b"", [offer(2), offer(0), offer(1)]
    )
    assert [o.site_index for o in merge.merged] == [0, 1, 2]
    assert merge.refused == ()
    expected = merge_of(build_strategy("FedAvg"), [0, 1, 2])
    assert arrays_hash(merge.outcome.arrays) == arrays_hash(expected.arrays)


def test_flowers_merge_failing_on_one_update_refuses_it_and_merges_the_rest():
    # Past the door's checks (a leader that skipped them), a complex update
    # makes the merge raise (NumPy would, inside Flower's FedAvg).
    bad = offer(1, model(dtype=np.complex64))
    strategy = build_strategy("FedAvg")
    merge = leader_merge(strategy, ROUND, model(), b"", [offer(0), bad, offer(2)])
    assert [o.site_index for o in merge.merged] == [0, 2]
    [(site, reason)] = merge.refused
    assert site == 1 and "complex64" in reason
    expected = merge_of(build_strategy("FedAvg"), [0, 2])
    assert arrays_hash(merge.outcome.arrays) == arrays_hash(expected.arrays)


@pytest.mark.parametrize("error", [RuntimeError, FloatingPointError, KeyError])
def test_any_exception_from_the_merge_is_isolated(error):
    merge = leader_merge(
        FailsOn(2, error=error), ROUND, model(), b"", [offer(k) for k in range(4)]
    )
    assert [o.site_index for o in merge.merged] == [0, 1, 3]
    [(site, reason)] = merge.refused
    assert site == 2 and "merge fails on it alone" in reason
    assert "cannot merge sites [2]" in reason


def test_updates_that_fail_only_together_keep_the_first_in_site_order():
    merge = leader_merge(
        FailsOn(1, 3), ROUND, model(), b"", [offer(k) for k in (3, 2, 1, 0)]
    )
    assert [o.site_index for o in merge.merged] == [0, 1, 2]
    [(site, reason)] = merge.refused
    assert site == 3 and "merge fails with sites [0, 1, 2]" in reason
    expected = merge_of(build_strategy("FedAvg"), [0, 1, 2])
    assert arrays_hash(merge.outcome.arrays) == arrays_hash(expected.arrays)


def test_nothing_mergeable_gives_no_outcome():
    merge = leader_merge(FailsOn(0), ROUND, model(), b"", [offer(0)])
    assert merge.outcome is None and merge.merged == ()
    assert [site for site, _ in merge.refused] == [0]
    empty = leader_merge(build_strategy("FedAvg"), ROUND, model(), b"", [])
    assert empty == LeaderMerge(None, (), ())


def test_the_dishonest_drill_still_tampers_after_isolation():
    offers = [offer(0), offer(1, model(dtype=np.complex64)), offer(2)]
    honest = leader_merge(build_strategy("FedAvg"), ROUND, model(), b"", offers)
    drill = leader_merge(
        build_strategy("FedAvg"), ROUND, model(), b"", offers, dishonest=True
    )
    assert drill.merged == honest.merged and drill.refused == honest.refused
    assert np.allclose(
        drill.outcome.arrays["w"].numpy(), honest.outcome.arrays["w"].numpy() + 0.01
    )


def record_of(outcome: MergeOutcome) -> RoundRecord:
    return RoundRecord(
        round=ROUND,
        view=0,
        reason=Reason.NORMAL,
        leader="0x" + "00" * 20,
        block_hash=b"\0" * 32,
        timestamp=1,
        model_hash=arrays_hash(outcome.arrays),
        state_hash=outcome.state_hash,
    )


def test_a_recomputed_merge_that_raises_refuses_the_block():
    sealed = merge_of(build_strategy("FedAvg"), [0, 1])
    updates = [
        Update(0, offer(0).arrays, 10),
        Update(1, model(dtype=np.complex64), 10),
    ]
    strategy = build_strategy("FedAvg")
    assert verify_merge(strategy, record_of(sealed), model(), b"", updates) is None
    raising = FailsOn(1, error=ZeroDivisionError)
    honest = [Update(k, offer(k).arrays, 10) for k in (0, 1)]
    assert verify_merge(raising, record_of(sealed), model(), b"", honest) is None
    again = verify_merge(strategy, record_of(sealed), model(), b"", honest)
    assert again is not None and again.state_hash == sealed.state_hash


# --- the limits are the swarm's, fixed at genesis ---------------------------------


def genesis(**limits) -> Genesis:
    site = FoundingSite("0x" + "11" * 20, b"\x22" * 32)
    return Genesis(
        sites=(site,),
        initial_model_hash=b"\x33" * 32,
        params=SwarmParams(3, 10, 1, "FedAvg", **limits),
        timestamp=5,
    )


def test_a_genesis_with_default_limits_keeps_its_old_json_and_id():
    old = genesis()
    data = json.loads(old.to_json())
    assert set(data["params"]) == {"rounds", "round_timeout", "min_peers", "strategy"}
    again = Genesis.from_json(old.to_json())
    assert again == old and again.digest() == old.digest()
    assert again.params.max_examples == DEFAULT_MAX_EXAMPLES
    assert again.params.max_update_ratio == DEFAULT_MAX_UPDATE_RATIO


def test_other_limits_round_trip_and_change_the_swarm_id():
    tight = genesis(max_examples=5000, max_update_ratio=12.5)
    data = json.loads(tight.to_json())
    assert data["params"]["max_examples"] == 5000
    assert data["params"]["max_update_ratio"] == 12.5
    again = Genesis.from_json(tight.to_json())
    assert again == tight and again.digest() == tight.digest()
    assert tight.digest() != genesis().digest()
    assert genesis(max_update_ratio=12.5).digest() != tight.digest()
    assert UpdateLimits.from_params(again.params) == UpdateLimits(5000, 12.5)


def test_an_integral_ratio_is_one_setting_with_its_float():
    assert (
        genesis(max_update_ratio=50).to_json()
        == genesis(max_update_ratio=50.0).to_json()
    )
    assert genesis(max_update_ratio=1000).to_json() == genesis().to_json()


@pytest.mark.parametrize(
    "limits",
    [
        {"max_examples": 0},
        {"max_examples": True},
        {"max_examples": 2.0},
        {"max_update_ratio": 0.0},
        {"max_update_ratio": -1.0},
        {"max_update_ratio": float("inf")},
        {"max_update_ratio": float("nan")},
        {"max_update_ratio": "10"},
    ],
)
def test_bad_limits_are_refused(limits):
    with pytest.raises(ValueError, match="SwarmParams.max_"):
        genesis(**limits)


def test_init_puts_the_limits_in_the_genesis(tmp_path):
    template = TaskConfig(TaskSpec(), 0)
    layout = init_swarm(
        tmp_path / "swarm", template, rounds=2, max_examples=777, max_update_ratio=9
    )
    written = Genesis.from_json((tmp_path / "swarm" / "genesis.json").read_text())
    assert written == layout.genesis
    assert UpdateLimits.from_params(written.params) == UpdateLimits(777, 9.0)
    with pytest.raises(ConfigError, match="max_update_ratio"):
        init_swarm(tmp_path / "other", template, rounds=2, max_update_ratio=0)
    assert not (tmp_path / "other").exists()
