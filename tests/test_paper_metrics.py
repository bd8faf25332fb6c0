"""The global yardstick: every method's model on the union of the test sets."""

from __future__ import annotations

import math

import numpy as np
import pytest

from swarmflower.datasets import FederatedDataset
from swarmflower.datasets.base import SiteData
from swarmflower.reports import summary_frame
from swarmflower.simulations.experiments.local import run_local
from swarmflower.simulations.experiments.pooled import run_pooled
from swarmflower.simulations.experiments.results import (
    GlobalScore,
    MethodResult,
    node_metrics,
    score_logits,
)
from swarmflower.simulations.experiments.yardsticks import (
    HeldOutRows,
    add_yardsticks,
    site_accuracy,
)
from swarmflower.tasks import TaskSpec

FIGURES = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "auc")
TINY = TaskSpec(
    task="transcriptome",
    num_sites=3,
    local_steps=5,
    batch_size=16,
    options={"genes": 20, "studies": 6, "samples": 300, "partition": "dirichlet"},
)


def test_always_control_is_accurate_but_balanced_accuracy_is_half() -> None:
    y = np.array([1] + [0] * 99)
    score = score_logits(np.full(100, -3.0), y)
    assert score.accuracy == pytest.approx(0.99)
    assert score.balanced_accuracy == 0.5
    assert (score.sensitivity, score.specificity) == (0.0, 1.0)
    assert score.auc == 0.5  # constant scores rank nobody


def test_figures_of_a_hand_scored_model() -> None:
    y = np.array([0, 0, 0, 1, 1])
    logits = np.array([-2.0, 0.5, -1.0, 1.0, -0.5])
    score = score_logits(logits, y)
    assert score.accuracy == pytest.approx(3 / 5)
    assert score.sensitivity == pytest.approx(1 / 2)
    assert score.specificity == pytest.approx(2 / 3)
    assert score.balanced_accuracy == pytest.approx((1 / 2 + 2 / 3) / 2)
    # case 1.0 beats all three controls; case -0.5 beats -2.0 and -1.0 only
    assert score.auc == pytest.approx(5 / 6)


def test_auc_needs_both_classes() -> None:
    score = score_logits(np.array([0.3, -0.2]), np.array([0, 0]))
    assert math.isnan(score.auc) and math.isnan(score.sensitivity)
    assert score.balanced_accuracy == score.specificity == 0.5


def _two_sites() -> FederatedDataset:
    """Two sites whose test rows a model reading feature 0 gets right or wrong."""
    x_a, y_a = np.array([[2.0, 0.0], [-2.0, 0.0]]), np.array([1, 0])
    x_b, y_b = np.array([[-1.0, 5.0], [1.0, 5.0], [-3.0, 5.0]]), np.array([1, 0, 0])
    sites = (
        SiteData("site-1", x_a, y_a, x_a, y_a),
        SiteData("site-2", x_b, y_b, x_b, y_b),
    )
    return FederatedDataset("hand", sites, ("f0", "f1"))


def test_arrays_are_scored_on_the_union_of_the_test_sets() -> None:
    data = _two_sites()
    rows = HeldOutRows.of(data)
    assert tuple(rows.features.shape) == (5, 2)
    assert rows.labels.tolist() == [1, 0, 1, 0, 0]
    # logit = x0: right on site-1, wrong on site-2's first two rows
    arrays = [np.array([[1.0, 0.0]], np.float32), np.array([0.0], np.float32)]
    result = MethodResult("swarm", [], ("site-1", "site-2"), 1.0, final_arrays=arrays)
    add_yardsticks([result], TaskSpec(task="heart"), data)
    score = {m.metric: m.value for m in result.extra if not m.site}
    assert score["global_accuracy"] == pytest.approx(3 / 5)
    assert score["global_sensitivity"] == pytest.approx(1 / 2)
    assert score["global_specificity"] == pytest.approx(2 / 3)
    assert score["global_auc"] == pytest.approx(5 / 6)
    assert score["accuracy"] == pytest.approx((1 + 1 / 3) / 2)  # per-site mean


def test_node_metrics_give_each_site_their_mean_and_the_weakest() -> None:
    good = GlobalScore(0.9, 0.8, 0.7, 0.9, 0.85)
    blind = GlobalScore(0.99, 0.5, 0.0, 1.0, 0.5)
    rows = {(m.metric, m.site): m.value for m in node_metrics([good, blind], "ab")}
    assert rows[("global_balanced_accuracy", "a")] == 0.8
    assert rows[("global_balanced_accuracy", "b")] == 0.5
    assert rows[("global_balanced_accuracy", "")] == pytest.approx(0.65)
    # the weakest is one site, the blind one, even on the figure it wins
    assert rows[("global_balanced_accuracy_weakest", "")] == 0.5
    assert rows[("global_accuracy_weakest", "")] == 0.99
    assert rows[("global_auc_weakest", "")] == 0.5


@pytest.fixture(scope="module")
def baselines() -> list[MethodResult]:
    results = [run_local(TINY, 2), run_pooled(TINY, 2)]
    add_yardsticks(results, TINY)
    return results


def _values(result: MethodResult, site: str = "") -> dict[str, float]:
    return {m.metric: m.value for m in result.metrics() if m.site == site}


def test_summary_has_global_rows_for_local_and_pooled(baselines) -> None:
    summary = summary_frame(baselines)
    for method in ("local", "pooled"):
        rows = summary[(summary.method == method) & (summary.site == "")]
        assert {f"global_{f}" for f in FIGURES} <= set(rows.metric)
        assert {"accuracy", "wall_s"} <= set(rows.metric)
    local = summary[summary.method == "local"]
    per_site = local[(local.metric == "global_auc") & (local.site != "")]
    assert per_site.site.tolist() == ["site-1", "site-2", "site-3"]
    site = per_site.site[per_site.value.idxmin()]
    for figure in FIGURES:
        weakest = local[local.metric == f"global_{figure}_weakest"].value.item()
        own = local[(local.metric == f"global_{figure}") & (local.site == site)]
        assert weakest == own.value.item()


def test_a_final_model_is_scored_once(baselines) -> None:
    pooled = baselines[1]
    bare = MethodResult("swarm", pooled.rounds, pooled.site_names, 1.0)
    bare.final_arrays = pooled.final_arrays
    add_yardsticks([bare, pooled], TINY)
    add_yardsticks([bare], TINY)
    assert len([m for m in bare.extra if m.metric == "global_auc"]) == 1
    for figure in FIGURES:
        key = f"global_{figure}"
        assert _values(bare)[key] == pytest.approx(_values(pooled)[key], abs=1e-12)
    # the final model's per-site accuracy is the last round's
    assert bare.accuracy == pytest.approx(pooled.rounds[-1].accuracy)


def test_one_pass_over_the_global_test_set_gives_each_sites_accuracy():
    from swarmflower.simulations.experiments.results import evaluate_on_sites
    from swarmflower.tasks import TaskSpec, initial_model

    spec = TaskSpec()
    data = spec.load()
    model = initial_model(spec, data.num_features)
    rows = HeldOutRows.of(data)
    per_site = site_accuracy(rows, rows.logits(model))
    expected = [e.accuracy for e in evaluate_on_sites(model, data)]
    np.testing.assert_allclose(per_site, expected, atol=1e-6)
