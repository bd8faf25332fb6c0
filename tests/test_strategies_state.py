"""Strategy state and model hashes: canonical bytes, refused when they do not fit."""

import contextlib
from dataclasses import replace

import numpy as np
import pytest
from eth_utils import keccak
from flwr.app import Array, ArrayRecord
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from swarmflower.codec import decode_ndarrays, encode_ndarrays
from swarmflower.errors import StrategyStateError
from swarmflower.strategies import Update, arrays_hash, build_strategy
from swarmflower.strategies.helpers import decode_state, encode_state


def model(scale: float = 1.0) -> ArrayRecord:
    return ArrayRecord(
        {
            "w": Array(np.arange(6, dtype=np.float32).reshape(2, 3) * scale),
            "b": Array(np.ones(3, np.float32) * scale),
        }
    )


def mapped(change) -> ArrayRecord:
    return ArrayRecord({key: Array(change(a.numpy())) for key, a in model().items()})


def one_round(name: str = "FedAdam", **options):
    leader = build_strategy(name, **options)
    current = model()
    items = [Update(site, model(1.0 + site), 4 + site) for site in range(3)]
    outcome = leader.merge(1, current, items, leader.initial_state(current))
    return leader, outcome


def next_round(leader, outcome, server_round: int = 2):
    items = [Update(site, model(2.0 + site), 4) for site in range(3)]
    return leader.merge(server_round, outcome.arrays, items, outcome.state)


dtypes = st.sampled_from(["<f4", ">f8", "<i8", "|u1", "|b1", "<c8", "<f2"])


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.text(min_size=1, max_size=8),
        dtypes.flatmap(
            lambda dtype: hnp.arrays(dtype, hnp.array_shapes(min_dims=0, max_side=3))
        ),
        max_size=4,
    )
)
def test_ndarray_bytes_round_trip_exactly(arrays):
    blob = encode_ndarrays(arrays.items())
    decoded = decode_ndarrays(blob)
    assert list(decoded) == list(arrays)
    for key, array in arrays.items():
        assert decoded[key].shape == array.shape
        assert decoded[key].dtype == array.dtype.newbyteorder("<")
        assert decoded[key].tobytes() == array.astype(decoded[key].dtype).tobytes()
    assert encode_ndarrays(decoded.items()) == blob


def test_arrays_hash_covers_values_dtype_shape_and_order():
    base = arrays_hash(model())
    assert len(base) == 32
    assert arrays_hash(model()) == base
    assert arrays_hash(model(2.0)) != base
    reordered = ArrayRecord(dict(reversed(model().items())))
    assert arrays_hash(reordered) != base
    as_f64 = ArrayRecord(
        {k: Array(a.numpy().astype(np.float64)) for k, a in model().items()}
    )
    assert arrays_hash(as_f64) != base
    flat = ArrayRecord({k: Array(a.numpy().reshape(-1)) for k, a in model().items()})
    assert arrays_hash(flat) != base
    big_endian = ArrayRecord(
        {k: Array(a.numpy().astype(">f4")) for k, a in model().items()}
    )
    assert arrays_hash(big_endian) == base  # same numbers, same model


def test_state_round_trips_and_is_canonical():
    _, outcome = one_round()
    snapshot = decode_state(outcome.state)
    assert snapshot.strategy == "FedAdam"
    assert snapshot.server_round == 1
    assert snapshot.model_hash == arrays_hash(outcome.arrays)
    assert sorted(snapshot.fields) == ["m_t", "v_t"]
    assert encode_state(snapshot) == outcome.state
    assert outcome.state_hash == keccak(outcome.state)


@pytest.mark.parametrize(
    ("corrupt", "match"),
    [
        (lambda blob: blob[:-1], "truncated"),
        (lambda blob: blob + b"\0", "trailing"),
        (lambda blob: b"pickle" + blob, "bad magic"),
        (lambda blob: blob[:9] + b"\x07" + blob[10:], "version 7"),
        (lambda blob: blob[:16] + b"}" + blob[17:], "header is corrupt"),
        (lambda blob: b"", "bad magic"),
    ],
)
def test_corrupt_state_is_refused(corrupt, match):
    leader, outcome = one_round()
    with pytest.raises(StrategyStateError, match=match):
        next_round(leader, replace(outcome, state=corrupt(outcome.state)))


def test_flipped_array_byte_changes_the_state_hash_not_silently_the_merge():
    leader, outcome = one_round()
    blob = bytearray(outcome.state)
    blob[-1] ^= 0x01
    tampered = bytes(blob)
    fields = decode_state(tampered).fields
    assert (
        fields["v_t"]["w"].tobytes()
        != decode_state(outcome.state).fields["v_t"]["w"].tobytes()
    )
    # The ledger holds keccak(state): a tampered blob no longer matches it.
    assert keccak(tampered) != outcome.state_hash


def test_state_of_another_strategy_is_refused():
    _, outcome = one_round("FedAdam")
    with pytest.raises(StrategyStateError, match="belongs to .*FedAdam.*FedYogi"):
        next_round(build_strategy("FedYogi"), outcome)


def test_state_with_other_settings_is_refused():
    _, outcome = one_round("FedAdam", eta=0.1)
    with pytest.raises(StrategyStateError, match="'eta': 0.1.*'eta': 0.2"):
        next_round(build_strategy("FedAdam", eta=0.2), outcome)


def test_state_for_another_model_is_refused():
    leader, outcome = one_round("FedAvgM", server_momentum=0.9)
    items = [Update(0, model(), 4)]
    with pytest.raises(StrategyStateError, match="not the current model"):
        leader.merge(2, model(), items, outcome.state)


def test_state_from_the_same_round_is_refused():
    leader, outcome = one_round()
    with pytest.raises(StrategyStateError, match="from round 1, cannot merge round 1"):
        next_round(leader, outcome, server_round=1)


def test_state_for_a_stateless_strategy_is_refused():
    _, outcome = one_round("FedAdam")
    with pytest.raises(StrategyStateError, match="FedAvg keeps no state"):
        next_round(build_strategy("FedAvg"), outcome)


def test_state_whose_arrays_do_not_fit_the_model_is_refused():
    leader, outcome = one_round()
    snapshot = decode_state(outcome.state)
    wrong = {"m_t": {"w": np.zeros((3, 2), np.float32), "b": np.zeros(3, np.float32)}}
    forged = encode_state(replace(snapshot, fields=wrong))
    with pytest.raises(StrategyStateError, match="field 'm_t' does not fit"):
        next_round(leader, replace(outcome, state=forged))


def test_initial_state():
    current = model()
    assert build_strategy("FedAvg").initial_state(current) == b""
    snapshot = decode_state(build_strategy("FedYogi").initial_state(current))
    assert (snapshot.server_round, snapshot.fields) == (0, {})
    assert snapshot.model_hash == arrays_hash(current)
    assert snapshot.hyperparameters["eta"] == 1e-2


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_damaged_state_raises_only_the_typed_error(data):
    blob = bytearray(FEDADAM_STATE)
    position = data.draw(st.integers(0, len(blob) - 1))
    blob[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(blob)))
    with contextlib.suppress(StrategyStateError):  # and nothing else
        decode_state(bytes(blob[:cut]))


FEDADAM_STATE = one_round()[1].state
