"""Splitting and scaling shared by the datasets, done per site as a hospital would."""

from __future__ import annotations

import numpy as np

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
    a constant column (std 0) is centred but left unscaled. A site, or its
    train split, holding one class only is an error unless
    `require_both_classes` is off (FLamby's Switzerland split is kept as
    published; a user's clinic may simply have seen one outcome).
    """
    classes, counts = np.unique(y, return_counts=True)
    if require_both_classes and len(classes) < 2:
        raise DataError(f"site '{name}' holds one class only ({classes[0]!r})")
    x_train, x_test, y_train, y_test = split_rows(
        name, x, y, test_size=test_size, seed=seed
    )
    if require_both_classes and len(np.unique(y_train)) < 2:
        raise DataError(
            f"the train split of site '{name}' holds one class only "
            f"({int(counts.min())} row(s) of the rarer class)"
        )
    return standardise(
        name, (x_train, y_train), (x_test, y_test), scale_columns=scale_columns
    )


def split_rows(
    name: str, x: np.ndarray, y: np.ndarray, *, test_size: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Seeded train/test split: x_train, x_test, y_train, y_test.

    Stratified by FLamby's rule, only when every class has more than 2 rows
    (so a one-class site splits too). A site too small for both splits is
    one `DataError` naming it, not a scikit-learn traceback.
    """
    classes, counts = np.unique(y, return_counts=True)
    stratify = y if len(classes) > 1 and counts.min() > 2 else None
    try:
        from sklearn.model_selection import train_test_split  # slow to import

        return train_test_split(
            x,
            y,
            train_size=1.0 - test_size,
            test_size=test_size,
            random_state=seed,
            shuffle=True,
            stratify=stratify,
        )
    except ValueError:
        raise DataError(
            f"site '{name}' has {len(y)} row(s): too few to split into train and test"
        ) from None


def standardise(
    name: str,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    *,
    scale_columns: np.ndarray | None = None,
) -> SiteData:
    """Scale `scale_columns` (default: all) with the train split's mean and std.

    Test rows are scaled with the train statistics, so nothing about them
    leaks into training; std 0 leaves a column centred but unscaled.
    """
    (x_train, y_train), (x_test, y_test) = train, test
    columns = (
        np.arange(x_train.shape[1])
        if scale_columns is None
        else np.asarray(scale_columns, dtype=int)
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
