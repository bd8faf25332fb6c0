"""Splitting and scaling shared by the datasets, done per site as a hospital would."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split

from swarmflower.datasets.base import SiteData
from swarmflower.errors import DataError


def split_and_standardise(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    *,
    test_size: float,
    seed: int,
    scale_columns: np.ndarray | None = None,
    require_both_classes: bool = True,
) -> SiteData:
    """Stratified train/test split, then scale with the site's own train statistics.

    Only the train split's mean and std are used, so no test information leaks;
    a constant column (std 0) is centred but left unscaled. A site whose train
    split holds one class only is an error unless `require_both_classes` is
    off (FLamby's Switzerland split is kept as published).
    """
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise DataError(f"site '{name}' holds one class only ({classes[0]!r})")
    # FLamby's rule: stratify only when every class has more than 2 rows.
    stratify = y if counts.min() > 2 else None
    x_train, x_test, y_train, y_test = train_test_split(
        x,
        y,
        train_size=1.0 - test_size,
        test_size=test_size,
        random_state=seed,
        shuffle=True,
        stratify=stratify,
    )
    if require_both_classes and len(np.unique(y_train)) < 2:
        raise DataError(
            f"the train split of site '{name}' holds one class only "
            f"({int(counts.min())} row(s) of the rarer class)"
        )
    columns = (
        np.arange(x.shape[1]) if scale_columns is None else np.asarray(scale_columns)
    )
    mean = x_train[:, columns].mean(axis=0)
    std = x_train[:, columns].std(axis=0)
    std[std == 0] = 1.0
    x_train = x_train.copy()
    x_test = x_test.copy()
    x_train[:, columns] = (x_train[:, columns] - mean) / std
    x_test[:, columns] = (x_test[:, columns] - mean) / std
    return SiteData(
        name=name,
        x_train=x_train.astype(np.float32),
        y_train=y_train.astype(np.float32),
        x_test=x_test.astype(np.float32),
        y_test=y_test.astype(np.float32),
    )


def dirichlet_label_partition(
    y: np.ndarray, num_sites: int, alpha: float, seed: int, min_per_class: int = 2
) -> list[np.ndarray]:
    """Split row indices across sites with class shares drawn from Dirichlet(alpha).

    Small alpha gives strongly skewed label mixes. Every site first gets
    `min_per_class` rows of each class, so that it can split and train.
    """
    if num_sites < 1:
        raise DataError(f"number of sites must be at least 1, got {num_sites}")
    if alpha <= 0:
        raise DataError(f"Dirichlet alpha must be positive, got {alpha}")
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in range(num_sites)]
    for cls in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == cls))
        reserved = min_per_class * num_sites
        if len(idx) < reserved:
            raise DataError(
                f"class {cls!r} has {len(idx)} rows: too few for {num_sites} sites"
            )
        for site in range(num_sites):
            parts[site].extend(idx[site * min_per_class : (site + 1) * min_per_class])
        rest = idx[reserved:]
        shares = rng.dirichlet(np.full(num_sites, alpha))
        cuts = (np.cumsum(shares) * len(rest)).astype(int)[:-1]
        for site, chunk in enumerate(np.split(rest, cuts)):
            parts[site].extend(chunk)
    return [np.sort(np.asarray(p, dtype=int)) for p in parts]
