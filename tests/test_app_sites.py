"""A Flower app project at real sites: `init --app`, then one `peer` process per site.

The genesis fixes the app's plan; each site re-derives it from its own copy
of the project and is refused if it differs. The sites end on the model the
in-process swarm ends on, evaluate it with the app's own code, and run the
ServerApp's ending (its model saving) themselves.
"""

from __future__ import annotations

import csv
import re
import tomllib
from pathlib import Path

import numpy as np
import pytest
import tomli_w
from app_projects import write_app_project
from cli_helpers import assert_one_line_error, run_cli
from real_sites import finish, free_port_block, outcome, start_peer

from swarmflower.app_run import run_flower_app
from swarmflower.codec import arrays_hash
from swarmflower.errors import ConfigError
from swarmflower.flower_app import load_flower_app
from swarmflower.provision import enroll_site, init_app_swarm
from swarmflower.site_config import load_site_config
from swarmflower.site_runtime import build_site

APPS = Path(__file__).parent / "apps"
NUMPY_APP = APPS / "numpy_app"


def init_app(out: Path, app: Path, sites: int, *options: str) -> None:
    result = run_cli(
        "init",
        "--app",
        str(app),
        "--sites",
        str(sites),
        "--round-timeout",
        "3",
        "--base-port",
        str(free_port_block(sites)),
        "--out",
        str(out),
        *options,
    )
    assert result.returncode == 0, result.stderr


def play(out: Path, sites: int) -> list[tuple[int, str]]:
    peers = [start_peer(out / f"site-{k}") for k in range(1, sites + 1)]
    return [finish(peer) for peer in peers]


@pytest.fixture(scope="module")
def numpy_sites(tmp_path_factory) -> tuple[Path, list[tuple[int, str]]]:
    out = tmp_path_factory.mktemp("app_sites") / "swarm"
    # Every round merges all three updates (as in process) however loaded
    # the machine: a straggler is waited for, not left out.
    init_app(out, NUMPY_APP, 3, "--min-peers", "3")
    return out, play(out, 3)


@pytest.fixture(scope="module")
def in_process():
    """The same app as an in-process swarm of 3 sites."""
    return run_flower_app(load_flower_app(NUMPY_APP), 3)


def test_three_peers_end_on_the_model_of_the_in_process_swarm(numpy_sites, in_process):
    out, finished = numpy_sites
    assert [code for code, _ in finished] == [0, 0, 0], finished
    outcomes = [outcome(output) for _, output in finished]
    assert {state for state, *_ in outcomes} == {"finished"}
    assert {rounds for _, rounds, *_ in outcomes} == {3}
    models = {model for *_, model in outcomes}
    assert len(models) == 1
    assert models == {f"0x{arrays_hash(in_process.final_arrays).hex()}"}


def test_each_site_runs_the_serverapps_ending_on_the_swarms_model(
    numpy_sites, in_process
):
    out, _ = numpy_sites
    weights, bias = in_process.final_arrays.to_numpy_ndarrays()
    for k in (1, 2, 3):
        saved = np.load(out / f"site-{k}" / "app_output" / "final_model.npz")
        np.testing.assert_array_equal(saved["weights"], weights)
        np.testing.assert_array_equal(saved["bias"], bias)


def test_each_site_writes_the_apps_own_metrics_every_round(numpy_sites):
    out, finished = numpy_sites
    for k in (1, 2, 3):
        with (out / f"site-{k}" / "metrics.csv").open() as handle:
            rows = list(csv.DictReader(handle))
        seen = {(int(r["round"]), r["source"], r["metric"]) for r in rows}
        for round in (1, 2, 3):
            assert (round, "train", "train_loss") in seen  # its own training
            assert (round, "evaluate", "eval_acc") in seen
            assert (round, "central", "central_acc") in seen
        central = {
            int(r["round"]): float(r["value"])
            for r in rows
            if r["metric"] == "central_acc"
        }
        assert all(0.5 < acc <= 1.0 for acc in central.values()), central
        assert f"site-{k}: round 3 metrics: train train_loss" in finished[k - 1][1]


def test_the_genesis_fixes_the_apps_plan_and_the_sites_get_its_run_config(
    numpy_sites,
):
    out, _ = numpy_sites
    config = load_site_config(out / "site-2")
    assert config.app is not None
    assert config.app.node_config == {"partition-id": 1, "num-partitions": 3}
    assert config.app.run_config["lr"] == 0.1
    assert (config.app_directory() / "numpyexample" / "client_app.py").is_file()
    genesis = (out / "genesis.json").read_text()
    for fact in ('"strategy":"FedAvg"', '"train_config":{"lr":0.1}', '"rounds":3'):
        assert fact in genesis


@pytest.fixture()
def numpy_swarm(tmp_path) -> Path:
    """An app swarm written in process (nothing runs)."""
    out = tmp_path / "swarm"
    init_app_swarm(out, load_flower_app(NUMPY_APP), num_sites=2, base_port=47900)
    return out


def edit_site_toml(site: Path, change) -> None:
    path = site / "site.toml"
    data = tomllib.loads(path.read_text())
    change(data)
    path.write_text(tomli_w.dumps(data))


