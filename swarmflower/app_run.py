"""`swarmflower run`: a user's Flower app project played as a swarm.

The app's `ServerApp.main` gives the plan (strategy and options, initial
model, rounds, train config; `flower_app.server_plan`), its `ClientApp` runs
at every site with the `Context` Flower's simulation engine would give it
(the project's run config, `partition-id`, `num-partitions`, a state kept
across rounds), and after each round every site evaluates the adopted model
with the app's own `@app.evaluate`, aggregated by the app's own strategy, so
the app's metric names come out as they are. Then the ServerApp's own ending
(its code after `strategy.start`) runs on the swarm's `Result`.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import Result

from swarmflower.app_calls import (
    ERROR_REPLY,
    AppFailure,
    FailureLog,
    call_app,
    log_failure,
)
from swarmflower.errors import ConfigError
from swarmflower.faults import NO_FAULTS, FaultPlan
from swarmflower.flower_app import FlowerApp, ServerPlan, client_app_of, server_plan
from swarmflower.flower_messages import EVALUATE, model_instruction, site_context
from swarmflower.ledger import RoundRecord
from swarmflower.logs import quiet_flower
from swarmflower.round_rules import drawn_sites, train_count
from swarmflower.strategies import LeaderStrategy, adopt_strategy
from swarmflower.swarm import run_swarm
from swarmflower.swarm_result import SwarmResult

log = logging.getLogger("swarmflower.app_run")

DEFAULT_SITES = 2  # when neither --sites nor the project's federation says


@dataclass
class AppRun:
    """A finished swarm of a Flower app: the swarm and the app's metrics."""

    app: FlowerApp
    plan: ServerPlan
    swarm: SwarmResult
    evaluate_metrics: dict[int, dict[str, float]]  # round -> the app's metrics
    wall_s: float
    # round -> the ServerApp's evaluate_fn metrics (central evaluation)
    central_metrics: dict[int, dict[str, float]] = field(default_factory=dict)
    # round -> the contributors' train metrics, aggregated as the strategy's
    # aggregate_train aggregates them
    train_metrics: dict[int, dict[str, float]] = field(default_factory=dict)
    attackers: frozenset[int] = frozenset()  # sites playing an attack (indices)

    @property
    def final_arrays(self) -> ArrayRecord:
        return self.swarm.final_arrays

    def flower_result(self) -> Result:
        """The run as Flower's `Result`, for the ServerApp's ending."""
        return Result(
            arrays=self.final_arrays,
            train_metrics_clientapp=metric_records(self.train_metrics),
            evaluate_metrics_clientapp=metric_records(self.evaluate_metrics),
            evaluate_metrics_serverapp=metric_records(self.central_metrics),
        )


def metric_records(metrics: dict[int, dict[str, float]]) -> dict[int, MetricRecord]:
    """Per-round metrics as Flower's history holds them (empty rounds left out)."""
    return {round: MetricRecord(values) for round, values in metrics.items() if values}


def drawn_per_round(plan: ServerPlan, sites: int) -> int:
    """Sites drawn to train each round (0: all): the strategy's
    `fraction_train` of the sites, at least its `min_train_nodes`, as Flower
    samples them."""
    strategy = plan.strategy
    return train_count(
        sites,
        getattr(strategy, "fraction_train", 1.0),
        getattr(strategy, "min_train_nodes", 0),
    )


def evaluated_per_round(plan: ServerPlan, sites: int) -> int:
    """Sites drawn to evaluate each round's model (0: all): the strategy's
    `fraction_evaluate`, at least its `min_evaluate_nodes`."""
    strategy = plan.strategy
    return train_count(
        sites,
        getattr(strategy, "fraction_evaluate", 1.0),
        getattr(strategy, "min_evaluate_nodes", 0),
    )


def sites_for(app: FlowerApp, sites: int | None) -> int:
    """--sites, else the project's local-simulation size, else 2."""
    count = sites or app.num_supernodes or DEFAULT_SITES
    if count < 2:
        raise ConfigError(f"a swarm needs at least 2 sites, got {count}")
    return count


def run_flower_app(
    app: FlowerApp,
    sites: int | None = None,
    *,
    plan: ServerPlan | None = None,
    progress: Callable[[int], None] | None = None,
    round_timeout: int = 10,
    seed: int = 0,
    engine: str = "inproc",
    faults: FaultPlan = NO_FAULTS,
) -> AppRun:
    """Play the app's plan (default: `server_plan(app)`) as a swarm of
    `sites` sites: in-process threads, or simulated sites on Ray actors
    (`engine="ray"`, each actor loading the app itself); `faults` (such as
    an attack) as in any simulation."""
    started = time.perf_counter()
    plan = plan or server_plan(app)
    count = sites_for(app, sites)
    contexts = [site_context(k, count, run_config=app.run_config) for k in range(count)]
    client_app = app.client_app()
    leader = adopt_strategy(plan.strategy, plan.train_config)
    common = {
        "round_timeout": round_timeout,
        "seed": seed,
        "train_sites": drawn_per_round(plan, count),
        "faults": faults,
    }
    if engine == "ray":
        swarm = _on_ray(app, count, plan, leader, progress, common)
    else:
        swarm = run_swarm(
            client_app,
            count,
            plan.initial_arrays,
            plan.num_rounds,
            leader,
            contexts=contexts,
            progress=progress,
            **common,
        )
    failures = FailureLog()
    metrics = {
        record.round: evaluate_round(
            plan,
            client_app,
            _evaluating(plan, contexts, record, swarm),
            record.round,
            swarm.models[record.round],
            failures,
        )
        for record in swarm.rounds
    }
    central = {
        record.round: central_round(plan, record.round, swarm.models[record.round])
        for record in swarm.rounds
    }
    trained = {r.round: train_round(plan, r, swarm) for r in swarm.rounds}
    wall_s = time.perf_counter() - started
    attackers = faults.attack.sites if faults.attack is not None else frozenset()
    return AppRun(app, plan, swarm, metrics, wall_s, central, trained, attackers)


