"""Scenario files: every shipped one loads; a malformed one names file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarmflower.errors import ConfigError
from swarmflower.simulations.experiments.scenarios import list_scenarios, load_scenario

PAPER = ("aml-few-cases", "aml-1-to-99", "aml-studies", "aml-platforms")

GOOD = """
rounds = 3
methods = ["swarm", "fedavg"]
[task]
task = "transcriptome"
num_sites = 4
[task.options]
genes = 30
studies = 10
samples = 400
[partition]
kind = "dirichlet"
alpha = 0.5
[faults]
dropout = 0.2
leader_crash_every = 2
crashes = [{ site = 2, round = 1, recover = 3 }]
[[faults.sites]]
site = 4
slowdown = 3.0
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mine.toml"
    path.write_text(text)
    return path


def test_every_shipped_scenario_loads() -> None:
    names = list_scenarios()
    assert {*PAPER, "smoke", "transcriptome-1000"} <= set(names)
    for name in names:
        scenario = load_scenario(name)
        assert scenario.name == name
        assert scenario.rounds >= 1 and scenario.spec.num_sites >= 1


def test_the_paper_designs_compare_swarm_local_pooled() -> None:
    partitions = {load_scenario(n).partition for n in PAPER}
    assert partitions == {"few-cases", "case-ratio", "studies", "platforms"}
    for name in PAPER:
        scenario = load_scenario(name)
        assert scenario.spec.task == "transcriptome"
        assert {"swarm", "local", "pooled"} <= set(scenario.methods)
        assert scenario.spec.num_sites <= 32


def test_the_thousand_site_scenario() -> None:
    scenario = load_scenario("transcriptome-1000")
    assert scenario.spec.num_sites == 1000 and scenario.rounds == 20
    assert scenario.faults.dropout == pytest.approx(0.1)
    assert scenario.faults.leader_crashes(20) == {5, 10, 15, 20}
    assert scenario.faults.profile(42).latency_ms == 300.0
    assert scenario.faults.profile(1).slowdown == 1.0


def test_the_smoke_scenario_loads_its_data_quickly() -> None:
    scenario = load_scenario("smoke")
    data = scenario.spec.load()
    assert data.num_sites == scenario.spec.num_sites == 3
    assert scenario.faults.crashes[0].recover == 2
    plan = scenario.faults.fault_plan(scenario.rounds)
    assert plan.crashes_before_training(2, 1) and plan.recover_after == 1


def test_a_file_by_path(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, GOOD))
    assert scenario.name == "mine"
    assert scenario.methods == ("swarm", "fedavg")
    assert scenario.spec.alpha == 0.5
    assert scenario.partition == "dirichlet"
    assert dict(scenario.spec.options)["genes"] == 30
    assert scenario.faults.leader_crashes(3) == {2}
    assert scenario.faults.profile(4).slowdown == 3.0


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("rounds = 3", "rounds = 'three'", "'rounds' must be int"),
        ("rounds = 3", "rounds = 0", "'rounds' must be at least 1"),
        ("rounds = 3", "", "'rounds' is missing"),
        ('"fedavg"]', '"central"]', "'methods' must name"),
        ("dropout = 0.2", "dropout = 1.5", "'faults.dropout' must be in"),
        ("site = 2,", "site = 9,", r"'faults.crashes\[0\].site' must be between"),
        ("recover = 3", "recover = 1", r"'faults.crashes\[0\].recover' must come"),
        ("slowdown = 3.0", "slow = 3.0", r"'faults.sites\[0\].slow' is not a known"),
        ("num_sites = 4", "num_sites = 'four'", "'task.num_sites' must be int"),
        ("genes = 30", "genes = 'many'", "transcriptome option 'genes' must be int"),
        ('kind = "dirichlet"', 'kind = "random"', "unknown partition 'random'"),
        ("rounds = 3", "rounds = 3\nleader = 1", "'leader' is not a known key"),
        ("rounds = 3", "rounds = 3\nstrategy = 'FedMagic'", "'strategy' unknown"),
        ("rounds = 3", "rounds = [3", "not valid TOML"),
        (
            "slowdown = 3.0",
            'slowdown = 3.0\n[faults.byzantine]\nsites = [7]\nattack = "sign-flip"',
            r"'faults.byzantine.sites' must list sites between 1 and 4",
        ),
        (
            "slowdown = 3.0",
            'slowdown = 3.0\n[faults.byzantine]\nsites = [1]\nattack = "ipm"',
            r"'faults.byzantine.attack' attack ipm needs its EPS",
        ),
    ],
)
def test_a_malformed_file_names_the_key(tmp_path: Path, old, new, key) -> None:
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ConfigError, match=key) as caught:
        load_scenario(path)
    assert str(path) in str(caught.value)


def test_an_unknown_name_lists_the_shipped_ones() -> None:
    with pytest.raises(ConfigError, match="aml-studies"):
        load_scenario("no-such-scenario")
