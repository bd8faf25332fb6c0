"""`swarmflower simulate` run after run into the same folder."""

from typer.testing import CliRunner

from swarmflower.cli import app
from swarmflower.ledger import Ledger


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
