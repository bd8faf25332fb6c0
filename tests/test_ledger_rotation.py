"""Fair rotation: in every epoch each live site leads once, from a seeded start."""

from __future__ import annotations

from collections import Counter

from ledger_helpers import make_genesis, produce, site_keys

from swarmflower.ledger import Ledger


def _leaders(ledger: Ledger, first: int, last: int) -> list[str]:
    return [ledger.round(r).leader for r in range(first, last + 1)]


def test_three_sites_nine_rounds_each_leads_three_times():
    keys = site_keys(3, "rot3")
    ledger = Ledger(make_genesis(keys))
    for _ in range(9):
        produce(ledger, keys)
    leaders = _leaders(ledger, 1, 9)
    assert sorted(Counter(leaders).values()) == [3, 3, 3]
    for epoch in range(3):  # every epoch of 3 rounds has 3 different leaders
        assert len(set(leaders[3 * epoch : 3 * epoch + 3])) == 3


def test_each_of_seven_sites_leads_once_per_epoch_from_a_seeded_start():
    keys = site_keys(7, "rot7")
    ledger = Ledger(make_genesis(keys))
    for _ in range(21):
        produce(ledger, keys)
    leaders = _leaders(ledger, 1, 21)
    epochs = [leaders[k : k + 7] for k in range(0, 21, 7)]
    assert all(len(set(epoch)) == 7 for epoch in epochs)
    # the epochs start at seeded places, so they are not one fixed cycle
    assert len({epoch[0] for epoch in epochs}) > 1 or epochs[0] != epochs[1]


def test_a_backup_seal_retires_the_skipped_leader_and_starts_a_new_epoch():
    keys = site_keys(4, "rot4")
    ledger = Ledger(make_genesis(keys))
    produce(ledger, keys)
    skipped = ledger.leader(2)
    live = [k for k in keys if k.public_key.to_checksum_address() != skipped]
    produce(ledger, keys, view=1, contributors=live)  # round 2's leader is silent
    assert ledger.round(2).leader != skipped
    for _ in range(6):
        produce(ledger, keys, contributors=live)
    leaders = _leaders(ledger, 3, 8)
    assert skipped not in leaders  # retired until it contributes again
    assert len(set(leaders[:3])) == 3 and len(set(leaders[3:])) == 3
