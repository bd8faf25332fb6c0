"""Built-in datasets and users' tables, each returned as per-site train/test splits."""

from __future__ import annotations

from swarmflower.datasets.base import FederatedDataset, SiteData
from swarmflower.datasets.breast_cancer import load_breast_cancer
from swarmflower.datasets.csv_table import load_csv_table
from swarmflower.datasets.heart import load_heart
from swarmflower.errors import ConfigError

BUILT_IN = ("heart", "breast-cancer")


def load_dataset(
    task: str,
    *,
    num_sites: int = 4,
    alpha: float = 1.0,
    seed: int = 0,
    site_column: str | None = None,
    target: str | None = None,
) -> FederatedDataset:
    """Resolve a task name (`heart`, `breast-cancer`) or `csv:PATH` to its data."""
    if task == "heart":
        return load_heart()
    if task == "breast-cancer":
        return load_breast_cancer(num_sites=num_sites, alpha=alpha, seed=seed)
    if task.startswith("csv:"):
        return load_csv_table(task[4:], site_column, target, seed=seed)
    choices = ", ".join(BUILT_IN)
    raise ConfigError(f"unknown task '{task}': use one of {choices}, or csv:PATH")


__all__ = ["FederatedDataset", "SiteData", "load_dataset", "BUILT_IN"]
