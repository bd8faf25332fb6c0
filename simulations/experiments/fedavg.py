"""The `fedavg` baseline: Flower's own FedAvg, run by Flower's simulation engine.

This is the yardstick the swarm is judged against, so nothing here is ours
but the task: Flower's `ServerApp`, Flower's `FedAvg` strategy and Flower's
Ray-backed simulation engine drive the task's `ClientApp`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

from flwr.app import ArrayRecord, Context, MetricRecord, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg, Result

from swarmflower.attacks import Attack, ColludingFedAvg, attacked_client_app
from swarmflower.logs import quiet_flower
from swarmflower.simulations.engine.ray_engine import local_ray_init_args, loopback_node
from swarmflower.simulations.experiments.results import MethodResult, round_record
from swarmflower.tasks import TaskSpec, initial_model, make_client_app

SITE_PREFIX = "accuracy-site-"


def per_site_accuracy(records: list[RecordDict], weighted_by_key: str) -> MetricRecord:
    """Keep each site's test accuracy and their unweighted mean (FLamby's metric).

    Flower's default averages metrics weighted by test-set size, which would
    let the largest hospital dominate the figure the benchmark reports.
    """
    del weighted_by_key
    values: dict[str, float] = {}
    for record in records:
        metrics = next(iter(record.metric_records.values()))
        values[f"{SITE_PREFIX}{int(metrics['site'])}"] = float(metrics["accuracy"])
    values["accuracy"] = sum(values.values()) / len(values)
    return MetricRecord(values)


def ray_backend_config(cpus: int | None = None) -> dict:
    """One CPU per actor (Flower's default asks two); Ray local, quiet, loopback only.

    Flower hands `init_args` to `ray.init`: the swarm engine's own arguments,
    so that both start the same Ray (run it inside `loopback_node()`).
    """
    return {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": local_ray_init_args(cpus),
    }


def make_server_app(
    spec: TaskSpec,
    rounds: int,
    outcome: dict[str, Result],
    progress: Callable[[int], None] | None = None,
    attack: Attack | None = None,
) -> ServerApp:
    """A Flower `ServerApp` running FedAvg over every site each round (with
    a colluding `attack`, Flower's FedAvg with the attackers' updates crafted
    from the honest ones first: `ColludingFedAvg`).

    The finished `Result` is left in `outcome["result"]`: the ServerApp runs in
    a thread of this process under `run_simulation`.
    """
    data = spec.load()
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        options = {
            "fraction_train": 1.0,
            "fraction_evaluate": 1.0,
            "min_train_nodes": data.num_sites,
            "min_evaluate_nodes": data.num_sites,
            "min_available_nodes": data.num_sites,
            "evaluate_metrics_aggr_fn": per_site_accuracy,
        }
        fedavg = (
            ColludingFedAvg(attack, **options)
            if attack is not None and attack.colludes
            else FedAvg(**options)
        )
        initial = ArrayRecord(initial_model(spec, data.num_features).state_dict())
        outcome["result"] = fedavg.start(
            grid=grid,
            initial_arrays=initial,
            num_rounds=rounds,
            evaluate_fn=_round_hook(progress),
        )

    return app


def run_flower_fedavg(
    spec: TaskSpec,
    rounds: int,
    progress: Callable[[int], None] | None = None,
    cpus: int | None = None,
    attack: Attack | None = None,
) -> MethodResult:
    """Run Flower's simulation engine; return per-round and final accuracies.
    With `attack`, its sites poison what they send (`attacks.py`)."""
    from flwr.simulation import run_simulation

    # Keep Ray from rewriting CUDA_VISIBLE_DEVICES for CPU-only actors (and
    # from warning that it will stop doing so).
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    started = time.perf_counter()
    data = spec.load()
    client_app = make_client_app(spec)
    if attack is not None:
        client_app = attacked_client_app(client_app, attack)
    outcome: dict[str, Result] = {}
    with quiet_flower(logging.ERROR), loopback_node():
        run_simulation(
            server_app=make_server_app(spec, rounds, outcome, progress, attack),
            client_app=client_app,
            num_supernodes=data.num_sites,
            backend_config=ray_backend_config(cpus),
        )
    wall_s = time.perf_counter() - started
    if "result" not in outcome:
        raise RuntimeError("Flower's simulation ended without a result")
    result = outcome["result"]
    history = []
    for server_round in range(1, rounds + 1):
        metrics = result.evaluate_metrics_clientapp[server_round]
        accuracies = [
            float(metrics[f"{SITE_PREFIX}{k}"]) for k in range(data.num_sites)
        ]
        history.append(round_record(server_round, accuracies))
    return MethodResult(
        method="fedavg",
        rounds=history,
        site_names=tuple(s.name for s in data.sites),
        wall_s=wall_s,
        final_arrays=result.arrays.to_numpy_ndarrays(),
    )


def _round_hook(
    progress: Callable[[int], None] | None,
) -> Callable[[int, ArrayRecord], MetricRecord | None] | None:
    """Flower calls `evaluate_fn` after every round: used only to report progress."""
    if progress is None:
        return None

    def after_round(server_round: int, arrays: ArrayRecord) -> None:
        if server_round > 0:
            progress(server_round)

    return after_round
