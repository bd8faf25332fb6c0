"""Pure helpers for leader merges: state blobs, update checks and replies.

A strategy state blob is a JSON header followed by arrays in the one byte
form of `swarmflower.codec`, so any site, in any process, gets the same bytes
(and the same state hash on the ledger) for the same state. No pickle: a
state blob is data, never code.
"""

from __future__ import annotations

import json
import math
import numbers
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from flwr.app import Array, ArrayRecord, Message, MetricRecord, RecordDict

from swarmflower.codec import (
    ByteReader,
    CodecError,
    NDArray,
    encode_ndarrays,
    record_items,
)
from swarmflower.errors import (
    EmptyMergeError,
    InvalidUpdateError,
    NonFiniteUpdateError,
    StrategyStateError,
    UpdateMismatchError,
)
from swarmflower.flower_messages import EVALUATE, TRAIN, instruction

if TYPE_CHECKING:
    from swarmflower.strategies.base import Update

STATE_MAGIC = b"SWFLSTATE"
STATE_VERSION = 1
ARRAYS_KEY = "arrays"
METRICS_KEY = "metrics"

_U8 = struct.Struct("<B")
_U32 = struct.Struct("<I")


# --- strategy state blobs ---------------------------------------------------


@dataclass(frozen=True)
class StateSnapshot:
    """What a stateful strategy hands to the next leader.

    `model_hash` binds the state to the model it was produced with, and
    `hyperparameters` to the strategy settings, so a leader with another
    model or other settings refuses it instead of merging silently wrong.
    """

    strategy: str
    hyperparameters: Mapping[str, Any]
    server_round: int
    model_hash: bytes
    fields: Mapping[str, Mapping[str, NDArray]] = field(default_factory=dict)
    # what the merge did to each update (robust merges), in the JSON header
    report: Mapping[str, Any] = field(default_factory=dict)


def encode_state(snapshot: StateSnapshot) -> bytes:
    """Canonical bytes of a snapshot: magic, JSON header, then sorted fields."""
    names = sorted(snapshot.fields)
    header = {
        "fields": names,
        "hyperparameters": dict(snapshot.hyperparameters),
        "model": snapshot.model_hash.hex(),
        "round": snapshot.server_round,
        "strategy": snapshot.strategy,
        **({"report": dict(snapshot.report)} if snapshot.report else {}),
    }
    header_bytes = json.dumps(
        header, sort_keys=True, separators=(",", ":"), allow_nan=False
    ).encode("ascii")
    out = bytearray(STATE_MAGIC + _U8.pack(STATE_VERSION))
    out += _U32.pack(len(header_bytes)) + header_bytes
    for name in names:
        arrays = snapshot.fields[name]
        out += encode_ndarrays((key, arrays[key]) for key in sorted(arrays))
    return bytes(out)


def decode_state(blob: bytes) -> StateSnapshot:
    """Inverse of `encode_state`; raises `StrategyStateError` if corrupt."""
    if not blob.startswith(STATE_MAGIC):
        raise StrategyStateError("not a swarmflower strategy state (bad magic)")
    reader = ByteReader(blob)
    try:
        reader.take(len(STATE_MAGIC))
        version = reader.unpack(_U8)
        if version != STATE_VERSION:
            raise StrategyStateError(f"unsupported strategy state version {version}")
        header = json.loads(reader.take(reader.unpack(_U32)).decode("ascii"))
        names = list(header["fields"])
        snapshot = StateSnapshot(
            strategy=str(header["strategy"]),
            hyperparameters=dict(header["hyperparameters"]),
            server_round=int(header["round"]),
            model_hash=bytes.fromhex(header["model"]),
            fields={name: reader.ndarrays() for name in names},
            report=dict(header.get("report", {})),
        )
    except CodecError as err:
        raise StrategyStateError(f"strategy state is corrupt: {err}") from err
    except (KeyError, TypeError, ValueError) as err:
        raise StrategyStateError(f"strategy state header is corrupt: {err}") from err
    if not reader.done():
        raise StrategyStateError("strategy state has trailing bytes")
    if encode_state(snapshot) != blob:
        raise StrategyStateError("strategy state is not in canonical form")
    return snapshot


