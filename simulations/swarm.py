"""The `swarm` method for `compare` and `simulate`: the task's sites as a swarm.

Same task, data, seeds and training budget as the baselines; every round's
adopted model is then scored on each site's test set through the site's own
`ClientApp`, as Flower's federated evaluation does for the `fedavg` baseline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from flwr.app import ArrayRecord
from flwr.clientapp import ClientApp

from swarmflower.faults import NO_FAULTS, FaultPlan
from swarmflower.flower_messages import EVALUATE, model_instruction, site_context
from swarmflower.simulations.results import MethodResult, Metric, round_record
from swarmflower.swarm import SwarmResult, run_swarm
from swarmflower.tasks import TaskSpec, initial_model, make_client_app


def run_swarm_method(
    spec: TaskSpec,
    rounds: int,
    progress: Callable[[int], None] | None = None,
    *,
    strategy: str = "FedAvg",
    faults: FaultPlan = NO_FAULTS,
    round_timeout: int = 10,
    min_peers: int | None = None,
    ledger_dir: Path | None = None,
) -> MethodResult:
    """Run the swarm in process and report it like the baselines.

    Its wall time covers the run and the per-round scoring, as the `fedavg`
    baseline's covers Flower's federated evaluation after every round.
    """
    started = time.perf_counter()
    data = spec.load()
    app = make_client_app(spec)
    initial = ArrayRecord(initial_model(spec, data.num_features).state_dict())
    swarm = run_swarm(
        app,
        data.num_sites,
        initial,
        rounds,
        strategy,
        min_peers=min_peers,
        round_timeout=round_timeout,
        faults=faults,
        site_names=[s.name for s in data.sites],
        seed=spec.seed,
        progress=progress,
        ledger_dir=ledger_dir,
    )
    history = _score_rounds(spec, app, swarm)
    extra = [
        Metric("distinct_leaders", float(len({r.leader for r in swarm.rounds}))),
        Metric("crashes", float(len(swarm.crashes))),
    ]
    return MethodResult(
        method="swarm",
        rounds=history,
        site_names=tuple(s.name for s in data.sites),
        wall_s=time.perf_counter() - started,
        extra=extra,
        final_arrays=swarm.final_arrays.to_numpy_ndarrays(),
        details=swarm,
    )


def _score_rounds(spec: TaskSpec, app: ClientApp, swarm: SwarmResult) -> list:
    """Each round's model on each site's test set, via the site's ClientApp."""
    data = spec.load()
    leaders = swarm.leader_names()
    history = []
    for record in swarm.rounds:
        accuracies = []
        for site in range(data.num_sites):
            message = model_instruction(
                swarm.models[record.round], EVALUATE, record.round, dst_node_id=site + 1
            )
            reply = app(message, site_context(site, data.num_sites))
            accuracies.append(float(reply.content["metrics"]["accuracy"]))
        history.append(
            round_record(
                record.round,
                accuracies,
                leader=leaders[record.round],
                view=record.view,
                reason=record.reason.name.lower(),
                contributors=len(record.commitments),
            )
        )
    return history
