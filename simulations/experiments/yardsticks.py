"""Every method's final model(s) scored the same ways: per site, and on the union.

A method hands in *predictions*: logits for every test row of every site, in
site order, one vector per model that a clinician could deploy:

- one shared model (`swarm`, `fedavg`, `pooled`): one vector;
- `local`, FLamby's way: each site's own model scored on **every** site's
  test set, one vector per site's model, figures averaged over the models;
- personalised models (`local_own`, `swarm+ft`, `fedavg+ft`): one vector in
  which site j's rows are scored by site j's own model (and threshold).

Per site: accuracy (FLamby's headline is its unweighted mean over sites),
balanced accuracy, AUC, sensitivity and specificity, each with its support;
a site whose test rows hold one class gets accuracy and an empty AUC. On the
union of the test sets: the same figures as `global_*` rows, the Swarm
Learning paper's yardstick.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from swarmflower.datasets import FederatedDataset
from swarmflower.simulations.experiments.results import (
    EVERY_SITE,
    FIGURES,
    SHARED,
    GlobalScore,
    MethodResult,
    Metric,
    node_metrics,
    score_logits,
)
from swarmflower.tasks import TaskSpec, build_model


@dataclass(frozen=True)
class HeldOutRows:
    """The union of the sites' test sets, built once to score many models."""

    features: torch.Tensor
    labels: np.ndarray
    site_of_row: np.ndarray
    site_names: tuple[str, ...]

    @classmethod
    def of(cls, data: FederatedDataset) -> HeldOutRows:
        x = np.concatenate([s.x_test for s in data.sites])
        sizes = [s.num_test for s in data.sites]
        return cls(
            features=torch.from_numpy(np.ascontiguousarray(x, np.float32)),
            labels=np.concatenate([s.y_test for s in data.sites]),
            site_of_row=np.repeat(np.arange(len(sizes)), sizes),
            site_names=tuple(s.name for s in data.sites),
        )

    @property
    def num_sites(self) -> int:
        return len(self.site_names)

    def rows_of(self, site: int) -> slice:
        """Site `site`'s rows in the union (rows are in site order)."""
        starts = np.searchsorted(self.site_of_row, [site, site + 1])
        return slice(int(starts[0]), int(starts[1]))

    def logits(self, model: nn.Module, site: int | None = None) -> np.ndarray:
        """One model's logits on every test row, or on one site's rows."""
        features = self.features if site is None else self.features[self.rows_of(site)]
        return model_logits(model, features)

    def support(self) -> tuple[np.ndarray, np.ndarray]:
        """Test rows and positives of each site."""
        rows = np.bincount(self.site_of_row, minlength=self.num_sites)
        cases = np.bincount(
            self.site_of_row, weights=self.labels == 1, minlength=self.num_sites
        )
        return rows, cases.astype(int)


def model_logits(model: nn.Module, x: np.ndarray | torch.Tensor) -> np.ndarray:
    """A binary model's logits, one per row (a case above 0)."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    model.eval()
    with torch.no_grad():
        return model(x).squeeze(-1).numpy().astype(np.float64)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, NaN where the denominator is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.maximum(denominator, 1), np.nan)


def site_figures(rows: HeldOutRows, logits: np.ndarray) -> dict[str, np.ndarray]:
    """Each site's figures from one vector of logits (a case above 0).

    Vectorised over sites (ranks within each site for the AUC), so scoring a
    thousand local models on a thousand sites stays cheap.
    """
    site, n = rows.site_of_row, rows.num_sites
    cases = rows.labels == 1
    predicted = logits > 0
    size, positives = rows.support()
    negatives = size - positives
    true_pos = np.bincount(site, weights=predicted & cases, minlength=n)
    true_neg = np.bincount(site, weights=~predicted & ~cases, minlength=n)
    sensitivity = _ratio(true_pos, positives)
    specificity = _ratio(true_neg, negatives)
    with np.errstate(invalid="ignore"):
        balanced = np.where(
            np.isnan(sensitivity),
            specificity,
            np.where(
                np.isnan(specificity), sensitivity, (sensitivity + specificity) / 2
            ),
        )
    ranks = pd.Series(logits).groupby(site).rank(method="average").to_numpy()
    case_ranks = np.bincount(site, weights=ranks * cases, minlength=n)
    auc = _ratio(case_ranks - positives * (positives + 1) / 2, positives * negatives)
    return {
        "accuracy": _ratio(true_pos + true_neg, size),
        "balanced_accuracy": balanced,
        "sensitivity": sensitivity,
        "specificity": specificity,
        "auc": auc,
    }


def _nanmean(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """Mean ignoring NaN, NaN (without a warning) where every value is NaN."""
    values = np.asarray(values, dtype=float)
    counts = (~np.isnan(values)).sum(axis=axis)
    sums = np.nansum(values, axis=axis)
    return _ratio(sums, counts)


def site_accuracy(rows: HeldOutRows, logits: np.ndarray) -> np.ndarray:
    """Each site's test accuracy alone: the per-round curve, cheap at any scale."""
    correct = (logits > 0) == (rows.labels == 1)
    size, _ = rows.support()
    return np.bincount(rows.site_of_row, weights=correct, minlength=rows.num_sites) / (
        np.maximum(size, 1)
    )


