"""What one method produced, and the figures every method is scored by.

Two yardsticks (`yardsticks.py` applies them): each site's test set
(FLamby's, the `accuracy` row is the mean over sites) and the union of all
sites' test sets, a global held-out set as in the Swarm Learning paper (the
`global_*` rows). The second judges a model trained at one small site on the
same patients as the swarm's and the pooled model, and its balanced accuracy
and AUC do not reward always answering "control" when cases are rare.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from torch import nn

from swarmflower.datasets import FederatedDataset
from swarmflower.tasks.training import Evaluation, binary_auc, evaluate

GLOBAL = "global_"  # prefix of the rows scored on the union of the test sets
# The figures of every model, per site and on the union, in table order.
FIGURES = ("accuracy", "balanced_accuracy", "auc", "sensitivity", "specificity")
# How a method's final models meet the test sets (`yardsticks.py`).
SHARED, EVERY_SITE, OWN_SITE = "shared", "every-site", "own-site"


@dataclass(frozen=True)
class RoundScore:
    """One round of one method: its per-site test accuracies after the round
    (and, for the swarm, who sealed it). Not the ledger's `RoundRecord`."""

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
    attackers: str = ""  # attacking sites whose updates the round merged (";")
    # (site, norm of its change, distance to the merged model) per update the
    # round merged, and the sites the merge clipped or left out
    updates: tuple[tuple[str, float, float], ...] = ()
    held_back: tuple[str, ...] = ()


@dataclass(frozen=True)
class Metric:
    """One `summary.csv` row; `site` is empty for a figure over all sites.

    `test_rows` and `positives` are the figure's support: the test rows it
    was computed on and the cases among them.
    """

    metric: str
    value: float
    site: str = ""
    test_rows: int | None = None
    positives: int | None = None


@dataclass
class MethodResult:
    """A finished run of one method with one seed.

    The final models: `final_arrays` for a model every site shares (`swarm`,
    `fedavg`, `pooled`), or `site_arrays`, one model per site (`local`, and
    the personalised `local_own`, `swarm+ft`, `fedavg+ft`, whose sites also
    have their own decision `thresholds`); `deployment` says which test sets
    each model is scored on. Derived methods have no `rounds`.
    """

    method: str
    rounds: list[RoundScore]
    site_names: tuple[str, ...]
    wall_s: float
    extra: list[Metric] = field(default_factory=list)
    final_arrays: list[np.ndarray] | None = None
    details: object | None = None  # the engine's own result (e.g. a SwarmResult)
    seed: int = 0
    site_arrays: list[list[np.ndarray]] | None = None
    thresholds: list[float] | None = None
    deployment: str = SHARED
    # Scores and labels on the union of the test sets (for ROC curves).
    union_scores: np.ndarray | None = None
    union_labels: np.ndarray | None = None

    @property
    def scored(self) -> bool:
        return any(m.metric == "accuracy" for m in self.extra)

    @property
    def accuracy(self) -> float:
        """The headline: mean per-site test accuracy of the final model(s)."""
        for metric in self.extra:
            if metric.metric == "accuracy" and not metric.site:
                return metric.value
        return self.rounds[-1].accuracy

    def metrics(self) -> list[Metric]:
        """Rows for `summary.csv`: the yardsticks' figures, wall time, extras.

        Before scoring, the last round's per-site accuracies stand in.
        """
        rows = [Metric("wall_s", self.wall_s)]
        if not self.scored and self.rounds:
            last = self.rounds[-1]
            rows.append(Metric("accuracy", last.accuracy))
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
) -> RoundScore:
    """FLamby's metric: the unweighted mean of the per-site test accuracies.

    A site whose evaluation failed this round (NaN) is left out of the mean,
    as Flower leaves out a node's error reply. `swarm_fields` are the swarm's
    own columns: leader, view, reason and contributors.
    """
    scored = [a for a in accuracies if not np.isnan(a)]
    return RoundScore(
        round=server_round,
        accuracy=float(np.mean(scored)) if scored else float("nan"),
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


def score_logits(logits: np.ndarray, y: np.ndarray) -> GlobalScore:
    """The figures from one logit per row (a case above 0)."""
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
