"""The Ray engine: virtual sites on a pool of actors play the swarm's protocol.

One local Ray session serves the whole module; the runs are small (heart's
four hospitals, a 40-site transcriptome) so that they finish in seconds.
"""

import functools
import logging
import os

import numpy as np
import pandas as pd
import pytest
import ray
from flwr.app import ArrayRecord
from swarm_helpers import first_epoch_leaders, heart_swarm
from typer.testing import CliRunner

from swarmflower.attacks import Attack
from swarmflower.cli import app
from swarmflower.codec import arrays_hash
from swarmflower.faults import FaultPlan
from swarmflower.identity import simulated_identities
from swarmflower.ledger.cli import app as ledger_app
from swarmflower.simulations.engine.ray_engine import run_ray_swarm
from swarmflower.simulations.engine.timing import Heterogeneity, SiteProfile
from swarmflower.simulations.experiments.scenarios import Faults, load_scenario
from swarmflower.simulations.experiments.swarm import run_swarm_method
from swarmflower.strategies import build_strategy
from swarmflower.strategies.helpers import decode_state
from swarmflower.swarm_result import SwarmResult
from swarmflower.tasks import TaskSpec, initial_model, make_client_app

HEART = TaskSpec(local_steps=10)
TRANSCRIPTOME = TaskSpec(
    task="transcriptome",
    num_sites=40,
    local_steps=10,
    options={"genes": 200, "samples": 4000, "studies": 60, "partition": "quantity"},
)


@pytest.fixture(scope="module", autouse=True)
def ray_session():
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def ray_swarm(spec: TaskSpec, rounds: int, **options) -> SwarmResult:
    """The task's swarm on the Ray engine, as `compare` and `simulate` run it."""
    return run_swarm_method(spec, rounds, engine="ray", **options).details


def test_same_models_as_the_in_process_swarm():
    """Same protocol, same data, same seeds: bit-identical models per round."""
    on_ray = ray_swarm(HEART, 3, hosts=2)
    in_process = heart_swarm(3)
    assert on_ray.hosts == 2
    assert [r.model_hash for r in on_ray.rounds] == [
        r.model_hash for r in in_process.rounds
    ]
    assert [r.leader for r in on_ray.rounds] == [r.leader for r in in_process.rounds]
    # Same commitments in the same order, logical timestamps: the same blocks.
    assert [r.block_hash for r in on_ray.rounds] == [
        r.block_hash for r in in_process.rounds
    ]


def test_a_stateful_strategy_with_options_matches_the_in_process_swarm():
    """FedAdam's moments travel from leader to leader across the actors."""
    fedadam = build_strategy("FedAdam", eta=0.05)
    on_ray = ray_swarm(HEART, 3, strategy=fedadam)
    in_process = heart_swarm(3, strategy=build_strategy("FedAdam", eta=0.05))
    assert [r.state_hash for r in on_ray.rounds] == [
        r.state_hash for r in in_process.rounds
    ]
    assert on_ray.rounds[-1].model_hash == in_process.rounds[-1].model_hash


def test_a_byzantine_scenario_entry_plays_the_same_attack_on_both_engines(tmp_path):
    """A scenario's `byzantine` entry: the attacker's poisoned commitments and
    the robust merge's clipping are the same on Ray as in process."""
    path = tmp_path / "attacked.toml"
    path.write_text(
        'rounds = 3\nstrategy = "NormBoundedAvg"\n[task]\ntask = "heart"\n'
        "local_steps = 10\n"
        '[faults]\nbyzantine = { sites = [4], attack = "scale:-30" }\n'
    )
    scenario = load_scenario(path)
    plan = scenario.faults.fault_plan(scenario.rounds)
    assert plan.attack.sites == {3}
    options = {"strategy": build_strategy(scenario.strategy), "faults": plan}
    method = run_swarm_method(scenario.spec, 3, engine="ray", **options)
    on_ray = method.details
    assert [r.attackers for r in method.rounds] == ["va"] * 3  # rounds.csv names it
    in_process = heart_swarm(3, **options)
    assert [r.model_hash for r in on_ray.rounds] == [
        r.model_hash for r in in_process.rounds
    ]
    assert [r.state_hash for r in on_ray.rounds] == [
        r.state_hash for r in in_process.rounds
    ]
    report = decode_state(
        in_process.sites[0].store.get_blob(in_process.rounds[-1].state_hash)
    ).report
    assert 3 in report["clipped"]  # the attacker (site 4) is clipped, by name
    assert [r.held_back for r in method.rounds] == [("va",)] * 3  # rounds.csv
    assert all(len(r.updates) == 4 for r in method.rounds)


