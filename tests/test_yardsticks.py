"""Yardsticks: per-site and union figures, FLamby's local, personalisation, seeds."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from swarmflower.datasets import FederatedDataset
from swarmflower.datasets.base import SiteData
from swarmflower.reports import interval, summary_frame
from swarmflower.simulations.experiments.compare import run_compare
from swarmflower.simulations.experiments.personalise import accuracy_threshold
from swarmflower.simulations.experiments.results import (
    EVERY_SITE,
    OWN_SITE,
    MethodResult,
)
from swarmflower.simulations.experiments.yardsticks import (
    HeldOutRows,
    add_yardsticks,
    score_predictions,
    site_figures,
)
from swarmflower.tasks import TaskSpec


def _sites() -> FederatedDataset:
    """Site a: 2 cases, 2 controls; site b: 3 cases only (one class)."""
    x_a = np.array([[2.0], [-1.0], [-2.0], [1.0]])
    y_a = np.array([1, 1, 0, 0])
    x_b = np.array([[3.0], [-3.0], [0.5]])
    y_b = np.array([1, 1, 1])
    return FederatedDataset(
        "hand",
        (SiteData("a", x_a, y_a, x_a, y_a), SiteData("b", x_b, y_b, x_b, y_b)),
        ("f0",),
    )


def _rows() -> HeldOutRows:
    return HeldOutRows.of(_sites())


def test_site_figures_by_hand() -> None:
    rows = _rows()
    logits = np.array([2.0, -1.0, -2.0, 1.0, 3.0, -3.0, 0.5])  # logit = x
    figures = site_figures(rows, logits)
    # a: cases 2 (right), -1 (wrong); controls -2 (right), 1 (wrong)
    assert figures["accuracy"].tolist() == [0.5, pytest.approx(2 / 3)]
    assert figures["sensitivity"].tolist() == [0.5, pytest.approx(2 / 3)]
    assert figures["specificity"][0] == 0.5 and math.isnan(figures["specificity"][1])
    # b holds one class: no AUC, balanced accuracy is its sensitivity
    assert figures["auc"][0] == 0.75 and math.isnan(figures["auc"][1])
    assert figures["balanced_accuracy"].tolist() == [0.5, pytest.approx(2 / 3)]
    assert rows.support()[0].tolist() == [4, 3]
    assert rows.support()[1].tolist() == [2, 3]


def test_headline_means_skip_an_undefined_auc_and_carry_their_support() -> None:
    rows = _rows()
    metrics = score_predictions(rows, [np.array([2.0, -1, -2, 1, 3, -3, 0.5])])
    by_key = {(m.metric, m.site): m for m in metrics}
    assert by_key[("auc", "")].value == 0.75  # site b's AUC is left out
    assert math.isnan(by_key[("auc", "b")].value)
    assert by_key[("accuracy", "")].value == pytest.approx((0.5 + 2 / 3) / 2)
    assert (
        by_key[("accuracy", "a")].test_rows,
        by_key[("accuracy", "a")].positives,
    ) == (
        4,
        2,
    )
    union = by_key[("global_accuracy", "")]
    assert union.value == pytest.approx(4 / 7)
    assert (union.test_rows, union.positives) == (7, 5)


def test_local_is_every_model_on_every_site_averaged() -> None:
    rows = _rows()
    always_case = np.ones(7)
    always_control = -np.ones(7)
    metrics = score_predictions(rows, [always_case, always_control], True)
    by_key = {(m.metric, m.site): m.value for m in metrics}
    # a: 0.5 either way; b: 1 and 0 -> 0.5
    assert by_key[("accuracy", "a")] == 0.5 and by_key[("accuracy", "b")] == 0.5
    # the union figures of each site's model, their mean and the weakest
    assert by_key[("global_accuracy", "a")] == pytest.approx(5 / 7)
    assert by_key[("global_accuracy", "b")] == pytest.approx(2 / 7)
    assert by_key[("global_accuracy", "")] == pytest.approx(0.5)
    assert by_key[("global_balanced_accuracy_weakest", "")] == 0.5


def _linear(weight: float, bias: float) -> list[np.ndarray]:
    return [np.array([[weight]], np.float32), np.array([bias], np.float32)]


def test_own_site_models_score_only_their_own_sites_rows() -> None:
    data = _sites()
    spec = TaskSpec(task="heart")  # a one-feature logistic model, like the data
    own = MethodResult(
        "local_own",
        [],
        ("a", "b"),
        1.0,
        site_arrays=[_linear(1.0, 0.0), _linear(0.0, -5.0)],
        thresholds=[0.0, -10.0],
        deployment=OWN_SITE,
    )
    every = MethodResult(
        "local",
        [],
        ("a", "b"),
        1.0,
        site_arrays=[_linear(1.0, 0.0), _linear(0.0, -5.0)],
        deployment=EVERY_SITE,
    )
    add_yardsticks([own, every], spec, data)
    own_rows = {(m.metric, m.site): m.value for m in own.extra}
    # b's model says -5 for everyone, but its threshold -10 calls them cases
    assert own_rows[("accuracy", "b")] == 1.0
    assert own_rows[("accuracy", "a")] == 0.5
    every_rows = {(m.metric, m.site): m.value for m in every.extra}
    # without thresholds, b's model calls all of b's cases controls
    assert every_rows[("accuracy", "b")] == pytest.approx((2 / 3 + 0) / 2)
    assert len(own.union_scores) == 7 and len(every.union_scores) == 14


def test_threshold_maximises_training_accuracy_nearest_to_zero() -> None:
    separable = accuracy_threshold(
        np.array([-3.0, -1.0, 2.0, 4.0]), np.array([0, 0, 1, 1])
    )
    assert -1.0 < separable < 2.0 and separable == 0.0  # 0 already separates
    shifted = accuracy_threshold(np.array([1.0, 2.0, 5.0, 6.0]), np.array([0, 0, 1, 1]))
    assert 2.0 < shifted < 5.0
    # cases score low, the one control high: calling everyone a case is best
    labels = np.array([1, 1, 1, 0])
    logits = np.array([-2.0, -1.0, -0.5, 0.3])
    mostly = accuracy_threshold(logits, labels)
    assert mostly < -2.0
    assert ((logits > mostly) == (labels == 1)).mean() == 0.75
    # one class with nothing to choose: the default stays
    assert accuracy_threshold(np.array([-1.0, -2.0]), np.array([0, 0])) == 0.0
    assert accuracy_threshold(np.array([]), np.array([])) == 0.0


def test_interval_is_the_t_interval_of_the_mean() -> None:
    mean, sd, low, high, n = interval(np.array([1.0, 2.0, 3.0, float("nan")]))
    assert (mean, sd, n) == (2.0, 1.0, 3)
    assert high - mean == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)
    assert low == pytest.approx(2 * mean - high)
    assert interval(np.array([0.9, 1.0]), (0.0, 1.0))[3] == 1.0  # a rate stays <= 1
    single = interval(np.array([0.7]))
    assert single[0] == 0.7 and math.isnan(single[1]) and single[4] == 1


@pytest.fixture(scope="module")
def two_seeds() -> list[MethodResult]:
    spec = TaskSpec(local_steps=5)
    return run_compare(spec, 2, ["swarm+ft", "local", "local_own"], seeds=2)


def test_seeds_and_derived_methods(two_seeds) -> None:
    assert [(r.method, r.seed) for r in two_seeds] == [
        ("swarm+ft", 0),
        ("local", 0),
        ("local_own", 0),
        ("swarm+ft", 1),
        ("local", 1),
        ("local_own", 1),
    ]
    ft, local, own = two_seeds[:3]
    assert ft.rounds == [] and len(ft.thresholds) == 4 and ft.deployment == OWN_SITE
    # local_own is local's models on their own test sets: its curve is the diagonal
    assert own.site_arrays is local.site_arrays
    assert own.accuracy == pytest.approx(own.rounds[-1].accuracy)
    assert local.accuracy == pytest.approx(local.rounds[-1].accuracy)
    assert (
        two_seeds[1].site_arrays[0][0].tolist()
        != two_seeds[4].site_arrays[0][0].tolist()
    )


def test_summary_over_seeds_has_mean_sd_and_interval(two_seeds) -> None:
    summary = summary_frame(two_seeds).fillna({"site": ""})
    row = summary[
        (summary.method == "local")
        & (summary.metric == "accuracy")
        & (summary.site == "")
    ].iloc[0]
    values = [r.accuracy for r in two_seeds if r.method == "local"]
    assert row.value == pytest.approx(np.mean(values))
    assert row.sd == pytest.approx(np.std(values, ddof=1))
    assert row.ci_low < row.value < row.ci_high and row.seeds == 2
    assert row.test_rows == 254 and row.positives == 131
    assert not pd.isna(summary[summary.metric == "global_auc"].value).any()
