"""Flagging sites whose updates look poisoned, from rounds.csv's columns."""

from __future__ import annotations

import pandas as pd

from swarmflower.reports import flagged_lines
from swarmflower.simulations.experiments.results import MethodResult, round_record
from swarmflower.suspects import Suspect, per_site, suspects


def rounds(*rows: tuple[str, str]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"round": k + 1, "distances": d, "held_back": h}
            for k, (d, h) in enumerate(rows)
        ]
    )


def test_cells_read_back():
    assert per_site("a=0.5;b=1e+03") == {"a": 0.5, "b": 1000.0}
    assert per_site(float("nan")) == {}  # pandas' empty cell


def test_a_site_held_back_in_most_of_its_rounds_is_flagged():
    found = suspects(
        rounds(
            ("a=1;b=1;c=1", "c"),
            ("a=1;b=1;c=1", "c"),
            ("a=1;b=1;c=1", ""),
            ("a=1;b=1", ""),  # c absent: not one of its rounds
        )
    )
    assert found == [Suspect("c", rounds=3, held_back=2, far=0)]
    assert found[0].why() == "c: clipped or left out in 2 of its 3 rounds"


def test_a_site_far_from_every_merge_is_flagged_and_half_is_not_most():
    far = "a=1;b=1.2;c=0.9;d=5"  # d: more than 3 medians (1.1) away
    found = suspects(rounds((far, ""), (far, ""), ("a=1;b=1;c=1;d=1", "")))
    assert [(s.site, s.far) for s in found] == [("d", 2)]
    assert suspects(rounds((far, ""), ("a=1;b=1;c=1;d=1", ""))) == []  # 1 of 2
    assert suspects(rounds(("a=1;b=9", ""), ("a=1;b=9", ""))) == []  # too few


def test_the_end_of_a_run_names_the_flagged_sites():
    held = round_record(
        1, [0.5, 0.5], updates=(("a", 1.0, 0.1), ("b", 9.0, 8.0)), held_back=("b",)
    )
    result = MethodResult("swarm", [held], ("a", "b"), 1.0)
    assert flagged_lines([result]) == [
        "flagged in the swarm (seed 0): b: clipped or left out in 1 of its 1 rounds"
    ]
