"""The round's rules as plain functions, shared by every engine.

A `SwarmPeer` thread (one site, one replica) and a Ray site host (many
virtual sites sharing one replica) train, sign, check updates, merge, and
verify a sealed merge with exactly these functions, so both engines play the
same protocol: only the pacing and the wires differ.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from flwr.app import Array, ArrayRecord, Context

from swarmflower.codec import arrays_hash, content_hash, encode_ndarrays, record_items
from swarmflower.flower_messages import TRAIN, model_instruction
from swarmflower.identity import SiteIdentity
from swarmflower.ledger import Commitment, InvalidBlock, RoundRecord, SwarmParams
from swarmflower.ledger.records import DEFAULT_MAX_EXAMPLES, DEFAULT_MAX_UPDATE_RATIO
from swarmflower.strategies import LeaderStrategy, MergeOutcome, Update
from swarmflower.strategies.helpers import in_dtypes_of, update_distance
from swarmflower.transport.base import UpdateOffer


@dataclass(frozen=True)
class UpdateLimits:
    """How much one site's update may weigh and move the model.

    Fixed at genesis (`SwarmParams`), so every site refuses the same updates.
    """

    max_examples: int = DEFAULT_MAX_EXAMPLES
    max_update_ratio: float = DEFAULT_MAX_UPDATE_RATIO

    @classmethod
    def from_params(cls, params: SwarmParams) -> UpdateLimits:
        return cls(params.max_examples, params.max_update_ratio)


DEFAULT_LIMITS = UpdateLimits()


@dataclass(frozen=True)
class LeaderMerge:
    """The leader's merge, the offers in it, and the sites the merge refused.

    The leader seals the commitments of `merged` only. `outcome` is None when
    nothing could be merged (then there is nothing to seal).
    """

    outcome: MergeOutcome | None
    merged: tuple[UpdateOffer, ...]
    refused: tuple[tuple[int, str], ...]  # (site index, reason), by site


class LocalUpdate(NamedTuple):
    """What one site's training gives: its size, its arrays, and the train
    metrics its ClientApp replied with (numbers only; the app's own names).
    The metrics are the site's report, not part of the signed commitment."""

    num_examples: int
    arrays: ArrayRecord
    metrics: Mapping[str, float] | None = None


def train_site(
    client_app,
    context: Context,
    model: ArrayRecord,
    round: int,
    site_index: int,
    train_config: Mapping[str, object],
) -> LocalUpdate | None:
    """One site's local training through its ClientApp.

    The arrays come in the model's dtypes (see `in_dtypes_of`). None when the
    app replies with an error (the site then sits the round out).
    """
    message = model_instruction(
        model, TRAIN, round, dst_node_id=site_index + 1, config=dict(train_config)
    )
    reply = client_app(message, context)
    if reply.has_error():
        return None
    content = reply.content
    metrics = next(iter(content.metric_records.values()))
    arrays = next(iter(content.array_records.values()))
    numbers = {
        name: float(value)
        for name, value in metrics.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
    return LocalUpdate(
        int(metrics["num-examples"]), in_dtypes_of(model, arrays), numbers
    )


def sign_offer(
    identity: SiteIdentity,
    swarm_id: bytes,
    round: int,
    num_examples: int,
    update: ArrayRecord,
    update_hash: bytes | None = None,
    *,
    parent: bytes,
) -> UpdateOffer:
    """The update with the site's signed commitment to its hash, its size and
    `parent`, the block whose model it was trained on."""
    digest = arrays_hash(update) if update_hash is None else update_hash
    commitment = Commitment.sign(
        identity.key, swarm_id, round, digest, num_examples, parent
    )
    return UpdateOffer(round, commitment, update, identity.index)


def offer_problem(
    offer: UpdateOffer,
    expected_index: int | None,
    model: ArrayRecord | None,
    swarm_id: bytes,
    limits: UpdateLimits = DEFAULT_LIMITS,
) -> tuple[bytes, str | None]:
    """Hash an offered update once and say why it must be refused, if it must.

    `expected_index` is the swarm's index of the commitment's signer (None:
    not a site of the swarm). The arrays pass `update_problem` before the
    store or a merge sees them. Returns the update's hash, for the store
    (empty if the arrays cannot even be read and hashed).
    """
    commitment = offer.commitment
    try:
        items = record_items(offer.arrays)
        digest = content_hash(encode_ndarrays(items))
    except Exception as exc:  # a corrupt Array, or a dtype with no canonical bytes
        return b"", f"arrays cannot be read: {type(exc).__name__}: {exc}"
    if commitment.round != offer.round:
        return digest, "commitment is for another round"
    if expected_index is None:
        return digest, "signer is not a site of this swarm"
    if expected_index != offer.site_index:
        return digest, "site index does not match the signer"
    if digest != commitment.update_hash:
        return digest, "update does not match its commitment hash"
    problem = update_problem(model, items, commitment.num_examples, limits)
    if problem is not None:
        return digest, problem
    try:
        commitment.verify(swarm_id)
    except InvalidBlock as exc:
        return digest, str(exc)
    return digest, None


def update_problem(
    model: ArrayRecord | None,
    items: Sequence[tuple[str, np.ndarray]],
    num_examples: int,
    limits: UpdateLimits = DEFAULT_LIMITS,
) -> str | None:
    """Why one site's update must not be merged into `model`, if it must not.

    Everything a merge could choke on is refused here, at the door: other
    keys, shapes or dtypes than the model's (a complex update makes NumPy
    raise inside Flower's FedAvg), non-finite values, a weight outside
    1..max_examples (2^63 examples would outweigh every other site), and an
    update so far from the model that honest sites would overflow training
    from the merge. Without a model (a site not yet synced), only what needs
    no model is checked.
    """
    count = num_examples
    if not isinstance(count, int) or isinstance(count, bool):
        return f"num_examples {count!r} is not an integer"
    if not 1 <= count <= limits.max_examples:
        return (
            f"num_examples {count} is outside 1..max_examples ({limits.max_examples})"
        )
    for key, array in items:
        if array.dtype.kind not in "biufc":
            return f"array '{key}' has non-numeric dtype {array.dtype}"
        if not np.isfinite(array).all():
            return f"non-finite values in '{key}'"
    if model is None:
        return None
    expected = dict(record_items(model))
    found = dict(items)
    if found.keys() != expected.keys():
        missing = sorted(expected.keys() - found.keys())
        extra = sorted(found.keys() - expected.keys())
        return (
            f"arrays differ from the model's: missing keys {missing}, "
            f"unexpected keys {extra}"
        )
    for key, array in items:
        want = expected[key]
        if array.shape != want.shape:
            return f"array '{key}' has shape {array.shape}, the model has {want.shape}"
        if array.dtype != want.dtype:
            return f"array '{key}' has dtype {array.dtype}, the model has {want.dtype}"
    moved, size = update_distance(expected, found)
    bound = limits.max_update_ratio * max(size, 1.0)
    if not moved <= bound:
        return (
            f"update too far from the model: ||update - model|| = {moved:.3g} > "
            f"max_update_ratio {limits.max_update_ratio:g} x max(||model||, 1) "
            f"= {bound:.3g}"
        )
    return None


def as_update(offer: UpdateOffer) -> Update:
    return Update(
        site=offer.site_index,
        arrays=offer.arrays,
        num_examples=offer.commitment.num_examples,
    )


def leader_merge(
    strategy: LeaderStrategy,
    round: int,
    model: ArrayRecord | None,
    state: bytes,
    offers: Sequence[UpdateOffer],
    dishonest: bool = False,
) -> LeaderMerge:
    """The leader's merge of the offers it holds, in site order.

    One site's update never stops the leader: if the merge raises, each
    update is merged alone, in site order, and those that fail are refused;
    if the rest still fail together, they are added one by one, in site
    order, and each one that breaks the merge is refused. Any site redoing
    this gets the same split. `dishonest` (a fault drill) nudges the merged
    model so that it no longer matches the committed updates; every verifier
    must then refuse it.
    """
    ordered = sorted(offers, key=lambda o: o.site_index)
    outcome, _ = _try_merge(strategy, round, model, state, ordered)
    merged: list[UpdateOffer] = ordered
    refused: list[tuple[int, str]] = []
    if outcome is None:
        outcome, merged, refused = _isolate(strategy, round, model, state, ordered)
    if outcome is not None and dishonest:
        tampered = ArrayRecord(
            {key: Array(array.numpy() + 0.01) for key, array in outcome.arrays.items()}
        )
        outcome = MergeOutcome(
            tampered, outcome.state, outcome.state_hash, outcome.metrics
        )
    return LeaderMerge(outcome, tuple(merged), tuple(sorted(refused)))


def _try_merge(
    strategy: LeaderStrategy,
    round: int,
    model: ArrayRecord | None,
    state: bytes,
    offers: Sequence[UpdateOffer],
) -> tuple[MergeOutcome | None, str]:
    """The merge of `offers`, or None and why it failed (never an exception)."""
    try:
        return strategy.merge(round, model, [as_update(o) for o in offers], state), ""
    except Exception as exc:  # whatever the strategy or NumPy raise on an update
        return None, f"{type(exc).__name__}: {exc}"


def _isolate(
    strategy: LeaderStrategy,
    round: int,
    model: ArrayRecord | None,
    state: bytes,
    ordered: Sequence[UpdateOffer],
) -> tuple[MergeOutcome | None, list[UpdateOffer], list[tuple[int, str]]]:
    """Split offers whose merge failed into the mergeable and the refused."""
    refused, alone = [], []
    for offer in ordered:
        _, failure = _try_merge(strategy, round, model, state, [offer])
        if failure:
            refused.append((offer.site_index, f"merge fails on it alone: {failure}"))
        else:
            alone.append(offer)
    if refused and alone:
        outcome, _ = _try_merge(strategy, round, model, state, alone)
        if outcome is not None:
            return outcome, alone, refused
    outcome, kept = None, []
    for offer in alone:
        joined, failure = _try_merge(strategy, round, model, state, [*kept, offer])
        if joined is None:
            sites = [o.site_index for o in kept]
            refused.append(
                (offer.site_index, f"merge fails with sites {sites}: {failure}")
            )
        else:
            outcome, kept = joined, [*kept, offer]
    return outcome, kept, refused


def committed_updates(
    record: RoundRecord,
    held: Mapping[str, UpdateOffer],
    index_of: Mapping[str, int],
    fetch=None,
) -> list[Update] | None:
    """The updates behind a block's commitments, each checked against its hash.

    Offers in `held` were hashed against their own commitment on arrival;
    others come from `fetch(update_hash)` and are hashed here. None if any
    update cannot be had (or read: a corrupt one is not had either).
    """
    updates = []
    for commitment in record.commitments:
        offer = held.get(commitment.site)
        if offer and offer.commitment.update_hash == commitment.update_hash:
            arrays = offer.arrays
        else:
            arrays = fetch(commitment.update_hash) if fetch else None
            if arrays is None or hash_or_none(arrays) != commitment.update_hash:
                return None
        updates.append(
            Update(
                site=index_of[commitment.site],
                arrays=arrays,
                num_examples=commitment.num_examples,
            )
        )
    return sorted(updates, key=lambda u: u.site)


def hash_or_none(arrays: ArrayRecord) -> bytes | None:
    """The arrays' hash, or None if they cannot be hashed (corrupt, or no
    canonical bytes): such arrays are not had."""
    try:
        return arrays_hash(arrays)
    except Exception:  # arrays that do not decode, or have no canonical bytes
        return None


def verify_merge(
    strategy: LeaderStrategy,
    record: RoundRecord,
    model: ArrayRecord | None,
    state: bytes,
    updates: Sequence[Update],
) -> MergeOutcome | None:
    """Redo a sealed round's merge; the outcome if it matches the block, else None.

    A merge that raises on the committed updates is a mismatch too: the
    leader should have refused the update it fails on.
    """
    try:
        outcome = strategy.merge(record.round, model, list(updates), state)
    except Exception:  # the strategy's or NumPy's, on a committed update
        return None
    if (
        arrays_hash(outcome.arrays) != record.model_hash
        or outcome.state_hash != record.state_hash
    ):
        return None
    return outcome