def hyperparameter_values(strategy: object, names: Sequence[str]) -> dict[str, Any]:
    """The named numeric settings of a Flower strategy object, as floats."""
    values: dict[str, Any] = {}
    for name in names:
        value = getattr(strategy, name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value}")
        values[name] = float(value)  # eta=1 and eta=1.0 are one setting
    return values


# --- update checks ----------------------------------------------------------


def _check_metrics(update: Update, weight_key: str) -> None:
    for key, value in update.metrics.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise InvalidUpdateError(
                f"site {update.site}: metric {key!r} is {value!r}, not a number"
            )
        if not math.isfinite(value):
            raise NonFiniteUpdateError(
                f"site {update.site}: metric {key!r} is {value} (not finite)"
            )
        if key == weight_key and value != update.num_examples:
            raise InvalidUpdateError(
                f"site {update.site}: metric {key!r}={value} differs from "
                f"num_examples={update.num_examples}"
            )


def _check_arrays(update: Update, current: Mapping[str, NDArray]) -> None:
    shapes = {key: tuple(array.shape) for key, array in current.items()}
    keys = list(update.arrays.keys())
    missing = [key for key in shapes if key not in update.arrays]
    extra = [key for key in keys if key not in shapes]
    if missing or extra:
        raise UpdateMismatchError(
            f"site {update.site}: arrays differ from the current model "
            f"(missing keys {missing}, unexpected keys {extra})"
        )
    for key in keys:
        array = update.arrays[key].numpy()
        if array.shape != shapes[key]:
            raise UpdateMismatchError(
                f"site {update.site}: array {key!r} has shape {array.shape}, "
                f"the current model has {shapes[key]}"
            )
        if array.dtype.kind not in "biufc":
            raise UpdateMismatchError(
                f"site {update.site}: array {key!r} has non-numeric dtype {array.dtype}"
            )
        # A float32 update for a float64 model is a site training in float32
        # after Flower's FedAdam (which computes in float64); a complex one for
        # a real model is not an update of this model at all.
        if not np.can_cast(array.dtype, current[key].dtype, "same_kind"):
            raise UpdateMismatchError(
                f"site {update.site}: array {key!r} has dtype {array.dtype}, "
                f"the current model has {current[key].dtype}"
            )
        if array.dtype.kind in "fc" and not np.isfinite(array).all():
            raise NonFiniteUpdateError(
                f"site {update.site}: array {key!r} contains NaN or infinity"
            )


def checked_updates(
    server_round: int,
    current: ArrayRecord,
    updates: Sequence[Update],
    weight_key: str,
) -> list[Update]:
    """The updates in merge order (by site), after rejecting any malformed one."""
    if not updates:
        raise EmptyMergeError(f"round {server_round}: no updates to merge")
    ordered = sorted(updates, key=lambda update: update.site)
    arrays = dict(record_items(current))
    metric_keys = set(ordered[0].metrics) - {weight_key}
    for previous, update in zip([None, *ordered], ordered, strict=False):
        if previous is not None and previous.site == update.site:
            raise InvalidUpdateError(f"site {update.site} sent two updates")
        count = update.num_examples
        integral = isinstance(count, numbers.Integral) and not isinstance(count, bool)
        if not integral or count <= 0:
            raise InvalidUpdateError(
                f"site {update.site}: num_examples must be a positive int, "
                f"got {count!r}"
            )
        _check_metrics(update, weight_key)
        if set(update.metrics) - {weight_key} != metric_keys:
            raise InvalidUpdateError(
                f"site {update.site}: metrics {sorted(update.metrics)} differ from "
                f"site {ordered[0].site}'s {sorted(ordered[0].metrics)}"
            )
        _check_arrays(update, arrays)
    return ordered


