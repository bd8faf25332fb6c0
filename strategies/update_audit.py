"""How far each update of a round went, for spotting poisoned sites.

Every verifier computes this beside the merge it redoes, from the same
inputs, so reports need no trust in the leader: per site, the norm of its
change (`update - current`) and its distance to the merged model, both as
L2 norms over every array in float64.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flwr.app import ArrayRecord

from swarmflower.strategies.robust import flatten, norm

if TYPE_CHECKING:
    from swarmflower.strategies.base import Update


@dataclass(frozen=True)
class UpdateAudit:
    """One site's update in one round."""

    norm: float  # of its change from the round's current model
    distance: float  # from the model the round merged


def audit_updates(
    current: ArrayRecord, updates: Sequence[Update], merged: ArrayRecord
) -> dict[int, UpdateAudit]:
    """Site index -> its update's norm and distance to `merged`."""
    start, _ = flatten(current)
    end, _ = flatten(merged)
    audits = {}
    for update in updates:
        point, _ = flatten(update.arrays)
        audits[update.site] = UpdateAudit(
            norm=norm(point - start),
            distance=norm(point - end),
        )
    return audits
