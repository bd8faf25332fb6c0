"""`swarmflower compare` on the heart task, end to end, as the README runs it."""

import pandas as pd
import pytest
from cli_helpers import run_cli


@pytest.fixture(scope="module")
def heart_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    result = run_cli("compare", "--task", "heart", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out, result


def _headline(summary, method, metric="accuracy"):
    rows = summary[
        (summary.method == method) & (summary.metric == metric) & summary.site.isna()
    ]
    assert len(rows) == 1
    return float(rows.value.iloc[0])


def test_reaches_flamby_level_accuracy(heart_run):
    summary = pd.read_csv(heart_run[0] / "summary.csv")
    assert _headline(summary, "pooled") >= 0.70
    assert _headline(summary, "fedavg") >= 0.65
    assert _headline(summary, "local") > 0.5
    assert _headline(summary, "swarm") >= _headline(summary, "fedavg") - 0.01


def test_swarm_is_no_slower_than_flowers_fedavg(heart_run):
    out, result = heart_run
    summary = pd.read_csv(out / "summary.csv")
    swarm, fedavg = (
        _headline(summary, "swarm", "wall_s"),
        _headline(summary, "fedavg", "wall_s"),
    )
    assert swarm <= fedavg
    assert f"Flower FedAvg wall time: {swarm / fedavg:.2f}" in result.stdout


def test_summary_has_the_contract_columns(heart_run):
    summary = pd.read_csv(heart_run[0] / "summary.csv")
    assert list(summary.columns[:3]) == ["method", "metric", "value"]
    assert set(summary.method) == {"swarm", "fedavg", "local", "pooled"}
    for method in ("swarm", "fedavg", "local", "pooled"):
        assert _headline(summary, method, "wall_s") > 0
        per_site = summary[(summary.method == method) & summary.site.notna()]
        sites = per_site[per_site.metric == "accuracy"].site.tolist()
        assert sites == ["cleveland", "hungary", "switzerland", "va"]


def test_rounds_csv_has_every_round_of_every_method(heart_run):
    rounds = pd.read_csv(heart_run[0] / "rounds.csv")
    assert {"method", "round", "accuracy", "leader"} <= set(rounds.columns)
    for method in ("swarm", "fedavg", "local", "pooled"):
        assert rounds[rounds.method == method]["round"].tolist() == list(range(1, 21))
    swarm = rounds[rounds.method == "swarm"]
    assert swarm.leader.isin(["cleveland", "hungary", "switzerland", "va"]).all()
    assert swarm.leader.nunique() > 1
    summary = pd.read_csv(heart_run[0] / "summary.csv")
    last = rounds[(rounds.method == "fedavg") & (rounds["round"] == 20)]
    assert float(last.accuracy.iloc[0]) == pytest.approx(_headline(summary, "fedavg"))


def test_plot_and_table(heart_run):
    out, result = heart_run
    assert (out / "curves.png").stat().st_size > 10_000
    assert "fedavg" in result.stdout and "pooled" in result.stdout
