"""Content-addressed model stores: what comes back is what was filed, or nothing."""

import numpy as np
from flwr.app import Array, ArrayRecord

from swarmflower.model_store import DiskModelStore, MemoryModelStore
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
