"""What one method produced, and the per-site evaluation every method shares."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from torch import nn

from swarmflower.datasets import FederatedDataset
from swarmflower.tasks.training import Evaluation, evaluate


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
