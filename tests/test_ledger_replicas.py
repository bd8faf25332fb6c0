"""Independent replicas agree, and refuse every kind of bad block."""

from __future__ import annotations

from dataclasses import replace

import pytest
from eth_keys import keys
from eth_utils import keccak
from ledger_helpers import (
    TIMEOUT,
    commitments,
    key_of,
    make_genesis,
    malleate,
    produce,
    rebuild,
    site_keys,
    transactions_of,
)

from swarmflower.ledger import (
    BadCommitmentSignature,
    BadRound,
    BadSeal,
    BadStateRoot,
    ImportOutcome,
    Ledger,
    LedgerStateError,
    MalformedBlock,
    Reason,
    ReplayedTransaction,
    UnknownParent,
    UnknownSite,
    WrongProposer,
)

KEYS = site_keys(5)
GENESIS = make_genesis(KEYS)


@pytest.fixture(scope="module")
def swarm():
    """Four replicas that sealed 12 rounds, each leader on its own replica."""
    replicas = [Ledger(GENESIS) for _ in range(4)]
    for _ in range(12):
        round = replicas[0].head().height + 1
        leader = replicas[0].proposer(round, 0)
        # the leader seals on "its" replica; the others import the bytes
        home = replicas[sum(map(ord, leader)) % 4]
        data = produce(home, KEYS)
        for replica in replicas:
            if replica is not home:
                assert replica.import_block(data) is ImportOutcome.ADOPTED
    return replicas


def test_replicas_agree_on_head_and_history(swarm):
    heads = {r.head() for r in swarm}
    assert len(heads) == 1 and heads.pop().height == 12
    histories = [[rec.block_hash for rec in r.rounds()] for r in swarm]
    assert all(h == histories[0] for h in histories)


def test_every_replica_computes_the_same_election(swarm):
    next_round = swarm[0].head().height + 1
    electees = {r.electees(next_round) for r in swarm}
    assert len(electees) == 1
    order = electees.pop()
    assert len(order) == len(KEYS) and len(set(order)) == len(KEYS)
    assert swarm[1].leader(next_round) == order[0]
    assert swarm[2].proposer(next_round, 2) == order[2]
    leaders = {swarm[0].round(r).leader for r in range(1, 13)}
    assert len(leaders) > 1  # the role rotates


def test_round_records_hold_what_was_sealed(swarm):
    rec = swarm[2].round(5)
    assert rec.round == 5 and rec.view == 0 and rec.reason is Reason.NORMAL
    assert rec.model_hash == keccak(text="model-5-0")
    assert rec.state_hash == keccak(text="state-5")
    sites = [k.public_key.to_checksum_address() for k in KEYS]
    assert list(rec.contributors) == sorted(sites, key=lambda a: bytes.fromhex(a[2:]))
    for commitment in rec.commitments:
        commitment.verify(swarm[2].swarm_id)
    assert rec.leader == swarm[1].electees(5)[0]


def test_block_bytes_reimport_as_known(swarm):
    data = swarm[0].block_bytes(3)
    assert swarm[1].import_block(data) is ImportOutcome.KNOWN
    assert len(swarm[0].blocks_range(1, 13)) == 12


# -- rejections: each leaves the head unchanged ------------------------------


def _next_block(swarm, **kwargs) -> bytes:
    """A valid, unadopted block for the next round, sealed by its leader."""
    return produce(swarm[0], KEYS, adopt=False, **kwargs)


def _leader_key(swarm):
    round = swarm[0].head().height + 1
    return key_of(swarm[0].proposer(round, 0), KEYS)


def _rejected(swarm, data: bytes, error: type[Exception], match: str | None = None):
    before = [r.head() for r in swarm]
    for replica in swarm[1:]:
        with pytest.raises(error, match=match):
            replica.import_block(data)
    assert [r.head() for r in swarm] == before


def test_valid_next_block_is_accepted_control(swarm):
    """The tampering tests below start from this block, which is valid."""
    fresh = [Ledger(GENESIS) for _ in range(2)]
    for height in range(1, 13):
        for replica in fresh:
            replica.import_block(swarm[0].block_bytes(height))
    assert fresh[1].import_block(_next_block(swarm)) is ImportOutcome.ADOPTED


def test_flipped_seal_byte_is_rejected(swarm):
    data = bytearray(_next_block(swarm))
    header_extra = EvmChainless.extra_offset(bytes(data))
    data[header_extra + 40] ^= 0x01  # inside the signature
    _rejected(swarm, bytes(data), BadSeal)


def test_malleated_seal_is_rejected(swarm):
    """A high-s twin of the seal would be a second block with another hash."""
    from swarmflower.ledger.evm import EvmChain
    from swarmflower.ledger.seal import VANITY_BYTES

    block = EvmChain.decode_block(_next_block(swarm))
    extra = block.header.extra_data
    twin = extra[:VANITY_BYTES] + malleate(extra[VANITY_BYTES:])
    data = EvmChain.encode_block(block.copy(header=block.header.copy(extra_data=twin)))
    _rejected(swarm, data, BadSeal, "low-s")


def test_malleated_commitment_signature_is_rejected(swarm):
    round = swarm[0].head().height + 1
    signed = commitments(swarm[0], KEYS, round)
    twin = replace(signed[0], signature=malleate(signed[0].signature))
    data = swarm[0].propose(
        _leader_key(swarm),
        round,
        keccak(b"m"),
        keccak(b"s"),
        [twin, *signed[1:]],
        timestamp=swarm[0].round(round - 1).timestamp + 1,
    )
    _rejected(swarm, data, BadCommitmentSignature, "low-s")


