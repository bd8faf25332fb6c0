"""The `swarm` method for `compare` and `simulate`: the task's sites as a swarm.

Same task, data, seeds and training budget as the baselines; every round's
adopted model is then scored on each site's test set through the site's own
`ClientApp`, as Flower's federated evaluation does for the `fedavg` baseline.
Two engines: `inproc` (a thread and a replica per site) and `ray` (virtual
sites on a pool of Ray actors, with simulated time).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Unpack

from flwr.app import ArrayRecord
from flwr.clientapp import ClientApp

from swarmflower.app_calls import FailureLog, score_sites
from swarmflower.datasets import FederatedDataset
from swarmflower.errors import ConfigError
from swarmflower.faults import NO_FAULTS, FaultPlan
from swarmflower.flower_messages import site_context
from swarmflower.simulations.engine.ray_engine import run_ray_swarm
from swarmflower.simulations.engine.timing import Heterogeneity
from swarmflower.simulations.experiments.results import (
    MethodResult,
    Metric,
    RoundScore,
    round_record,
)
from swarmflower.strategies import LeaderStrategy
from swarmflower.swarm import run_swarm
from swarmflower.swarm_result import RoundReport, SwarmResult
from swarmflower.swarm_setup import SwarmSettings
from swarmflower.tasks import TaskSpec, initial_model, make_client_app


def run_swarm_method(
    spec: TaskSpec,
    rounds: int,
    progress: Callable[[int], None] | None = None,
    *,
    strategy: str | LeaderStrategy = "FedAvg",
    faults: FaultPlan = NO_FAULTS,
    round_timeout: int = 10,
    min_peers: int | None = None,
    ledger_dir: Path | None = None,
    engine: str = "inproc",
    heterogeneity: Heterogeneity | None = None,
    ray_address: str | None = None,
    hosts: int | None = None,
    on_round: Callable[[RoundReport], None] | None = None,
) -> MethodResult:
    """Run the swarm and report it like the baselines.

    Its wall time covers the run and the per-round scoring, as the `fedavg`
    baseline's covers Flower's federated evaluation after every round.
    `heterogeneity`, `ray_address`, `hosts` and `on_round` (each round's
    report as it ends) are for the Ray engine.
    """
    common = {
        "strategy": strategy,
        "faults": faults,
        "round_timeout": round_timeout,
        "min_peers": min_peers,
        "ledger_dir": ledger_dir,
    }
    if engine == "ray":
        ray_only = {"ray_address": ray_address, "hosts": hosts, "on_round": on_round}
        return _run_on_ray(
            spec, rounds, progress, heterogeneity=heterogeneity, **ray_only, **common
        )
    if engine != "inproc":
        raise ConfigError(f"unknown engine '{engine}': use inproc or ray")
    if heterogeneity or ray_address or hosts:
        raise ConfigError("heterogeneity, ray_address and hosts need engine 'ray'")
    return _run_in_process(spec, rounds, progress, **common)


def _run_in_process(
    spec: TaskSpec,
    rounds: int,
    progress: Callable[[int], None] | None,
    *,
    strategy: str | LeaderStrategy,
    faults: FaultPlan,
    ledger_dir: Path | None,
    **settings: Unpack[SwarmSettings],
) -> MethodResult:
    """The swarm as site threads; every round's model scored at every site."""
    # Site threads keep their models in memory: there is no file to tear.
    faults.refuse_drills("inproc", played=faults.drills() - {"crash-mid-write"})
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
        faults=faults,
        site_names=[s.name for s in data.sites],
        seed=spec.seed,
        progress=progress,
        ledger_dir=ledger_dir,
        **settings,
    )
    history = _score_rounds(spec, app, swarm, _audits(swarm, faults))
    return _swarm_result(
        data, started, history, swarm.final_arrays, swarm, len(swarm.crashes)
    )


def _audits(swarm: SwarmResult, faults: FaultPlan) -> dict[int, dict[str, object]]:
    """Round -> its `RoundScore` columns about the updates it merged."""
    attack = faults.attack
    return swarm.round_audits(attack.sites if attack is not None else frozenset())


def _score_rounds(
    spec: TaskSpec,
    app: ClientApp,
    swarm: SwarmResult,
    audits: dict[int, dict[str, object]],
) -> list:
    """Each round's model on each site's test set, via the site's ClientApp
    (NaN where it failed), with the round's `audits` columns."""
    data = spec.load()
    leaders = swarm.leader_names()
    contexts = {k: site_context(k, data.num_sites) for k in range(data.num_sites)}
    history = []
    failures = FailureLog()
    for record in swarm.rounds:
        scores, failed = score_sites(
            app, swarm.models[record.round], record.round, contexts
        )
        for site, failure in failed.items():
            failures(data.sites[site].name, record.round, failure, "evaluate")
        history.append(
            round_record(
                record.round,
                list(scores.values()),
                leader=leaders[record.round],
                view=record.view,
                reason=record.reason.name.lower(),
                contributors=len(record.commitments),
                **audits.get(record.round, {}),
            )
        )
    return history


def _run_on_ray(
    spec: TaskSpec,
    rounds: int,
    progress: Callable[[int], None] | None,
    *,
    on_round: Callable[[RoundReport], None] | None,
    **options,
) -> MethodResult:
    """The swarm on the Ray engine; its hosts score each round as they adopt."""
    started = time.perf_counter()
    data = spec.load()
    initial = ArrayRecord(initial_model(spec, data.num_features).state_dict())

    def round_done(report: RoundReport) -> None:
        if on_round:
            on_round(report)
        if progress:
            progress(report.round)

    result = run_ray_swarm(
        functools.partial(make_client_app, spec),
        data.num_sites,
        initial,
        rounds,
        local_steps=spec.local_steps,
        site_names=[s.name for s in data.sites],
        seed=spec.seed,
        progress=round_done,
        **options,
    )
    audits = _audits(result, options.get("faults", NO_FAULTS))
    history = [
        round_record(
            r.round,
            list(r.site_accuracy),
            leader=r.leader,
            view=r.view,
            reason=r.reason,
            contributors=r.contributors,
            up=r.up,
            wall_s=r.wall_s,
            sim_s=r.sim_s,
            **audits.get(r.round, {}),
        )
        for r in result.reports
    ]
    extra = [
        Metric("sim_s", result.sim_s),
        Metric("setup_s", result.setup_s),
        Metric("round_wall_s", result.round_wall_s),
        Metric("hosts", float(result.hosts)),
    ]
    return _swarm_result(
        data, started, history, result.final_arrays, result, len(result.crashes), extra
    )


def _swarm_result(
    data: FederatedDataset,
    started: float,
    history: list[RoundScore],
    final: ArrayRecord,
    details: object,
    crashes: int,
    extra: Sequence[Metric] = (),
) -> MethodResult:
    """The swarm's `MethodResult`, whichever engine ran it."""
    leaders = float(len({r.leader for r in history}))
    return MethodResult(
        method="swarm",
        rounds=history,
        site_names=tuple(s.name for s in data.sites),
        wall_s=time.perf_counter() - started,
        extra=[
            Metric("distinct_leaders", leaders),
            Metric("crashes", float(crashes)),
            *extra,
        ],
        final_arrays=final.to_numpy_ndarrays(),
        details=details,
    )
