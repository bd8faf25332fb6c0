"""Messy multi-site tables, as users bring them: cleaned and reported, or refused
in one line. Each table is built here, so every expectation is exact."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
from cli_helpers import assert_one_line_error, run_cli

from swarmflower.datasets import LeftOutSite, check_task_options, load_dataset
from swarmflower.datasets.csv_table import TEST_SIZE
from swarmflower.datasets.preprocessing import split_rows
from swarmflower.errors import ConfigError, DataError

REASON = "fewer than 10 rows (--min-site-rows)"
# Thirty clinics: two too small for the default --min-site-rows (c05, c17),
# one exactly at it (c20), two that only ever saw sick patients (c08, c22).
SIZES = {f"c{k:02d}": 24 for k in range(1, 31)} | {"c05": 4, "c17": 9, "c20": 10}
ONE_CLASS = ("c08", "c22")
KEPT = sorted(set(SIZES) - {"c05", "c17"})


def _write(folder, frame, name="table.csv"):
    path = folder / name
    frame.to_csv(path, index=False)
    return path


def _load(path, **options):
    return load_dataset(
        f"csv:{path}", site_column="clinic", target="outcome", **options
    )


def _refusal(path, **options) -> str:
    with pytest.raises(DataError) as caught:
        _load(path, **options)
    message = str(caught.value)
    assert "\n" not in message
    return message


def _assert_clean(data):
    """Every array finite and with the shared feature layout."""
    for site in data.sites:
        for x in (site.x_train, site.x_test):
            assert np.isfinite(x).all(), site.name
            assert x.shape[1] == data.num_features


def _rows(data) -> dict[str, int]:
    return {s.name: s.num_train + s.num_test for s in data.sites}


def _positives(data) -> int:
    return int(sum(s.y_train.sum() + s.y_test.sum() for s in data.sites))


def _clinics() -> pd.DataFrame:
    """The thirty clinics, clean: alternating outcomes except at ONE_CLASS."""
    rng = np.random.default_rng(0)
    frames = []
    for name, n in SIZES.items():
        sick = np.arange(n) % 2 == 0 if name not in ONE_CLASS else np.ones(n, bool)
        frames.append(
            pd.DataFrame(
                {
                    "clinic": name,
                    "age": rng.integers(30, 80, n).astype(str),
                    "sex": rng.choice(["F", "M"], n),
                    "bp": rng.normal(130, 15, n).round(1).astype(str),
                    "outcome": np.where(sick, "yes", "no"),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _messy_clinics() -> pd.DataFrame:
    """The thirty clinics as a spreadsheet would hold them."""
    table = _clinics()
    at = table.groupby("clinic").cumcount()  # row number within its clinic
    in_c01, in_c02, in_c03 = (table.clinic == c for c in ("c01", "c02", "c03"))
    table.loc[in_c01 & at.isin([1, 3]), "outcome"] = ["", "NA"]
    table.loc[in_c02 & at.isin([0, 2, 4]), "outcome"] = ["?", " nan ", "NULL"]
    table.loc[in_c03 & at.isin([0, 1]), "clinic"] = [" ", "N/A"]
    table.loc[at == 5, "bp"] = "inf"
    table.loc[at == 6, "bp"] = " NaN "
    table.loc[at == 7, "age"] = "?"
    table.loc[at == 8, "sex"] = " "
    table.loc[at == 9, "sex"] = " M "
    table.loc[at == 10, "outcome"] = table.loc[at == 10, "outcome"].map(
        {"yes": "Yes ", "no": " NO"}
    )
    table["clinic"] = table["clinic"].str.pad(5, side="both")
    return table.rename(columns={"age": " age ", "outcome": "outcome "})


def _two_clinics(**columns) -> pd.DataFrame:
    """Clinics a and b with 12 rows each, outcomes alternating, and `columns`."""
    n = 24
    return pd.DataFrame(
        {
            "clinic": np.repeat(["a", "b"], n // 2),
            **columns,
            "outcome": np.tile(["yes", "no"], n // 2),
        }
    )


# --- many sites, tiny sites, one-class sites ---------------------------------


def test_thirty_clinics_keep_the_big_ones_and_list_the_tiny(tmp_path):
    data = _load(_write(tmp_path, _messy_clinics()))
    assert [s.name for s in data.sites] == KEPT
    assert data.left_out == (
        LeftOutSite("c05", 4, REASON),
        LeftOutSite("c17", 9, REASON),
    )
    assert data.notices == (
        "dropped 2 row(s) with no value in site column 'clinic'",
        "dropped 5 row(s) with a missing target: c01 2, c02 3",
        "positive class: 'yes' (of 'no', 'yes'); choose with --positive",
        "left out 2 site(s) with fewer than 10 rows (--min-site-rows): c05 4, c17 9",
        "2 site(s) hold one class of 'outcome' only (they still train): c08, c22",
    )
    assert data.positive_label == "yes"
    assert data.feature_names == ("age", "bp", "sex_F", "sex_M", "sex_missing")
    rows = _rows(data)
    assert (rows["c01"], rows["c02"], rows["c03"], rows["c20"]) == (22, 21, 22, 10)
    for site in data.sites:
        labels = set(site.y_train.tolist()) | set(site.y_test.tolist())
        assert labels == ({1.0} if site.name in ONE_CLASS else {0.0, 1.0})
    _assert_clean(data)


def test_min_site_rows_moves_the_cut(tmp_path):
    path = _write(tmp_path, _clinics())
    five = _load(path, min_site_rows=5)
    assert five.left_out == (
        LeftOutSite("c05", 4, "fewer than 5 rows (--min-site-rows)"),
    )
    assert "c17" in _rows(five)
    one = _load(path, min_site_rows=1)
    assert one.left_out == () and _rows(one)["c05"] == 4
    assert [s.name for s in one.sites] == sorted(SIZES)


def test_the_seed_alone_decides_the_split(tmp_path):
    path = _write(tmp_path, _clinics())
    first, again, other = (
        _load(path),
        _load(path),
        load_dataset(f"csv:{path}", site_column="clinic", target="outcome", seed=1),
    )
    assert np.array_equal(first.sites[0].x_train, again.sites[0].x_train)
    assert not np.array_equal(first.sites[0].x_train, other.sites[0].x_train)


# --- cleaning ---------------------------------------------------------------------


def test_markers_and_spaces_read_as_missing(tmp_path):
    markers = ["NA", " n/a", ".", "?", "NaN", "nan", "NULL", "null ", "", "inf", "-Inf"]
    bp = [str(120 + k) for k in range(24)]
    bp[0 : 2 * len(markers) : 2] = markers  # spread over both clinics
    smoker = [" yes", "no ", "?", "NA", " ", "yes", *(["no"] * 18)]
    frame = _two_clinics(**{" bp ": bp, "Smoker ": smoker})
    data = _load(_write(tmp_path, frame))
    assert data.feature_names == (
        "bp",
        "Smoker_no",
        "Smoker_yes",
        "Smoker_missing",
    )
    site = data.sites[0]
    assert site.x_train[:, 0].mean() == pytest.approx(0, abs=1e-5)  # standardised
    assert set(np.unique(site.x_train[:, 1:]).tolist()) <= {0.0, 1.0}
    _assert_clean(data)


def test_missing_numbers_take_the_train_split_median_of_their_own_site(tmp_path):
    """Site a's gaps get a's train median; site b never saw 'bp' in training."""
    n = 12
    y = np.tile([1.0, 0.0], n // 2)
    train_rows, test_rows, _, _ = split_rows(
        "a", np.arange(n), y, test_size=TEST_SIZE, seed=0
    )
    bp_a = np.arange(100.0, 100.0 + 7 * n, 7)  # distinct, so medians differ
    bp_a[train_rows[:2]] = np.nan
    bp_a[test_rows[0]] = 1000.0  # a test outlier the median must not see
    bp_b = np.full(n, np.nan)
    bp_b[test_rows] = 50.0  # b: no train value at all (same split: same y)
    frame = _two_clinics(bp=np.concatenate([bp_a, bp_b]), sex=np.tile(["F", "M"], n))
    data = _load(_write(tmp_path, frame))
    site_a, site_b = data.sites
    filled = bp_a[train_rows]
    median = np.nanmedian(filled)
    assert median != np.nanmedian(bp_a)  # pooled over a's rows would differ
    filled[np.isnan(filled)] = median
    expected = (filled - filled.mean()) / filled.std()
    assert site_a.x_train[:, 0] == pytest.approx(expected, abs=1e-5)
    assert site_a.x_test[0, 0] == pytest.approx(
        (1000.0 - filled.mean()) / filled.std(), rel=1e-5
    )
    assert np.all(site_b.x_train[:, 0] == 0) and np.all(site_b.x_test[:, 0] == 0)
    _assert_clean(data)


def test_missing_site_and_target_rows_are_dropped_with_counts(tmp_path):
    frame = pd.DataFrame(
        {
            "clinic": np.repeat(["a", "b", "c"], 15),
            "x": np.arange(45) * 1.5,
            "outcome": np.tile(["yes", "no", "no"], 15),
        }
    )
    frame.loc[[0, 1], "outcome"] = ["", "?"]
    frame.loc[[30, 31, 32], "outcome"] = ["NA", "nan", "null"]
    frame.loc[[16, 17], "clinic"] = [" ", "NA"]
    data = _load(_write(tmp_path, frame))
    assert data.notices[:2] == (
        "dropped 2 row(s) with no value in site column 'clinic'",
        "dropped 5 row(s) with a missing target: a 2, c 3",
    )
    assert _rows(data) == {"a": 13, "b": 13, "c": 12}


def test_useless_columns_are_dropped_with_notices(tmp_path):
    rng = np.random.default_rng(3)
    n = 24
    frame = _two_clinics(
        notes=["NA", "", "?", " "] * (n // 4),
        country=["NL"] * n,
        version=[3] * n,
        flag=["x", ""] * (n // 2),
        patient_id=rng.choice(np.arange(1000, 9000), n, replace=False),
        row=np.arange(1, n + 1),
        sample=[f"S-{k:03d}" for k in range(n)],
        crp=rng.gamma(2.0, 3.0, n).round(2),
        chol=rng.choice(np.arange(150, 300), n, replace=False),
        lipid_mg=rng.choice(np.arange(40, 240, 3), n, replace=False),
    )
    data = _load(_write(tmp_path, frame))
    assert data.feature_names == (
        "crp",
        "chol",
        "lipid_mg",
        "flag_x",
        "flag_missing",
    )
    assert data.notices[1:] == (
        "dropped all-missing column(s): notes",
        "dropped constant column(s): country, version",
        "dropped identifier-like column(s) (a distinct value on every row): "
        "patient_id, row, sample",
    )
    _assert_clean(data)


def test_all_numeric_and_all_categorical_tables(tmp_path):
    rng = np.random.default_rng(4)
    numeric = _two_clinics(x1=rng.normal(size=24), x2=rng.integers(0, 5, 24))
    assert _load(_write(tmp_path, numeric, "n.csv")).feature_names == ("x1", "x2")
    text = _two_clinics(
        sex=rng.choice(["F", "M"], 24), stage=rng.choice(["II", "I", "III"], 24)
    )
    data = _load(_write(tmp_path, text, "t.csv"))
    assert data.feature_names == (
        "sex_F",
        "sex_M",
        "stage_I",
        "stage_II",
        "stage_III",
    )
    _assert_clean(data)


def test_a_file_that_is_not_utf8_still_loads(tmp_path):
    frame = _two_clinics(
        site_kind=np.tile(["café", "hôpital"], 12), x=np.arange(24) + 0.5
    )
    path = tmp_path / "latin.csv"
    frame.to_csv(path, index=False, encoding="latin-1")
    assert "site_kind_café" in _load(path).feature_names


# --- the target ---------------------------------------------------------------


def test_spellings_of_one_class_are_one_class(tmp_path):
    outcome = ["yes", "yes", "Yes ", " YES", "no", "no", " NO"] * 4
    frame = pd.DataFrame(
        {"clinic": np.repeat(["a", "b"], 14), "x": np.arange(28.0), "outcome": outcome}
    )
    data = _load(_write(tmp_path, frame))
    assert data.positive_label == "yes"
    assert _positives(data) == 16
    assert "positive class: 'yes' (of 'no', 'yes'); choose with --positive" in (
        data.notices
    )


@pytest.mark.parametrize(
    ("values", "positive"),
    [
        (("1", "2"), "1"),
        (("0", "1"), "1"),
        (("1.0", "0.0"), "1"),
        (("0", "2"), "2"),
        (("3", "7"), "7"),
        (("True", "False"), "True"),
        (("absent", "present"), "present"),
        (("control", "case"), "case"),
        (("negative", "positive"), "positive"),
        (("sick", "healthy"), "sick"),
        (("benign", "malignant"), "malignant"),
        (("beta", "alpha"), "beta"),
    ],
)
def test_the_default_positive_class(tmp_path, values, positive):
    frame = _two_clinics(x=np.arange(24.0))
    frame["outcome"] = np.tile(values, 12)
    data = _load(_write(tmp_path, frame))
    assert data.positive_label == positive
    assert _positives(data) == 12


def test_positive_option_chooses_the_class(tmp_path):
    frame = _two_clinics(x=np.arange(24.0))
    frame["outcome"] = np.tile(["yes", "yes", "no"], 8)
    path = _write(tmp_path, frame)
    assert _positives(_load(path)) == 16
    data = _load(path, positive=" NO")
    assert data.positive_label == "no"
    assert _positives(data) == 8
    assert "positive class: 'no' (of 'no', 'yes'), as chosen with --positive" in (
        data.notices
    )
    frame["outcome"] = np.tile(["1", "2", "2"], 8)
    twelve = _load(_write(tmp_path, frame, "12.csv"), positive="2.0")
    assert twelve.positive_label == "2" and _positives(twelve) == 16


def test_positive_option_that_is_no_class_is_refused(tmp_path):
    path = _write(tmp_path, _two_clinics(x=np.arange(24.0)))
    assert _refusal(path, positive="maybe") == (
        "--positive 'maybe' is not a class of target 'outcome': use one of 'no', 'yes'"
    )


def test_a_third_class_is_refused_naming_the_classes(tmp_path):
    frame = _two_clinics(x=np.arange(24.0))
    frame.loc[5, "outcome"] = "Maybe "
    message = _refusal(_write(tmp_path, frame))
    assert "target column 'outcome' must hold exactly 2 classes" in message
    assert "found 3: 'Maybe', 'no', 'yes'" in message and "--positive" in message
    frame["outcome"] = np.arange(24) * 0.5
    message = _refusal(_write(tmp_path, frame, "continuous.csv"))
    assert "found 24: '0', '0.5', '1', '1.5', '2', and 19 more" in message


# --- refusals -------------------------------------------------------------------


def test_too_few_sites_left_is_refused_naming_the_left_out(tmp_path):
    frame = _two_clinics(x=np.arange(24.0))
    frame.loc[12:, "clinic"] = ["b"] * 5 + ["c"] * 7
    message = _refusal(_write(tmp_path, frame))
    assert message == (
        "only 1 site(s) of 'clinic' remain (2 left out, fewer than 10 rows "
        "(--min-site-rows): b 5, c 7); a swarm needs at least 2: lower "
        "--min-site-rows"
    )
    assert _refusal(_write(tmp_path, frame), min_site_rows=13).startswith(
        "only 0 site(s) of 'clinic' remain (3 left out, fewer than 13 rows"
    )
    frame["clinic"] = "a"
    assert _refusal(_write(tmp_path, frame, "one.csv")) == (
        "site column 'clinic' names one site only"
    )


def test_no_site_with_both_classes_is_refused(tmp_path):
    frame = _two_clinics(x=np.arange(24.0))
    frame["outcome"] = np.repeat(["yes", "no"], 12)
    assert _refusal(_write(tmp_path, frame)).startswith(
        "no site holds both classes of target 'outcome'"
    )


def test_a_site_too_small_to_split_is_one_line(tmp_path):
    frame = _two_clinics(x=np.arange(24.0))
    frame.loc[23, "clinic"] = "z"
    assert _refusal(_write(tmp_path, frame), min_site_rows=1) == (
        "site 'z' has 1 row(s): too few to split into train and test "
        "(raise --min-site-rows)"
    )


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "cannot read"),
        ("clinic,x,outcome\n", "has a header but no rows"),
        ("clinic,x,outcome\na,1,yes\na,1,no,extra,cells\n", "cannot read"),
        ("clinic, x ,x,outcome\na,1,2,yes\n", "column 'x' appears twice"),
        ("clinic,notes,outcome\n" + "a,,yes\na,NA,no\nb,?,yes\nb,,no\n" * 6, "usable"),
        ("clinic,outcome\na,yes\n", "no feature columns"),
    ],
)
def test_broken_files_are_one_line(tmp_path, text, fragment):
    path = tmp_path / "broken.csv"
    path.write_text(text)
    assert fragment in _refusal(path)


def test_csv_options_are_checked_by_name_and_kind():
    check_task_options("csv:t.csv", {"positive": "yes", "min_site_rows": 3})
    for options, fragment in [
        ({"colour": "red", "positive": "yes"}, "colour"),
        ({"min_site_rows": 0}, "at least 1"),
        ({"min_site_rows": 2.5}, "whole number"),
        ({"positive": 1}, "must be text"),
    ]:
        with pytest.raises(ConfigError, match=fragment):
            check_task_options("csv:t.csv", options)
    with pytest.raises(ConfigError, match="takes no options"):
        check_task_options("heart", {"positive": "yes"})


# --- the real command line (run side by side: each costs seconds) ------------


def _compare(path, *flags, methods="local,pooled"):
    return (
        "compare",
        *("--task", f"csv:{path}", "--site-column", "clinic", "--target", "outcome"),
        *("--methods", methods, "--rounds", "1", "--local-steps", "2"),
        *("--out", str(path.parent / f"out-{path.stem}"), *flags),
    )


# Every method but Flower's FedAvg, whose Ray start would double this file's
# time (a one-class test set reaching it is test_training's business).
EVERY_METHOD = "swarm,swarm+ft,local,local_own,pooled"


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(5)
    numeric = _two_clinics(x1=rng.normal(size=24), x2=rng.integers(0, 5, 24))
    text = _two_clinics(sex=rng.choice(["F", "M"], 24))
    text.loc[20:, "clinic"] = "c"
    three = _two_clinics(x=np.arange(24.0))
    three.loc[3, "outcome"] = "maybe"
    runs = {
        # the swarm meets the one-class and tiny clinics too
        "messy": _compare(
            _write(folder, _messy_clinics(), "messy.csv"), methods=EVERY_METHOD
        ),
        "numeric": _compare(_write(folder, numeric, "numeric.csv")),
        "flags": _compare(
            _write(folder, text, "text.csv"),
            *("--positive", "No", "--min-site-rows", "5"),
        ),
        "three": _compare(_write(folder, three, "three.csv")),
        "not_a_class": _compare(folder / "numeric.csv", "--positive", "maybe"),
    }
    with ThreadPoolExecutor(max_workers=len(runs)) as pool:
        results = {name: pool.submit(run_cli, *args) for name, args in runs.items()}
        return {name: future.result() for name, future in results.items()}, folder


def _sites_scored(folder, stem) -> set[str]:
    summary = pd.read_csv(folder / f"out-{stem}" / "summary.csv")
    return set(summary.loc[summary.method == "local", "site"].dropna())


def test_cli_runs_the_messy_thirty_clinics(cli):
    results, folder = cli
    assert results["messy"].returncode == 0, results["messy"].stderr
    assert _sites_scored(folder, "messy") == set(KEPT)
    summary = pd.read_csv(folder / "out-messy" / "summary.csv")
    assert set(summary.method) == set(EVERY_METHOD.split(",")) | {"data"}
    left_out = summary[summary.metric == "left_out_rows"]
    assert dict(zip(left_out.site, left_out.value, strict=True)) == {"c05": 4, "c17": 9}
    assert set(left_out.note) == {REASON}
    assert "left out 2 site(s)" in results["messy"].stdout


def test_cli_runs_an_all_numeric_table(cli):
    results, folder = cli
    assert results["numeric"].returncode == 0, results["numeric"].stderr
    assert _sites_scored(folder, "numeric") == {"a", "b"}


def test_cli_takes_positive_and_min_site_rows(cli):
    results, folder = cli
    assert results["flags"].returncode == 0, results["flags"].stderr
    assert _sites_scored(folder, "text") == {"a", "b"}  # c (4 rows) left out


def test_cli_refuses_a_third_class_in_one_line(cli):
    results, _ = cli
    assert_one_line_error(
        results["three"], "exactly 2 classes", "'maybe', 'no', 'yes'", "--positive"
    )
    assert_one_line_error(
        results["not_a_class"], "--positive 'maybe' is not a class", "'no', 'yes'"
    )
