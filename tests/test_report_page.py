"""`report.html` from a result folder written in `swarmflower compare`'s format."""

from __future__ import annotations

import base64
import io
import json
import math
import re
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from browser_helpers import chromium_path, render, tables

from swarmflower.errors import DataError
from swarmflower.report import write_report

SITES = ["cleveland", "hungary", "switzerland", "va"]
SUPPORT = {"cleveland": (60, 27), "hungary": (59, 21), "switzerland": (25, 25)}
SUPPORT["va"] = (40, 30)
ONE_CLASS_SITE = "switzerland"  # all its test rows are cases: no AUC
# Shuffled on purpose: the page shows them in the usual order.
METHODS = ["pooled", "swarm", "local_own", "fedavg", "swarm+ft", "local"]
SHOWN_ORDER = ["swarm", "swarm+ft", "fedavg", "local", "local_own", "pooled"]

TRAINED = ["swarm", "fedavg", "local", "pooled"]
ACCURACY = {"swarm": 0.8123, "swarm+ft": 0.8234, "fedavg": 0.7912}
ACCURACY |= {"local": 0.7011, "local_own": 0.7433, "pooled": 0.8345}
SD = {m: 0.0214 + 0.003 * i for i, m in enumerate(SHOWN_ORDER)}
SITE_METRICS = ["accuracy", "balanced_accuracy", "auc", "sensitivity", "specificity"]
GLOBAL_METRICS = [f"global_{m}" for m in SITE_METRICS]
LEGEND = {m: f"what {m} does, in one line" for m in METHODS}
LEFT_OUT = ("long_beach", 12, "fewer than 20 rows with a known diagnosis")
SUMMARY_COLUMNS = ["method", "metric", "value", "site", "test_rows", "positives"]
SUMMARY_COLUMNS += ["sd", "ci_low", "ci_high", "seeds", "note"]
T_975 = {2: 4.303}  # t quantile for 3 seeds (2 degrees of freedom)


def _row(method, metric, value, site="", support=(None, None), sd=None, seeds=3):
    spread = sd is not None and seeds > 1 and not math.isnan(value)
    half = T_975[seeds - 1] * sd / math.sqrt(seeds) if spread else None
    return {
        "method": method,
        "metric": metric,
        "value": value,
        "site": site,
        "test_rows": support[0],
        "positives": support[1],
        "sd": sd if spread else None,
        "ci_low": value - half if spread else None,
        "ci_high": value + half if spread else None,
        "seeds": seeds,
        "note": None,
    }


def _method_rows(method, sites, seeds, wall_s=12.34):
    """One method's rows: per-site and mean figures, global ones, wall time."""
    base, sd = ACCURACY[method], SD[method]
    rows = []
    for k, metric in enumerate(SITE_METRICS):
        offset = 0.01 * k
        values = []
        for i, site in enumerate(sites):
            value = base + offset - 0.02 * (i % 7)
            if metric == "auc" and site == ONE_CLASS_SITE:
                value = math.nan
            support = SUPPORT.get(site, (30 + i % 9, 10 + i % 5))
            rows.append(_row(method, metric, value, site, support, sd, seeds))
            values.append(value)
        mean = base if metric == "accuracy" else float(np.nanmean(values))
        rows.append(_row(method, metric, mean, "", (184, 103), sd, seeds))
    for metric in GLOBAL_METRICS:
        rows.append(_row(method, metric, base + 0.005, "", (184, 103), sd, seeds))
    if method == "local":
        for i, site in enumerate(sites):
            for metric in GLOBAL_METRICS:
                value = 0.6 + 0.01 * i
                rows.append(_row(method, metric, value, site, (184, 103), sd, seeds))
        for metric in GLOBAL_METRICS:
            weakest = f"{metric}_weakest"
            rows.append(_row(method, weakest, 0.6, "", (184, 103), sd, seeds))
    rows.append(_row(method, "wall_s", wall_s, "", sd=0.51, seeds=seeds))
    if method == "swarm":
        rows.append(_row(method, "distinct_leaders", 3.0, "", sd=0.0, seeds=seeds))
        rows.append(_row(method, "crashes", 0.0, "", sd=0.0, seeds=seeds))
    return rows


