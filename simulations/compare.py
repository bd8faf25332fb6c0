"""`swarmflower compare`: every method on the same task, data, seeds and budget."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

from swarmflower.errors import ConfigError
from swarmflower.simulations.fedavg import run_flower_fedavg
from swarmflower.simulations.local import run_local
from swarmflower.simulations.pooled import run_pooled
from swarmflower.simulations.results import MethodResult, add_global_metrics
from swarmflower.simulations.scenarios import Scenario
from swarmflower.simulations.swarm import run_swarm_method
from swarmflower.tasks import TaskSpec

Runner = Callable[[TaskSpec, int, Callable[[int], None] | None], MethodResult]

RUNNERS: dict[str, Runner] = {
    "swarm": run_swarm_method,
    "fedavg": run_flower_fedavg,
    "local": run_local,
    "pooled": run_pooled,
}


def check_methods(methods: Sequence[str]) -> list[str]:
    """Known method names, in the order given, without repeats."""
    unknown = [m for m in methods if m not in RUNNERS]
    if unknown:
        raise ConfigError(
            f"unknown method(s) {', '.join(unknown)}: use {', '.join(RUNNERS)}"
        )
    return list(dict.fromkeys(methods))


def run_compare(
    spec: TaskSpec,
    rounds: int,
    methods: Sequence[str],
    progress: Callable[[str, int], None] | None = None,
    swarm_options: Mapping[str, object] | None = None,
) -> list[MethodResult]:
    """Run each method in turn; `progress(method, round)` follows every round.

    `swarm_options` (strategy, faults, round_timeout, ...) go to the swarm only.
    """
    if rounds < 1:
        raise ConfigError(f"rounds must be at least 1, got {rounds}")
    spec.load()  # bad data fails here, before any engine starts
    results = []
    for method in check_methods(methods):
        hook = (lambda r, m=method: progress(m, r)) if progress else None
        options = swarm_options if method == "swarm" and swarm_options else {}
        results.append(RUNNERS[method](spec, rounds, hook, **options))
    add_global_metrics(results, spec)
    return results


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
    return run_compare(
        scenario.spec, scenario.rounds, scenario.methods, progress, swarm_options
    )
