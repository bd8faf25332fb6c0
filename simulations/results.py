"""What one method produced, and the evaluations every method shares.

Two yardsticks: each site's own test set (FLamby's, the `accuracy` row) and
the union of all sites' test sets, a global held-out set as in the Swarm
Learning paper (the `global_*` rows). The second judges a model trained at
one small site on the same patients as the swarm's and the pooled model, so
a site cannot look good by fitting its own few rows, and its balanced
accuracy and AUC do not reward always answering "control" when cases are rare.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from swarmflower.datasets import FederatedDataset
from swarmflower.tasks import TaskSpec, build_model
from swarmflower.tasks.training import Evaluation, binary_auc, evaluate

GLOBAL = "global_"  # prefix of the rows scored on the union of the test sets


@dataclass(frozen=True)
class RoundRecord:
    """One round of one method: the mean per-site test accuracy after it."""

    round: int
    accuracy: float
    site_accuracy: tuple[float, ...]
    leader: str = ""
    view: int | None = None
    reason: str = ""
    contributors: int | None = None
    up: int | None = None  # sites that trained (Ray engine)
    wall_s: float | None = None  # this round's wall time (Ray engine)
    sim_s: float | None = None  # this round's simulated time (Ray engine)


@dataclass(frozen=True)
class Metric:
    """One `summary.csv` row; `site` is empty for a figure over all sites."""

    metric: str
    value: float
    site: str = ""


@dataclass
class MethodResult:
    """A finished run of one method (`swarm`, `fedavg`, `local` or `pooled`)."""

    method: str
    rounds: list[RoundRecord]
    site_names: tuple[str, ...]
    wall_s: float
    extra: list[Metric] = field(default_factory=list)
    final_arrays: list[np.ndarray] | None = None
    details: object | None = None  # the engine's own result (e.g. a SwarmResult)

    @property
    def accuracy(self) -> float:
        return self.rounds[-1].accuracy

    def metrics(self) -> list[Metric]:
        """Rows for `summary.csv`: the headline figures, per-site ones, extras."""
        last = self.rounds[-1]
        rows = [Metric("accuracy", last.accuracy), Metric("wall_s", self.wall_s)]
        rows += [
            Metric("accuracy", acc, site)
            for site, acc in zip(self.site_names, last.site_accuracy, strict=True)
        ]
        return rows + self.extra


def evaluate_on_sites(model: nn.Module, data: FederatedDataset) -> list[Evaluation]:
    """The model on every site's own test set, in site order."""
    return [evaluate(model, site.x_test, site.y_test) for site in data.sites]


def round_record(
    server_round: int, accuracies: list[float], **swarm_fields: object
) -> RoundRecord:
    """FLamby's metric: the unweighted mean of the per-site test accuracies.

    `swarm_fields` are the swarm's own columns: leader, view, reason and
    contributors.
    """
    return RoundRecord(
        round=server_round,
        accuracy=float(np.mean(accuracies)),
        site_accuracy=tuple(float(a) for a in accuracies),
        **swarm_fields,
    )


@dataclass(frozen=True)
class GlobalScore:
    """One model on the union of all sites' test sets.

    Sensitivity and specificity are the paper's own figures; balanced accuracy
    is their mean, so a model that calls everyone a control scores 0.5 however
    rare the cases. AUC is NaN when the test rows hold only one class.
    """

    accuracy: float
    balanced_accuracy: float
    sensitivity: float
    specificity: float
    auc: float

    def metrics(self, site: str = "", suffix: str = "") -> list[Metric]:
        """`global_<figure><suffix>` rows, e.g. `global_auc` or `global_auc_weakest`."""
        return [
            Metric(f"{GLOBAL}{name}{suffix}", float(getattr(self, name)), site)
            for name in GlobalScore.__dataclass_fields__
        ]


def global_test_set(data: FederatedDataset) -> tuple[np.ndarray, np.ndarray]:
    """Every site's test rows, each standardised as its own site sees them."""
    x = np.concatenate([s.x_test for s in data.sites])
    y = np.concatenate([s.y_test for s in data.sites])
    return x, y


