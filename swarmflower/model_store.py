"""Content-addressed storage of models, updates and strategy states.

A site trusts nothing by name, only by hash: everything it keeps or serves is
filed under the hash of its bytes (`swarmflower.codec`), and what it fetches
from a peer is checked against the hash it asked for.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Generic, NamedTuple, TypeVar

from flwr.app import ArrayRecord

from swarmflower.codec import (
    CodecError,
    arrays_hash,
    content_hash,
    decode_arrays,
    encode_arrays,
)

log = logging.getLogger("swarmflower.model_store")

DEFAULT_CACHE_BYTES = 256 * 2**20

# The old name, for site_files, which still imports it from here.
arrays_from_bytes = decode_arrays


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
        """File a strategy state; return its hash (`content_hash`)."""

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
        digest = content_hash(blob)
        with self._lock:
            self._blobs.setdefault(digest, blob)
        return digest

    def get_blob(self, digest: bytes) -> bytes | None:
        with self._lock:
            return self._blobs.get(digest)


V = TypeVar("V")


class BytesLRU(Generic[V]):
    """Values by hash, least recently used dropped first, up to a byte budget.

    A site holds every model of a long run on disk; memory keeps only the hot
    ones, so a run of many rounds does not grow the process without bound.
    Safe to use from several threads.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[bytes, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: bytes) -> V | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, key: bytes, value: V, size: int) -> None:
        """Keep `value`; one larger than the whole budget is not kept at all."""
        if size > self.max_bytes:
            return
        with self._lock:
            if (old := self._entries.pop(key, None)) is not None:
                self._bytes -= old[1]
            self._entries[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._bytes -= dropped

    def __contains__(self, key: bytes) -> bool:
        with self._lock:
            return key in self._entries

    @property
    def total_bytes(self) -> int:
        with self._lock:
            return self._bytes


class _StoredFile(NamedTuple):
    """A file's bytes and the identity of the very file they came from."""

    data: bytes
    file_id: tuple[int, int]  # (st_dev, st_ino)


class DiskModelStore(ModelStoreAPI):
    """A real site's store: one file per hash, written atomically and durably.

    A file is written to a temporary name in the same folder, fsynced, renamed
    over the real name and the folder fsynced, so a process killed mid-write
    leaves either the whole file or none. The bytes are checked against the
    name on read, so a file damaged at rest is moved aside into `damaged/`
    (kept for inspection, never used) and reported missing: the caller
    fetches it again from a peer by hash. The folder
    belongs to one process: opening it removes temporary files left by a kill.
    """

    def __init__(
        self,
        folder: str | Path,
        *,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        on_partial_write: Callable[[Path], None] | None = None,
    ) -> None:
        """`on_partial_write(tmp)`: drill hook, run with half the bytes fsynced."""
        self.folder = Path(folder)
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)  # models and states are the site's own
        for leftover in self.folder.glob("*.tmp*"):
            leftover.unlink(missing_ok=True)
        self._cache: BytesLRU[ArrayRecord] = BytesLRU(cache_bytes)
        self._on_partial_write = on_partial_write
        # Orders renames against deletions, so a reader that found a damaged
        # file never deletes the good one another thread has just put there.
        self._rename_lock = threading.Lock()

    def _path(self, digest: bytes, kind: str) -> Path:
        return self.folder / f"{digest.hex()}.{kind}"

    def _write(self, path: Path, data: bytes) -> None:
        """File `data` (whose hash names `path`) unless it is already intact."""
        try:
            if path.read_bytes() == data:  # same bytes, so they hash to the name
                return
        except FileNotFoundError:
            pass
        temporary = path.with_name(
            f"{path.name}.tmp{os.getpid()}-{secrets.token_hex(4)}"
        )
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with open(fd, "wb") as handle:
                if self._on_partial_write is not None:
                    half = len(data) // 2
                    handle.write(data[:half])
                    handle.flush()
                    os.fsync(handle.fileno())
                    self._on_partial_write(temporary)
                    data = data[half:]
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            with self._rename_lock:
                os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        self._fsync_folder()

    def _fsync_folder(self) -> None:
        """Make the rename itself durable, not only the file's bytes."""
        fd = os.open(self.folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _read(self, path: Path, digest: bytes) -> _StoredFile | None:
        """The file's bytes if they hash to `digest`; a damaged file is moved aside."""
        try:
            with open(path, "rb") as handle:
                data = handle.read()
                stat = os.fstat(handle.fileno())
        except FileNotFoundError:
            return None
        stored = _StoredFile(data, (stat.st_dev, stat.st_ino))
        if content_hash(data) != digest:
            self._discard(path, stored, "its bytes do not hash to its name")
            return None
        return stored

    def damaged_files(self) -> list[tuple[Path, str]]:
        """Every stored file whose bytes do not hash to its name, and why."""
        damaged = []
        for path in sorted(self.folder.glob("*.model")) + sorted(
            self.folder.glob("*.state")
        ):
            try:
                digest = bytes.fromhex(path.stem)
            except ValueError:
                damaged.append((path, "its name is not a hash"))
                continue
            if content_hash(path.read_bytes()) != digest:
                damaged.append((path, "its bytes do not hash to its name"))
        return damaged

    def move_aside(self, path: Path, reason: str) -> None:
        """Move a damaged file into `damaged/` (a warning names it)."""
        aside = self.folder / "damaged" / path.name
        aside.parent.mkdir(mode=0o700, exist_ok=True)
        os.replace(path, aside)
        log.warning("Moved damaged file %s to %s: %s", path, aside.parent, reason)

    def _discard(self, path: Path, stored: _StoredFile, reason: str) -> None:
        """Move the damaged file that was read into `damaged/` (replacing an
        older copy of the same name), unless it was replaced since."""
        with self._rename_lock:
            try:
                stat = os.stat(path)
            except FileNotFoundError:
                return
            if (stat.st_dev, stat.st_ino) != stored.file_id:
                return
            self.move_aside(path, reason)

    def put_arrays(self, arrays: ArrayRecord, digest: bytes | None = None) -> bytes:
        data = encode_arrays(arrays)
        digest = content_hash(data)  # the file's name must be the hash of its bytes
        self._write(self._path(digest, "model"), data)
        self._cache.put(digest, arrays, len(data))
        return digest

    def get_arrays(self, digest: bytes) -> ArrayRecord | None:
        if (cached := self._cache.get(digest)) is not None:
            return cached
        path = self._path(digest, "model")
        stored = self._read(path, digest)
        if stored is None:
            return None
        try:
            arrays = decode_arrays(stored.data)
        except CodecError as err:
            self._discard(path, stored, f"not a model: {err}")
            return None
        self._cache.put(digest, arrays, len(stored.data))
        return arrays

    def put_blob(self, blob: bytes) -> bytes:
        digest = content_hash(blob)
        self._write(self._path(digest, "state"), blob)
        return digest

    def get_blob(self, digest: bytes) -> bytes | None:
        stored = self._read(self._path(digest, "state"), digest)
        return None if stored is None else stored.data