def _data_rows(sites):
    rows = [
        {"method": "data", "metric": "site_rows", "value": 300, "site": s}
        for s in sites
    ]
    site, n, reason = LEFT_OUT
    rows.append(
        {
            "method": "data",
            "metric": "left_out_rows",
            "value": n,
            "site": site,
            "note": reason,
        }
    )
    rows.append(
        {"method": "data", "metric": "positive_class", "note": "disease (num > 0)"}
    )
    rows.append({"method": "data", "metric": "notice", "note": "va: 2 rows had no age"})
    return rows


def _roc_points(rng, separation, n=80):
    """A real ROC curve of scores where cases score `separation` higher."""
    y = np.arange(n) % 2
    scores = rng.normal(size=n) + separation * y
    order = np.argsort(-scores)
    tpr = np.concatenate([[0], np.cumsum(y[order]) / y.sum()])
    fpr = np.concatenate([[0], np.cumsum(1 - y[order]) / (n - y.sum())])
    return fpr, tpr


def _rounds_frame(sites, seeds, n_rounds=5):
    rows = []
    for method in TRAINED:
        for seed in seeds:
            for r in range(1, n_rounds + 1):
                accuracy = ACCURACY[method] - 0.2 / r + 0.01 * seed
                row = {"method": method, "seed": seed, "round": r, "accuracy": accuracy}
                swarm = method == "swarm"
                row |= {
                    "leader": sites[(r + seed) % len(sites)] if swarm else None,
                    "view": (r % 2) if swarm else None,
                    "reason": "elected" if swarm else None,
                    "contributors": len(sites) if swarm else None,
                    "wall_s": 0.5,
                }
                row |= {f"accuracy_{s}": accuracy for s in sites}
                rows.append(row)
    frame = pd.DataFrame(rows)
    for column in ("view", "contributors"):
        frame[column] = frame[column].astype("Int64")
    return frame


def _roc_frame(seeds):
    rng = np.random.default_rng(7)
    frames = []
    for k, method in enumerate(METHODS):
        for seed in seeds:
            fpr, tpr = _roc_points(rng, 1.0 + 0.3 * k)
            frames.append(
                pd.DataFrame({"method": method, "seed": seed, "fpr": fpr, "tpr": tpr})
            )
    return pd.concat(frames)


def build_run(
    directory: Path,
    sites=tuple(SITES),
    seeds=(0, 1, 2),
    methods=tuple(METHODS),
    files=("rounds.csv", "roc.csv", "run.json"),
) -> Path:
    """A result folder exactly as `swarmflower compare --out` writes it."""
    directory.mkdir(parents=True, exist_ok=True)
    sites, seeds = list(sites), list(seeds)
    rows = [r for m in methods for r in _method_rows(m, sites, len(seeds))]
    summary = pd.DataFrame(rows + _data_rows(sites), columns=SUMMARY_COLUMNS)
    for column in ("test_rows", "positives", "seeds"):
        summary[column] = summary[column].astype("Int64")
    summary.to_csv(directory / "summary.csv", index=False)
    if "rounds.csv" in files:
        _rounds_frame(sites, seeds).to_csv(directory / "rounds.csv", index=False)
    if "roc.csv" in files:
        _roc_frame(seeds).to_csv(directory / "roc.csv", index=False)
    if "run.json" in files:
        meta = {
            "title": "Heart disease: swarm vs. FedAvg",
            "task": "heart",
            "rounds": 5,
        }
        meta |= {"seeds": seeds, "methods": list(methods), "sites": sites}
        meta["legend"] = {m: LEGEND[m] for m in methods}
        (directory / "run.json").write_text(json.dumps(meta))
    return directory


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    return write_report(build_run(tmp_path_factory.mktemp("run")))


@pytest.fixture(scope="module")
def page(report) -> str:
    return report.read_text(encoding="utf-8")


def _headline(page: str) -> list[list[str]]:
    return tables(page)[0]


