"""Leader election, as the Swarm contract defines it, asked on a parent state.

The contract holds a seed chain (seed_0 from the initial model hash, then
seed_r = keccak(seed_{r-1} || r) as round r is sealed) and the list of live
sites. The electee of view v for the next round is
live[(seed mod n + v) mod n]: view 0 leads, views 1, 2, ... are the ordered
backups. Nothing a proposer chooses feeds the seed, so no site can steer the
election towards itself; a raised view retires the electees it skipped until
they contribute again. The contract also enforces this in `sealRound`, so a
replica that re-executes a block re-checks the election twice.
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
