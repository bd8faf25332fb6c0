"""`swarmflower simulate` run after run into the same folder."""

import json

import pandas as pd
from typer.testing import CliRunner

from swarmflower.cli import app
from swarmflower.ledger import Ledger
from swarmflower.suspects import per_site


def test_a_second_run_replaces_the_replicas_of_the_first(tmp_path):
    command = [
        "simulate",
        "--rounds",
        "1",
        "--local-steps",
        "2",
        "--out",
        str(tmp_path),
    ]
    first = CliRunner().invoke(app, command)
    assert first.exit_code == 0, first.output
    command[2] = "2"
    second = CliRunner().invoke(app, command)
    assert second.exit_code == 0, second.output
    assert "replaced the ledger replicas of an earlier run" in second.output
    replica = Ledger.open(tmp_path / "sites" / "cleveland" / "ledger")
    try:
        assert replica.head().height == 2
    finally:
        replica.close()


def test_simulate_plays_an_attack_and_names_its_sites(tmp_path):
    command = [
        "simulate",
        "--rounds",
        "2",
        "--local-steps",
        "2",
        "--out",
        str(tmp_path),
    ]
    attacked = CliRunner().invoke(
        app, [*command, "--attack", "scale:-5", "--attackers", "2,4"]
    )
    assert attacked.exit_code == 0, attacked.output
    assert "sites 2, 4 play the attack scale:-5" in attacked.output
    rounds = pd.read_csv(tmp_path / "rounds.csv")
    assert list(rounds["attackers"]) == ["hungary;va"] * 2  # in every round
    facts = json.loads((tmp_path / "run.json").read_text())
    assert (facts["strategy"], facts["bucketing"]) == ("FedAvg", 0)
    assert (facts["attack"], facts["attackers"]) == ("scale:-5", ["hungary", "va"])
    norms = [per_site(cell) for cell in rounds["norms"]]
    assert all(set(n) == {"cleveland", "hungary", "switzerland", "va"} for n in norms)
    assert all(max(n, key=n.get) in {"hungary", "va"} for n in norms)  # 5x changes
    assert all(per_site(cell) for cell in rounds["distances"])
    for bad, problem in (
        (["--attack", "krum"], "unknown attack 'krum'"),
        (["--attack", "mimic:2", "--attackers", "2,4"], "mimic:2: that site attacks"),
        (["--attack", "sign-flip", "--attackers", "4"], "choose 1..3"),
    ):
        refused = CliRunner().invoke(app, [*command, *bad])
        assert refused.exit_code != 0  # the command line prints it as one line
        assert problem in str(refused.exception)
