"""Every replica converges: lost announcements, unannounced blocks, forks.

Site threads in one process (fast, deterministic faults); the same peer code
runs at real sites, where `simulations/experiments/chaos.py` kills real
processes.
"""

from swarm_helpers import heart_swarm

from swarmflower.faults import FaultPlan
from swarmflower.ledger import Reason
from swarmflower.strategies import arrays_hash


def _heads(result) -> set[bytes]:
    return {p.ledger.head().hash for p in result.sites}


def test_a_leader_dead_before_announcing_its_block_switches_to_the_backups():
    plan = FaultPlan(silent_seal_rounds=frozenset({2}), recover_after=1)
    result = heart_swarm(4, faults=plan, round_timeout=1)
    second = result.rounds[1]
    assert second.view == 1 and second.reason is Reason.LEADER_TIMEOUT
    ((crashed_name, _, why),) = result.crashes
    assert "not announced" in why
    crashed = next(p for p in result.sites if p.identity.name == crashed_name)
    # Back with the block it sealed and never announced, it said so and switched.
    (line,) = crashed.log.switched
    assert f"site {crashed_name}: on a losing fork at round 2" in line
    assert _heads(result) == {result.rounds[-1].block_hash}
    finals = {arrays_hash(p.model) for p in result.sites}
    assert finals == {result.rounds[-1].model_hash}


def test_lost_announcements_and_offers_heal_by_anti_entropy():
    plan = FaultPlan(drop_sends=0.3)
    result = heart_swarm(5, faults=plan, round_timeout=1)
    assert [r.round for r in result.rounds] == [1, 2, 3, 4, 5]
    assert _heads(result) == {result.rounds[-1].block_hash}
    finals = {arrays_hash(p.model) for p in result.sites}
    assert finals == {result.rounds[-1].model_hash}


def test_a_site_dead_mid_fetch_comes_back_and_converges():
    # In round 2 whichever site fetches updates it was not sent (a site that
    # is not among the round's electees) dies in the middle of that fetch.
    plan = FaultPlan(fetch_crashes=tuple((k, 2) for k in range(4)), recover_after=1)
    result = heart_swarm(4, faults=plan, round_timeout=1)
    assert result.crashes and all("mid-fetch" in c.why for c in result.crashes)
    assert [r.round for r in result.rounds] == [1, 2, 3, 4]
    assert _heads(result) == {result.rounds[-1].block_hash}
    finals = {arrays_hash(p.model) for p in result.sites}
    assert finals == {result.rounds[-1].model_hash}