def score_logits(logits: np.ndarray, y: np.ndarray) -> GlobalScore:
    """The global figures from one logit per row (a case above 0)."""
    predicted = logits > 0
    cases = y == 1
    sensitivity = float(predicted[cases].mean()) if cases.any() else float("nan")
    specificity = float((~predicted[~cases]).mean()) if (~cases).any() else float("nan")
    both = cases.any() and (~cases).any()
    return GlobalScore(
        accuracy=float((predicted == cases).mean()),
        balanced_accuracy=float(np.nanmean([sensitivity, specificity])),
        sensitivity=sensitivity,
        specificity=specificity,
        auc=binary_auc(y, logits) if both else float("nan"),
    )


def score_globally(model: nn.Module, data: FederatedDataset) -> GlobalScore:
    """The model on the union of all sites' test sets."""
    return GlobalTestSet(data).score(model)[0]


class GlobalTestSet:
    """The union of the sites' test sets, built once to score many models.

    One forward pass gives both the global figures and each site's own test
    accuracy, so scoring a thousand local models stays linear in the sites.
    """

    def __init__(self, data: FederatedDataset) -> None:
        x, self.y = global_test_set(data)
        self.features = torch.from_numpy(np.ascontiguousarray(x, np.float32))
        sizes = np.array([len(s.y_test) for s in data.sites])
        self.site_of_row = np.repeat(np.arange(len(sizes)), sizes)
        self.sizes = sizes

    def score(self, model: nn.Module) -> tuple[GlobalScore, np.ndarray]:
        """Global figures, and each site's test accuracy (FLamby's metric)."""
        model.eval()
        with torch.no_grad():
            logits = model(self.features).squeeze(-1).numpy()
        correct = ((logits > 0) == (self.y == 1)).astype(float)
        per_site = np.bincount(
            self.site_of_row, weights=correct, minlength=len(self.sizes)
        ) / np.maximum(self.sizes, 1)
        return score_logits(logits, self.y), per_site


def score_arrays(
    spec: TaskSpec, data: FederatedDataset, arrays: Sequence[np.ndarray]
) -> GlobalScore:
    """A model given as Flower's list of arrays (a swarm's final model)."""
    model = build_model(spec, data.num_features)
    state = model.state_dict()
    model.load_state_dict(
        {k: torch.from_numpy(np.asarray(a)) for k, a in zip(state, arrays, strict=True)}
    )
    return score_globally(model, data)


def weakest(scores: Sequence[GlobalScore]) -> GlobalScore:
    """The score of the site whose model ranks worst: lowest AUC, or balanced
    accuracy when AUC is undefined. One site's figures, never a mix of sites,
    so a table's "weakest node" row is a model that exists."""
    return min(scores, key=lambda s: s.balanced_accuracy if np.isnan(s.auc) else s.auc)


def node_metrics(scores: Sequence[GlobalScore], names: Sequence[str]) -> list[Metric]:
    """Each site's own model: per-site rows, their mean and the weakest site's.

    The mean is the headline `global_*` row, like `accuracy` for the baseline;
    `global_*_weakest` are the figures of the `weakest` site's model.
    """
    rows = [
        m
        for score, name in zip(scores, names, strict=True)
        for m in score.metrics(name)
    ]
    table = np.array([[m.value for m in score.metrics()] for score in scores])
    mean = GlobalScore(*np.nanmean(table, axis=0))
    return mean.metrics() + weakest(scores).metrics(suffix="_weakest") + rows


def add_global_metrics(results: Sequence[MethodResult], spec: TaskSpec) -> None:
    """Score each result's final model globally, unless its runner already did.

    For the runners that hand back only `final_arrays` (the swarm, Flower's
    FedAvg); `local` and `pooled` add their rows themselves.
    """
    data = spec.load()
    for result in results:
        done = any(m.metric.startswith(GLOBAL) for m in result.extra)
        if result.final_arrays is not None and not done:
            result.extra += score_arrays(spec, data, result.final_arrays).metrics()
