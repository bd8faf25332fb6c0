"""Simulated time and availability: who makes the merge, and when it is sealed."""

import pytest

from swarmflower.faults import FaultPlan
from swarmflower.simulations.engine.availability import Availability
from swarmflower.simulations.engine.timing import (
    Heterogeneity,
    SiteProfile,
    seal_moment,
)

PACE = {"update_wait": 8.0, "round_timeout": 10.0}


def test_the_leader_seals_when_the_last_site_is_in():
    moment = seal_moment(
        {0: 1.0, 1: 2.5, 2: 0.5}, num_sites=3, min_peers=2, view=0, **PACE
    )
    assert (moment.at_s, moment.included) == (2.5, (0, 1, 2))


def test_a_missing_site_makes_the_leader_wait_until_update_wait():
    moment = seal_moment({0: 1.0, 1: 2.0}, num_sites=3, min_peers=2, view=0, **PACE)
    assert (moment.at_s, moment.included) == (8.0, (0, 1))


def test_a_straggler_past_update_wait_is_left_out():
    arrivals = {0: 1.0, 1: 2.0, 2: 9.5}
    moment = seal_moment(arrivals, num_sites=3, min_peers=2, view=0, **PACE)
    assert (moment.at_s, moment.included) == (8.0, (0, 1))


def test_the_leader_waits_past_update_wait_for_min_peers():
    arrivals = {0: 1.0, 1: 9.0, 2: 12.0}
    moment = seal_moment(arrivals, num_sites=4, min_peers=2, view=0, **PACE)
    assert (moment.at_s, moment.included) == (9.0, (0, 1))


def test_a_backup_seals_one_timeout_per_view_after_the_start():
    arrivals = {0: 1.0, 1: 15.0, 2: 25.0}
    moment = seal_moment(arrivals, num_sites=3, min_peers=1, view=2, **PACE)
    assert (moment.at_s, moment.included) == (20.0, (0, 1))


def test_too_few_updates_cannot_be_sealed():
    assert seal_moment({0: 1.0}, num_sites=3, min_peers=2, view=0, **PACE) is None


def test_slow_and_thin_sites_arrive_later():
    fast, slow = SiteProfile(1), SiteProfile(2, slowdown=4.0, bandwidth_mbps=1.0)
    spread = Heterogeneity((fast, slow))
    assert spread.arrival_s(0, 100, 10_000, 3) == pytest.approx(1.0 + 0.01 + 0.0024)
    assert spread.arrival_s(1, 100, 10_000, 3) == pytest.approx(4.0 + 0.01 + 0.24)


def test_dropout_is_reproducible_and_near_its_rate():
    spread = Heterogeneity.uniform(1000, dropout=0.1)
    first = spread.dropped(3, seed=7)
    assert first == spread.dropped(3, seed=7)
    assert first != spread.dropped(4, seed=7)
    assert first != spread.dropped(3, seed=7, attempt=1)
    assert 70 <= len(first) <= 130


def test_crashed_sites_come_back_when_the_plan_says():
    plan = FaultPlan(
        site_crashes=((1, 2), (2, 2)), recover_after=2, site_recoveries=((2, 5),)
    )
    availability = Availability(plan, Heterogeneity.uniform(4), 4, seed=0)
    seen = {}
    for round in range(1, 7):
        availability.begin(round)
        seen[round] = availability.up(round)
    assert seen[1] == [0, 1, 2, 3]
    assert seen[2] == seen[3] == [0, 3]
    assert seen[4] == [0, 1, 3]  # recover_after: back two rounds later
    assert seen[5] == seen[6] == [0, 1, 2, 3]  # its own recovery round
    assert [c[:2] for c in availability.crashes] == [(1, 2), (2, 2)]
