"""The built-in models: FLamby's logistic regression and a small MLP."""

from __future__ import annotations

import torch
from torch import nn

from swarmflower.tasks.spec import TaskSpec


def build_model(spec: TaskSpec, num_features: int) -> nn.Module:
    """A fresh model for the task; outputs one logit per row."""
    if spec.model == "logreg":
        return nn.Sequential(nn.Linear(num_features, 1))
    return nn.Sequential(
        nn.Linear(num_features, spec.hidden),
        nn.ReLU(),
        nn.Linear(spec.hidden, 1),
    )


def initial_model(spec: TaskSpec, num_features: int) -> nn.Module:
    """The round-0 model every method starts from, seeded by the task's seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        return build_model(spec, num_features)
