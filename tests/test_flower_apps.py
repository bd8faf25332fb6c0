"""A Flower app project, written for `flwr run`, runs unchanged as a swarm.

The apps in `tests/apps/` are written as Flower users write them; the swarm
plays each one with its own ServerApp's strategy and config and its own
ClientApp, and (FedAvg, deterministic training) ends on Flower's own model.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from app_projects import write_app_project
from cli_helpers import assert_one_line_error, run_cli
from flwr.app import ArrayRecord

from swarmflower.app_run import run_flower_app
from swarmflower.errors import ConfigError
from swarmflower.flower_app import load_flower_app, server_plan
from swarmflower.strategies import adopt_strategy
from swarmflower.suspects import per_site

APPS = Path(__file__).parent / "apps"
GROUND_TRUTH = Path(__file__).parent / "flower_ground_truth.py"


@pytest.fixture(scope="module")
def numpy_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("numpy_app")
    result = run_cli("run", str(APPS / "numpy_app"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out, result


def test_run_plays_the_apps_plan_with_its_own_metric_names(numpy_run):
    out, result = numpy_run
    rounds = pd.read_csv(out / "rounds.csv")
    assert rounds["round"].tolist() == [1, 2, 3]  # num-server-rounds = 3
    assert {"eval_acc", "eval_loss", "train_loss", "leader", "contributors"} <= set(
        rounds.columns
    )
    assert (rounds.contributors == 5).all()  # num-supernodes = 5
    assert rounds.eval_acc.iloc[-1] > 0.6
    assert "5 sites, 3 rounds of FedAvg" in result.stdout
    assert (out / "final_model.npz").is_file()


def test_run_then_plays_the_serverapps_own_ending_on_the_swarms_model(numpy_run):
    """What `main` does after `strategy.start` (here: np.savez) runs, in
    app_output/, on the swarm's final model."""
    out, result = numpy_run
    ours = np.load(out / "final_model.npz")
    saved = np.load(out / "app_output" / "final_model.npz")
    np.testing.assert_array_equal(saved["weights"], ours["0"])
    np.testing.assert_array_equal(saved["bias"], ours["1"])
    assert "Saving final model to disk" in result.stdout


def test_simulate_app_plays_the_app_and_refuses_what_does_not_apply(tmp_path):
    out = tmp_path / "sim"
    app = str(APPS / "sklearn_app")
    result = run_cli("simulate", "--app", app, "--sites", "4", "--out", str(out))
    assert result.returncode == 0, result.stderr
    rounds = pd.read_csv(out / "rounds.csv")
    assert rounds["round"].tolist() == [1, 2, 3]
    assert (rounds.contributors == 2).all()  # fraction-train 0.5 of 4 sites
    assert (out / "app_output" / "final_model.npz").is_file()
    refused = run_cli("simulate", "--app", app, "--faults", "leader-crash:2")
    assert_one_line_error(refused, "--app plays the app's own plan", "--faults")


def test_run_plays_the_serverapps_evaluate_fn_on_each_round(numpy_run):
    """The ServerApp's central evaluation, under its own metric names, on the
    very model of each round (checked on the final one)."""
    out, _ = numpy_run
    rounds = pd.read_csv(out / "rounds.csv")
    assert {"central_loss", "central_acc"} <= set(rounds.columns)
    sys.path.insert(0, str(APPS / "numpy_app"))
    try:
        from numpyexample.server_app import global_evaluate
    finally:
        sys.path.remove(str(APPS / "numpy_app"))
    final = np.load(out / "final_model.npz")
    arrays = ArrayRecord([final["0"], final["1"]])
    expected = global_evaluate(3, arrays)
    assert rounds.central_acc.iloc[-1] == pytest.approx(expected["central_acc"])
    assert rounds.central_loss.iloc[-1] == pytest.approx(expected["central_loss"])


