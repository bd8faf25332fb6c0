"""What every dataset returns: one train/test split per site."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SiteData:
    """One site's local data; it never leaves the site in a swarm run."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def num_train(self) -> int:
        return len(self.y_train)

    @property
    def num_test(self) -> int:
        return len(self.y_test)


@dataclass(frozen=True)
class LeftOutSite:
    """A site of the user's table that is not in the federation, and why."""

    name: str
    rows: int
    reason: str


@dataclass(frozen=True)
class FederatedDataset:
    """A binary classification task split by site, features already numeric.

    `notices` are one-line reports of what loading changed (rows or columns
    dropped, sites left out, the positive class chosen), for the user to see;
    built-in datasets have none.
    """

    name: str
    sites: tuple[SiteData, ...]
    feature_names: tuple[str, ...]
    notices: tuple[str, ...] = ()
    left_out: tuple[LeftOutSite, ...] = ()
    positive_label: str | None = None

    @property
    def num_features(self) -> int:
        return len(self.feature_names)

    @property
    def num_sites(self) -> int:
        return len(self.sites)

    def pooled_train(self) -> tuple[np.ndarray, np.ndarray]:
        """All sites' training data in one place (the `pooled` baseline only)."""
        x = np.concatenate([s.x_train for s in self.sites])
        y = np.concatenate([s.y_train for s in self.sites])
        return x, y