def train_round(
    plan: ServerPlan, record: RoundRecord, swarm: SwarmResult
) -> dict[str, float]:
    """The train metrics of the round's contributors (the updates its block
    merged), aggregated as the strategy's `aggregate_train` would. Each is a
    site's report of its own training."""
    by_address = {core.address: core for core in swarm.sites}
    reported = [
        by_address[address].log.train_metrics.get(record.round)
        for address in record.contributors
        if address in by_address
    ]
    return train_metrics(plan, [m for m in reported if m], record.round)


def train_metrics(
    plan: ServerPlan, reported: list[dict[str, float]], server_round: int
) -> dict[str, float]:
    """Sites' train metrics combined by the strategy's own
    `train_metrics_aggr_fn`, weighted by its `weighted_by_key`."""
    aggregate = getattr(plan.strategy, "train_metrics_aggr_fn", None)
    if not reported or aggregate is None:
        return {}
    records = [RecordDict({"metrics": MetricRecord(m)}) for m in reported]
    weighted_by = getattr(plan.strategy, "weighted_by_key", "num-examples")
    with quiet_flower():
        try:
            return plain_metrics(aggregate(records, weighted_by))
        except Exception as exc:  # the app's own function, or missing keys
            log.warning(
                "train metrics of round %d not aggregated: %s",
                server_round,
                AppFailure.of(exc),
            )
            return {}


def central_round(
    plan: ServerPlan, server_round: int, arrays: ArrayRecord
) -> dict[str, float]:
    """The ServerApp's own `evaluate_fn` on the round's model, run by the
    process that plays the simulation (as Flower's ServerApp process would);
    a failure is one line and leaves the round's central metrics empty."""
    if plan.evaluate_fn is None:
        return {}
    try:
        with quiet_flower():
            return plain_metrics(plan.evaluate_fn(server_round, arrays))
    except Exception as exc:  # the app's own code: anything may come out
        log.warning(
            "the ServerApp's evaluate_fn failed in round %d: %s",
            server_round,
            AppFailure.of(exc),
        )
        return {}


def _on_ray(
    app: FlowerApp,
    count: int,
    plan: ServerPlan,
    leader: LeaderStrategy,
    progress: Callable[[int], None] | None,
    common: dict[str, Any],
) -> SwarmResult:
    """The app's swarm on the Ray engine; the app's own evaluate runs here
    afterwards, on every round's model, as for threads."""
    from swarmflower.simulations.engine.ray_engine import run_ray_swarm

    return run_ray_swarm(
        functools.partial(client_app_of, str(app.directory), app.clientapp),
        count,
        plan.initial_arrays,
        plan.num_rounds,
        leader,
        run_config=app.run_config,
        progress=(lambda report: progress(report.round)) if progress else None,
        score_sites=False,
        **common,
    )


def _evaluating(
    plan: ServerPlan, contexts: list[Context], record: RoundRecord, swarm: SwarmResult
) -> dict[int, Context]:
    """The sites that evaluate a round's model: as many as Flower samples for
    `fraction_evaluate` (at least `min_evaluate_nodes`), drawn from the hash
    of the round's own block as `round_rules.drawn_sites` draws trainers."""
    count = evaluated_per_round(plan, len(contexts))
    addresses = [core.address for core in swarm.sites]
    drawn = drawn_sites(record.block_hash, record.round, addresses, count)
    return {
        k: context
        for k, context in enumerate(contexts)
        if drawn is None or addresses[k] in drawn
    }


def evaluate_round(
    plan: ServerPlan,
    client_app,
    contexts: dict[int, Context],
    server_round: int,
    arrays: ArrayRecord | Mapping[int, ArrayRecord],
    failures: Callable[..., None] = log_failure,
) -> dict[str, float]:
    """The `@app.evaluate` of the sites in `contexts` (site -> its Context) on
    the round's model (or each site on its own, `arrays` by site), aggregated
    by the app's own strategy (`aggregate_evaluate`), as Flower's server would."""
    replies: list[Message] = []
    config = dict(plan.evaluate_config)
    with quiet_flower():
        for site, context in contexts.items():
            model = arrays if isinstance(arrays, ArrayRecord) else arrays[site]
            message = model_instruction(
                model, EVALUATE, server_round, dst_node_id=site + 1, config=config
            )
            reply = call_app(client_app, message, context)
            if not isinstance(reply, AppFailure) and reply.has_error():
                reply = AppFailure(ERROR_REPLY)
            if isinstance(reply, AppFailure):
                failures(f"site-{site + 1}", server_round, reply, "evaluate")
                continue  # as Flower does: that node's reply does not count
            replies.append(reply)
        aggregated = (
            plan.strategy.aggregate_evaluate(server_round, replies) if replies else None
        )
    return plain_metrics(aggregated)


def plain_metrics(record: MetricRecord | None) -> dict[str, float]:
    """A MetricRecord as plain floats (lists of numbers are averaged)."""
    if record is None:
        return {}
    return {
        key: float(np.mean(value)) if isinstance(value, list) else float(value)
        for key, value in record.items()
    }