def _image_uris(page: str) -> list[str]:
    return re.findall(r"<img[^>]*\ssrc=['\"]([^'\"]*)['\"]", page)


def test_writes_report_html_in_the_folder(report):
    assert report.name == "report.html" and report.is_file()


def test_headline_shows_mean_sd_and_interval_per_method(page):
    rows = _headline(page)
    assert rows[0][:3] == ["method", "accuracy", "balanced accuracy"]
    assert [r[0] for r in rows[1:]] == SHOWN_ORDER
    assert "0.812 ± 0.021" in page and "95% CI 0.759–0.865" in page
    for method in METHODS:
        value, sd = ACCURACY[method], SD[method]
        half = T_975[2] * sd / math.sqrt(3)
        row = next(r for r in rows if r[0] == method)
        assert (
            row[1]
            == f"{value:.3f} ± {sd:.3f} 95% CI {value - half:.3f}–{value + half:.3f}"
        )
        assert row[-1].startswith("12.3 ± 0.5 s")


def test_left_out_site_reason_notices_and_positive_class(page):
    site, n, reason = LEFT_OUT
    left_out = next(t for t in tables(page) if t[0] == ["site", "rows", "reason"])
    assert left_out[1:] == [[site, str(n), reason]]
    assert "va: 2 rows had no age" in page
    assert "disease (num &gt; 0)" in page


def test_legend_line_per_method(page):
    for method in METHODS:
        assert f"<b>{method}</b>: {LEGEND[method]}</li>" in page


def test_no_web_addresses(page):
    assert "http://" not in page and "https://" not in page


def test_every_image_is_an_embedded_png(page):
    uris = _image_uris(page)
    assert len(uris) == page.count("<img") == 2  # learning curves and ROC
    for uri in uris:
        assert uri.startswith("data:image/png;base64,")
        png = base64.b64decode(uri.split(",", 1)[1], validate=True)
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        assert matplotlib.image.imread(io.BytesIO(png)).shape[0] > 100


def test_one_class_site_auc_is_na_with_tooltip(page):
    assert '<td class="num na" title="one class in this test set">n/a</td>' in page
    swarm = next(t for t in tables(page) if t[0][0] == "site" and len(t[0]) == 8)
    auc = swarm[0].index("AUC")
    assert [r[auc] for r in swarm if r[0] == ONE_CLASS_SITE] == ["n/a"]
    assert [r[:3] for r in swarm[1:]] == [[s, *map(str, SUPPORT[s])] for s in SITES]


def test_local_sites_show_their_model_on_all_test_rows(page):
    local = [t for t in tables(page) if t[0][-1] == "global AUC"]
    assert len(local) == 1 and len(local[0]) == 1 + len(SITES)
    assert "The weakest site's model scores AUC 0.600" in page


def test_swarm_rounds_of_the_first_seed(page):
    rounds = next(t for t in tables(page) if t[0][:2] == ["round", "leader"])
    assert [r[0] for r in rounds[1:]] == ["1", "2", "3", "4", "5"]
    assert rounds[1][1:5] == ["hungary", "1", "elected", "4"]
    assert "Seed 0 only" in page
    assert "Distinct leaders per run: 3.0 ± 0.0. Crashes per run: 0.0 ± 0.0." in page


def test_missing_summary_is_a_one_line_data_error(tmp_path):
    with pytest.raises(DataError, match="no summary.csv in") as error:
        write_report(tmp_path)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "report.html").exists()


@pytest.mark.parametrize(
    ("file", "damage", "message"),
    [
        (
            "summary.csv",
            lambda t: t.replace("0.8123", "high", 1),
            "'high' is not a number",
        ),
        (
            "summary.csv",
            lambda t: t.replace("metric,", "measure,", 1),
            "missing column",
        ),
        ("summary.csv", lambda t: t.splitlines()[0] + "\n", "no method rows"),
        ("rounds.csv", lambda t: t.replace("leader,", "", 1), "missing column"),
        ("roc.csv", lambda t: t.replace(",0.0,", ",1.5,", 1), "between 0 and 1"),
        ("run.json", lambda t: t[:-1], "not valid JSON"),
        ("run.json", lambda t: t.replace('"rounds": 5', '"rounds": "5"'), "'rounds'"),
    ],
)
def test_malformed_file_is_a_data_error_naming_it(tmp_path, file, damage, message):
    build_run(tmp_path)
    path = tmp_path / file
    path.write_text(damage(path.read_text()))
    with pytest.raises(DataError, match=re.escape(message)) as error:
        write_report(tmp_path)
    assert file in str(error.value) and "\n" not in str(error.value)


