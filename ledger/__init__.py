"""The embedded py-evm ledger that every site replicates and that elects leaders.

One round, as the ledger sees it::

    ledger = Ledger.create(genesis, "site/ledger")      # or Ledger.open(...)
    leader, *backups = ledger.electees(round)           # once round-1 is sealed
    c = ledger.commit(site_key, round, update_hash, n)   # ship c to the leader
    leader_replica.submit_commitment(c)                  # checked on arrival
    data = leader_replica.seal_round(leader_key, round, model_hash, state_hash)
    other.import_block(data)                             # InvalidBlock if refused
    other.sync(peer)                                     # catch up from any peer

A backup that waited `round_timeout * view` seconds seals the same round with
`view=v, reason=Reason.LEADER_TIMEOUT` (or `BAD_MERGE`, replacing a sealed
round); the higher view wins at that height, ties by lowest block hash.
"""

from .abc import BlockSourceAPI, BlockStoreAPI, LedgerAPI
from .commitments import Commitment
from .errors import (
    BadCommitmentSignature,
    BadRound,
    BadSeal,
    BadStateRoot,
    FutureBlock,
    InvalidBlock,
    LedgerError,
    LedgerStateError,
    MalformedBlock,
    ReplayedTransaction,
    StoreError,
    UnknownParent,
    UnknownSite,
    WrongProposer,
)
from .records import (
    BlockRef,
    Enrollment,
    FoundingSite,
    Genesis,
    ImportOutcome,
    Membership,
    Reason,
    RoundRecord,
    SwarmParams,
)
from .replica import Ledger
from .site_view import SharedReplica, SiteView

__all__ = [
    "BadCommitmentSignature",
    "BadRound",
    "BadSeal",
    "BadStateRoot",
    "BlockRef",
    "BlockSourceAPI",
    "BlockStoreAPI",
    "Commitment",
    "Enrollment",
    "FoundingSite",
    "FutureBlock",
    "Genesis",
    "ImportOutcome",
    "InvalidBlock",
    "Ledger",
    "LedgerAPI",
    "LedgerError",
    "LedgerStateError",
    "MalformedBlock",
    "Membership",
    "Reason",
    "ReplayedTransaction",
    "RoundRecord",
    "SharedReplica",
    "SiteView",
    "StoreError",
    "SwarmParams",
    "UnknownParent",
    "UnknownSite",
    "WrongProposer",
]
