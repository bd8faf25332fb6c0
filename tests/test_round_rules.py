"""The round's timing rules, which every engine and the ledger share."""

from __future__ import annotations

from swarmflower.ledger import Reason
from swarmflower.round_rules import (
    backup_delay,
    default_update_wait,
    drawn_sites,
    earliest_timestamp,
    may_seal,
    seal_deadline,
    seal_reason,
    train_count,
)

TIMING = {"num_sites": 4, "update_wait": 8.0, "round_timeout": 10.0}


def test_the_leader_seals_when_all_are_in_or_the_wait_is_over():
    assert may_seal(0, updates_in=4, elapsed=0.1, **TIMING)
    assert not may_seal(0, updates_in=3, elapsed=7.9, **TIMING)
    assert may_seal(0, updates_in=3, elapsed=8.0, **TIMING)
    assert default_update_wait(10) == 8.0
    assert seal_deadline(0, 8.0, 10.0) == 8.0


def test_backup_v_waits_v_round_timeouts():
    assert backup_delay(2, 10.0) == 20.0 == seal_deadline(2, 8.0, 10.0)
    assert not may_seal(1, updates_in=4, elapsed=9.9, **TIMING)
    assert may_seal(1, updates_in=3, elapsed=10.0, **TIMING)
    assert not may_seal(2, updates_in=4, elapsed=19.0, **TIMING)


def test_why_a_proposer_seals():
    assert seal_reason(0, None) is Reason.NORMAL
    assert seal_reason(1, None) is Reason.LEADER_TIMEOUT
    assert seal_reason(1, object()) is Reason.BAD_MERGE  # the round's block refused


def test_timestamps_follow_the_parent():
    assert earliest_timestamp(100, 0, 10) == 101
    assert earliest_timestamp(100, 2, 10) == 120


def test_the_rules_import_first_without_a_cycle():
    """The ledger imports the rules; importing the rules first must work too."""
    import subprocess
    import sys

    for module in ("swarmflower.round_rules", "swarmflower.simulations.engine.timing"):
        done = subprocess.run(
            [sys.executable, "-c", f"import {module}"], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-500:]


def test_sites_drawn_to_train_follow_the_parent_block_only():
    sites = [f"0x{k:040x}" for k in range(10)]
    first = drawn_sites(b"\x01" * 32, 3, sites, 4)
    assert first is not None and len(first) == 4 and first <= set(sites)
    assert drawn_sites(b"\x01" * 32, 3, list(reversed(sites)), 4) == first
    others = {drawn_sites(bytes([k]) * 32, 3, sites, 4) for k in range(2, 12)}
    assert len(others) > 5  # another parent, another draw
    assert drawn_sites(b"\x01" * 32, 3, sites, 0) is None  # every site
    assert drawn_sites(b"\x01" * 32, 3, sites, 10) is None


def test_train_count_is_flowers_sample_size():
    assert train_count(5, 0.5, 2) == 2  # int(2.5) = 2
    assert train_count(10, 0.3, 2) == 3
    assert train_count(10, 0.1, 2) == 2  # at least min_train_nodes
    assert train_count(5, 0.5, 5) == 0  # every site: no draw
    assert train_count(5, 1.0, 2) == 0