def test_one_seed_shows_plain_values(tmp_path):
    page = write_report(build_run(tmp_path, seeds=(0,))).read_text()
    swarm = next(r for r in _headline(page) if r[0] == "swarm")
    assert swarm[1] == "0.812" and swarm[-1] == "12.3 s"
    assert "±" not in page and "95% CI" not in page


def test_text_from_files_is_escaped(tmp_path):
    sites = ["<b>x</b>", *SITES[1:]]
    build_run(tmp_path, sites=sites)
    meta = json.loads((tmp_path / "run.json").read_text())
    meta["title"] = "<script>alert(1)</script>"
    (tmp_path / "run.json").write_text(json.dumps(meta))
    page = write_report(tmp_path).read_text()
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "<b>x</b>" not in page
    assert "<script" not in page


def test_only_summary_leaves_sections_out_with_a_sentence(tmp_path):
    page = write_report(build_run(tmp_path, files=())).read_text()
    assert "Learning curves are unavailable: no rounds in rounds.csv." in page
    assert "ROC curves are unavailable: no points in roc.csv." in page
    assert "No method descriptions: run.json is unavailable." in page
    assert "<img" not in page and "Swarm rounds" not in page
    assert [r[0] for r in _headline(page)[1:]] == SHOWN_ORDER
    assert "cleveland, hungary, switzerland, va" in page  # sites from the data rows


def test_empty_optional_files_count_as_unavailable(tmp_path):
    build_run(tmp_path)
    (tmp_path / "rounds.csv").write_text("")
    (tmp_path / "roc.csv").write_text("method,seed,fpr,tpr\n")  # no ROC computed
    page = write_report(tmp_path).read_text()
    assert "no rounds in rounds.csv" in page and "no points in roc.csv" in page


def test_thousand_sites_stay_readable(tmp_path):
    sites = [f"site{i:04d}" for i in range(1000)]
    build_run(tmp_path, sites=sites, methods=("swarm", "local"), files=("rounds.csv",))
    page = write_report(tmp_path).read_text()
    per_site = [t for t in tables(page) if t[0][0] == "site" and len(t[0]) >= 8]
    assert len(per_site) == 2
    for table in per_site:
        assert len(table) == 1 + 12 + 1 + 12  # header, weakest, gap, strongest
        assert max(len(r) for r in table) <= 9
    assert "The 12 weakest and 12 strongest of 1000 sites" in page
    assert "and 980 more" in page
    assert len(page) < 400_000


def _colour_pixels(png: Path, hex_colour: str, tolerance: float = 0.06) -> int:
    image = matplotlib.image.imread(png)[..., :3]
    target = np.array([int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return int((np.abs(image - target) <= tolerance).all(axis=-1).sum())


@pytest.mark.skipif(chromium_path() is None, reason="no chromium binary on PATH")
def test_chromium_renders_tables_and_plots(report, tmp_path):
    shot = tmp_path / "shot.png"
    dom = render(report, shot)
    headline = tables(dom)[0]
    assert len(headline) == 1 + len(METHODS)
    assert [r[0] for r in headline[1:]] == SHOWN_ORDER
    for method in METHODS:
        assert f">{method}</t" in dom
    assert [u[:22] for u in _image_uris(dom)] == ["data:image/png;base64,"] * 2
    assert matplotlib.image.imread(shot).shape[:2] == (3000, 1200)
    # Matplotlib's C0 blue (swarm) and C1 orange (swarm+ft) appear only where
    # the embedded plots decoded and were drawn.
    assert _colour_pixels(shot, "#1f77b4") > 500
    assert _colour_pixels(shot, "#ff7f0e") > 200
