"""Content-addressed storage of models, updates and strategy states.

A site trusts nothing by name, only by hash: everything it keeps or serves is
filed under the keccak hash of its canonical bytes, and what it fetches from a
peer is checked against the hash it asked for.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod

from eth_utils import keccak
from flwr.app import ArrayRecord

from swarmflower.strategies.helpers import arrays_hash


class ModelStoreAPI(ABC):
    """What a peer keeps and serves to other peers (from their threads too)."""

    @abstractmethod
    def put_arrays(self, arrays: ArrayRecord) -> bytes:
        """File a model or update; return its hash."""

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

    def put_arrays(self, arrays: ArrayRecord) -> bytes:
        digest = arrays_hash(arrays)
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