def test_a_site_with_another_run_config_is_refused_naming_it(numpy_swarm):
    site = numpy_swarm / "site-2"
    edit_site_toml(site, lambda d: d["app"]["run_config"].update(lr=0.5))
    with pytest.raises(ConfigError) as refused:
        build_site(load_site_config(site))
    message = str(refused.value)
    assert "run_config lr is 0.5, the genesis says 0.1" in message
    assert "train_config lr is 0.5" in message  # the plan the ServerApp built


def test_a_site_whose_app_code_differs_is_refused(numpy_swarm):
    site = numpy_swarm / "site-1"
    task = site / "app" / "numpyexample" / "task.py"
    task.write_text(task.read_text() + "\n# tuned at this site\n")
    with pytest.raises(ConfigError, match="its files differ from the app"):
        build_site(load_site_config(site))


def test_init_app_takes_rounds_from_the_app_not_the_options(tmp_path):
    result = run_cli(
        "init", "--app", str(NUMPY_APP), "--rounds", "5", "--out", str(tmp_path / "s")
    )
    assert_one_line_error(result, "--app takes the rounds", "num-server-rounds")
    assert not (tmp_path / "s").exists()


HOSPITAL_CLIENT = '''
"""A hospital's ClientApp: reads its own table, named by its node config."""

import numpy as np
from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

app = ClientApp()


def load(context):
    table = np.loadtxt(context.node_config["data-file"], delimiter=",", ndmin=2)
    return table[:, :-1], table[:, -1]


@app.train()
def train(msg, context):
    x, y = load(context)
    (w,) = msg.content["arrays"].to_numpy_ndarrays()
    lr = context.run_config["lr"]
    w = w - lr * x.T @ (x @ w - y) / len(y)
    metrics = MetricRecord({"num-examples": len(y)})
    return Message(RecordDict({"arrays": ArrayRecord([w]), "metrics": metrics}),
                   reply_to=msg)


@app.evaluate()
def evaluate(msg, context):
    x, y = load(context)
    (w,) = msg.content["arrays"].to_numpy_ndarrays()
    mse = float(np.mean((x @ w - y) ** 2))
    metrics = MetricRecord({"mse": mse, "num-examples": len(y)})
    return Message(RecordDict({"metrics": metrics}), reply_to=msg)
'''
HOSPITAL_SERVER = """
import numpy as np
from flwr.app import ArrayRecord
from flwr.serverapp import ServerApp
from flwr.serverapp.strategy import FedAvg

app = ServerApp()


@app.main()
def main(grid, context):
    strategy = FedAvg(min_available_nodes=3)
    strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord([np.zeros(2)]),
        num_rounds=int(context.run_config["num-server-rounds"]),
    )
"""


def hospital_app(folder: Path) -> Path:
    config = "num-server-rounds = 2\nlr = 0.1\n"
    return write_app_project(
        folder, "hospital", HOSPITAL_CLIENT, HOSPITAL_SERVER, config
    )


def test_a_site_whose_clientapp_raises_sits_out_and_the_others_finish(tmp_path):
    out = tmp_path / "swarm"
    # Site 3 never sends an update: no start-up grace to wait out in round 1.
    init_app(out, hospital_app(tmp_path / "app"), 3, "--start-grace", "0")
    rng = np.random.default_rng(0)
    for k in (1, 2, 3):
        site = out / f"site-{k}"
        data = site / "table.csv"
        if k != 3:  # site 3's operator has not put its table in place
            x = rng.normal(size=(20, 2))
            np.savetxt(data, np.column_stack([x, x @ [1.0, -2.0]]), delimiter=",")
        edit_site_toml(
            site, lambda d, p=data: d["node_config"].update({"data-file": str(p)})
        )
    finished = play(out, 3)
    assert [code for code, _ in finished] == [0, 0, 0], finished
    assert len({outcome(output)[3] for _, output in finished}) == 1
    broken = finished[2][1]
    assert "ClientApp failed in round 1: FileNotFoundError" in broken
    # Named once, not each round: its training, and its evaluation (which
    # reads the same missing file).
    assert broken.count("ClientApp failed in round") == 1
    assert broken.count("ClientApp failed to evaluate round") <= 1
    assert "Traceback" not in broken
    for _, output in finished[:2]:
        assert "ClientApp failed" not in output
        assert re.search(r"round 2 metrics: .*evaluate mse", output), output


def test_enroll_in_an_app_swarm_copies_the_app_and_keeps_partitions_real(
    numpy_swarm,
):
    with pytest.raises(ConfigError, match="split its data into 2 partitions"):
        enroll_site(numpy_swarm, "late")  # partition-id 2 of 2 would read nothing
    assert not (numpy_swarm / "late").exists()
    result = run_cli("enroll", "--swarm", str(numpy_swarm), "--name", "late",
                     "--partition-id", "1")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert re.search(r"address 0x[0-9a-fA-F]{40}", result.stdout), result.stdout
    config = load_site_config(numpy_swarm / "late")
    assert config.app is not None
    assert config.app.node_config == {"partition-id": 1, "num-partitions": 2}
    assert config.app_directory().joinpath("numpyexample", "task.py").is_file()