def test_colluding_attackers_see_the_honest_updates_in_simulated_time():
    """mimic on Ray: the attacker waits in simulated time for the update it
    copies, and the ledger shows the copy, as in process."""
    attack = Attack.parse("mimic:2", [3], num_sites=4)
    on_ray = ray_swarm(HEART, 2, faults=FaultPlan(attack=attack))
    names = [site.name for site in HEART.load().sites]
    address = [identity.address for identity in simulated_identities(names, 0)]
    for record in on_ray.rounds:
        sent = {c.site: c.update_hash for c in record.commitments}
        assert sent[address[3]] == sent[address[1]] != sent[address[0]]


@pytest.fixture(scope="module")
def fault_free():
    return ray_swarm(TRANSCRIPTOME, 10)


def test_dropout_and_leader_crashes_cost_no_accuracy(fault_free):
    """10% of sites missing each round, the leader dying in 1 round of 5."""
    rounds = 10
    faults = Faults(dropout=0.1, leader_crash_every=5, recover_after=1)
    faulty = ray_swarm(
        TRANSCRIPTOME,
        rounds,
        faults=faults.fault_plan(rounds),
        heterogeneity=faults.heterogeneity(40),
    )
    assert [r.round for r in faulty.rounds] == list(range(1, rounds + 1))
    assert 32 <= np.mean([r.up for r in faulty.reports]) < 39  # ~4 missing a round
    for record in faulty.reports:
        if record.round in (5, 10):
            assert record.view >= 1 and record.reason == "leader_timeout"
            assert record.sim_s >= 10.0  # the backup waited a round timeout
    # A leader that had dropped out of its round cannot crash in it as well.
    crashed_in = [round for _, round, _ in faulty.crashes]
    assert crashed_in and set(crashed_in) <= {5, 10}
    gap = abs(faulty.reports[-1].accuracy - fault_free.reports[-1].accuracy)
    assert gap <= 0.02
    assert fault_free.sim_s < faulty.sim_s


def test_every_host_refuses_a_dishonest_merge_and_a_backup_redoes_it():
    result = ray_swarm(
        HEART, 3, faults=FaultPlan(dishonest_leader_rounds=frozenset({2}))
    )
    second = result.reports[1]
    assert (second.view, second.reason) == (1, "bad_merge")
    honest = heart_swarm(3)
    assert result.rounds[-1].model_hash == honest.rounds[-1].model_hash


def test_simulate_on_ray_writes_the_result_files(tmp_path):
    out = tmp_path / "run"
    outcome = CliRunner().invoke(
        app,
        [
            "simulate",
            "--engine",
            "ray",
            "--rounds",
            "3",
            "--local-steps",
            "10",
            "--dropout",
            "0.2",
            "--faults",
            "leader-crash:2,recover-after:1",
            "--out",
            str(out),
        ],
    )
    assert outcome.exit_code == 0, outcome.output
    rounds = pd.read_csv(out / "rounds.csv")
    assert list(rounds["round"]) == [1, 2, 3]
    assert {"up", "wall_s", "sim_s", "leader", "view"} <= set(rounds.columns)
    assert rounds.loc[1, "view"] >= 1
    summary = pd.read_csv(out / "summary.csv")
    metrics = set(summary["metric"])
    assert {"accuracy", "wall_s", "sim_s", "round_wall_s", "hosts"} <= metrics
    assert "simulated time at real sites" in outcome.output
    verify = CliRunner().invoke(ledger_app, ["verify", str(out / "observer")])
    assert verify.exit_code == 0, verify.output


def test_engine_options_are_checked():
    runner = CliRunner()
    wrong = runner.invoke(app, ["simulate", "--engine", "spark"])
    assert wrong.exit_code != 0
    assert "unknown engine 'spark'" in str(wrong.exception)
    dropout = runner.invoke(app, ["simulate", "--dropout", "0.1"])
    assert "--dropout needs --engine ray" in str(dropout.exception)
    both = runner.invoke(
        app, ["simulate", "--engine", "ray", "--scenario", "smoke", "--dropout", "0.1"]
    )
    assert "--scenario brings its own faults" in str(both.exception)


def test_the_final_model_is_the_last_sealed_one(fault_free):
    from swarmflower.codec import arrays_hash

    assert arrays_hash(fault_free.final_arrays) == fault_free.rounds[-1].model_hash
    accuracies = [r.accuracy for r in fault_free.reports]
    assert accuracies[-1] > accuracies[0]
    assert np.all(np.isfinite(accuracies))


