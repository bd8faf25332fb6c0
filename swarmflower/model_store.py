"""Content-addressed storage of models, updates and strategy states.

A site trusts nothing by name, only by hash: everything it keeps or serves is
filed under the keccak hash of its canonical bytes, and what it fetches from a
peer is checked against the hash it asked for.
"""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from pathlib import Path

from eth_utils import keccak
from flwr.app import Array, ArrayRecord

from swarmflower.errors import SwarmflowerError
from swarmflower.strategies.helpers import (
    arrays_hash,
    decode_ndarrays,
    encode_ndarrays,
    record_items,
)


class ModelStoreAPI(ABC):
    """What a peer keeps and serves to other peers (from their threads too)."""

    @abstractmethod
    def put_arrays(self, arrays: ArrayRecord, digest: bytes | None = None) -> bytes:
        """File a model or update; return its hash.

        `digest` is the hash the caller has just computed from these arrays,
        so that a hot path does not hash the same model twice.
        """

    @abstractmethod
    def get_arrays(self, digest: bytes) -> ArrayRecord | None: ...

    @abstractmethod
    def put_blob(self, blob: bytes) -> bytes:
        """File a strategy state; return its keccak hash."""

    @abstractmethod
    def get_blob(self, digest: bytes) -> bytes | None: ...


class MemoryModelStore(ModelStoreAPI):
    """A store in memory, safe to read from other threads while its owner writes."""

    def __init__(self) -> None:
        self._arrays: dict[bytes, ArrayRecord] = {}
        self._blobs: dict[bytes, bytes] = {}
        self._lock = threading.Lock()

    def put_arrays(self, arrays: ArrayRecord, digest: bytes | None = None) -> bytes:
        digest = digest or arrays_hash(arrays)
        with self._lock:
            self._arrays.setdefault(digest, arrays)
        return digest

    def get_arrays(self, digest: bytes) -> ArrayRecord | None:
        with self._lock:
            return self._arrays.get(digest)

    def put_blob(self, blob: bytes) -> bytes:
        digest = keccak(blob)
        with self._lock:
            self._blobs.setdefault(digest, blob)
        return digest

    def get_blob(self, digest: bytes) -> bytes | None:
        with self._lock:
            return self._blobs.get(digest)


def arrays_to_bytes(arrays: ArrayRecord) -> bytes:
    """The canonical bytes whose keccak is the model hash."""
    return encode_ndarrays(record_items(arrays))


def arrays_from_bytes(data: bytes) -> ArrayRecord:
    return ArrayRecord({k: Array(v) for k, v in decode_ndarrays(data).items()})


class DiskModelStore(ModelStoreAPI):
    """A real site's store: one file per hash, written atomically.

    A file is written to a temporary name, flushed to disk and renamed, so a
    process killed mid-write leaves either the whole file or none; on read,
    the bytes are checked against the name, so a file damaged at rest is
    treated as missing (and fetched again from a peer), never used.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._memory = MemoryModelStore()

    def _path(self, digest: bytes, kind: str) -> Path:
        return self.folder / f"{digest.hex()}.{kind}"

    def _write(self, path: Path, data: bytes) -> None:
        if path.exists():
            return
        temporary = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)

    def _read(self, path: Path, digest: bytes) -> bytes | None:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        if keccak(data) != digest:
            return None
        return data

    def put_arrays(self, arrays: ArrayRecord, digest: bytes | None = None) -> bytes:
        data = arrays_to_bytes(arrays)
        digest = keccak(data)  # the file's name must be the hash of its bytes
        self._write(self._path(digest, "model"), data)
        self._memory.put_arrays(arrays, digest)
        return digest

    def get_arrays(self, digest: bytes) -> ArrayRecord | None:
        if (cached := self._memory.get_arrays(digest)) is not None:
            return cached
        data = self._read(self._path(digest, "model"), digest)
        if data is None:
            return None
        try:
            arrays = arrays_from_bytes(data)
        except SwarmflowerError:
            return None
        self._memory.put_arrays(arrays, digest)
        return arrays

    def put_blob(self, blob: bytes) -> bytes:
        digest = keccak(blob)
        self._write(self._path(digest, "state"), blob)
        return digest

    def get_blob(self, digest: bytes) -> bytes | None:
        return self._read(self._path(digest, "state"), digest)
