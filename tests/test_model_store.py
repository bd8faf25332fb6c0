"""Content-addressed model stores: what comes back is what was filed, or nothing."""

import logging
import signal
import stat
import subprocess
import sys

import numpy as np
from eth_utils import keccak
from flwr.app import Array, ArrayRecord

from swarmflower.codec import encode_arrays as arrays_to_bytes
from swarmflower.model_store import BytesLRU, DiskModelStore, MemoryModelStore
from swarmflower.strategies import arrays_hash


def _model(value: float) -> ArrayRecord:
    return ArrayRecord(
        {
            "w": Array(np.full((3, 2), value, dtype=np.float32)),
            "b": Array(np.arange(2, dtype=np.float32)),
        }
    )


def test_memory_store_files_by_hash():
    store = MemoryModelStore()
    digest = store.put_arrays(_model(1.0))
    assert digest == arrays_hash(_model(1.0))
    assert store.get_arrays(digest) is not None
    assert store.get_arrays(arrays_hash(_model(2.0))) is None


def test_disk_store_survives_a_restart(tmp_path):
    digest = DiskModelStore(tmp_path).put_arrays(_model(0.5))
    state = DiskModelStore(tmp_path).put_blob(b"strategy state")
    reopened = DiskModelStore(tmp_path)
    back = reopened.get_arrays(digest)
    assert back is not None and arrays_hash(back) == digest
    assert list(back.keys()) == ["w", "b"]
    assert reopened.get_blob(state) == b"strategy state"
    assert not list(tmp_path.glob("*.tmp*"))


