"""Shared builders for the ledger tests: deterministic keys, genesis, rounds."""

from __future__ import annotations

from collections.abc import Sequence

from eth_keys import keys
from eth_utils import keccak

from swarmflower.ledger import (
    Commitment,
    FoundingSite,
    Genesis,
    Ledger,
    Reason,
    SwarmParams,
)

TIMEOUT = 30


def site_keys(n: int, tag: str = "site") -> list[keys.PrivateKey]:
    return [keys.PrivateKey(keccak(text=f"{tag}-{i}")) for i in range(n)]


def make_genesis(
    site_keys: Sequence[keys.PrivateKey], min_peers: int = 1, rounds: int = 100
) -> Genesis:
    return Genesis(
        sites=tuple(
            FoundingSite(k.public_key.to_checksum_address(), keccak(k.to_bytes()))
            for k in site_keys
        ),
        initial_model_hash=keccak(b"initial model"),
        params=SwarmParams(
            rounds=rounds, round_timeout=TIMEOUT, min_peers=min_peers, strategy="FedAvg"
        ),
        timestamp=1_700_000_000,
    )


def commitments(
    ledger: Ledger,
    site_keys: Sequence[keys.PrivateKey],
    round: int,
    parent: bytes | None = None,
) -> list[Commitment]:
    """Each site's commitment for `round`, trained on `parent` (default: the
    canonical block of round - 1)."""
    parent = ledger.block_hash(round - 1) if parent is None else parent
    return [
        Commitment.sign(
            k,
            ledger.swarm_id,
            round,
            keccak(text=f"update-{round}-{i}"),
            10 + i,
            parent,
        )
        for i, k in enumerate(site_keys)
    ]


def key_of(address: str, site_keys: Sequence[keys.PrivateKey]) -> keys.PrivateKey:
    for k in site_keys:
        if k.public_key.to_checksum_address() == address:
            return k
    raise KeyError(address)


def produce(
    ledger: Ledger,
    site_keys: Sequence[keys.PrivateKey],
    view: int = 0,
    contributors: Sequence[keys.PrivateKey] | None = None,
    adopt: bool = True,
    round: int | None = None,
    reason: Reason | None = None,
) -> bytes:
    """Seal the next round on `ledger` by its electee at `view`; return the bytes."""
    round = ledger.head().height + 1 if round is None else round
    proposer = key_of(ledger.proposer(round, view), site_keys)
    if reason is None:
        reason = Reason.NORMAL if view == 0 else Reason.LEADER_TIMEOUT
    parent_ts = (
        ledger.genesis.timestamp if round == 1 else ledger.round(round - 1).timestamp
    )
    made = ledger.seal_round if adopt else ledger.propose
    return made(
        proposer,
        round,
        keccak(text=f"model-{round}-{view}"),
        keccak(text=f"state-{round}"),
        commitments(
            ledger, contributors if contributors is not None else site_keys, round
        ),
        view=view,
        reason=reason,
        timestamp=parent_ts + 1 + view * TIMEOUT,
    )


def rebuild(
    data: bytes,
    key: keys.PrivateKey,
    transactions=None,
    **header_fields,
) -> bytes:
    """Re-seal a block with `key` after changing its header or transactions.

    This is what a malicious (or buggy) elected site could ship: a properly
    sealed block whose contents are wrong.
    """
    from eth.db.trie import make_trie_root_and_nodes

    from swarmflower.ledger.evm import EvmChain
    from swarmflower.ledger.seal import VANITY_BYTES, seal_header

    block = EvmChain.decode_block(data)
    if transactions is not None:
        root, _ = make_trie_root_and_nodes(transactions)
        header_fields["transaction_root"] = root
        block = block.copy(transactions=transactions)
    header = block.header.copy(
        extra_data=block.header.extra_data[:VANITY_BYTES], **header_fields
    )
    return EvmChain.encode_block(block.copy(header=seal_header(header, key)))


def transactions_of(data: bytes):
    from swarmflower.ledger.evm import EvmChain

    return EvmChain.decode_block(data).transactions


def block_hash_of(data: bytes) -> bytes:
    from swarmflower.ledger.evm import EvmChain

    return EvmChain.decode_block(data).header.hash


SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def malleate(signature: bytes) -> bytes:
    """The other valid (high-s) signature of the same message by the same key."""
    s = int.from_bytes(signature[32:64], "big")
    return (
        signature[:32]
        + (SECP256K1_N - s).to_bytes(32, "big")
        + bytes([1 - signature[64]])
    )
