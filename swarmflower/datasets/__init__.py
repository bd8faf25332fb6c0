"""Built-in datasets and users' tables, each returned as per-site train/test splits."""

from __future__ import annotations

from collections.abc import Mapping

from swarmflower.datasets.base import FederatedDataset, LeftOutSite, SiteData
from swarmflower.datasets.breast_cancer import load_breast_cancer
from swarmflower.datasets.csv_table import check_csv_options, load_csv_table
from swarmflower.datasets.heart import load_heart
from swarmflower.datasets.transcriptome import check_options, load_transcriptome
from swarmflower.errors import ConfigError

BUILT_IN = ("heart", "breast-cancer", "transcriptome")


def check_task_options(task: str, options: Mapping[str, object]) -> None:
    """Refuse task-specific options the task does not take (before any loading)."""
    if task == "transcriptome":
        check_options(dict(options))
    elif task.startswith("csv:"):
        check_csv_options(dict(options))
    elif options:
        raise ConfigError(
            f"task '{task}' takes no options, got {', '.join(sorted(options))}"
        )


def load_dataset(
    task: str,
    *,
    num_sites: int = 4,
    alpha: float = 1.0,
    seed: int = 0,
    site_column: str | None = None,
    target: str | None = None,
    **options: object,
) -> FederatedDataset:
    """Resolve a task name (`heart`, `breast-cancer`, ...) or `csv:PATH` to its data.

    `options` are task-specific (for `transcriptome`: genes, studies, samples,
    partition, ...; for `csv:PATH`: positive, min_site_rows); a task that
    takes none refuses them.
    """
    check_task_options(task, options)
    if task == "transcriptome":
        return load_transcriptome(
            num_sites=num_sites, seed=seed, alpha=alpha, **options
        )
    if task == "heart":
        return load_heart()
    if task == "breast-cancer":
        return load_breast_cancer(num_sites=num_sites, alpha=alpha, seed=seed)
    if task.startswith("csv:"):
        given = {name: value for name, value in options.items() if value is not None}
        return load_csv_table(task[4:], site_column, target, seed=seed, **given)
    choices = ", ".join(BUILT_IN)
    raise ConfigError(f"unknown task '{task}': use one of {choices}, or csv:PATH")


__all__ = [
    "FederatedDataset",
    "LeftOutSite",
    "SiteData",
    "load_dataset",
    "check_task_options",
    "BUILT_IN",
]
