"""Personalisation: each site adapts a shared final model to its own patients.

`swarm+ft` and `fedavg+ft` take the method's final model to every site,
which (1) runs a few more local steps on its own training split through the
task's own `ClientApp`, as one more local-only round, and (2) chooses its own
decision threshold on its own training split: the one that maximises that
split's accuracy, the nearest to the default (logit 0) among ties. Nothing
leaves the site, and nothing else sees its test set.

Why a threshold: hospitals' case rates differ (in Fed-Heart-Disease from 36%
at Hungary to 93% at Switzerland), and one shared model has one intercept.
A site-level threshold moves only the operating point: each site's AUC is
unchanged, its accuracy, sensitivity and specificity move.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from flwr.app import ArrayRecord
from flwr.clientapp import ClientApp

from swarmflower.flower_messages import TRAIN, model_instruction, site_context
from swarmflower.simulations.experiments.results import OWN_SITE, MethodResult
from swarmflower.simulations.experiments.yardsticks import load_arrays, model_logits
from swarmflower.tasks import TaskSpec, build_model, make_client_app


@dataclass(frozen=True)
class FineTuning:
    """How `+ft` rows personalise: local steps, and whether to pick a threshold."""

    steps: int = 10
    threshold: bool = True


def accuracy_threshold(logits: np.ndarray, labels: np.ndarray) -> float:
    """The logit threshold with the best accuracy on (logits, labels).

    A row is called a case when its logit is above the threshold. Candidates
    are 0 and the midpoints between distinct logits (and just outside them);
    among equally accurate ones, the closest to 0 wins, so a site with one
    class or too few rows to tell keeps the default.
    """
    logits = np.asarray(logits, dtype=float)
    cases = np.sort(logits[labels == 1])
    controls = np.sort(logits[labels != 1])
    distinct = np.unique(logits)
    if len(distinct) == 0:
        return 0.0
    candidates = np.concatenate(
        [
            [0.0, distinct[0] - 1.0, distinct[-1] + 1.0],
            (distinct[1:] + distinct[:-1]) / 2,
        ]
    )
    correct = (len(cases) - np.searchsorted(cases, candidates, side="right")) + (
        np.searchsorted(controls, candidates, side="right")
    )
    best = candidates[correct == correct.max()]
    return float(best[np.argmin(np.abs(best))])


def fine_tune(
    base: MethodResult, spec: TaskSpec, rounds: int, tuning: FineTuning
) -> MethodResult:
    """`<method>+ft`: every site's personalised copy of `base`'s final model."""
    if base.final_arrays is None:
        raise ValueError(f"{base.method} has no final model to fine-tune")
    started = time.perf_counter()
    data = spec.load()
    app = make_client_app(spec)
    model = build_model(spec, data.num_features)
    shared = ArrayRecord(load_arrays(model, base.final_arrays).state_dict())
    site_arrays: list[list[np.ndarray]] = []
    thresholds: list[float] = []
    for index, site in enumerate(data.sites):
        arrays = _local_steps(app, shared, index, data.num_sites, rounds, tuning)
        site_arrays.append(arrays)
        logits = model_logits(load_arrays(model, arrays), site.x_train)
        thresholds.append(
            accuracy_threshold(logits, site.y_train) if tuning.threshold else 0.0
        )
    return MethodResult(
        method=f"{base.method}+ft",
        rounds=[],
        site_names=base.site_names,
        wall_s=base.wall_s + time.perf_counter() - started,
        seed=base.seed,
        site_arrays=site_arrays,
        thresholds=thresholds,
        deployment=OWN_SITE,
    )


def _local_steps(
    app: ClientApp,
    shared: ArrayRecord,
    site: int,
    num_sites: int,
    rounds: int,
    tuning: FineTuning,
) -> list[np.ndarray]:
    """One more local-only round of `tuning.steps` updates through the ClientApp."""
    if tuning.steps == 0:
        return shared.to_numpy_ndarrays()
    message = model_instruction(
        shared,
        TRAIN,
        rounds + 1,
        dst_node_id=site + 1,
        config={"local-steps": tuning.steps},
    )
    reply = app(message, site_context(site, num_sites))
    return reply.content["arrays"].to_numpy_ndarrays()
