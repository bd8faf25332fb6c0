"""The one byte form and the one hash of models and updates.

A model's hash on the ledger, a model file's name on disk and the arrays a
peer sends are all the same bytes, so they live here, in one module that
depends on nothing but numpy and Flower: the strategies, the model store, the
wire format and provisioning all use it, and none of them depends on another
for it. Corrupt bytes raise `CodecError`; each caller says what they were
(a strategy state, a peer's message, a stored file).

The format is fixed (ledgers and files of earlier runs hold it; see
tests/test_codec.py): a u32 entry count, then per entry the key (u32 length +
UTF-8), the little-endian dtype (u8 length + ASCII), ndim (u8), the shape
(u64 each), the data length (u64) and the raw C-order bytes. All integers are
little endian. No pickle: the bytes are data, never code. The hash is keccak256.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable

import numpy as np
from eth_utils import keccak
from flwr.app import Array, ArrayRecord

from swarmflower.errors import CodecError

NDArray = np.ndarray

_U8 = struct.Struct("<B")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


def _canonical_dtype(array: NDArray) -> np.dtype:
    """The little-endian dtype an array is encoded with; rejects objects."""
    dtype = array.dtype
    if dtype.hasobject or dtype.fields is not None or dtype.kind in "OUSV":
        raise TypeError(f"dtype {dtype} has no canonical byte form")
    return dtype.newbyteorder("<")


def encode_ndarrays(items: Iterable[tuple[str, NDArray]]) -> bytes:
    """The bytes of named arrays, in the order given (TypeError for objects)."""
    entries = list(items)
    out = bytearray(_U32.pack(len(entries)))
    for key, array in entries:
        dtype = _canonical_dtype(array)
        key_bytes = key.encode("utf-8")
        dtype_bytes = dtype.str.encode("ascii")
        data = np.ascontiguousarray(array, dtype=dtype).tobytes()
        out += _U32.pack(len(key_bytes)) + key_bytes
        out += _U8.pack(len(dtype_bytes)) + dtype_bytes
        out += _U8.pack(array.ndim)
        out += b"".join(_U64.pack(dim) for dim in array.shape)
        out += _U64.pack(len(data)) + data
    return bytes(out)


class ByteReader:
    """Bounds-checked reads from bytes; any overrun raises `CodecError`.

    For formats that embed encoded arrays (a strategy state holds several
    sections one after another).
    """

    def __init__(self, data: bytes) -> None:
        self.view = memoryview(data)
        self.pos = 0

    def take(self, size: int) -> bytes:
        if size < 0 or self.pos + size > len(self.view):
            raise CodecError("bytes end early (truncated or corrupt)")
        chunk = self.view[self.pos : self.pos + size].tobytes()
        self.pos += size
        return chunk

    def unpack(self, fmt: struct.Struct) -> int:
        return fmt.unpack(self.take(fmt.size))[0]

    def done(self) -> bool:
        return self.pos == len(self.view)

    def ndarrays(self) -> dict[str, NDArray]:
        """One section written by `encode_ndarrays`, read from here."""
        try:
            return self._ndarrays()
        except (UnicodeDecodeError, TypeError, ValueError) as err:
            raise CodecError(f"arrays are corrupt: {err}") from err

    def _ndarrays(self) -> dict[str, NDArray]:
        arrays: dict[str, NDArray] = {}
        for _ in range(self.unpack(_U32)):
            key = self.take(self.unpack(_U32)).decode("utf-8")
            dtype = np.dtype(self.take(self.unpack(_U8)).decode("ascii"))
            shape = tuple(self.unpack(_U64) for _ in range(self.unpack(_U8)))
            data = self.take(self.unpack(_U64))
            if len(data) != dtype.itemsize * math.prod(shape) or key in arrays:
                raise CodecError(f"array entry {key!r} is corrupt")
            arrays[key] = np.frombuffer(data, dtype=dtype).reshape(shape).copy()
        return arrays


def decode_ndarrays(data: bytes) -> dict[str, NDArray]:
    """Inverse of `encode_ndarrays`, keeping the order; `CodecError` if corrupt."""
    reader = ByteReader(data)
    arrays = reader.ndarrays()
    if not reader.done():
        raise CodecError("encoded arrays have trailing bytes")
    return arrays


def record_items(record: ArrayRecord) -> list[tuple[str, NDArray]]:
    """A record's arrays as numpy, in the record's own order."""
    return [(key, array.numpy()) for key, array in record.items()]


def encode_arrays(record: ArrayRecord) -> bytes:
    """The bytes of a model or update: what `arrays_hash` hashes."""
    return encode_ndarrays(record_items(record))


def decode_arrays(data: bytes) -> ArrayRecord:
    """Inverse of `encode_arrays`, keeping the key order; `CodecError` if corrupt."""
    return ArrayRecord(
        {key: Array(value) for key, value in decode_ndarrays(data).items()}
    )


def content_hash(data: bytes) -> bytes:
    """keccak256 of bytes: what names a stored file or a state on the ledger."""
    return keccak(data)


def arrays_hash(record: ArrayRecord) -> bytes:
    """The model hash on the ledger: `content_hash(encode_arrays(record))`.

    Keeps the record's key order: list-based models (`to_numpy_ndarrays`)
    depend on it, so two orders are two models.
    """
    return content_hash(encode_arrays(record))
