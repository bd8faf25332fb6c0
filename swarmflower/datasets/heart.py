"""Fed-Heart-Disease: four real hospitals, preprocessed by the FLamby protocol.

Data: UCI Heart Disease (Janosi, Steinbrunn, Pfisterer, Detrano, 1988),
doi:10.24432/C52P4X, CC BY 4.0; shipped in `data/fed_heart_disease/` with its
README. Protocol (FLamby, NeurIPS 2022): keep columns 1-10, drop rows with a
missing value, target num > 0, one-hot cp and restecg with the first level
dropped (13 features), per-hospital stratified 66/34 split with seed 43 and
standardisation with the hospital's own train statistics.
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd

from swarmflower.datasets.base import FederatedDataset
from swarmflower.datasets.preprocessing import split_and_standardise

HOSPITALS: tuple[tuple[str, str], ...] = (
    ("cleveland", "processed.cleveland.data"),
    ("hungary", "processed.hungarian.data"),
    ("switzerland", "processed.switzerland.data"),
    ("va", "processed.va.data"),
)
COLUMNS = [
    *("age", "sex", "cp", "trestbps", "chol", "fbs", "restecg"),
    *("thalach", "exang", "oldpeak", "slope", "ca", "thal", "num"),
]
KEPT = COLUMNS[:10]
CATEGORICAL = ("cp", "restecg")
TEST_SIZE = 0.34
SPLIT_SEED = 43


def read_raw() -> pd.DataFrame:
    """The four hospital files, cleaned, with a `hospital` column (740 rows)."""
    folder = resources.files("swarmflower.datasets") / "data" / "fed_heart_disease"
    frames = []
    for hospital, filename in HOSPITALS:
        with resources.as_file(folder / filename) as path:
            frame = pd.read_csv(path, header=None, names=COLUMNS, na_values="?")
        frame = frame[KEPT + ["num"]].dropna()
        frame.insert(0, "hospital", hospital)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def load_heart() -> FederatedDataset:
    """The FLamby Fed-Heart-Disease split: one `SiteData` per hospital."""
    raw = read_raw()
    target = (raw.pop("num") > 0).astype(np.float32).to_numpy()
    hospital = raw.pop("hospital").to_numpy()
    features = pd.get_dummies(
        raw, columns=list(CATEGORICAL), drop_first=True, dtype=np.float64
    )
    x = features.to_numpy(dtype=np.float64)
    sites = tuple(
        split_and_standardise(
            name,
            x[hospital == name],
            target[hospital == name],
            test_size=TEST_SIZE,
            seed=SPLIT_SEED,
            require_both_classes=False,
        )
        for name, _ in HOSPITALS
    )
    return FederatedDataset(
        name="heart", sites=sites, feature_names=tuple(features.columns.astype(str))
    )
