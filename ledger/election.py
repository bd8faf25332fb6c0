"""Leader election, as the Swarm contract defines it, asked on a parent state.

The contract holds a seed chain (seed_0 from the initial model hash, then
seed_r = keccak(seed_{r-1} || r) as round r is sealed) and the list of live
sites. Rounds run in epochs of n rounds (n live sites): an epoch starts at
offset o = seed mod n, drawn when it starts, and its t-th round is led by
live[(o + t) mod n], so every live site leads once per epoch; views 1, 2, ...
are the next sites in that order, the ordered backups. A change to the live
list (a raised view retires the electees it skipped until they contribute
again; a site revived or enrolled) starts a new epoch. Nothing a proposer
chooses feeds the seed, so no site can steer the election towards itself,
and no one knows an epoch's order before it starts. The contract also
enforces this in `sealRound`, so a replica that re-executes a block
re-checks the election twice.
"""

from __future__ import annotations

from eth_utils import to_checksum_address

from .abc import ElectionAPI
from .evm import EvmChain

MAX_VIEW = 64  # the contract's bound on backups


class ContractElection(ElectionAPI):
    """Asks the contract (a view call) and remembers the answer per parent block."""

    def __init__(self, evm: EvmChain):
        self._evm = evm
        self._cache: dict[tuple[bytes, int], tuple[str, ...]] = {}

    def electees(self, parent_header, count: int) -> tuple[str, ...]:
        """Leader and `count - 1` backups of the round after `parent_header`.

        Importers ask only as far as the view they check: each electee costs
        the EVM a storage read.
        """
        count = min(count, MAX_VIEW)
        key = (parent_header.hash, count)
        found = self._cache.get(key)
        if found is None:
            (addresses,) = self._evm.call(parent_header, "electees", count)
            found = tuple(to_checksum_address(a) for a in addresses)
            self._cache[key] = found
        return found
