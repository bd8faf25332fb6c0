"""The `local` baseline: each site trains alone, with the swarm's training budget.

Each site runs the task's own ClientApp round after round on its own model,
so local training is exactly what a site does inside the swarm, minus the
merge. As in FLamby, each local model is also scored on every site's test set,
and, as in the Swarm Learning paper, on their union: the `global_*` rows, per
site, their mean and the weakest site's.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from flwr.app import ArrayRecord

from swarmflower.flower_messages import TRAIN, model_instruction, site_context
from swarmflower.simulations.results import (
    GlobalTestSet,
    MethodResult,
    Metric,
    node_metrics,
    round_record,
)
from swarmflower.tasks import TaskSpec, build_model, initial_model, make_client_app
from swarmflower.tasks.training import evaluate

ProgressFn = Callable[[int], None]


def run_local(
    spec: TaskSpec, rounds: int, progress: ProgressFn | None = None
) -> MethodResult:
    """Train every site alone for `rounds` rounds; report own-test accuracy."""
    started = time.perf_counter()
    data = spec.load()
    app = make_client_app(spec)
    arrays = [
        ArrayRecord(initial_model(spec, data.num_features).state_dict())
    ] * data.num_sites
    model = build_model(spec, data.num_features)
    history = []
    for server_round in range(1, rounds + 1):
        own_accuracy = []
        for site in range(data.num_sites):
            message = model_instruction(
                arrays[site], TRAIN, server_round, dst_node_id=site + 1
            )
            reply = app(message, site_context(site, data.num_sites))
            arrays[site] = reply.content["arrays"]
            model.load_state_dict(arrays[site].to_torch_state_dict())
            own = data.sites[site]
            own_accuracy.append(evaluate(model, own.x_test, own.y_test).accuracy)
        history.append(round_record(server_round, own_accuracy))
        if progress:
            progress(server_round)
    extra, scores = [], []
    test_set = GlobalTestSet(data)
    for site, record in enumerate(arrays):
        model.load_state_dict(record.to_torch_state_dict())
        score, per_site = test_set.score(model)
        extra.append(
            Metric("accuracy_all_tests", float(per_site.mean()), data.sites[site].name)
        )
        scores.append(score)
    names = tuple(s.name for s in data.sites)
    return MethodResult(
        method="local",
        rounds=history,
        site_names=names,
        wall_s=time.perf_counter() - started,
        extra=extra + node_metrics(scores, names),
    )