def score_predictions(
    rows: HeldOutRows, predictions: Sequence[np.ndarray], per_model_rows: bool = False
) -> list[Metric]:
    """The figures of one or more prediction vectors, averaged over the vectors.

    `per_model_rows` adds, for `local`, each site's model's `global_*` figures,
    their mean and the weakest model's (the paper's "weakest node").
    """
    size, positives = rows.support()
    support = {"test_rows": int(size.sum()), "positives": int(positives.sum())}
    per_site = [site_figures(rows, z) for z in predictions]
    metrics: list[Metric] = []
    for figure in FIGURES:
        by_site = _nanmean(np.stack([p[figure] for p in per_site]))
        metrics.append(Metric(figure, float(_nanmean(by_site)), "", **support))
        metrics += [
            Metric(figure, float(value), name, test_rows=int(n), positives=int(cases))
            for name, value, n, cases in zip(
                rows.site_names, by_site, size, positives, strict=True
            )
        ]
    union = [score_logits(z, rows.labels) for z in predictions]
    if per_model_rows:
        figures = node_metrics(union, rows.site_names)
    else:
        table = np.array([[m.value for m in u.metrics()] for u in union])
        figures = GlobalScore(*_nanmean(table)).metrics()
    return metrics + [Metric(m.metric, m.value, m.site, **support) for m in figures]


def load_arrays(model: nn.Module, arrays: Sequence[np.ndarray]) -> nn.Module:
    """`model` with Flower's list of arrays (a final model) loaded into it."""
    state = model.state_dict()
    model.load_state_dict(
        {k: torch.from_numpy(np.asarray(a)) for k, a in zip(state, arrays, strict=True)}
    )
    return model


def predictions_of(
    result: MethodResult, rows: HeldOutRows, model: nn.Module
) -> list[np.ndarray]:
    """The prediction vectors of a result's final model(s), by its deployment."""
    if result.deployment == SHARED:
        if result.final_arrays is None:
            raise ValueError(f"{result.method} has no final model to score")
        return [rows.logits(load_arrays(model, result.final_arrays))]
    if result.site_arrays is None:
        raise ValueError(f"{result.method} has no per-site models to score")
    if result.deployment == EVERY_SITE:
        return [rows.logits(load_arrays(model, a)) for a in result.site_arrays]
    thresholds = result.thresholds or [0.0] * rows.num_sites
    own = [
        rows.logits(load_arrays(model, arrays), site) - threshold
        for site, (arrays, threshold) in enumerate(
            zip(result.site_arrays, thresholds, strict=True)
        )
    ]
    return [np.concatenate(own)]


def add_yardsticks(
    results: Sequence[MethodResult],
    spec: TaskSpec,
    data: FederatedDataset | None = None,
) -> None:
    """Score every result's final model(s) the same ways, once.

    Adds the per-site and `global_*` rows to `extra`, and keeps the union's
    scores for ROC curves. `data` defaults to the task's own.
    """
    data = data or spec.load()
    rows = HeldOutRows.of(data)
    model = build_model(spec, data.num_features)
    for result in results:
        if result.scored:
            continue
        predictions = predictions_of(result, rows, model)
        result.extra = (
            score_predictions(rows, predictions, result.deployment == EVERY_SITE)
            + result.extra
        )
        result.union_scores = np.concatenate(predictions)
        result.union_labels = np.tile(rows.labels, len(predictions))
