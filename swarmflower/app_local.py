"""Local-only training of a Flower app: the yardstick a swarm must beat.

Every site trains its own copy of the app's initial model on its own data
for the app's rounds, with the train config the swarm's sites get, and never
merges. After each round every site evaluates its own model with the app's
`@app.evaluate`, and the app's strategy aggregates the replies
(`aggregate_evaluate`, and its `train_metrics_aggr_fn` for the train
replies), so the figures carry the app's own names and weighting, beside the
swarm's and Flower's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from flwr.app import ArrayRecord

from swarmflower.app_calls import AppFailure, FailureLog, call_app
from swarmflower.app_run import evaluate_round, train_metrics
from swarmflower.flower_app import FlowerApp, ServerPlan
from swarmflower.flower_messages import site_context
from swarmflower.logs import quiet_flower
from swarmflower.round_protocol import train_site
from swarmflower.strategies import adopt_strategy


@dataclass
class LocalRun:
    """Per round, the app's metrics of the sites' own models, aggregated."""

    evaluate_metrics: dict[int, dict[str, float]]
    train_metrics: dict[int, dict[str, float]]
    wall_s: float


def run_local(app: FlowerApp, plan: ServerPlan, sites: int) -> LocalRun:
    """The app's rounds with every site on its own (see the module's doc)."""
    started = time.perf_counter()
    client_app = app.client_app()
    contexts = [site_context(k, sites, run_config=app.run_config) for k in range(sites)]
    leader = adopt_strategy(plan.strategy, plan.train_config)
    models: list[ArrayRecord] = [plan.initial_arrays] * sites
    evaluated: dict[int, dict[str, float]] = {}
    trained: dict[int, dict[str, float]] = {}
    failures = FailureLog()
    with quiet_flower():
        for round in range(1, plan.num_rounds + 1):
            config = dict(leader.train_config(round))
            reported = []
            for k, context in enumerate(contexts):
                update = call_app(
                    train_site, client_app, context, models[k], round, k, config
                )
                if isinstance(update, AppFailure):
                    failures(f"site-{k + 1}", round, update)
                    continue  # that site keeps its model of the last round
                models[k] = update.arrays
                reported.append(dict(update.metrics or {}))
            trained[round] = train_metrics(plan, reported, round)
            own = dict(enumerate(models))
            evaluated[round] = evaluate_round(
                plan, client_app, dict(enumerate(contexts)), round, own, failures
            )
    return LocalRun(evaluated, trained, time.perf_counter() - started)
