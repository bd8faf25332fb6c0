"""Property: with random leader delays and crashes, live replicas converge.

Each simulated round, some sites are down (their replicas miss the blocks)
and the elected leader may be late: then the first live backup seals with a
raised view, and the late leader still ships its own block, delivered after
or before the backup's in random order. Crashed sites come back and sync
from a random peer. At the end every live replica has the same head, and
every round has exactly one canonical (sealed) merge: the highest-view block
produced for it.
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledger_helpers import make_genesis, produce, site_keys

from swarmflower.ledger import Ledger

N_SITES = 4
ROUNDS = 50
KEYS = site_keys(N_SITES, "prop")
ADDRESSES = [k.public_key.to_checksum_address() for k in KEYS]
GENESIS = make_genesis(KEYS)

round_events = st.tuples(
    st.sets(st.integers(0, N_SITES - 1), max_size=N_SITES - 1),  # sites to crash
    st.booleans(),  # the leader is late
    st.integers(0, 2**32 - 1),  # seeds delivery order and sync peers
)


@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(round_events, min_size=ROUNDS, max_size=ROUNDS))
def test_live_replicas_converge_with_one_merge_per_round(events):
    replicas = [Ledger(GENESIS) for _ in range(N_SITES)]
    down: set[int] = set()
    produced: dict[int, list[tuple[int, bytes]]] = {}  # round -> (view, block)

    for crash, late, seed in events:
        rng = random.Random(seed)
        up = [i for i in range(N_SITES) if i not in down]
        # sites that were down come back and sync from a random up peer
        for i in sorted(down - crash):
            peer = replicas[rng.choice(up)] if up else None
            if peer is not None:
                replicas[i].sync(peer)
        reference = replicas[up[0]] if up else replicas[sorted(down - crash)[0]]
        round = reference.head().height + 1
        electees = reference.electees(round)
        # crash only if a live, electable site stays up to seal the round
        new_down = set(crash)
        if not any(ADDRESSES.index(a) not in new_down for a in electees):
            new_down = set()
        down = new_down
        up = [i for i in range(N_SITES) if i not in down]
        for i in up:  # everyone up is on the same head before the round
            replicas[i].sync(reference)
        views = [v for v, a in enumerate(electees) if ADDRESSES.index(a) in up]
        leader_up = views[0] == 0
        view = views[1] if late and leader_up and len(views) > 1 else views[0]
        contributors = [KEYS[i] for i in up]
        sealer = replicas[ADDRESSES.index(electees[view])]
        blocks = [(view, produce(sealer, KEYS, view=view, contributors=contributors))]
        if view > 0 and leader_up:  # the late leader ships its block anyway
            late_home = replicas[ADDRESSES.index(electees[0])]
            late_block = produce(
                late_home, KEYS, contributors=contributors, round=round, adopt=False
            )
            late_home.import_block(late_block)
            blocks.append((0, late_block))
        produced[round] = blocks
        for i in up:
            for _, data in rng.sample(blocks, len(blocks)):
                replicas[i].import_block(data)

    live = [replicas[i] for i in range(N_SITES) if i not in down]
    for a in live:  # one gossip pass over the live replicas
        for b in live:
            a.sync(b)
    heads = {r.head() for r in live}
    assert len(heads) == 1
    head = heads.pop()
    assert head.height == ROUNDS
    for replica in live:
        records = list(replica.rounds())
        assert [rec.round for rec in records] == list(range(1, ROUNDS + 1))
        for rec in records:
            best_view, _ = max(produced[rec.round], key=lambda vb: vb[0])
            assert rec.view == best_view
    # the crashed ones catch up to the same head
    for i in down:
        replicas[i].sync(live[0])
        assert replicas[i].head() == head
