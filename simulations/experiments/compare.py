"""`swarmflower compare`: every method on the same task, data, seeds and budget.

Trained methods (`swarm`, `fedavg`, `local`, `pooled`) run; derived ones are
built from a trained method's final models without more federated rounds:
`local_own` (each site's local model on its own test set only) and the
personalised `swarm+ft` and `fedavg+ft`. Every final model is then scored by
the same yardsticks. With several seeds, each method runs once per seed
(model initialisation and data order; a task's fixed split, like heart's,
stays fixed).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

from swarmflower.errors import ConfigError
from swarmflower.simulations.experiments.fedavg import run_flower_fedavg
from swarmflower.simulations.experiments.local import own_site_models, run_local
from swarmflower.simulations.experiments.methods import METHODS
from swarmflower.simulations.experiments.personalise import FineTuning, fine_tune
from swarmflower.simulations.experiments.pooled import run_pooled
from swarmflower.simulations.experiments.results import MethodResult
from swarmflower.simulations.experiments.scenarios import Scenario
from swarmflower.simulations.experiments.swarm import run_swarm_method
from swarmflower.simulations.experiments.yardsticks import add_yardsticks
from swarmflower.tasks import TaskSpec

Runner = Callable[[TaskSpec, int, Callable[[int], None] | None], MethodResult]

RUNNERS: dict[str, Runner] = {
    "swarm": run_swarm_method,
    "fedavg": run_flower_fedavg,
    "local": run_local,
    "pooled": run_pooled,
}
# Derived method -> the trained method whose final models it starts from.
DERIVED = {"swarm+ft": "swarm", "fedavg+ft": "fedavg", "local_own": "local"}
MAX_SEEDS = 100
DEFAULT_TUNING = FineTuning()


def check_methods(methods: Sequence[str]) -> list[str]:
    """Known method names, in the order given, without repeats."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ConfigError(
            f"unknown method(s) {', '.join(unknown)}: use {', '.join(METHODS)}"
        )
    if not methods:
        raise ConfigError(f"no method given: use some of {', '.join(METHODS)}")
    return list(dict.fromkeys(methods))


def trained_methods(methods: Sequence[str]) -> list[str]:
    """The methods that must run to give `methods` (a derived one needs its base)."""
    return list(dict.fromkeys(DERIVED.get(m, m) for m in methods))


def check_seeds(seeds: int) -> int:
    if not 1 <= seeds <= MAX_SEEDS:
        raise ConfigError(f"seeds must be between 1 and {MAX_SEEDS}, got {seeds}")
    return seeds


def run_compare(
    spec: TaskSpec,
    rounds: int,
    methods: Sequence[str],
    progress: Callable[[str, int], None] | None = None,
    swarm_options: Mapping[str, object] | None = None,
    seeds: int = 1,
    tuning: FineTuning = DEFAULT_TUNING,
    baseline_options: Mapping[str, object] | None = None,
) -> list[MethodResult]:
    """Run each method once per seed; every result scored by the yardsticks.

    Seeds are `spec.seed`, `spec.seed + 1`, ...; `progress(method, done)`
    counts rounds over all seeds. `swarm_options` (strategy, faults,
    round_timeout, ...) go to the swarm only, `baseline_options` (an attack)
    to Flower's FedAvg. Results come seed by seed, in the order of `methods`.
    """
    if rounds < 1:
        raise ConfigError(f"rounds must be at least 1, got {rounds}")
    chosen = check_methods(methods)
    check_seeds(seeds)
    if tuning.steps < 0:
        raise ConfigError(f"fine-tuning steps must be 0 or more, got {tuning.steps}")
    spec.load()  # bad data fails here, before any engine starts
    results = []
    for offset in range(seeds):
        seeded = spec.with_options(seed=spec.seed + offset)
        trained = {}
        for method in trained_methods(chosen):
            hook = _counting(progress, method, offset * rounds)
            options = {
                "swarm": swarm_options or {},
                "fedavg": baseline_options or {},
            }.get(method, {})
            trained[method] = RUNNERS[method](seeded, rounds, hook, **options)
            trained[method].seed = seeded.seed
        for method in chosen:
            results.append(_result_of(method, trained, seeded, rounds, tuning))
        add_yardsticks(results[-len(chosen) :], seeded)
    return results


def _counting(
    progress: Callable[[str, int], None] | None, method: str, done: int
) -> Callable[[int], None] | None:
    """A runner's round hook that counts on from the rounds of earlier seeds."""
    if progress is None:
        return None
    return lambda server_round: progress(method, done + server_round)


def _result_of(
    method: str,
    trained: Mapping[str, MethodResult],
    spec: TaskSpec,
    rounds: int,
    tuning: FineTuning,
) -> MethodResult:
    if method == "local_own":
        return own_site_models(trained["local"])
    if method in DERIVED:
        return fine_tune(trained[DERIVED[method]], spec, rounds, tuning)
    return trained[method]


def run_scenario(
    scenario: Scenario,
    progress: Callable[[str, int], None] | None = None,
    engine: str = "inproc",
    **ray_options: object,
) -> list[MethodResult]:
    """A scenario file's comparison on the chosen engine.

    Both engines inflict crashes and dishonest leaders; dropout, slowdowns and
    links need the Ray engine (`ray_options`: ray_address, hosts, on_round)
    and are not simulated in process.
    """
    swarm_options: dict[str, object] = {
        "strategy": scenario.strategy,
        "faults": scenario.faults.fault_plan(scenario.rounds),
        "round_timeout": max(1, math.ceil(scenario.round_timeout)),
        "engine": engine,
    }
    if engine == "ray":
        heterogeneity = scenario.faults.heterogeneity(scenario.spec.load().num_sites)
        swarm_options.update(heterogeneity=heterogeneity, **ray_options)
    attack = scenario.faults.byzantine  # Flower's FedAvg faces it too
    return run_compare(
        scenario.spec,
        scenario.rounds,
        scenario.methods,
        progress,
        swarm_options,
        baseline_options={"attack": attack} if attack else None,
    )
