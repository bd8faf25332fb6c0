"""A user's own table, split by its real site column.

Numeric features are standardised per site on its train split; categorical
columns are one-hot encoded over the whole table, so all sites share one
feature layout (in a real deployment the sites agree on the categories).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from swarmflower.datasets.base import FederatedDataset
from swarmflower.datasets.preprocessing import split_and_standardise
from swarmflower.errors import DataError

TEST_SIZE = 0.3


def _read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"table not found: {path}")
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path} as CSV: {exc}") from exc


def _binary_target(column: pd.Series, name: str) -> np.ndarray:
    """1 for the larger of the two values (1, True, "yes", "present"), else 0."""
    values = list(column.dropna().unique())
    if len(values) != 2:
        shown = ", ".join(sorted(map(str, values))[:5])
        raise DataError(
            f"target column '{name}' must hold exactly 2 classes, "
            f"found {len(values)} ({shown})"
        )
    try:
        positive = max(values)
    except TypeError:
        positive = max(values, key=str)
    return (column == positive).to_numpy(dtype=np.float32)


def load_csv_table(
    path: str | Path, site_column: str | None, target: str | None, seed: int = 0
) -> FederatedDataset:
    """Read PATH, one site per distinct value of `site_column`, binary `target`."""
    path = Path(path)
    if site_column is None or target is None:
        raise DataError("a csv: task needs --site-column and --target")
    table = _read_table(path)
    for role, column in (("site column", site_column), ("target", target)):
        if column not in table.columns:
            raise DataError(f"{role} '{column}' is not a column of {path}")
    if site_column == target:
        raise DataError("--site-column and --target must be different columns")
    table = table.dropna(subset=[target])
    y = _binary_target(table[target], target)
    site = table[site_column].astype(str).to_numpy()
    features = table.drop(columns=[site_column, target])
    if features.empty:
        raise DataError(f"{path} has no feature columns besides site and target")
    numeric = features.select_dtypes(include="number")
    categorical = features.drop(columns=numeric.columns)
    numeric = numeric.fillna(numeric.median())
    encoded = pd.get_dummies(categorical.fillna("missing"), dtype=np.float64)
    matrix = pd.concat([numeric.astype(np.float64), encoded], axis=1)
    x = matrix.to_numpy(dtype=np.float64)
    scale_columns = np.arange(numeric.shape[1])
    sites = tuple(
        split_and_standardise(
            name,
            x[site == name],
            y[site == name],
            test_size=TEST_SIZE,
            seed=seed,
            scale_columns=scale_columns,
        )
        for name in sorted(set(site))
    )
    if len(sites) < 2:
        raise DataError(f"site column '{site_column}' names one site only")
    return FederatedDataset(
        name=f"csv:{path.name}",
        sites=sites,
        feature_names=tuple(matrix.columns.astype(str)),
    )
