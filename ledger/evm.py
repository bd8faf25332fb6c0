"""py-evm behind one class: genesis, block building, re-execution, view calls.

Nothing outside this module imports `eth` (py-evm is archived upstream), so
replacing the engine touches one file. One owner thread per instance: py-evm
has no locks.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import rlp
from eth._utils.rlp import validate_imported_block_unchanged
from eth.chains.base import Chain
from eth.constants import BLANK_ROOT_HASH, ZERO_ADDRESS, ZERO_HASH32
from eth.db.atomic import AtomicDB
from eth.db.backends.memory import MemoryDB
from eth.exceptions import HeaderNotFound
from eth.vm.execution_context import ExecutionContext
from eth.vm.forks.cancun import CancunVM
from eth.vm.forks.cancun.blocks import CancunBlockHeader
from eth.vm.message import Message
from eth_abi import decode
from eth_keys.datatypes import PrivateKey
from eth_utils import ValidationError

from .contract import Artifact, load_artifact
from .errors import BadRound, BadStateRoot, InvalidBlock, MalformedBlock
from .seal import EXTRA_DATA_BYTES

CHAIN_ID = 0x5357  # "SW"; swarms are told apart by genesis hash, not chain id
CONTRACT_ADDRESS = bytes(18) + b"\x53\x57"
GAS_LIMIT = 1_000_000_000  # one round's calldata is large; fees are zero
CALL_GAS = 50_000_000


def revert_reason(computation) -> str:
    """The contract's `assert` message, decoded from the revert data."""
    data = computation.output
    if data[:4] == bytes.fromhex("08c379a0"):
        try:
            return decode(["string"], data[4:])[0]
        except Exception:  # eth-abi raises many decoding errors
            pass
    return repr(computation.error)


class SwarmVM(CancunVM):
    """Cancun rules with room for the proof-of-authority seal in extra_data."""

    extra_data_max_bytes = EXTRA_DATA_BYTES


SwarmChain = Chain.configure(
    __name__="SwarmChain", vm_configuration=((0, SwarmVM),), chain_id=CHAIN_ID
)


_MAX_SNAPSHOTS = 4
_SNAPSHOTS_LOCK = threading.Lock()
# genesis digest -> (genesis header, key-value contents of its fresh database)
_GENESIS_SNAPSHOTS: dict[bytes, tuple[Any, dict[bytes, bytes]]] = {}


