"""Scenario files from the command line: listed, and run by `compare --scenario`."""

import pandas as pd
from cli_helpers import run_cli

from swarmflower.simulations.experiments.scenarios import list_scenarios


def test_scenarios_lists_every_shipped_file():
    result = run_cli("scenarios")
    assert result.returncode == 0, result.stderr
    for name in list_scenarios():
        assert name in result.stdout


def test_compare_runs_the_smoke_scenario_with_its_faults(tmp_path):
    result = run_cli("compare", "--scenario", "smoke", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert set(summary.method) - {"data"} == {"swarm", "local", "pooled", "fedavg"}
    crashes = summary[(summary.method == "swarm") & (summary.metric == "crashes")]
    assert crashes.value.tolist() == [1.0]  # site 3 dies in round 1, as the file says
    rounds = pd.read_csv(tmp_path / "rounds.csv")
    swarm = rounds[rounds.method == "swarm"]
    assert swarm["round"].tolist() == [1, 2]
    assert swarm.contributors.tolist()[0] == 2


def test_an_unknown_scenario_is_one_line_naming_the_choices():
    result = run_cli("compare", "--scenario", "nowhere")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "smoke" in result.stderr
