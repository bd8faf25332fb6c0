"""The Dirichlet label-skew partition of scikit-learn's breast cancer data."""

import numpy as np
import pytest

from swarmflower.datasets import load_dataset
from swarmflower.datasets.preprocessing import dirichlet_label_partition
from swarmflower.errors import DataError


def test_partition_uses_every_row_once():
    y = np.repeat([0, 1], [212, 357])
    parts = dirichlet_label_partition(y, num_sites=7, alpha=0.3, seed=1)
    joined = np.concatenate(parts)
    assert sorted(joined.tolist()) == list(range(len(y)))
    assert all((y[p] == 0).sum() >= 2 and (y[p] == 1).sum() >= 2 for p in parts)


def test_small_alpha_skews_labels_more():
    y = np.repeat([0, 1], [212, 357])

    def spread(alpha):
        parts = dirichlet_label_partition(y, num_sites=6, alpha=alpha, seed=3)
        return np.std([y[p].mean() for p in parts])

    assert spread(0.1) > spread(100.0)


def test_same_seed_same_sites_different_seed_different_sites():
    a = load_dataset("breast-cancer", num_sites=5, alpha=0.5, seed=0)
    b = load_dataset("breast-cancer", num_sites=5, alpha=0.5, seed=0)
    c = load_dataset("breast-cancer", num_sites=5, alpha=0.5, seed=1)
    assert a.num_sites == 5 and a.num_features == 30
    for sa, sb in zip(a.sites, b.sites, strict=True):
        assert np.array_equal(sa.x_train, sb.x_train)
    assert [s.num_train for s in a.sites] != [s.num_train for s in c.sites]


def test_too_many_sites_for_the_data_is_a_clear_error():
    with pytest.raises(DataError, match="too few"):
        load_dataset("breast-cancer", num_sites=200)