class EvmChain:
    """A py-evm chain database holding every valid block this replica has seen."""

    def __init__(
        self, constructor_args: Sequence[Any], genesis_extra: bytes, timestamp: int
    ):
        self.artifact: Artifact = load_artifact()
        with _SNAPSHOTS_LOCK:
            cached = _GENESIS_SNAPSHOTS.get(genesis_extra)
        if cached is not None:
            # Same genesis already built in this process (many replicas per
            # process in tests and simulations): copy its database instead of
            # re-running a constructor that enrolls every founding site.
            self.genesis_header, snapshot = cached
            self._db = AtomicDB(MemoryDB(dict(snapshot)))
            self._chain = SwarmChain(self._db)
            return
        self._db = AtomicDB()
        state_root = self._deploy(constructor_args, timestamp)
        header = CancunBlockHeader(
            difficulty=0,
            block_number=0,
            gas_limit=GAS_LIMIT,
            timestamp=timestamp,
            extra_data=genesis_extra,
            state_root=state_root,
            base_fee_per_gas=0,
            withdrawals_root=BLANK_ROOT_HASH,
            blob_gas_used=0,
            excess_blob_gas=0,
            parent_beacon_block_root=ZERO_HASH32,
        )
        self._chain = SwarmChain.from_genesis_header(self._db, header)
        self.genesis_header = header
        snapshot = dict(self._db.wrapped_db.kv_store)
        with _SNAPSHOTS_LOCK:  # replicas of one process may start on many threads
            if len(_GENESIS_SNAPSHOTS) >= _MAX_SNAPSHOTS:
                _GENESIS_SNAPSHOTS.pop(next(iter(_GENESIS_SNAPSHOTS)))
            _GENESIS_SNAPSHOTS[genesis_extra] = (header, snapshot)

    def _deploy(self, constructor_args: Sequence[Any], timestamp: int) -> bytes:
        """Run the constructor straight into the genesis state; return its root."""
        context = ExecutionContext(
            coinbase=ZERO_ADDRESS,
            timestamp=timestamp,
            block_number=0,
            difficulty=0,
            mix_hash=ZERO_HASH32,
            gas_limit=GAS_LIMIT,
            prev_hashes=(),
            chain_id=CHAIN_ID,
            base_fee_per_gas=0,
            excess_blob_gas=0,
        )
        state = SwarmVM.get_state_class()(self._db, context, BLANK_ROOT_HASH)
        init_code = self.artifact.bytecode + self.artifact.constructor_args(
            *constructor_args
        )
        message = Message(
            gas=GAS_LIMIT,
            to=CONTRACT_ADDRESS,
            sender=ZERO_ADDRESS,
            value=0,
            data=b"",
            code=init_code,
            create_address=CONTRACT_ADDRESS,
        )
        tx_context = state.get_transaction_context_class()(
            gas_price=0, origin=ZERO_ADDRESS
        )
        # A plain message, not a create: genesis is no transaction, so the
        # EIP-3860 init-code cap (hit by ~700 founding sites) does not apply.
        computation = state.computation_class.apply_message(state, message, tx_context)
        if computation.is_error:
            raise ValueError(f"genesis constructor failed: {computation.error!r}")
        state.set_code(CONTRACT_ADDRESS, computation.output)
        state.persist()
        return state.state_root

    # -- headers and blocks -------------------------------------------------

    def header(self, block_hash: bytes):
        try:
            return self._chain.get_block_header_by_hash(block_hash)
        except HeaderNotFound:
            return None

    @staticmethod
    def decode_block(data: bytes):
        try:
            return rlp.decode(data, sedes=SwarmVM.get_block_class())
        except Exception as exc:  # rlp raises several unrelated types
            raise MalformedBlock(f"bytes do not decode to a block ({exc})") from exc

    @staticmethod
    def encode_block(block) -> bytes:
        return rlp.encode(block)

    def block_transactions(self, header) -> tuple:
        return self._chain.get_block_by_header(header).transactions

    def block_bytes(self, header) -> bytes:
        """A stored block's RLP bytes, rebuilt from its header and body tries.

        Executing a block already stores its transactions (calldata included)
        in the database, so replicas keep no second copy of the bytes.
        """
        return rlp.encode(self._chain.get_block_by_header(header))

    def nonce(self, header, address: bytes) -> int:
        return self._chain.get_vm(header).state.get_nonce(address)

    def call(self, header, function: str, *args: Any) -> tuple[Any, ...]:
        """Run a view function of the contract on the state after `header`."""
        return self._view(self._chain.get_vm(header), function, *args)

    def _view(self, vm, function: str, *args: Any) -> tuple[Any, ...]:
        fn = self.artifact.function(function)
        computation = vm.execute_bytecode(
            origin=ZERO_ADDRESS,
            gas_price=0,
            gas=CALL_GAS,
            to=CONTRACT_ADDRESS,
            sender=ZERO_ADDRESS,
            value=0,
            data=fn.encode_call(*args),
            code=self.artifact.runtime,
        )
        if computation.is_error:
            raise ValueError(f"view call {function} failed: {computation.error!r}")
        return fn.decode_result(computation.output)

    # -- producing ----------------------------------------------------------

    def seal_round_tx(self, key: PrivateKey, nonce: int, data: bytes):
        """The proposer's one transaction of a round: a call of sealRound."""
        builder = SwarmVM.get_transaction_builder()
        unsigned = builder.create_unsigned_transaction(
            nonce=nonce,
            gas_price=0,
            gas=GAS_LIMIT,
            to=CONTRACT_ADDRESS,
            value=0,
            data=data,
        )
        return unsigned.as_signed_transaction(key, chain_id=CHAIN_ID)

    def build(self, parent, coinbase: bytes, timestamp: int, extra_data: bytes, txs):
        """Execute `txs` on `parent` in one batch; return the unsealed block."""
        header = self._chain.create_header_from_parent(
            parent,
            coinbase=coinbase,
            timestamp=timestamp,
            extra_data=extra_data,
            gas_limit=GAS_LIMIT,
        )
        vm = self._chain.get_vm(header)
        new_header, receipts, computations = vm.apply_all_transactions(txs, header)
        for computation in computations:
            if computation.is_error:
                raise BadRound(f"sealRound reverted: {revert_reason(computation)}")
        block = vm.set_block_transactions_and_withdrawals(
            vm.get_block(), new_header, txs, receipts, withdrawals=[]
        )
        return vm.mine_block(block).block

    # -- importing ----------------------------------------------------------

    def execute(self, block, parent) -> None:
        """Re-execute `block` on `parent` and persist it; raise on any mismatch.

        A block whose round call reverted is refused, though the EVM would take it.
        """
        base = self._chain.create_header_from_parent(parent)
        vm = self._chain.get_vm(base.copy(gas_used=block.header.gas_used))
        try:
            result = vm.import_block(block)
        except ValidationError as exc:
            raise InvalidBlock(
                f"block #{block.number} does not execute: {exc}"
            ) from exc
        imported = result.block
        if imported.header.state_root != block.header.state_root:
            raise BadStateRoot(
                f"block #{block.number}: state root {block.header.state_root.hex()} "
                f"in the header, {imported.header.state_root.hex()} on re-execution"
            )
        try:
            validate_imported_block_unchanged(imported, block)
            self._chain.validate_block(block)
        except ValidationError as exc:
            raise InvalidBlock(f"block #{block.number} is invalid: {exc}") from exc
        (last_round,) = self._view(vm, "lastRound")
        if last_round != block.number:
            raise BadRound(f"block #{block.number}: its sealRound call reverted")
        # Headers and state suffice to execute children; the replica keeps the
        # block bytes itself, so py-evm need not store the body a second time.
        self._chain.chaindb.persist_header(block.header)
