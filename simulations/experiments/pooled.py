"""The `pooled` baseline: all training data in one place, the same model.

The upper reference that privacy rules out. Its budget matches one site's in
the federated runs (FLamby's convention): `rounds * local_steps` updates.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from swarmflower.simulations.experiments.results import (
    MethodResult,
    evaluate_on_sites,
    round_record,
)
from swarmflower.tasks import TaskSpec, initial_model
from swarmflower.tasks.training import round_seed, train_steps


def run_pooled(
    spec: TaskSpec, rounds: int, progress: Callable[[int], None] | None = None
) -> MethodResult:
    """Train on the union of the sites' train splits; score on each site's test set."""
    started = time.perf_counter()
    data = spec.load()
    x, y = data.pooled_train()
    model = initial_model(spec, data.num_features)
    history = []
    for server_round in range(1, rounds + 1):
        train_steps(
            model,
            x,
            y,
            steps=spec.local_steps,
            batch_size=spec.batch_size,
            learning_rate=spec.learning_rate,
            optimizer=spec.optimizer,
            seed=round_seed(spec.seed, data.num_sites, server_round),
        )
        accuracies = [e.accuracy for e in evaluate_on_sites(model, data)]
        history.append(round_record(server_round, accuracies))
        if progress:
            progress(server_round)
    return MethodResult(
        method="pooled",
        rounds=history,
        site_names=tuple(s.name for s in data.sites),
        wall_s=time.perf_counter() - started,
        final_arrays=[v.detach().numpy() for v in model.state_dict().values()],
    )
