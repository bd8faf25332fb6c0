"""Small swarms of the real heart task for the swarm tests."""

from __future__ import annotations

from flwr.app import ArrayRecord

from swarmflower.swarm import SwarmResult, run_swarm
from swarmflower.tasks import TaskSpec, initial_model, make_client_app


def heart_swarm(rounds: int, local_steps: int = 10, **options) -> SwarmResult:
    """The four heart hospitals as a swarm, with a short local budget."""
    spec = TaskSpec(local_steps=local_steps)
    data = spec.load()
    initial = ArrayRecord(initial_model(spec, data.num_features).state_dict())
    return run_swarm(
        make_client_app(spec),
        data.num_sites,
        initial,
        rounds,
        site_names=[s.name for s in data.sites],
        **options,
    )


def replica(result: SwarmResult):
    """The ledger replica of a site that finished the run (idle after it)."""
    return next(p for p in result.peers if p.transport.alive).ledger
