"""The Ray engine: a swarm of many simulated sites on a pool of Ray actors.

Every site runs the protocol's own `SiteCore`, driven in simulated time by
`simulated_swarm`: messages arrive when the sites' profiles say (`timing`),
late updates are refused, blocks may come before their parents, and a site
that dropped out or crashed comes back by fetching what it missed. The
sites' ClientApps, the heavy part, run on a few `SiteHost` actors (one per
CPU by default): training in batches, and every site's test set scored once
a round is adopted everywhere. The cores share one ledger replica and one
store through per-site views, so each still sees only what reached it.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Unpack

import numpy as np
import ray
from flwr.app import ArrayRecord
from flwr.clientapp import ClientApp
from ray._private import ray_constants  # see loopback_node()

from swarmflower.app_calls import AppFailure, FailureLog
from swarmflower.errors import ConfigError
from swarmflower.faults import NO_FAULTS, FaultPlan
from swarmflower.identity import SiteIdentity
from swarmflower.ledger import Ledger, SharedReplica, SiteView
from swarmflower.simulations.engine.availability import Availability
from swarmflower.simulations.engine.shared_state import (
    SharedChecks,
    SharedStore,
    SiteStore,
    forget_rounds,
)
from swarmflower.simulations.engine.simulated_swarm import (
    RoundLost,
    SimRound,
    SimSite,
    SimulatedSwarm,
    Trainer,
    TrainJob,
)
from swarmflower.simulations.engine.site_host import SiteHost, Trained
from swarmflower.simulations.engine.timing import Heterogeneity
from swarmflower.site_actions import PeerConfig
from swarmflower.site_core import Checks, SiteCore
from swarmflower.strategies import LeaderStrategy
from swarmflower.swarm_result import RoundReport, SiteCrash, SwarmResult
from swarmflower.swarm_setup import SwarmSettings, SwarmSetup, set_up_swarm

log = logging.getLogger("swarmflower.ray_engine")

__all__ = ["RoundLost", "run_ray_swarm"]

# Every drill but a crash mid-write (simulated sites write no files).
RAY_DRILLS = {"seal-no-announce", "crash-mid-fetch", "drop-sends", "bad-update"}
SIM_GOSSIP_S = 2.0  # simulated seconds between a site's head queries
LOOPBACK = "127.0.0.1"
QUIET_RAY = {"logging_level": logging.ERROR, "log_to_driver": False}


def local_ray_init_args(num_cpus: int | None = None) -> dict[str, Any]:
    """`ray.init` arguments for a one-machine Ray that no other machine can reach.

    Ray's services (GCS, raylet and object manager, every worker's gRPC
    server, the runtime-env, dashboard and metrics agents, the autoscaler's
    metrics) listen on the node's address, or on loopback only when that
    address is 127.0.0.1; the dashboard's web server listens on
    `dashboard_host` and stays off. Ray has no authentication by default, so
    a simulation must not open them to the network. Both the swarm engine and
    Flower's baseline (its `init_args`) start Ray with these, inside
    `loopback_node()`.
    """
    return {
        "address": "local",  # a new local cluster, even if `ray start` made one
        "num_cpus": num_cpus or os.cpu_count() or 1,
        "num_gpus": 0,
        "_node_ip_address": LOOPBACK,
        "include_dashboard": False,
        "dashboard_host": LOOPBACK,
        **QUIET_RAY,
    }


@contextmanager
def loopback_node() -> Iterator[None]:
    """Keep Ray from swapping a loopback `_node_ip_address` for the LAN address.

    `ray.init` replaces 127.0.0.1 by the address other machines reach this one
    at, unless Ray's multi-node support is off (its default on macOS and
    Windows, `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`, read once when Ray is
    imported). It is switched off only while a local Ray starts, so that
    joining a cluster later in the same process still works.
    """
    enabled = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = enabled


@contextmanager
def ray_cluster(
    address: str | None = None, num_cpus: int | None = None
) -> Iterator[None]:
    """Join the Ray cluster at `address`, else start a local one sized to the machine.

    A local Ray listens on loopback only (`local_ray_init_args`); a cluster's
    network exposure is its operator's business. A Ray session that is
    already up (a test's, a notebook's) is used as is and left running.
    """
    if ray.is_initialized():
        yield
        return
    # Keep Ray quiet: no dashboard, no worker logs, no notice about GPUs.
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    if address:
        ray.init(address=address, **QUIET_RAY)
    else:
        with loopback_node():
            ray.init(**local_ray_init_args(num_cpus))
    try:
        yield
    finally:
        ray.shutdown()


def deal_sites(num_sites: int, hosts: int) -> list[tuple[int, ...]]:
    """Contiguous blocks of sites, as even as possible, one per host."""
    return [
        tuple(int(k) for k in block)
        for block in np.array_split(np.arange(num_sites), hosts)
        if len(block)
    ]


def run_ray_swarm(
    app_factory: Callable[[], ClientApp],
    num_sites: int,
    initial_arrays: ArrayRecord,
    num_rounds: int,
    strategy: str | LeaderStrategy = "FedAvg",
    *,
    local_steps: int = 1,
    backups: int = 2,
    faults: FaultPlan = NO_FAULTS,
    heterogeneity: Heterogeneity | None = None,
    hosts: int | None = None,
    ray_address: str | None = None,
    progress: Callable[[RoundReport], None] | None = None,
    ledger_dir: Path | None = None,
    run_config: Mapping[str, bool | float | int | str] | None = None,
    score_sites: bool = True,
    **settings: Unpack[SwarmSettings],
) -> SwarmResult:
    """Run `num_rounds` swarm rounds of `num_sites` simulated sites on Ray.

    `app_factory` builds the sites' ClientApp inside each actor (it must
    pickle: a module-level function or a `functools.partial`); `strategy` is
    a Flower strategy's name or one built with its options (`build_strategy`).
    `local_steps` is what a site's training costs in simulated time
    (`Heterogeneity.step_s` per step). `hosts` defaults to one actor per CPU
    of the cluster. With `ledger_dir`, the shared replica (every block any
    site saw) is kept there on disk. `run_config` is every site's
    `context.run_config` (a Flower app's), `settings` are the swarm's, as for
    `run_swarm`. `score_sites=False` skips scoring each round's model at every
    site (the reports' accuracies are NaN), for apps that report their own
    metrics rather than an `accuracy`; the result keeps every round's model.
    """
    faults.refuse_drills("ray", RAY_DRILLS)
    setup = set_up_swarm(num_sites, initial_arrays, num_rounds, strategy, **settings)
    heterogeneity = heterogeneity or Heterogeneity.uniform(num_sites)
    if len(heterogeneity.profiles) != num_sites:
        raise ConfigError(
            f"{len(heterogeneity.profiles)} site profiles for {num_sites} sites"
        )
    with ray_cluster(ray_address):
        started = time.perf_counter()
        trainer = RayTrainer(app_factory, num_sites, hosts, run_config, score_sites)
        replica = Ledger.create(
            setup.genesis,
            None if ledger_dir is None else ledger_dir / "observer" / "ledger",
        )
        try:
            swarm = _simulated_swarm(
                setup,
                SharedReplica(replica),
                trainer,
                initial_arrays,
                (backups, faults, heterogeneity, local_steps),
            )
            setup_s = time.perf_counter() - started
            result = _play(swarm, setup, progress)
        finally:
            replica.close()
            trainer.close()
    result.hosts, result.setup_s = len(trainer.pool), setup_s
    result.wall_s = time.perf_counter() - started
    return result


def _play(
    swarm: SimulatedSwarm,
    setup: SwarmSetup,
    progress: Callable[[RoundReport], None] | None,
) -> SwarmResult:
    """Every round, each report handed to `progress` as the round completes."""
    reports: list[RoundReport] = []
    failures = FailureLog()

    def round_done(done: SimRound) -> None:
        reports.append(_ray_round(done, setup, failures))
        if progress:
            progress(reports[-1])

    swarm.run(setup.params.rounds, round_done)
    records = list(swarm.observer.rounds())
    shared = swarm.sites[0].store.shared  # every site filed the initial model
    models = {0: shared.arrays[setup.genesis.initial_model_hash]}
    models.update({r.round: swarm.observer_model(r) for r in records})
    return SwarmResult(
        rounds=records,
        final_arrays=models[records[-1].round],
        models=models,
        sites=[site.core for site in swarm.sites],
        crashes=[
            SiteCrash(setup.names[k], round, why)
            for k, round, why in swarm.availability.crashes
        ],
        wall_s=0.0,
        reports=reports,
    )


def sim_pacing(setup: SwarmSetup, backups: int, faults: FaultPlan) -> PeerConfig:
    """How simulated sites pace rounds: logical time, no lingering, and
    anti-entropy (a head query every 2 simulated seconds) only where the
    fault plan loses messages or blocks: elsewhere every message arrives
    and the queries would only cost time."""
    return PeerConfig.of_swarm(
        setup.params,
        setup.update_wait,
        backups=backups,
        gossip_s=SIM_GOSSIP_S if faults.drills() else None,
    )


def _simulated_swarm(
    setup: SwarmSetup,
    shared: SharedReplica,
    trainer: Trainer,
    initial_arrays: ArrayRecord,
    options: tuple[int, FaultPlan, Heterogeneity, int],
) -> SimulatedSwarm:
    """Every site's core over its own view of the shared replica and store;
    `options` are the run's backups, fault plan, profiles and local steps."""
    backups, faults, heterogeneity, local_steps = options
    config = sim_pacing(setup, backups, faults)
    # Sites share their verdicts on offers and merges (the same pure checks),
    # except in a drill that kills a site while it fetches the updates to
    # check: there each site fetches and checks on its own, as at a hospital.
    checks = Checks() if faults.fetch_crashes else SharedChecks()
    store = SharedStore()
    addresses = [identity.address for identity in setup.identities]

    def make_core(identity: SiteIdentity, view: SiteView, own: SiteStore) -> SiteCore:
        """A site's core, new or restarted, from its own replica and store."""
        return SiteCore(
            identity,
            addresses,
            view,
            setup.strategy,
            own,
            config,
            initial_arrays,
            faults,
            checks,
        )

    sites = []
    for identity in setup.identities:
        view, own = SiteView(shared), SiteStore(store)
        sites.append(SimSite(identity, view, own, make_core(identity, view, own)))
    swarm = SimulatedSwarm(
        sites,
        make_core,
        SiteView(shared),
        trainer,
        heterogeneity,
        Availability(faults),
        config,
        local_steps,
        setup.seed,
    )
    if isinstance(checks, SharedChecks):  # else sites may still fetch updates

        def forget(round: int) -> None:
            if round > 2:
                forget_rounds(store, checks, [swarm.observer.round(round - 2)])

        swarm.on_complete = forget
    return swarm


def _ray_round(done: SimRound, setup: SwarmSetup, failures: FailureLog) -> RoundReport:
    """A round's report, sites named as the user named them."""
    record = done.record
    for k, failure in done.failed_scores:
        failures(setup.names[k], record.round, failure, "evaluate")
    name_of = {i.address: n for i, n in zip(setup.identities, setup.names, strict=True)}
    return RoundReport(
        round=record.round,
        leader=name_of[record.leader],
        view=record.view,
        reason=record.reason.name.lower(),
        contributors=len(record.commitments),
        up=done.up,
        site_accuracy=done.site_accuracy,
        wall_s=done.wall_s,
        sim_s=done.sim_s,
    )


class RayTrainer(Trainer):
    """The sites' ClientApps on `SiteHost` actors, one block of sites each."""

    def __init__(
        self,
        app_factory: Callable[[], ClientApp],
        num_sites: int,
        hosts: int | None,
        run_config: Mapping[str, bool | float | int | str] | None,
        score_sites: bool = True,
    ) -> None:
        self.num_sites, self.score_sites = num_sites, score_sites
        cpus = max(1.0, ray.cluster_resources().get("CPU", 1.0))
        self.blocks = deal_sites(num_sites, min(hosts or int(cpus), num_sites))
        self.host_of = {k: h for h, block in enumerate(self.blocks) for k in block}
        # More hosts than CPUs share them rather than wait for a free one.
        actor = ray.remote(num_cpus=min(1.0, cpus / len(self.blocks)))(SiteHost)
        self.pool = [
            actor.remote(block, num_sites, app_factory, run_config)
            for block in self.blocks
        ]
        self._batches: dict[int, object] = {}  # id(job) -> the batch's ref
        self._results: dict[object, dict[int, Trained]] = {}

    def submit(self, jobs: Sequence[TrainJob]) -> None:
        """One call per host and model (the model shipped once per call)."""
        groups: dict[tuple[int, int, int], list[TrainJob]] = {}
        for job in jobs:
            key = (self.host_of[job.site], job.round, id(job.model))
            groups.setdefault(key, []).append(job)
        models: dict[int, object] = {}
        for (host, round, model_id), group in groups.items():
            if model_id not in models:
                models[model_id] = ray.put(group[0].model)
            ref = self.pool[host].train.remote(
                round, models[model_id], [(j.site, j.config) for j in group]
            )
            for job in group:
                self._batches[id(job)] = ref

    def result(self, job: TrainJob) -> Trained:
        ref = self._batches.pop(id(job))
        if ref not in self._results:
            self._results[ref] = dict(ray.get(ref))
        batch = self._results[ref]
        result = batch.pop(job.site)
        if not batch:
            del self._results[ref]
        return result

    def score(
        self, model: ArrayRecord, round: int
    ) -> tuple[dict[int, float], dict[int, AppFailure]]:
        if not self.score_sites:
            return {k: math.nan for k in range(self.num_sites)}, {}
        shared = ray.put(model)
        scores, failed = {}, {}
        for host_scores, host_failed in ray.get(
            [host.score.remote(shared, round) for host in self.pool]
        ):
            scores.update(host_scores)
            failed.update(host_failed)
        return scores, failed

    def close(self) -> None:
        for host in self.pool:
            ray.kill(host)
