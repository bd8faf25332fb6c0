"""Fed-Heart-Disease preprocessing matches FLamby's published counts."""

from importlib import resources

import numpy as np
import pytest

from swarmflower.datasets import load_dataset
from swarmflower.datasets.heart import read_raw


@pytest.fixture(scope="module")
def heart():
    return load_dataset("heart")


def test_rows_after_cleaning_per_hospital():
    counts = read_raw().groupby("hospital", sort=False).size()
    assert counts.to_dict() == {
        "cleveland": 303,
        "hungary": 261,
        "switzerland": 46,
        "va": 130,
    }


def test_train_test_sizes_and_features(heart):
    sizes = [(s.name, s.num_train, s.num_test) for s in heart.sites]
    assert sizes == [
        ("cleveland", 199, 104),
        ("hungary", 172, 89),
        ("switzerland", 30, 16),
        ("va", 85, 45),
    ]
    assert heart.num_features == 13
    assert all(s.x_train.shape[1] == 13 == s.x_test.shape[1] for s in heart.sites)


def test_one_hot_drops_first_level(heart):
    names = heart.feature_names
    assert [n for n in names if n.startswith("cp_")] == ["cp_2.0", "cp_3.0", "cp_4.0"]
    assert [n for n in names if n.startswith("restecg_")] == [
        "restecg_1.0",
        "restecg_2.0",
    ]


def test_standardised_with_each_hospitals_own_train_split(heart):
    for site in heart.sites:
        mean = site.x_train.mean(axis=0)
        std = site.x_train.std(axis=0)
        assert np.allclose(mean, 0, atol=1e-5), site.name
        # Constant columns (Switzerland's cholesterol is recorded as 0) stay 0.
        assert np.all(np.isclose(std, 1, atol=1e-4) | np.isclose(std, 0)), site.name
        # The test split is scaled with the train statistics, so it is not
        # exactly centred itself.
        assert not np.allclose(site.x_test.mean(axis=0), 0, atol=1e-5)


def test_target_is_num_above_zero():
    raw = read_raw()
    cleveland = raw[raw.hospital == "cleveland"]
    assert int((cleveland.num > 0).sum()) == 139


def test_attribution_ships_with_the_data():
    readme = (
        resources.files("swarmflower.datasets")
        / "data"
        / "fed_heart_disease"
        / "README.md"
    ).read_text()
    assert "CC BY 4.0" in readme
    assert "Janosi" in readme and "doi:10.24432/C52P4X" in readme
