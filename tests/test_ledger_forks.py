"""Failover, fork choice, sync and enrollment across independent replicas."""

from __future__ import annotations

import itertools

import pytest
from eth_keys import keys
from eth_utils import keccak
from ledger_helpers import (
    TIMEOUT,
    block_hash_of,
    commitments,
    key_of,
    make_genesis,
    produce,
    site_keys,
)

from swarmflower.ledger import (
    BadCommitmentSignature,
    BadRound,
    Commitment,
    Enrollment,
    FutureBlock,
    ImportOutcome,
    Ledger,
    LedgerStateError,
    Reason,
    UnknownSite,
)
from swarmflower.ledger.commitments import sign_leave

KEYS = site_keys(4, "forks")
GENESIS = make_genesis(KEYS)


def _swarm(n: int = 4, rounds: int = 3) -> list[Ledger]:
    replicas = [Ledger(GENESIS) for _ in range(n)]
    for _ in range(rounds):
        data = produce(replicas[0], KEYS)
        for replica in replicas[1:]:
            replica.import_block(data)
    return replicas


def test_backup_seals_after_leader_timeout_and_the_leader_loses_liveness():
    replicas = _swarm()
    round = replicas[0].head().height + 1
    leader, backup = replicas[0].electees(round, 2)
    alive = [k for k in KEYS if k.public_key.to_checksum_address() != leader]
    data = produce(replicas[1], KEYS, view=1, contributors=alive)
    for replica in replicas:
        replica.import_block(data)
    assert len({r.head() for r in replicas}) == 1
    rec = replicas[3].round(round)
    assert (rec.view, rec.reason, rec.leader) == (1, Reason.LEADER_TIMEOUT, backup)
    assert rec.skipped == (leader,)
    assert leader not in replicas[2].electees(round + 1)  # not electable while out
    # it comes back: its next commitment revives it
    data = produce(replicas[0], KEYS)
    for replica in replicas[1:]:
        replica.import_block(data)
    assert replicas[2].round(round + 1).revived == (leader,)
    assert leader in replicas[2].electees(round + 2)


def _competing(replicas, round):
    """The late leader's view-0 block and its backup's view-1 block for `round`."""
    late = produce(replicas[0], KEYS, adopt=False)
    takeover = produce(replicas[0], KEYS, view=1, adopt=False)
    return late, takeover


@pytest.mark.parametrize("order", list(itertools.permutations(range(2))))
def test_late_leader_block_loses_in_either_order(order):
    replicas = _swarm(2)
    round = replicas[0].head().height + 1
    blocks = _competing(replicas, round)
    outcomes = [replicas[1].import_block(blocks[i]) for i in order]
    assert replicas[1].round(round).view == 1
    assert replicas[1].round(round).reason is Reason.LEADER_TIMEOUT
    assert outcomes[-1] is (
        ImportOutcome.ADOPTED if order[-1] == 1 else ImportOutcome.SIDE
    )
    assert replicas[1].verify() == replicas[1].head()  # side block re-validated too


def test_bad_merge_redo_replaces_the_leader_block_and_its_descendants():
    replicas = _swarm()
    round = replicas[0].head().height + 1
    bad = produce(replicas[0], KEYS)  # the leader's (bad) merge, seen by all
    for replica in replicas[1:]:
        replica.import_block(bad)
    # and a round built on it by a minority (honest sites check the merge
    # before they train on a block, so they never build on a bad one)
    on_top = produce(replicas[0], KEYS, contributors=KEYS[:1])
    for replica in replicas[1:]:
        replica.import_block(on_top)
    # a site finds the merge mismatch; the next backup redoes round `round`
    redo = produce(
        replicas[2], KEYS, view=1, round=round, reason=Reason.BAD_MERGE, adopt=False
    )
    for replica in replicas:
        assert replica.import_block(redo) is ImportOutcome.ADOPTED
    assert {r.head().height for r in replicas} == {round}
    rec = replicas[1].round(round)
    assert (rec.view, rec.reason) == (1, Reason.BAD_MERGE)
    assert rec.skipped == (replicas[1].electees(round, 1)[0],)


def test_a_block_a_majority_built_on_is_final_against_higher_views():
    """A site cut off from the others seals the round as a backup (view 1)
    while the majority goes on at view 0 and builds on its own block: when
    they meet again, the majority's round stands, in either order."""
    replicas = _swarm(2)
    majority_side, cut_side = replicas
    round = majority_side.head().height + 1
    backup = produce(cut_side, KEYS, view=1, adopt=False)
    own = produce(majority_side, KEYS)
    assert not majority_side.is_final(majority_side.head().hash)
    built_on = produce(majority_side, KEYS, contributors=KEYS[:3])  # 3 of 4
    assert majority_side.is_final(majority_side.block_hash(round))
    assert majority_side.import_block(backup) is ImportOutcome.SIDE
    assert majority_side.round(round).view == 0
    cut_side.import_block(backup)
    assert cut_side.round(round).view == 1
    cut_side.import_block(own)  # the higher view wins while nothing is final
    assert cut_side.round(round).view == 1
    assert cut_side.import_block(built_on) is ImportOutcome.ADOPTED
    assert cut_side.head() == majority_side.head()
    assert cut_side.final_round() == majority_side.final_round() == round
    # two of four sites do not make a majority: no finality
    fresh = _swarm(1)[0]
    produce(fresh, KEYS)
    produce(fresh, KEYS, contributors=KEYS[:2])
    assert not fresh.is_final(fresh.block_hash(fresh.head().height - 1))
    assert fresh.final_round() == fresh.head().height - 2


