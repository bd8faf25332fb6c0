"""scikit-learn's breast cancer data across N sites with Dirichlet label skew.

Not a natural split: useful to study how label skew between sites hurts or
helps, with a knob (alpha) that real hospital data does not offer.
"""

from __future__ import annotations

from swarmflower.datasets.base import FederatedDataset
from swarmflower.datasets.preprocessing import (
    dirichlet_label_partition,
    split_and_standardise,
)

TEST_SIZE = 0.3


def load_breast_cancer(
    num_sites: int = 4, alpha: float = 1.0, seed: int = 0
) -> FederatedDataset:
    """Partition rows by Dirichlet(alpha) class shares, then split each site."""
    # sklearn loads in ~2 s: only for this task, not in every process
    from sklearn.datasets import load_breast_cancer as _sklearn_breast_cancer

    bunch = _sklearn_breast_cancer()
    x, y = bunch.data, bunch.target
    parts = dirichlet_label_partition(y, num_sites, alpha, seed)
    sites = tuple(
        split_and_standardise(
            f"site-{k + 1}", x[idx], y[idx], test_size=TEST_SIZE, seed=seed
        )
        for k, idx in enumerate(parts)
    )
    return FederatedDataset(
        name="breast-cancer",
        sites=sites,
        feature_names=tuple(str(n) for n in bunch.feature_names),
    )
