"""A user's own table as `csv:PATH`: it works, and bad input gets one clear line."""

import numpy as np
import pandas as pd
import pytest
from cli_helpers import assert_one_line_error, run_cli

from swarmflower.datasets import load_dataset
from swarmflower.datasets.heart import read_raw
from swarmflower.datasets.preprocessing import split_and_standardise
from swarmflower.errors import DataError


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """The real heart data as one table with a site column and a text category."""
    raw = read_raw()
    raw["disease"] = np.where(raw.pop("num") > 0, "yes", "no")
    raw["sex"] = raw["sex"].map({0.0: "female", 1.0: "male"})
    path = tmp_path_factory.mktemp("csv") / "hospitals.csv"
    raw.to_csv(path, index=False)
    return path


def test_sites_come_from_the_site_column(table):
    data = load_dataset(f"csv:{table}", site_column="hospital", target="disease")
    assert [s.name for s in data.sites] == ["cleveland", "hungary", "switzerland", "va"]
    assert sum(s.num_train + s.num_test for s in data.sites) == 740
    assert "sex_male" in data.feature_names and "age" in data.feature_names
    cleveland = data.sites[0]
    age = data.feature_names.index("age")
    assert cleveland.x_train[:, age].mean() == pytest.approx(0, abs=1e-5)
    sex = data.feature_names.index("sex_male")
    assert set(np.unique(cleveland.x_train[:, sex])) <= {0.0, 1.0}


def test_compare_runs_on_a_csv_table(table, tmp_path):
    result = run_cli(
        "compare",
        "--task",
        f"csv:{table}",
        "--site-column",
        "hospital",
        "--target",
        "disease",
        "--methods",
        "local,pooled",
        "--rounds",
        "2",
        "--out",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert set(summary.method) - {"data"} == {"local", "pooled"}


def _compare_csv(path, site_column="hospital", target="disease"):
    return run_cli(
        "compare",
        "--task",
        f"csv:{path}",
        "--site-column",
        site_column,
        "--target",
        target,
        "--rounds",
        "1",
    )


def test_missing_file(tmp_path):
    missing = tmp_path / "nowhere.csv"
    assert_one_line_error(_compare_csv(missing), "table not found", "nowhere.csv")


def test_missing_column(table):
    assert_one_line_error(
        _compare_csv(table, target="outcome"), "target 'outcome'", "not a column"
    )
    assert_one_line_error(
        _compare_csv(table, site_column="clinic"), "site column 'clinic'"
    )


def test_non_binary_target(table):
    assert_one_line_error(
        _compare_csv(table, target="cp"), "target column 'cp'", "exactly 2 classes"
    )


def test_site_with_one_class_only_trains_like_any_other(table, tmp_path):
    frame = pd.read_csv(table)
    frame = frame[~((frame.hospital == "va") & (frame.disease == "no"))]
    path = tmp_path / "va-all-sick.csv"
    frame.to_csv(path, index=False)
    data = load_dataset(f"csv:{path}", site_column="hospital", target="disease")
    va = data.sites[-1]
    assert va.name == "va"
    assert set(va.y_train.tolist()) == set(va.y_test.tolist()) == {1.0}
    assert any(
        "hold one class of 'disease' only" in n and "va" in n for n in data.notices
    )


def test_train_split_with_one_class_is_refused_whatever_the_seed():
    """A single healthy patient: refused exactly when the split puts it in test."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(21, 3))
    y = np.array([1.0] * 20 + [0.0])
    outcomes = set()
    for seed in range(40):
        try:
            site = split_and_standardise("clinic", x, y, test_size=0.3, seed=seed)
        except DataError as error:
            assert "train split of site 'clinic' holds one class only" in str(error)
            outcomes.add("refused")
        else:
            assert set(site.y_train.tolist()) == {0.0, 1.0}
            outcomes.add("accepted")
    assert outcomes == {"refused", "accepted"}


def test_unknown_task_names_the_choices():
    result = run_cli("compare", "--task", "mnist", "--rounds", "1")
    assert_one_line_error(result, "unknown task 'mnist'", "heart")