def test_ledger_verify_refuses_a_replica_that_gave_up_a_final_round():
    """A fork choice that dropped a round a majority built on would be a
    bug; `final_round` (and `ledger verify`) says so instead of passing."""
    (replica,) = _swarm(1)
    produce(replica, KEYS)
    produce(replica, KEYS)  # all four built on the round before: final
    final = replica.final_round()
    assert final == replica.head().height - 1
    replica._canonical[final] = keccak(b"another block")  # as a broken rule would
    with pytest.raises(LedgerStateError, match=f"round {final}: block 0x.* is final"):
        replica.final_round()


def test_a_commitment_is_sealed_only_on_the_block_it_was_trained_on():
    (replica,) = _swarm(1)
    round = replica.head().height + 1
    elsewhere = commitments(replica, KEYS, round, parent=keccak(b"another block"))
    leader = key_of(replica.proposer(round, 0), KEYS)
    data = replica.propose(
        leader,
        round,
        keccak(b"m"),
        keccak(b"s"),
        elsewhere,
        timestamp=replica.round(round - 1).timestamp + 1,
    )
    with pytest.raises(BadRound, match="was trained on block"):
        replica.import_block(data)
    with pytest.raises(LedgerStateError, match="another block"):
        replica.submit_commitment(elsewhere[0])


def test_equal_views_resolve_to_the_lowest_hash_in_any_order():
    replicas = _swarm(3)
    round = replicas[0].head().height + 1
    leader = key_of(replicas[0].proposer(round, 0), KEYS)
    ts = replicas[0].round(round - 1).timestamp + 1
    variants = [
        replicas[0].propose(
            leader,
            round,
            keccak(bytes([i])),
            keccak(b"s"),
            commitments(replicas[0], KEYS, round),
            timestamp=ts,
        )
        for i in range(3)
    ]
    heads = set()
    for replica, order in zip(replicas, [(0, 1, 2), (2, 1, 0), (1, 2, 0)], strict=True):
        for i in order:
            replica.import_block(variants[i])
        heads.add(replica.head())
    assert len(heads) == 1
    hashes = [block_hash_of(v) for v in variants]
    assert heads.pop().hash == min(hashes)


def test_replica_behind_syncs_a_range_from_a_peer():
    replicas = _swarm(2, rounds=2)
    laggard = Ledger(GENESIS)
    for _ in range(8):
        data = produce(replicas[0], KEYS)
        replicas[1].import_block(data)
    assert laggard.sync(replicas[1]) == 10
    assert laggard.head() == replicas[0].head()
    assert laggard.sync(replicas[0]) == 0


def test_replica_on_a_losing_fork_syncs_to_the_winner():
    replicas = _swarm(2)
    round = replicas[0].head().height + 1
    late, takeover = _competing(replicas, round)
    loser = Ledger(GENESIS)
    loser.sync(replicas[0])
    loser.import_block(late)  # it saw only the late leader's block
    replicas[1].import_block(takeover)
    for _ in range(3):
        produce(replicas[1], KEYS)
    assert loser.head().height == round
    loser.sync(replicas[1])
    assert loser.head() == replicas[1].head()
    assert loser.round(round).view == 1


def test_enrollment_at_run_time_admits_a_new_site():
    replicas = _swarm(2)
    newcomer = keys.PrivateKey(keccak(b"newcomer"))
    address = newcomer.public_key.to_checksum_address()
    round = replicas[0].head().height + 1
    early = commitments(replicas[0], [newcomer], round)[0]
    with pytest.raises(UnknownSite):
        replicas[0].submit_commitment(early)
    leader = key_of(replicas[0].proposer(round, 0), KEYS)
    replicas[0].enroll(Enrollment(address, keccak(b"cert"), "10.213.7.9:7100"))
    data = replicas[0].seal_round(
        leader,
        round,
        keccak(b"m"),
        keccak(b"s"),
        commitments(replicas[0], KEYS, round),
        timestamp=replicas[0].round(round - 1).timestamp + 1,
    )
    assert replicas[0].pending_enrollments() == ()
    with pytest.raises(LedgerStateError, match="already enrolled"):
        replicas[0].enroll(Enrollment(address, keccak(b"cert")))
    replicas[1].import_block(data)
    assert replicas[1].round(round).enrolled[0].address == address
    assert replicas[1].is_enrolled(address)
    membership = replicas[1].membership()
    assert membership.members[-1] == address
    assert membership.dial == ((address, "10.213.7.9:7100"),)
    # a member from now on, electable only once it has contributed
    assert address not in replicas[1].electees(round + 1)
    everyone = [*KEYS, newcomer]
    block = produce(replicas[0], everyone, contributors=everyone)
    replicas[1].import_block(block)
    assert address in replicas[1].round(round + 1).contributors
    assert address in replicas[1].round(round + 1).revived
    assert address in replicas[1].electees(round + 2)