def test_header_changed_after_sealing_is_rejected(swarm):
    from swarmflower.ledger.evm import EvmChain

    block = EvmChain.decode_block(_next_block(swarm))
    forged = block.copy(header=block.header.copy(timestamp=block.header.timestamp + 1))
    _rejected(swarm, EvmChain.encode_block(forged), BadSeal, "not by its coinbase")


def test_signer_other_than_the_elected_proposer_is_rejected(swarm):
    round = swarm[0].head().height + 1
    elected = swarm[0].electees(round)
    intruder = key_of(elected[-1], KEYS)  # enrolled, but the last backup
    data = rebuild(
        _next_block(swarm),
        intruder,
        coinbase=intruder.public_key.to_canonical_address(),
    )
    _rejected(swarm, data, WrongProposer, "the contract elected")


def test_unenrolled_signer_is_rejected(swarm):
    outsider = keys.PrivateKey(keccak(b"outsider"))
    data = rebuild(
        _next_block(swarm),
        outsider,
        coinbase=outsider.public_key.to_canonical_address(),
    )
    _rejected(swarm, data, WrongProposer)


def test_tampered_state_root_is_rejected(swarm):
    data = rebuild(_next_block(swarm), _leader_key(swarm), state_root=b"\x11" * 32)
    _rejected(swarm, data, BadStateRoot, "state root")


def test_forged_commitment_signature_is_rejected(swarm):
    round = swarm[0].head().height + 1
    honest = commitments(swarm[0], KEYS, round)
    victim = honest[1]
    forged = replace(
        victim,
        update_hash=keccak(b"poisoned update"),
        signature=KEYS[3].sign_msg_hash(keccak(b"x")).to_bytes(),
    )
    data = swarm[0].propose(
        _leader_key(swarm),
        round,
        keccak(b"m"),
        keccak(b"s"),
        [c for c in honest if c.site != victim.site] + [forged],
        timestamp=swarm[0].round(round - 1).timestamp + 1,
    )
    _rejected(swarm, data, BadCommitmentSignature, victim.site)
    # the leader's own replica refuses it too: seal_round adopts nothing
    with pytest.raises(BadCommitmentSignature):
        swarm[0].import_block(data)


def test_commitment_for_another_round_is_rejected(swarm):
    round = swarm[0].head().height + 1
    # valid signatures on the right parent, but for the previous round
    stale = commitments(
        swarm[0], KEYS, round - 1, parent=swarm[0].block_hash(round - 1)
    )
    data = swarm[0].propose(
        _leader_key(swarm),
        round,
        keccak(b"m"),
        keccak(b"s"),
        stale,
        timestamp=swarm[0].round(round - 1).timestamp + 1,
    )
    _rejected(swarm, data, BadCommitmentSignature)


def test_commitment_from_unknown_site_is_rejected(swarm):
    round = swarm[0].head().height + 1
    stranger = keys.PrivateKey(keccak(b"stranger"))
    signed = commitments(swarm[0], KEYS[:2] + [stranger], round)
    data = swarm[0].propose(
        _leader_key(swarm),
        round,
        keccak(b"m"),
        keccak(b"s"),
        signed,
        timestamp=swarm[0].round(round - 1).timestamp + 1,
    )
    _rejected(swarm, data, UnknownSite, stranger.public_key.to_checksum_address())


def test_replayed_transaction_is_rejected(swarm):
    round = swarm[0].head().height + 1
    leader = swarm[0].proposer(round, 0)
    earlier = next(r for r in range(1, round) if swarm[0].round(r).leader == leader)
    old_tx = transactions_of(swarm[0].block_bytes(earlier))
    data = rebuild(_next_block(swarm), _leader_key(swarm), transactions=old_tx)
    _rejected(swarm, data, ReplayedTransaction, "already used")


def test_garbage_and_orphans_are_rejected(swarm):
    _rejected(swarm, b"\xc0not a block", MalformedBlock)
    orphan = rebuild(_next_block(swarm), _leader_key(swarm), parent_hash=b"\x22" * 32)
    _rejected(swarm, orphan, UnknownParent)


def test_backup_cannot_seal_before_the_timeout(swarm):
    data = _next_block(swarm, view=1)
    early = rebuild(
        data,
        key_of(swarm[0].proposer(swarm[0].head().height + 1, 1), KEYS),
        timestamp=swarm[0].round(12).timestamp + TIMEOUT - 1,
    )
    _rejected(swarm, early, BadRound, "before its leader's timeout")


def test_normal_reason_with_raised_view_is_rejected(swarm):
    round = swarm[0].head().height + 1
    with pytest.raises(LedgerStateError):
        swarm[0].propose(KEYS[0], round + 1, keccak(b"m"), keccak(b"s"), [])
    backup = key_of(swarm[0].proposer(round, 1), KEYS)
    with pytest.raises(BadRound, match="reason"):
        swarm[0].propose(
            backup,
            round,
            keccak(b"m"),
            keccak(b"s"),
            commitments(swarm[0], KEYS, round),
            view=1,
            reason=Reason.NORMAL,
            timestamp=swarm[0].round(round - 1).timestamp + TIMEOUT + 1,
        )


class EvmChainless:
    """Locate the seal inside raw block bytes without trusting the decoder."""

    @staticmethod
    def extra_offset(data: bytes) -> int:
        from swarmflower.ledger.evm import EvmChain

        extra = EvmChain.decode_block(data).header.extra_data
        return data.index(extra)
