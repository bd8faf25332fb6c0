"""Simulated time and availability: how long messages take, who is up."""

import pytest

from swarmflower.faults import FaultPlan
from swarmflower.simulations.engine.availability import Availability
from swarmflower.simulations.engine.timing import Heterogeneity, SiteProfile


def test_a_message_takes_the_slower_of_the_two_links():
    fast, slow = SiteProfile(1), SiteProfile(2, slowdown=4.0, bandwidth_mbps=1.0)
    spread = Heterogeneity((fast, slow))
    assert spread.message_s(0, 0, 10_000) == pytest.approx(0.01 + 0.0008)
    assert spread.message_s(0, 1, 10_000) == pytest.approx(0.01 + 0.08)
    assert spread.message_s(1, 0, 10_000) == spread.message_s(0, 1, 10_000)
    assert spread.profiles[1].compute_s(100) == pytest.approx(4.0)


def test_a_fetch_is_a_request_and_an_answer():
    spread = Heterogeneity((SiteProfile(1, latency_ms=20.0), SiteProfile(2)))
    assert spread.fetch_s(0, 1, 0) == pytest.approx(0.02 + 0.02)
    # nobody had it: one round trip of asking
    assert spread.fetch_s(0, None, 10**9) == pytest.approx(0.04)


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
    availability = Availability(plan)
    assert availability.crash(1, 2, "site crash") == 4  # recover_after rounds on
    assert availability.crash(2, 2, "site crash") == 5  # its own recovery round
    assert availability.crash(2, 6, "again") == 8  # past it: recover_after again
    assert [c[:2] for c in availability.crashes] == [(1, 2), (2, 2), (2, 6)]
    assert Availability(FaultPlan()).crash(0, 3, "for good") is None