def test_a_site_leaves_by_its_own_signed_request():
    replicas = _swarm(2)
    leaver = KEYS[-1]
    address = leaver.public_key.to_checksum_address()
    swarm_id = replicas[0].swarm_id
    with pytest.raises(BadCommitmentSignature, match="signed by someone else"):
        replicas[0].request_leave(address, sign_leave(KEYS[0], swarm_id))
    replicas[0].request_leave(address, sign_leave(leaver, swarm_id))
    round = replicas[0].head().height + 1
    data = replicas[0].seal_round(
        key_of(replicas[0].proposer(round, 0), KEYS),
        round,
        keccak(b"m"),
        keccak(b"s"),
        commitments(replicas[0], KEYS, round),
        timestamp=replicas[0].round(round - 1).timestamp + 1,
    )
    replicas[1].import_block(data)
    assert replicas[1].round(round).left == (address,)
    assert not replicas[1].is_enrolled(address)
    assert address not in replicas[1].membership().members
    assert address in replicas[1].membership().roster  # its index stays taken
    assert address not in replicas[1].electees(round + 1)
    assert replicas[0].pending_leaves() == ()
    late = commitments(replicas[1], [leaver], round + 1)[0]
    with pytest.raises(UnknownSite):
        replicas[1].submit_commitment(late)


def test_a_leader_cannot_expel_a_site_without_its_signature():
    (replica,) = _swarm(1)
    round = replica.head().height + 1
    leader = key_of(replica.proposer(round, 0), KEYS)
    victim = next(
        a
        for k in KEYS
        if (a := k.public_key.to_checksum_address())
        != leader.public_key.to_checksum_address()
    )
    forged = sign_leave(leader, replica.swarm_id)  # the leader's own signature
    data = replica.propose(
        leader,
        round,
        keccak(b"m"),
        keccak(b"s"),
        commitments(replica, KEYS, round),
        timestamp=replica.round(round - 1).timestamp + 1,
        leaves=[(victim, forged)],
    )
    with pytest.raises(BadCommitmentSignature, match=f"leave of {victim}"):
        replica.import_block(data)
    assert replica.is_enrolled(victim)


def test_commitment_pool_checks_and_feeds_the_seal():
    (replica,) = _swarm(1)
    round = replica.head().height + 1
    for commitment in commitments(replica, KEYS[:2], round):
        replica.submit_commitment(commitment)
    mine = replica.commit(KEYS[2], round, keccak(b"my update"), 7)
    mine.verify(replica.swarm_id)
    forged = Commitment(
        site=KEYS[3].public_key.to_checksum_address(),
        round=round,
        update_hash=keccak(b"u"),
        num_examples=1,
        signature=KEYS[0].sign_msg_hash(keccak(b"u")).to_bytes(),
        parent=replica.head().hash,
    )
    with pytest.raises(BadCommitmentSignature):
        replica.submit_commitment(forged)
    leader = key_of(replica.proposer(round, 0), KEYS)
    replica.seal_round(
        leader,
        round,
        keccak(b"m"),
        keccak(b"s"),
        timestamp=replica.round(round - 1).timestamp + 1,
    )
    assert len(replica.round(round).commitments) == 3
    assert replica.pending_commitments() == ()


def test_replicas_owned_by_threads_converge():
    """One owner thread per replica, as in-process swarms run them."""
    from concurrent.futures import ThreadPoolExecutor

    source = _swarm(1, rounds=0)[0]
    blocks = [produce(source, KEYS) for _ in range(8)]

    def own_replica(_: int) -> bytes:
        replica = Ledger(GENESIS)
        for data in blocks:
            replica.import_block(data)
        return replica.head().hash

    with ThreadPoolExecutor(max_workers=4) as pool:
        heads = set(pool.map(own_replica, range(4)))
    assert heads == {source.head().hash}


def test_backup_block_stamped_ahead_of_the_clock_waits_for_it():
    """A backup cannot claim its leader timed out before the timeout passed."""
    replicas = _swarm(2)
    parent_ts = replicas[0].round(3).timestamp
    now = [parent_ts + 5.0]
    replicas[1].clock = lambda: now[0]
    block = produce(replicas[0], KEYS, view=1, adopt=False)  # stamped parent + 31
    with pytest.raises(FutureBlock, match="ahead of this replica's clock"):
        replicas[1].import_block(block)
    assert replicas[1].head().height == 3
    now[0] = parent_ts + TIMEOUT + 1.0
    assert replicas[1].import_block(block) is ImportOutcome.ADOPTED
