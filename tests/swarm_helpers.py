"""Small swarms of the real heart task for the swarm tests."""

from __future__ import annotations

from flwr.app import ArrayRecord

from swarmflower.identity import simulated_identities
from swarmflower.ledger import Ledger, SwarmParams
from swarmflower.swarm import run_swarm
from swarmflower.swarm_result import SwarmResult
from swarmflower.swarm_setup import make_genesis
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


def first_epoch_leaders(local_steps: int = 10) -> list[int]:
    """Which heart site leads rounds 1, 2, ... of the first epoch (fair rotation).

    The election depends only on the founding sites and the initial model, so
    a fresh replica of the same genesis answers before any swarm runs.
    """
    spec = TaskSpec(local_steps=local_steps)
    data = spec.load()
    initial = ArrayRecord(initial_model(spec, data.num_features).state_dict())
    identities = simulated_identities([s.name for s in data.sites], 0)
    genesis = make_genesis(identities, initial, SwarmParams(1, 1, 1, "FedAvg"))
    order = Ledger(genesis).electees(1, data.num_sites)
    index = {i.address: k for k, i in enumerate(identities)}
    return [index[address] for address in order]


def replica(result: SwarmResult):
    """The ledger replica of a site that finished the run (idle after it)."""
    return next(core for core in result.sites if core.done).ledger