def test_disk_store_never_returns_bytes_damaged_at_rest(tmp_path):
    digest = DiskModelStore(tmp_path).put_arrays(_model(0.25))
    blob = DiskModelStore(tmp_path).put_blob(b"moments")
    for path in tmp_path.iterdir():
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x10
        path.write_bytes(bytes(data))
    reopened = DiskModelStore(tmp_path)
    assert reopened.get_arrays(digest) is None
    assert reopened.get_blob(blob) is None


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _flip_middle_byte(path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def test_disk_store_keeps_files_and_folder_private(tmp_path):
    folder = tmp_path / "models"
    store = DiskModelStore(folder)
    digest = store.put_arrays(_model(1.5))
    blob = store.put_blob(b"state")
    assert _mode(folder) == 0o700
    assert _mode(folder / f"{digest.hex()}.model") == 0o600
    assert _mode(folder / f"{blob.hex()}.state") == 0o600


def test_disk_store_tightens_an_existing_folder(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    DiskModelStore(folder)
    assert _mode(folder) == 0o700


def test_damaged_model_is_moved_aside_on_read_then_filed_again(tmp_path, caplog):
    digest = DiskModelStore(tmp_path).put_arrays(_model(0.75))
    path = tmp_path / f"{digest.hex()}.model"
    _flip_middle_byte(path)
    damaged = path.read_bytes()
    reopened = DiskModelStore(tmp_path)
    with caplog.at_level(logging.WARNING, logger="swarmflower.model_store"):
        assert reopened.get_arrays(digest) is None
    assert not path.exists()
    assert (tmp_path / "damaged" / path.name).read_bytes() == damaged  # kept
    warnings = [r for r in caplog.records if r.name == "swarmflower.model_store"]
    assert len(warnings) == 1 and path.name in warnings[0].getMessage()
    assert reopened.put_arrays(_model(0.75)) == digest
    assert path.read_bytes() == arrays_to_bytes(_model(0.75))
    back = DiskModelStore(tmp_path).get_arrays(digest)
    assert back is not None and arrays_hash(back) == digest


def test_put_rewrites_a_damaged_file_it_finds(tmp_path):
    digest = DiskModelStore(tmp_path).put_arrays(_model(2.5))
    path = tmp_path / f"{digest.hex()}.model"
    _flip_middle_byte(path)
    DiskModelStore(tmp_path).put_arrays(_model(2.5))
    assert path.read_bytes() == arrays_to_bytes(_model(2.5))


def test_undecodable_model_is_moved_aside_on_read(tmp_path, caplog):
    data = b"hashes to its name but is no model"
    path = tmp_path / f"{keccak(data).hex()}.model"
    DiskModelStore(tmp_path)
    path.write_bytes(data)
    with caplog.at_level(logging.WARNING, logger="swarmflower.model_store"):
        assert DiskModelStore(tmp_path).get_arrays(keccak(data)) is None
    assert not path.exists()
    assert (tmp_path / "damaged" / path.name).read_bytes() == data
    assert any(path.name in r.getMessage() for r in caplog.records)


def test_truncated_state_is_moved_aside_on_read_then_filed_again(tmp_path, caplog):
    blob = b"optimizer moments " * 64
    digest = DiskModelStore(tmp_path).put_blob(blob)
    path = tmp_path / f"{digest.hex()}.state"
    path.write_bytes(blob[: len(blob) // 3])
    reopened = DiskModelStore(tmp_path)
    with caplog.at_level(logging.WARNING, logger="swarmflower.model_store"):
        assert reopened.get_blob(digest) is None
    assert not path.exists()
    assert any(path.name in r.getMessage() for r in caplog.records)
    assert reopened.put_blob(blob) == digest
    assert reopened.get_blob(digest) == blob


def test_missing_file_is_none_without_a_warning(tmp_path, caplog):
    store = DiskModelStore(tmp_path)
    with caplog.at_level(logging.WARNING, logger="swarmflower.model_store"):
        assert store.get_arrays(arrays_hash(_model(9.0))) is None
        assert store.get_blob(b"\x00" * 32) is None
    assert not caplog.records


def test_leftover_temporary_file_is_removed_at_open(tmp_path):
    digest = DiskModelStore(tmp_path).put_arrays(_model(3.0))
    leftover = tmp_path / f"{digest.hex()}.model.tmp4242-deadbeef"
    leftover.write_bytes(b"half a model")
    store = DiskModelStore(tmp_path)
    assert not leftover.exists()
    assert store.get_arrays(digest) is not None


def test_lru_drops_least_recently_used_within_byte_budget():
    cache: BytesLRU[str] = BytesLRU(max_bytes=10)
    cache.put(b"a", "A", 4)
    cache.put(b"b", "B", 4)
    assert cache.get(b"a") == "A"  # now b is the least recently used
    cache.put(b"c", "C", 4)
    assert b"b" not in cache and cache.get(b"a") == "A" and cache.get(b"c") == "C"
    assert cache.total_bytes == 8
    cache.put(b"huge", "H", 11)
    assert b"huge" not in cache and cache.total_bytes == 8


def test_disk_store_cache_evicts_lru_model_and_reads_it_from_disk(tmp_path):
    models = [_model(float(i)) for i in range(3)]
    size = len(arrays_to_bytes(models[0]))
    store = DiskModelStore(tmp_path, cache_bytes=2 * size)
    first, second = store.put_arrays(models[0]), store.put_arrays(models[1])
    assert store.get_arrays(first) is models[0]  # second is now least recent
    third = store.put_arrays(models[2])
    assert store.get_arrays(first) is models[0]
    assert store.get_arrays(third) is models[2]
    evicted = store.get_arrays(second)
    assert evicted is not None and evicted is not models[1]
    assert arrays_hash(evicted) == second


def test_model_larger_than_the_cache_is_served_from_disk(tmp_path):
    store = DiskModelStore(tmp_path, cache_bytes=16)
    model = _model(4.0)
    digest = store.put_arrays(model)
    back = store.get_arrays(digest)
    assert back is not None and back is not model and arrays_hash(back) == digest


_KILLED_MID_WRITE = """
import os, signal, sys
import numpy as np
from flwr.app import Array, ArrayRecord
from swarmflower.model_store import DiskModelStore

def die(temporary):
    os.kill(os.getpid(), signal.SIGKILL)

store = DiskModelStore(sys.argv[1], on_partial_write=die)
store.put_arrays(ArrayRecord({"w": Array(np.full((64, 64), 0.5, dtype=np.float32))}))
"""


def test_process_killed_mid_write_leaves_no_damaged_file(tmp_path, caplog):
    folder = tmp_path / "models"
    child = subprocess.run(
        [sys.executable, "-c", _KILLED_MID_WRITE, str(folder)],
        capture_output=True,
        timeout=300,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    model = ArrayRecord({"w": Array(np.full((64, 64), 0.5, dtype=np.float32))})
    digest = arrays_hash(model)
    path = folder / f"{digest.hex()}.model"
    leftovers = list(folder.glob("*.tmp*"))
    assert len(leftovers) == 1  # killed with half the bytes in a temporary file
    assert 0 < leftovers[0].stat().st_size < len(arrays_to_bytes(model))
    assert not path.exists()
    with caplog.at_level(logging.WARNING, logger="swarmflower.model_store"):
        store = DiskModelStore(folder)
        assert store.get_arrays(digest) is None
    assert not caplog.records
    assert not list(folder.iterdir())
    assert store.put_arrays(model) == digest and path.exists()
