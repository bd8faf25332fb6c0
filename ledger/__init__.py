"""The embedded py-evm ledger that every site replicates and that elects leaders.

Use `Ledger` (one replica), the plain records in `records`, `Commitment` for
a site's signed update, and the typed errors in `errors`.
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
    Reason,
    RoundRecord,
    SwarmParams,
)
from .replica import Ledger

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
    "Reason",
    "ReplayedTransaction",
    "RoundRecord",
    "StoreError",
    "SwarmParams",
    "UnknownParent",
    "UnknownSite",
    "WrongProposer",
]
