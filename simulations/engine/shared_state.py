"""What many simulated sites may share without changing what each one does.

A simulation of a thousand sites cannot give each its own store of every
update, nor check each offer and redo each merge once per site. These
objects keep one copy and one answer for all, while each site still holds
only what it received or fetched (`SiteStore`): a site that missed a round
must fetch the model, as at a real hospital. Checks and merges are pure
functions of their inputs, so a shared answer is the answer each site would
have computed (`SharedChecks`).
"""

from __future__ import annotations

from collections.abc import Sequence

from flwr.app import ArrayRecord

from swarmflower.codec import arrays_hash, content_hash
from swarmflower.ledger import RoundRecord
from swarmflower.model_store import ModelStoreAPI
from swarmflower.round_protocol import UpdateLimits
from swarmflower.site_core import Checks
from swarmflower.strategies import LeaderStrategy, MergeOutcome, Update
from swarmflower.transport.base import UpdateOffer


class SharedStore:
    """One copy of every array record and blob, by hash, for all sites."""

    def __init__(self) -> None:
        self.arrays: dict[bytes, ArrayRecord] = {}
        self.blobs: dict[bytes, bytes] = {}


class SiteStore(ModelStoreAPI):
    """One site's store: the digests it holds; the bytes, once, in a `SharedStore`."""

    def __init__(self, shared: SharedStore) -> None:
        self.shared = shared
        self.held: set[bytes] = set()

    def put_arrays(self, arrays: ArrayRecord, digest: bytes | None = None) -> bytes:
        digest = digest or arrays_hash(arrays)
        self.shared.arrays.setdefault(digest, arrays)
        self.held.add(digest)
        return digest

    def get_arrays(self, digest: bytes) -> ArrayRecord | None:
        return self.shared.arrays.get(digest) if digest in self.held else None

    def put_blob(self, blob: bytes) -> bytes:
        digest = content_hash(blob)
        self.shared.blobs.setdefault(digest, blob)
        self.held.add(digest)
        return digest

    def get_blob(self, digest: bytes) -> bytes | None:
        return self.shared.blobs.get(digest) if digest in self.held else None


class SharedChecks(Checks):
    """Offer checks and merge verdicts, computed once for every site.

    An offer's verdict depends on the offer and the model it is checked
    against (named by the block the checking site adopted); a merge's on the
    block alone (its parent fixes the model and state, its commitments the
    updates).
    """

    def __init__(self) -> None:
        self._offers: dict[
            tuple[bytes, bytes | None], tuple[UpdateOffer, tuple[bytes, str | None]]
        ] = {}
        self._merges: dict[bytes, MergeOutcome | bool] = {}

    def offer(
        self,
        offer: UpdateOffer,
        expected_index: int | None,
        model: ArrayRecord | None,
        model_block: bytes | None,
        swarm_id: bytes,
        limits: UpdateLimits,
    ) -> tuple[bytes, str | None]:
        key = (offer.commitment.signature, model_block)
        cached = self._offers.get(key)
        if cached is not None and cached[0] is offer:  # the very same message
            return cached[1]
        verdict = super().offer(
            offer, expected_index, model, model_block, swarm_id, limits
        )
        self._offers[key] = (offer, verdict)
        return verdict

    def known_merge(self, record: RoundRecord) -> MergeOutcome | None | bool:
        return self._merges.get(record.block_hash)

    def merge(
        self,
        strategy: LeaderStrategy,
        record: RoundRecord,
        model: ArrayRecord | None,
        state: bytes,
        updates: Sequence[Update],
    ) -> MergeOutcome | None:
        outcome = super().merge(strategy, record, model, state, updates)
        self._merges[record.block_hash] = outcome if outcome is not None else False
        return outcome

    def forget_offers(self, up_to_round: int) -> None:
        """Drop the verdicts (and the offers they hold) of rounds up to
        `up_to_round`: an offer of those rounds is only ever late now."""
        self._offers = {
            key: kept
            for key, kept in self._offers.items()
            if kept[0].round > up_to_round
        }


def forget_rounds(
    store: SharedStore, checks: Checks, records: Sequence[RoundRecord]
) -> None:
    """Free the updates of `records`' rounds, which every site is past.

    A site adopting a round whose parent it holds needs that round's updates
    (shared verdicts spare even that); a site further behind fetches the
    model. So the engine forgets a round's updates two rounds after it.
    """
    for record in records:
        for commitment in record.commitments:
            store.arrays.pop(commitment.update_hash, None)
    if isinstance(checks, SharedChecks) and records:
        checks.forget_offers(max(r.round for r in records))