def test_a_site_too_slow_for_the_leader_is_left_out_of_every_merge():
    """Heart's third hospital trains 100x slower: 10 s, past update_wait (8 s)."""
    profiles = tuple(
        SiteProfile(k + 1, slowdown=100.0 if k == 2 else 1.0) for k in range(4)
    )
    result = ray_swarm(HEART, 2, heterogeneity=Heterogeneity(profiles))
    names = [s.name for s in HEART.load().sites]
    addresses = [i.address for i in simulated_identities(names, HEART.seed)]
    for record in result.rounds:
        assert {c.site for c in record.commitments} == set(addresses) - {addresses[2]}
    assert all(r.up == 4 and r.contributors == 3 for r in result.reports)
    assert all(r.sim_s >= 8.0 for r in result.reports)  # the leader waited


# -- the in-process engine's message races, played in simulated time ----------


def heart_on_ray(rounds: int, **options) -> SwarmResult:
    """The four heart hospitals on the Ray engine, swarm settings as given."""
    data = HEART.load()
    initial = ArrayRecord(initial_model(HEART, data.num_features).state_dict())
    return run_ray_swarm(
        functools.partial(make_client_app, HEART),
        data.num_sites,
        initial,
        rounds,
        local_steps=HEART.local_steps,
        site_names=[s.name for s in data.sites],
        **options,
    )


def _converged(result: SwarmResult) -> None:
    """Every site ends on the swarm's last block with its model."""
    last = result.rounds[-1]
    assert {core.ledger.head().hash for core in result.sites} == {last.block_hash}
    finals = {arrays_hash(core.model) for core in result.sites}
    assert finals == {last.model_hash}


def test_a_late_update_is_refused_after_the_seal_on_ray():
    """One hospital 1.5 s away (each way) from the others: its update reaches
    the electees after the leader's wait (1 s), when the round is sealed."""
    far = first_epoch_leaders()[3]  # leads round 4 only: not in this run
    profiles = tuple(
        SiteProfile(k + 1, latency_ms=1500.0 if k == far else 10.0) for k in range(4)
    )
    result = heart_on_ray(
        3, heterogeneity=Heterogeneity(profiles), round_timeout=4, update_wait=1.0
    )
    address = result.sites[far].address
    for record in result.rounds:
        assert address not in record.contributors and len(record.commitments) == 3
        assert all(c.round == record.round for c in record.commitments)
    assert 2 in result.sites[far].log.trained  # it trained round 2, and sent it
    late = {entry for core in result.sites for entry in core.log.late}
    assert (2, far) in late  # which an electee refused as late
    _converged(result)


def test_a_site_missing_two_rounds_catches_up_by_fetching_on_ray():
    plan = FaultPlan(site_crashes=((2, 2),), recover_after=2)
    result = heart_on_ray(5, faults=plan, round_timeout=1)
    switzerland = result.sites[2]
    assert [(c.site, c.round) for c in result.crashes] == [("switzerland", 2)]
    for record in result.rounds[1:3]:
        assert switzerland.address not in record.contributors
    # Back for round 4: it fetched round 3's model by its ledger hash...
    first = switzerland.log.adopted[0]
    assert (first.round, first.recomputed) == (3, False)
    assert ("arrays", first.model_hash) in switzerland.log.fetched
    # ...and contributed again.
    assert switzerland.address in result.rounds[-1].contributors
    _converged(result)


def test_lost_blocks_are_fetched_by_hash_when_a_child_arrives_on_ray():
    """30% of all messages lost: blocks arrive before their parents, which
    are fetched by hash; anti-entropy heals the rest."""
    result = heart_on_ray(5, faults=FaultPlan(drop_sends=0.3), round_timeout=1)
    assert [r.round for r in result.rounds] == [1, 2, 3, 4, 5]
    fetched = [kind for core in result.sites for kind, _ in core.log.fetched]
    assert "block" in fetched
    _converged(result)


def test_an_unannounced_seal_and_a_death_mid_fetch_heal_on_ray(caplog):
    caplog.set_level(logging.INFO, logger="swarmflower.peer")
    plan = FaultPlan(
        silent_seal_rounds=frozenset({2}),
        fetch_crashes=tuple((k, 3) for k in range(4)),
        recover_after=1,
    )
    result = heart_on_ray(4, faults=plan, round_timeout=1)
    whys = [why for _, _, why in result.crashes]
    assert any("not announced" in why for why in whys)
    assert any("mid-fetch" in why for why in whys)
    assert result.rounds[1].view == 1  # a backup sealed round 2
    # The silent leader, back, found its block on a losing fork and switched.
    assert "on a losing fork at round 2" in caplog.text
    _converged(result)
