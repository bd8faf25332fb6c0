"""The `local` baseline: each site trains alone, with the swarm's training budget.

Each site runs the task's own ClientApp round after round on its own model,
so local training is exactly what a site does inside the swarm, minus the
merge. As in FLamby, each local model is scored on every site's test set
(the `local` row; its curve too), and, as in the Swarm Learning paper, on
their union (`global_*`: per site, their mean and the weakest site's). The
flattering view, each site's model on its own test set only, is `local_own`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from flwr.app import ArrayRecord

from swarmflower.flower_messages import TRAIN, model_instruction, site_context
from swarmflower.simulations.experiments.results import (
    EVERY_SITE,
    OWN_SITE,
    MethodResult,
    round_record,
)
from swarmflower.simulations.experiments.yardsticks import HeldOutRows, site_accuracy
from swarmflower.tasks import TaskSpec, build_model, initial_model, make_client_app

ProgressFn = Callable[[int], None]


def run_local(
    spec: TaskSpec, rounds: int, progress: ProgressFn | None = None
) -> MethodResult:
    """Train every site alone for `rounds` rounds, scored FLamby's way each round.

    The result's `details` are the rounds of `local_own` (own test set only).
    """
    started = time.perf_counter()
    data = spec.load()
    app = make_client_app(spec)
    rows = HeldOutRows.of(data)
    arrays = [
        ArrayRecord(initial_model(spec, data.num_features).state_dict())
    ] * data.num_sites
    model = build_model(spec, data.num_features)
    history, own_history = [], []
    for server_round in range(1, rounds + 1):
        on_every_site = np.zeros((data.num_sites, data.num_sites))
        for site in range(data.num_sites):
            message = model_instruction(
                arrays[site], TRAIN, server_round, dst_node_id=site + 1
            )
            reply = app(message, site_context(site, data.num_sites))
            arrays[site] = reply.content["arrays"]
            model.load_state_dict(arrays[site].to_torch_state_dict())
            on_every_site[site] = site_accuracy(rows, rows.logits(model))
        history.append(round_record(server_round, list(on_every_site.mean(axis=0))))
        own_history.append(round_record(server_round, list(np.diag(on_every_site))))
        if progress:
            progress(server_round)
    return MethodResult(
        method="local",
        rounds=history,
        site_names=rows.site_names,
        wall_s=time.perf_counter() - started,
        details=own_history,
        seed=spec.seed,
        site_arrays=[a.to_numpy_ndarrays() for a in arrays],
        deployment=EVERY_SITE,
    )


def own_site_models(local: MethodResult) -> MethodResult:
    """`local_own`: each site's local model scored on its own test set only."""
    return MethodResult(
        method="local_own",
        rounds=list(local.details or []),
        site_names=local.site_names,
        wall_s=local.wall_s,
        seed=local.seed,
        site_arrays=local.site_arrays,
        deployment=OWN_SITE,
    )
