"""The one byte form and hash of arrays: pinned, so old ledgers and files verify."""

import numpy as np
import pytest
from eth_utils import keccak
from flwr.app import Array, ArrayRecord

from swarmflower import codec
from swarmflower.errors import CodecError, SwarmflowerError
from swarmflower.model_store import DiskModelStore
from swarmflower.strategies.helpers import StateSnapshot, decode_state, encode_state

# Computed with the code before `swarmflower.codec` existed (arrays encoded in
# `strategies/helpers.py`): ledger blocks and model files of earlier runs hold
# these bytes and hashes, so they must never change.
PINNED_BYTES = bytes.fromhex(  # whitespace is ignored
    "04000000"  # four entries; each: key, dtype, ndim, shape, length, data
    "01000000 77 03 3c6634 02 0200000000000000 0300000000000000"
    "1800000000000000 000000000000803f0000004000004040000080400000a040"
    "01000000 62 03 3c6938 01 0200000000000000"
    "1000000000000000 0100000000000000feffffffffffffff"
    "01000000 6d 03 7c6231 01 0200000000000000"
    "0200000000000000 0100"
    "01000000 73 03 3c6638 00"
    "0800000000000000 000000000000e03f"
)
PINNED_HASH = "d827c891b9b0dbfb28b07cdfae00fbd2f8f054db304a1cf5bc4b368d52ed5787"
PINNED_LAYERS_HASH = "3a42d22290eefb0e27229a61a79dd276ec458a25d4a8d1912d7ab5d4a6034fe4"
PINNED_STATE_HASH = "a4a0b5fe2e99364d6ff976f1b337463d4905caf1097e3435988a6429cde566f0"


def pinned_model() -> ArrayRecord:
    return ArrayRecord(
        {
            "w": Array(np.arange(6, dtype=np.float32).reshape(2, 3)),
            "b": Array(np.array([1, -2], dtype=">i8")),  # big endian in, little out
            "m": Array(np.array([True, False])),
            "s": Array(np.array(0.5, dtype=np.float64)),  # 0-d
        }
    )


def layers_model() -> ArrayRecord:
    ramp = np.linspace(-1, 1, 50, dtype=np.float32).reshape(5, 10)
    return ArrayRecord({f"layer{i}": Array(ramp * (i + 1)) for i in range(3)})


def test_encoding_and_hash_are_pinned():
    record = pinned_model()
    assert codec.encode_arrays(record) == PINNED_BYTES
    assert codec.arrays_hash(record).hex() == PINNED_HASH
    assert codec.arrays_hash(layers_model()).hex() == PINNED_LAYERS_HASH
    assert codec.content_hash(PINNED_BYTES) == keccak(PINNED_BYTES)


def test_state_blob_around_the_arrays_is_pinned():
    fields = {"m_t": {"w": np.ones((2, 3), np.float32), "b": np.zeros(2)}}
    model_hash = bytes.fromhex(PINNED_HASH)
    blob = encode_state(StateSnapshot("FedAdam", {"eta": 0.1}, 3, model_hash, fields))
    assert codec.content_hash(blob).hex() == PINNED_STATE_HASH
    assert decode_state(blob).fields["m_t"]["b"].dtype == np.float64


def test_decoding_keeps_order_dtype_and_values():
    back = codec.decode_arrays(PINNED_BYTES)
    assert list(back.keys()) == ["w", "b", "m", "s"]
    assert back["b"].numpy().dtype == np.dtype("<i8")
    assert back["s"].numpy().shape == ()
    assert codec.encode_arrays(back) == PINNED_BYTES
    named = codec.decode_ndarrays(PINNED_BYTES)
    assert codec.encode_ndarrays(named.items()) == PINNED_BYTES


def test_reader_reads_one_section_and_stops():
    reader = codec.ByteReader(PINNED_BYTES + PINNED_BYTES)
    assert list(reader.ndarrays()) == ["w", "b", "m", "s"]
    assert not reader.done()
    reader.ndarrays()
    assert reader.done()


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (PINNED_BYTES[:-1], "truncated"),
        (PINNED_BYTES + b"\0", "trailing"),
        (b"", "truncated"),
        (PINNED_BYTES[:8] + b"\xff" + PINNED_BYTES[9:], "arrays are corrupt"),
        (PINNED_BYTES[:24] + b"\x07" + PINNED_BYTES[25:], "entry 'w' is corrupt"),
    ],
)
def test_corrupt_bytes_raise_codec_error(data, match):
    with pytest.raises(CodecError, match=match):
        codec.decode_arrays(data)


def test_codec_error_is_a_swarmflower_error_and_not_a_strategy_one():
    from swarmflower.errors import MergeError, TransportError

    assert issubclass(CodecError, SwarmflowerError)
    assert not issubclass(CodecError, MergeError | TransportError)


def test_object_arrays_have_no_byte_form():
    with pytest.raises(TypeError, match="no canonical byte form"):
        codec.encode_ndarrays([("x", np.array(["a"], dtype=object))])


def test_model_file_on_disk_is_the_codec_encoding(tmp_path):
    store = DiskModelStore(tmp_path)
    digest = store.put_arrays(pinned_model())
    assert digest.hex() == PINNED_HASH
    assert (tmp_path / f"{PINNED_HASH}.model").read_bytes() == PINNED_BYTES
