"""Fault plans from `--faults` text: every drill parsed, bad items named."""

import pytest

from swarmflower.errors import ConfigError
from swarmflower.faults import FaultPlan


def test_every_drill_is_read_from_the_command_line_text():
    plan = FaultPlan.parse(
        "seal-no-announce:2,crash-mid-fetch:1@3,crash-mid-write:3@4,"
        "drop-sends:25,bad-update:2@5:complex,bad-update:2@6:huge-weights",
        num_sites=3,
    )
    assert plan.crashes_before_announcing(2) and not plan.crashes_before_announcing(3)
    assert plan.crashes_mid_fetch(0, 3) and not plan.crashes_mid_fetch(1, 3)
    assert plan.crashes_mid_write(2, 4)
    assert plan.drop_sends == 0.25
    assert (
        plan.bad_update(1, 5) == "complex" and plan.bad_update(1, 6) == "huge-weights"
    )
    assert plan.bad_update(0, 5) is None
    assert plan.drills() == {
        "seal-no-announce",
        "crash-mid-fetch",
        "crash-mid-write",
        "drop-sends",
        "bad-update",
    }


def test_lost_sends_are_seeded_per_site_and_near_the_asked_share():
    plan = FaultPlan.parse("drop-sends:30", num_sites=2)

    def draws(site: int) -> list[bool]:
        lost = plan.send_filter(site)
        return [lost() for _ in range(2000)]

    first = draws(0)
    assert first == draws(0)  # seeded
    assert first != draws(1)  # per site
    assert 0.25 < sum(first) / len(first) < 0.35
    assert not any(FaultPlan().send_filter(0)() for _ in range(100))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("bad-update:2@1:rotten", "unknown bad update 'rotten'"),
        ("bad-update:9@1:complex", "site 9 is not one of 1..3"),
        ("crash-mid-fetch:1@0", "0 is not a positive number"),
        ("drop-sends:150", "150 is not a percentage"),
        ("straggler:1@2:0", "a straggler's delay must be 0-3600 s"),
        ("straggler:1@2", "bad fault item 'straggler:1@2'"),
        ("seal-no-announce:x", "bad fault item 'seal-no-announce:x'"),
    ],
)
def test_a_bad_drill_is_named(text, problem):
    with pytest.raises(ConfigError, match=problem):
        FaultPlan.parse(text, num_sites=3)


def test_an_engine_refuses_the_drills_it_does_not_play():
    plan = FaultPlan.parse("crash-mid-write:1@2,drop-sends:10", num_sites=3)
    with pytest.raises(ConfigError, match="does not play crash-mid-write, drop-sends"):
        plan.refuse_drills("ray", played=set())
    with pytest.raises(
        ConfigError, match="inproc engine does not play crash-mid-write"
    ):
        plan.refuse_drills("inproc", played={"drop-sends"})
    plan.refuse_drills("real", played=plan.drills())  # nothing missing: no error