def test_run_on_ray_plays_the_same_app_to_the_same_model(numpy_run, tmp_path):
    """The app's ClientApp loaded by each Ray actor from the project folder,
    its own metrics, and the in-process engine's model, to the bit."""
    threads, _ = numpy_run
    result = run_cli(
        "run", str(APPS / "numpy_app"), "--engine", "ray", "--out", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    on_ray = pd.read_csv(tmp_path / "rounds.csv")
    in_process = pd.read_csv(threads / "rounds.csv")
    same = ["round", "leader", "view", "contributors", "eval_loss", "eval_acc"]
    pd.testing.assert_frame_equal(on_ray[same], in_process[same])
    final = np.load(tmp_path / "final_model.npz")
    reference = np.load(threads / "final_model.npz")
    assert final.files == reference.files
    for key in final.files:
        np.testing.assert_array_equal(final[key], reference[key])


def test_fraction_train_draws_as_many_sites_as_flower_samples():
    """FedAvg(fraction_train=0.5, min_train_nodes=2) over 5 nodes: Flower
    samples max(int(5 x 0.5), 2) = 2 a round; the swarm draws 2 from the
    ledger, the others sit the round out, and every site still evaluates."""
    app = load_flower_app(
        APPS / "numpy_app", "fraction-train=0.5 min-available-nodes=2"
    )
    run = run_flower_app(app)
    records = run.swarm.rounds
    assert [len(r.commitments) for r in records] == [2, 2, 2]
    assert len({r.contributors for r in records}) > 1  # a new draw each round
    for record in records:
        sat_out = {
            core.address for core in run.swarm.sites if record.round in core.log.sat_out
        }
        assert sat_out == {c.address for c in run.swarm.sites} - set(
            record.contributors
        )
    assert all("eval_acc" in m for m in run.evaluate_metrics.values())


def test_fraction_evaluate_draws_as_many_evaluating_sites_as_flower_samples():
    """fraction_evaluate=0.4 of 5 nodes, min_evaluate_nodes 2 (FedAvg's
    default): 2 sites evaluate each round, drawn from the round's block."""
    from swarmflower.app_run import evaluate_round
    from swarmflower.flower_messages import site_context
    from swarmflower.round_rules import drawn_sites

    app = load_flower_app(APPS / "numpy_app", "fraction-evaluate=0.4")
    run = run_flower_app(app)
    addresses = [core.address for core in run.swarm.sites]
    contexts = [site_context(k, 5, run_config=app.run_config) for k in range(5)]
    client_app = app.client_app()
    for record in run.swarm.rounds:
        drawn = drawn_sites(record.block_hash, record.round, addresses, 2)
        assert drawn is not None and len(drawn) == 2
        chosen = {k: c for k, c in enumerate(contexts) if addresses[k] in drawn}
        model = run.swarm.models[record.round]
        expected = evaluate_round(run.plan, client_app, chosen, record.round, model)
        everyone = evaluate_round(
            run.plan, client_app, dict(enumerate(contexts)), record.round, model
        )
        assert run.evaluate_metrics[record.round] == expected != everyone


def _flower_final(app: str, folder: Path) -> list[np.ndarray]:
    """The final model the app's ServerApp saved under Flower's own simulation."""
    flower = subprocess.run(
        [sys.executable, str(GROUND_TRUTH), str(APPS / app), "5"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert flower.returncode == 0, flower.stderr[-2000:]
    if (folder / "final_model.pt").exists():
        return [t.numpy() for t in torch.load(folder / "final_model.pt").values()]
    with np.load(folder / "final_model.npz") as saved:
        return [saved[key] for key in saved.files]


def test_compare_app_puts_the_app_through_the_swarm_and_flower(tmp_path):
    """`compare --app`: the same app, unchanged, as a swarm and on Flower's own
    simulation engine: the same model and the same per-round metrics."""
    app = str(APPS / "numpy_app")
    result = run_cli("compare", "--app", app, "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    summary = pd.read_csv(tmp_path / "summary.csv").set_index(["method", "metric"])
    assert summary.loc[("swarm", "largest_difference_to_flower"), "value"] <= 1e-6
    rounds = pd.read_csv(tmp_path / "rounds.csv")
    swarm, flower = (
        rounds[rounds.method == method].set_index("round")
        for method in ("swarm", "flower")
    )
    assert swarm.index.tolist() == flower.index.tolist() == [1, 2, 3]
    for metric in ("eval_acc", "eval_loss", "train_loss"):  # the app's own names
        np.testing.assert_allclose(swarm[metric], flower[metric], rtol=1e-9)
    assert (tmp_path / "flower" / "final_model.npz").is_file()  # the app saved it
    # Local-only: round 1 trains every site from the same initial model as the
    # swarm does (same train loss); the models are never merged, so they
    # evaluate otherwise, and worse than the swarm's in the end.
    local = rounds[rounds.method == "local"].set_index("round")
    assert local.index.tolist() == [1, 2, 3]
    assert local.train_loss[1] == pytest.approx(swarm.train_loss[1], rel=1e-12)
    assert local.eval_acc[3] < swarm.eval_acc[3]


def test_fedadam_in_the_swarm_ends_on_flowers_own_model(tmp_path):
    """FedAdam's moments travel from leader to leader; Flower keeps them in
    one server. Same app, same deterministic training: the same model."""
    run = run_flower_app(load_flower_app(APPS / "torch_app"))
    assert type(run.plan.strategy).__name__ == "FedAdam"
    theirs = _flower_final("torch_app", tmp_path)
    ours = run.final_arrays.to_numpy_ndarrays()
    for mine, their in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(mine, their, atol=1e-6)


def test_run_config_overrides_reach_the_plan():
    app = load_flower_app(APPS / "torch_app", "num-server-rounds=2 server-eta=0.2")
    assert app.run_config["num-server-rounds"] == 2
    plan = server_plan(app)
    assert plan.num_rounds == 2 and type(plan.strategy).__name__ == "FedAdam"
    leader = adopt_strategy(plan.strategy, plan.train_config)
    assert leader.options["eta"] == 0.2
    assert leader.options["min_train_nodes"] == 1  # the swarm's, not Flower's 2
    assert set(leader.train_config(1)) >= {"lr"}


def test_a_folder_that_is_not_an_app_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not a Flower app project"):
        load_flower_app(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[tool.flwr.app]\npublisher = 'x'\n")
    with pytest.raises(ConfigError, match="components"):
        load_flower_app(tmp_path)


CLIENT_READING_LR = """
from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

app = ClientApp()


@app.train()
def train(msg, context):
    lr = context.run_config["lr"]  # the project forgot to set it
    arrays = msg.content["arrays"]
    metrics = MetricRecord({"num-examples": 10, "lr": lr})
    return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=msg)
"""
SERVER = """
import numpy as np
from flwr.app import ArrayRecord
from flwr.serverapp import ServerApp
from flwr.serverapp.strategy import FedAvg

app = ServerApp()


@app.main()
def main(grid, context):
    FedAvg().start(grid=grid, initial_arrays=ArrayRecord([np.zeros(3)]), num_rounds=2)
"""


def test_an_app_failing_at_every_site_stops_with_a_hint(tmp_path):
    write_app_project(tmp_path, "forgetful", CLIENT_READING_LR, SERVER, "seed = 1\n")
    result = run_cli("run", str(tmp_path), "--sites", "3", "--out", str(tmp_path / "o"))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    assert "every site failed in round 1: KeyError: 'lr'" in lines[-1]
    assert '--run-config "lr=..."' in lines[-1]


LEGACY_SERVER = """
import numpy as np
from flwr.common import ndarrays_to_parameters
from flwr.server import ServerApp, ServerAppComponents, ServerConfig
from flwr.server.strategy import FedAvg


def server_fn(context):
    start = ndarrays_to_parameters([np.zeros(2)])
    strategy = FedAvg(initial_parameters=start)
    return ServerAppComponents(strategy=strategy, config=ServerConfig(num_rounds=2))


app = ServerApp(server_fn=server_fn)
"""


def test_a_legacy_server_fn_app_is_refused_naming_the_api_the_swarm_plays(tmp_path):
    write_app_project(tmp_path, "oldstyle", CLIENT_READING_LR, LEGACY_SERVER)
    with pytest.raises(ConfigError, match="has no @app.main") as refused:
        server_plan(load_flower_app(tmp_path))
    assert "legacy API" in str(refused.value)
    assert "strategy.start" in str(refused.value)


def test_run_plays_an_attack_on_the_app_and_rounds_csv_names_the_attacker(tmp_path):
    """`run --attack`: site 3 copies site 1's update (mimic), so both show
    the same change norm; rounds.csv names the attacker every round."""
    result = run_cli(
        "run",
        str(APPS / "numpy_app"),
        "--attack",
        "mimic:1",
        "--attackers",
        "3,",
        "--out",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert "sites 3 play the attack mimic:1" in result.stdout
    rounds = pd.read_csv(tmp_path / "rounds.csv")
    assert list(rounds["attackers"]) == ["site-3"] * 3
    for cell in rounds["norms"]:
        norms = per_site(cell)
        assert norms["site-3"] == norms["site-1"] != norms["site-2"]