def update_distance(
    current: Mapping[str, NDArray], update: Mapping[str, NDArray]
) -> tuple[float, float]:
    """||update - current||_2 and ||current||_2, each over all arrays together.

    Computed in float64 (complex128 for complex arrays), so float32 weights
    near their largest value (3e38) do not overflow; a distance too large
    even for float64 comes out as infinity. `update` has `current`'s keys.
    """
    moved = size = 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        for key, array in current.items():
            wide = np.complex128 if array.dtype.kind == "c" else np.float64
            base = np.asarray(array, dtype=wide)
            moved += _sum_of_squares(np.asarray(update[key], dtype=wide) - base)
            size += _sum_of_squares(base)
    return math.sqrt(moved), math.sqrt(size)


def _sum_of_squares(array: NDArray) -> float:
    magnitude = np.abs(array) if array.dtype.kind == "c" else array
    return float(np.square(magnitude).sum(dtype=np.float64))


def in_dtypes_of(model: ArrayRecord, record: ArrayRecord) -> ArrayRecord:
    """`record` with each array in `model`'s dtype for its key, where it can be.

    A site sends its update in the model's own dtypes (torch trains in
    float32 the float64 model Flower's FedAdam hands out), so a leader can
    refuse any other dtype outright. Arrays whose dtype does not cast within
    its kind (complex to real, float to int), or whose key the model lacks,
    are left as they are, for the leader to refuse.
    """
    target = {key: array.dtype for key, array in record_items(model)}
    arrays = {key: array.numpy() for key, array in record.items()}
    castable = {
        key
        for key, array in arrays.items()
        if key in target
        and array.dtype != target[key]
        and np.can_cast(array.dtype, target[key], "same_kind")
    }
    if not castable:
        return record
    return ArrayRecord(
        {
            key: Array(arrays[key].astype(target[key])) if key in castable else array
            for key, array in record.items()
        }
    )


# --- Flower replies ---------------------------------------------------------


def _reply(
    content: RecordDict, message_type: str, server_round: int, site: int
) -> Message:
    """A reply from site `site` (node id site + 1, as in `site_context`)."""
    request = instruction(
        RecordDict(),
        message_type,
        dst_node_id=site + 1,
        message_id=f"{message_type}-{server_round}-{site}",
    )
    return Message(content=content, reply_to=request)


def train_reply(
    server_round: int, update: Update, key_order: Iterable[str], weight_key: str
) -> Message:
    """The train reply Flower would get from the update's site.

    The arrays go in a new record, in the current model's key order: strategies
    that pop arrays (FedMedian, FedTrimmedAvg) empty that record, never the
    caller's, and the merged model's key order does not depend on the site.
    """
    arrays = ArrayRecord({key: update.arrays[key] for key in key_order})
    values = {key: float(value) for key, value in update.metrics.items()}
    metrics = MetricRecord({**values, weight_key: int(update.num_examples)})
    content = RecordDict({ARRAYS_KEY: arrays, METRICS_KEY: metrics})
    return _reply(content, TRAIN, server_round, update.site)


def evaluate_reply(
    server_round: int,
    site: int,
    metrics: Mapping[str, float],
    num_examples: int,
    weight_key: str,
) -> Message:
    """The evaluate reply Flower would get from `site`."""
    record = MetricRecord({**metrics, weight_key: num_examples})
    return _reply(RecordDict({METRICS_KEY: record}), EVALUATE, server_round, site)


def metrics_dict(record: MetricRecord | None) -> dict[str, Any]:
    """A MetricRecord as a plain dict (floats, or lists of floats)."""
    if record is None:
        return {}
    return {
        key: [float(v) for v in value] if isinstance(value, list) else float(value)
        for key, value in record.items()
    }
