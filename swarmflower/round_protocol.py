"""The round's rules as plain functions, shared by every engine.

A `SwarmPeer` thread (one site, one replica) and a Ray site host (many
virtual sites sharing one replica) train, sign, check updates, merge, and
verify a sealed merge with exactly these functions, so both engines play the
same protocol: only the pacing and the wires differ.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from eth_utils import keccak
from flwr.app import Array, ArrayRecord, Context

from swarmflower.flower_messages import TRAIN, model_instruction
from swarmflower.identity import SiteIdentity
from swarmflower.ledger import Commitment, InvalidBlock, RoundRecord
from swarmflower.strategies import LeaderStrategy, MergeOutcome, Update
from swarmflower.strategies.helpers import arrays_hash, encode_ndarrays, record_items
from swarmflower.transport.base import UpdateOffer


def train_site(
    client_app,
    context: Context,
    model: ArrayRecord,
    round: int,
    site_index: int,
    train_config: Mapping[str, object],
) -> tuple[int, ArrayRecord] | None:
    """One site's local training through its ClientApp: (examples, arrays).

    None when the app replies with an error (the site then sits the round out).
    """
    message = model_instruction(
        model, TRAIN, round, dst_node_id=site_index + 1, config=dict(train_config)
    )
    reply = client_app(message, context)
    if reply.has_error():
        return None
    content = reply.content
    metrics = next(iter(content.metric_records.values()))
    return int(metrics["num-examples"]), next(iter(content.array_records.values()))


def sign_offer(
    identity: SiteIdentity,
    swarm_id: bytes,
    round: int,
    num_examples: int,
    update: ArrayRecord,
    update_hash: bytes | None = None,
) -> UpdateOffer:
    """The update with the site's signed commitment to its hash and size."""
    digest = arrays_hash(update) if update_hash is None else update_hash
    commitment = Commitment.sign(identity.key, swarm_id, round, digest, num_examples)
    return UpdateOffer(round, commitment, update, identity.index)


def offer_problem(
    offer: UpdateOffer,
    expected_index: int | None,
    model: ArrayRecord | None,
    swarm_id: bytes,
) -> tuple[bytes, str | None]:
    """Hash an offered update once and say why it must be refused, if it must.

    `expected_index` is the swarm's index of the commitment's signer (None:
    not a site of the swarm). Returns the update's hash, for the store.
    """
    commitment = offer.commitment
    items = record_items(offer.arrays)
    digest = keccak(encode_ndarrays(items))
    if commitment.round != offer.round:
        return digest, "commitment is for another round"
    if expected_index is None:
        return digest, "signer is not a site of this swarm"
    if expected_index != offer.site_index:
        return digest, "site index does not match the signer"
    if digest != commitment.update_hash:
        return digest, "update does not match its commitment hash"
    if (problem := unusable(model, items)) is not None:
        return digest, problem
    try:
        commitment.verify(swarm_id)
    except InvalidBlock as exc:
        return digest, str(exc)
    return digest, None


def unusable(
    model: ArrayRecord | None, items: Sequence[tuple[str, np.ndarray]]
) -> str | None:
    """Why an update cannot be merged with `model`, if it cannot."""
    if model is None:
        return None
    expected = {key: tuple(array.shape) for key, array in model.items()}
    found = {key: tuple(array.shape) for key, array in items}
    if found != expected:
        return f"model of the wrong shape: {found} instead of {expected}"
    for key, array in items:
        if not np.isfinite(array).all():
            return f"non-finite values in '{key}'"
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
) -> MergeOutcome:
    """The leader's merge of the offers it holds, in site order.

    `dishonest` (a fault drill) nudges the merged model so that it no longer
    matches the committed updates; every verifier must then refuse it.
    """
    ordered = sorted(offers, key=lambda o: o.site_index)
    outcome = strategy.merge(round, model, [as_update(o) for o in ordered], state)
    if not dishonest:
        return outcome
    tampered = ArrayRecord(
        {key: Array(array.numpy() + 0.01) for key, array in outcome.arrays.items()}
    )
    return MergeOutcome(tampered, outcome.state, outcome.state_hash, outcome.metrics)


def committed_updates(
    record: RoundRecord,
    held: Mapping[str, UpdateOffer],
    index_of: Mapping[str, int],
    fetch=None,
) -> list[Update] | None:
    """The updates behind a block's commitments, each checked against its hash.

    Offers in `held` were hashed against their own commitment on arrival;
    others come from `fetch(update_hash)` and are hashed here. None if any
    update cannot be had.
    """
    updates = []
    for commitment in record.commitments:
        offer = held.get(commitment.site)
        if offer and offer.commitment.update_hash == commitment.update_hash:
            arrays = offer.arrays
        else:
            arrays = fetch(commitment.update_hash) if fetch else None
            if arrays is None or arrays_hash(arrays) != commitment.update_hash:
                return None
        updates.append(
            Update(
                site=index_of[commitment.site],
                arrays=arrays,
                num_examples=commitment.num_examples,
            )
        )
    return sorted(updates, key=lambda u: u.site)


def verify_merge(
    strategy: LeaderStrategy,
    record: RoundRecord,
    model: ArrayRecord | None,
    state: bytes,
    updates: Sequence[Update],
) -> MergeOutcome | None:
    """Redo a sealed round's merge; the outcome if it matches the block, else None."""
    outcome = strategy.merge(record.round, model, list(updates), state)
    if (
        arrays_hash(outcome.arrays) != record.model_hash
        or outcome.state_hash != record.state_hash
    ):
        return None
    return outcome
