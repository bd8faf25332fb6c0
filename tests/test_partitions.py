"""Partitions: every row once, constraints held, 1,000 nodes fast, clear errors."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarmflower.datasets.partitions import (
    MIN_PER_CLASS,
    case_ratio_partition,
    dirichlet_partition,
    few_cases_partition,
    platform_partition,
    quantity_partition,
    study_partition,
)
from swarmflower.errors import DataError

N_ROWS = 20_000


@pytest.fixture(scope="module")
def rows():
    """Labels, studies (whole blocks of rows) and platforms, 25% cases."""
    rng = np.random.default_rng(0)
    study = np.sort(rng.integers(0, 200, N_ROWS))
    share = rng.uniform(0.05, 0.6, 200)
    y = (rng.random(N_ROWS) < share[study]).astype(np.int64)
    platform = (study % 3).astype(np.int64)
    return y, study, platform


def assert_every_row_once(parts, n_rows: int) -> None:
    together = np.concatenate(parts)
    assert len(together) == n_rows
    assert np.array_equal(np.sort(together), np.arange(n_rows))
    assert all(np.all(np.diff(p) > 0) for p in parts)


def assert_trainable(parts, y) -> None:
    for p in parts:
        assert y[p].sum() >= MIN_PER_CLASS
        assert (1 - y[p]).sum() >= MIN_PER_CLASS


def all_partitions(y, study, platform, nodes: int, seed: int):
    return {
        "studies": study_partition(study, y, nodes, seed),
        "platforms": platform_partition(platform, study, y, nodes, seed),
        "dirichlet": dirichlet_partition(y, nodes, 0.5, seed),
        "quantity": quantity_partition(y, nodes, seed, skew=1.5),
        "powerlaw": quantity_partition(y, nodes, seed, skew=1.2, law="powerlaw"),
        "few-cases": few_cases_partition(y, nodes, seed, node=2, cases=4),
        "case-ratio": case_ratio_partition(y, nodes, seed, case_share=0.01),
    }


def test_every_partition_uses_every_row_once_and_trains(rows) -> None:
    y, study, platform = rows
    for name, parts in all_partitions(y, study, platform, 16, seed=1).items():
        assert len(parts) == 16, name
        assert_every_row_once(parts, N_ROWS)
        assert_trainable(parts, y)


def test_partitions_are_deterministic_from_the_seed(rows) -> None:
    y, study, platform = rows
    first = all_partitions(y, study, platform, 8, seed=5)
    again = all_partitions(y, study, platform, 8, seed=5)
    other = all_partitions(y, study, platform, 8, seed=6)
    for name in first:
        same = zip(first[name], again[name], strict=True)
        assert all(np.array_equal(a, b) for a, b in same), name
        changed = zip(first[name], other[name], strict=True)
        assert any(not np.array_equal(a, b) for a, b in changed), name


def test_studies_stay_whole(rows) -> None:
    y, study, platform = rows
    for parts in (
        study_partition(study, y, 32, 0),
        platform_partition(platform, study, y, 32, 0),
    ):
        owners = np.empty(N_ROWS, dtype=int)
        for k, p in enumerate(parts):
            owners[p] = k
        for s in np.unique(study):
            assert len(np.unique(owners[study == s])) == 1


def test_study_sizes_are_balanced(rows) -> None:
    y, study, _ = rows
    sizes = [len(p) for p in study_partition(study, y, 16, 0)]
    assert max(sizes) < 1.5 * N_ROWS / 16


def test_study_partition_steers_case_shares(rows) -> None:
    y, study, _ = rows
    targets = np.linspace(0.1, 0.5, 8)
    parts = study_partition(study, y, 8, 0, case_shares=targets)
    shares = np.array([y[p].mean() for p in parts])
    assert np.corrcoef(shares, targets)[0, 1] > 0.9


def test_each_node_holds_one_platform(rows) -> None:
    y, study, platform = rows
    parts = platform_partition(platform, study, y, 7, 0)
    kinds = [np.unique(platform[p]) for p in parts]
    assert all(len(k) == 1 for k in kinds)
    assert {int(k[0]) for k in kinds} == {0, 1, 2}


def test_few_cases_node(rows) -> None:
    y, _, _ = rows
    parts = few_cases_partition(y, 10, 0, node=3, cases=5)
    assert y[parts[3]].sum() == 5
    assert len(parts[3]) == N_ROWS // 10
    assert min(y[p].sum() for k, p in enumerate(parts) if k != 3) > 100


def test_one_to_ninety_nine_node(rows) -> None:
    y, _, _ = rows
    parts = case_ratio_partition(y, 10, 0, node=0, case_share=0.01, node_size=1000)
    cases = y[parts[0]].sum()
    controls = len(parts[0]) - cases
    assert len(parts[0]) == 1000
    assert cases / controls == pytest.approx(1 / 99, rel=0.05)


def test_quantity_skew_gives_unequal_sizes(rows) -> None:
    y, _, _ = rows
    sizes = np.array([len(p) for p in quantity_partition(y, 50, 0, skew=1.5)])
    assert sizes.max() > 5 * np.median(sizes)
    even = np.array([len(p) for p in quantity_partition(y, 50, 0, skew=0.0)])
    assert even.max() - even.min() <= 2


def test_a_thousand_nodes_in_well_under_a_second(rows) -> None:
    y, study, platform = rows
    rng = np.random.default_rng(1)
    many_studies = np.sort(rng.integers(0, 3000, N_ROWS))
    started = time.perf_counter()
    parts = {
        "quantity": quantity_partition(y, 1000, 0),
        "dirichlet": dirichlet_partition(y, 1000, 1.0, 0),
        "few-cases": few_cases_partition(y, 1000, 0),
        "case-ratio": case_ratio_partition(y, 1000, 0, node_size=400),
    }
    elapsed = time.perf_counter() - started
    assert elapsed < 0.5, elapsed
    for name, part in parts.items():
        assert len(part) == 1000, name
        assert_every_row_once(part, N_ROWS)
    balanced = (rng.random(N_ROWS) < 0.5).astype(np.int64)
    started = time.perf_counter()
    by_study = study_partition(many_studies, balanced, 1000, 0)
    assert time.perf_counter() - started < 1.0
    assert_every_row_once(by_study, N_ROWS)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda y, s, p: study_partition(s, y, 300, 0), "node 'site-201' gets no"),
        (lambda y, s, p: few_cases_partition(y, 8, 0, node=4, cases=2), "'site-5'"),
        (
            lambda y, s, p: case_ratio_partition(y, 8, 0, node=1, node_size=200),
            "node 'site-2' would hold 2 case",
        ),
        (lambda y, s, p: quantity_partition(y[:60], 40, 0), "node 'site-"),
        (lambda y, s, p: dirichlet_partition(y[:60], 40, 1.0, 0), "node 'site-"),
        (lambda y, s, p: platform_partition(p, s, y, 2, 0), "platform 2 gets no node"),
        (
            lambda y, s, p: few_cases_partition(y, 8, 0, cases=4000),
            "node 'site-1' cannot hold 4000 cases in 2500 rows",
        ),
        (
            lambda y, s, p: few_cases_partition(y, 2, 0, cases=9000, node_size=9500),
            "node 'site-1' asks for 9000 cases",
        ),
    ],
)
def test_impossible_requests_name_the_node(rows, make, message) -> None:
    y, study, platform = rows
    with pytest.raises(DataError, match=message):
        make(y, study, platform)


def test_study_partition_names_a_node_left_without_cases() -> None:
    y = np.array([1] * 10 + [0] * 40)
    study = np.repeat(np.arange(5), 10)  # one study holds every case
    with pytest.raises(DataError, match=r"node 'site-\d' holds 0 case"):
        study_partition(study, y, 4, 0)


@settings(max_examples=40, deadline=None)
@given(
    cases=st.integers(30, 400),
    extra_controls=st.integers(0, 400),  # controls the majority, as in the data
    nodes=st.integers(2, 10),
    skew=st.floats(0.0, 3.0),
    seed=st.integers(0, 2**16),
)
def test_any_feasible_request_uses_every_row_once(
    cases, extra_controls, nodes, skew, seed
) -> None:
    controls = cases + extra_controls
    y = np.random.default_rng(seed).permutation(
        np.r_[np.ones(cases), np.zeros(controls)]
    )
    y = y.astype(np.int64)
    for parts in (
        quantity_partition(y, nodes, seed, skew=skew),
        dirichlet_partition(y, nodes, 0.1 + skew, seed),
        few_cases_partition(y, nodes, seed, node=nodes - 1, cases=3),
    ):
        assert len(parts) == nodes
        assert_every_row_once(parts, len(y))
        assert_trainable(parts, y)
