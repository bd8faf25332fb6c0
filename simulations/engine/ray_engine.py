"""The Ray engine: a swarm of many simulated sites on a pool of Ray actors.

Sites are virtual peers dealt out to a few `SiteHost` actors (one per CPU by
default), each with a full ledger replica that validates every block and
redoes every merge. Rounds run as fast as the CPUs allow, in lockstep:
every host trains its sites that are up, the ledger's proposer seals, every
host validates and adopts. How long the round would have taken at real
sites, and whose updates would have missed the leader's deadline, come from
the sites' profiles (`timing`): dropout, slow sites and thin links cost
simulated time, not wall time, and a crashed leader costs a round timeout.
The driver keeps an observer replica of the ledger for the report.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Unpack

import numpy as np
import ray
from flwr.app import ArrayRecord
from flwr.clientapp import ClientApp
from ray._private import ray_constants  # see loopback_node()

from swarmflower.app_calls import AppFailure, log_failure, unsealable
from swarmflower.errors import ConfigError, SwarmflowerError
from swarmflower.faults import NO_FAULTS, FaultPlan
from swarmflower.ledger import Ledger, Reason, RoundRecord
from swarmflower.round_rules import seal_reason
from swarmflower.simulations.engine.availability import Availability
from swarmflower.simulations.engine.site_host import SiteHost, Verdict
from swarmflower.simulations.engine.timing import Heterogeneity, seal_moment
from swarmflower.strategies import LeaderStrategy
from swarmflower.swarm_setup import SwarmSettings, SwarmSetup, set_up_swarm

log = logging.getLogger("swarmflower.ray_engine")

MAX_VIEWS = 16  # electees tried per round before the round is declared lost
MAX_WAITS = 100  # round timeouts to wait for enough sites before giving up
LOOPBACK = "127.0.0.1"
QUIET_RAY = {"logging_level": logging.ERROR, "log_to_driver": False}


class RoundLost(SwarmflowerError):
    """No electee could seal a round (too few sites up, or every proposer down)."""


@dataclass(frozen=True)
class RayRound:
    """One round as the Ray engine saw it."""

    round: int
    leader: str
    view: int
    reason: str
    contributors: int
    up: int
    site_accuracy: tuple[float, ...]
    wall_s: float
    sim_s: float

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.site_accuracy))


@dataclass
class RaySwarmResult:
    """A finished Ray swarm: per-round reports, the ledger's rounds, the model."""

    rounds: list[RayRound]
    records: list[RoundRecord]
    final_arrays: ArrayRecord
    hosts: int
    crashes: list[tuple[int, int, str]] = field(default_factory=list)
    wall_s: float = 0.0
    setup_s: float = 0.0

    @property
    def sim_s(self) -> float:
        return sum(r.sim_s for r in self.rounds)

    @property
    def round_wall_s(self) -> float:
        """Mean wall time per round after the first (which loads the data)."""
        later = self.rounds[1:] or self.rounds
        return float(np.mean([r.wall_s for r in later]))


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
    progress: Callable[[RayRound], None] | None = None,
    ledger_dir: Path | None = None,
    run_config: Mapping[str, bool | float | int | str] | None = None,
    **settings: Unpack[SwarmSettings],
) -> RaySwarmResult:
    """Run `num_rounds` swarm rounds of `num_sites` simulated sites on Ray.

    `app_factory` builds the sites' ClientApp inside each actor (it must
    pickle: a module-level function or a `functools.partial`); `strategy` is
    a Flower strategy's name or one built with its options (`build_strategy`).
    `local_steps` is what a site's training costs in simulated time
    (`Heterogeneity.step_s` per step). `hosts` defaults to one actor per CPU
    of the cluster. With `ledger_dir`, the driver's observer replica is kept
    there on disk. `run_config` is every site's `context.run_config` (a
    Flower app's), `settings` are the swarm's, as for `run_swarm`.
    """
    setup = set_up_swarm(num_sites, initial_arrays, num_rounds, strategy, **settings)
    heterogeneity = heterogeneity or Heterogeneity.uniform(num_sites)
    if len(heterogeneity.profiles) != num_sites:
        raise ConfigError(
            f"{len(heterogeneity.profiles)} site profiles for {num_sites} sites"
        )
    with ray_cluster(ray_address):
        started = time.perf_counter()
        pool, blocks = _start_hosts(
            setup, app_factory, initial_arrays, hosts, run_config
        )
        observer = Ledger.create(
            setup.genesis,
            None if ledger_dir is None else ledger_dir / "observer" / "ledger",
        )
        driver = _Driver(
            pool=pool,
            blocks=blocks,
            names=setup.names,
            observer=observer,
            min_peers=setup.params.min_peers,
            round_timeout=float(setup.params.round_timeout),
            update_wait=setup.update_wait,
            copies=min(1 + backups, num_sites),
            local_steps=local_steps,
            update_bytes=sum(a.numpy().nbytes for a in initial_arrays.values()),
            availability=Availability(faults, heterogeneity, num_sites, setup.seed),
            faults=faults,
            heterogeneity=heterogeneity,
        )
        setup_s = time.perf_counter() - started
        result = driver.run(num_rounds, progress)
        result.wall_s, result.setup_s = time.perf_counter() - started, setup_s
        return result


def _start_hosts(
    setup: SwarmSetup,
    app_factory: Callable[[], ClientApp],
    initial_arrays: ArrayRecord,
    hosts: int | None,
    run_config: Mapping[str, bool | float | int | str] | None,
) -> tuple[list, list[tuple[int, ...]]]:
    """One `SiteHost` actor per block of sites (default: one per CPU)."""
    cpus = max(1.0, ray.cluster_resources().get("CPU", 1.0))
    num_sites = len(setup.names)
    blocks = deal_sites(num_sites, min(hosts or int(cpus), num_sites))
    # More hosts than CPUs share them rather than wait for a free one.
    actor = ray.remote(num_cpus=min(1.0, cpus / len(blocks)))(SiteHost)
    pool = [
        actor.remote(
            setup.genesis,
            block,
            setup.names,
            app_factory,
            initial_arrays,
            setup.strategy,
            setup.seed,
            run_config=run_config,
        )
        for block in blocks
    ]
    return pool, blocks


@dataclass
class _Driver:
    """Plays rounds: what the sites would do, paced by simulated time."""

    pool: list
    blocks: list[tuple[int, ...]]
    names: list[str]
    observer: Ledger
    min_peers: int
    round_timeout: float
    update_wait: float
    copies: int
    local_steps: int
    update_bytes: int
    availability: Availability
    faults: FaultPlan
    heterogeneity: Heterogeneity

    def __post_init__(self) -> None:
        self.host_of = {k: h for h, block in enumerate(self.blocks) for k in block}
        self.index_of = {
            site.address: k for k, site in enumerate(self.observer.genesis.sites)
        }

    def run(
        self, num_rounds: int, progress: Callable[[RayRound], None] | None
    ) -> RaySwarmResult:
        """Every round in turn (each report handed to `progress` as it ends),
        then the final model; the hosts and the observer are released."""
        try:
            reports = []
            for round in range(1, num_rounds + 1):
                reports.append(self.play(round))
                if progress:
                    progress(reports[-1])
            _, final = ray.get(self.pool[0].final_model.remote())
            records = list(self.observer.rounds())
        finally:
            self.observer.close()
            for host in self.pool:
                ray.kill(host)
        return RaySwarmResult(
            rounds=reports,
            records=records,
            final_arrays=final,
            hosts=len(self.pool),
            crashes=self.availability.crashes,
        )

    def play(self, round: int) -> RayRound:
        """One round: train the sites that are up, then views until one sticks."""
        started = time.perf_counter()
        up, waited = self._gather(round)
        up_set = set(up)
        batches = [
            host.train.remote(round, [k for k in block if k in up_set])
            for host, block in zip(self.pool, self.blocks, strict=True)
        ]
        failed = self._failed(round, len(up))
        arrivals = {
            k: self.heterogeneity.arrival_s(
                k, self.local_steps, self.update_bytes, self.copies
            )
            for k in up
            if k not in failed
        }
        electees = self.observer.electees(round, min(MAX_VIEWS, len(self.names)))
        refused, not_before = 0, 0.0
        for view, address in enumerate(electees):
            proposer = self.index_of[address]
            self._crash_if_planned(round, view, proposer, up_set)
            if proposer not in up_set:
                continue  # the next backup takes over a round timeout later
            moment = seal_moment(
                arrivals,
                num_sites=len(self.names),
                min_peers=self.min_peers,
                view=view,
                update_wait=self.update_wait,
                round_timeout=self.round_timeout,
                not_before=not_before,
            )
            if moment is None:
                raise RoundLost(
                    f"round {round}: only {len(arrivals)} sites up, "
                    f"{self.min_peers} updates needed to seal"
                )
            reason = seal_reason(view, refused or None)
            block = self._seal(round, view, reason, proposer, moment.included, batches)
            if block is None:
                continue  # nothing it holds could be merged: the next backup's turn
            verdicts = self._validate(round, view, block, batches, started)
            done_at = moment.at_s + self.heterogeneity.broadcast_s(up_set, len(block))
            if all(v.adopted for v in verdicts):
                self._log_failures(round, [v.failed for v in verdicts], "evaluate")
                scores = dict(s for v in verdicts for s in v.accuracies)
                return RayRound(
                    round=round,
                    leader=self.names[proposer],
                    view=view,
                    reason=reason.name.lower(),
                    contributors=len(self.observer.round(round).commitments),
                    up=len(up),
                    site_accuracy=tuple(scores[k] for k in range(len(self.names))),
                    wall_s=time.perf_counter() - started,
                    sim_s=waited + done_at,
                )
            refused += 1
            not_before = done_at
        raise RoundLost(
            f"round {round}: none of the first {len(electees)} electees could seal"
        )

    def _failed(self, round: int, up: int) -> dict[int, AppFailure]:
        """The sites whose ClientApp failed in `round`'s training (logged here,
        once each); stop if too few updates are left to seal the round."""
        failed = self._log_failures(
            round, ray.get([h.failed.remote(round) for h in self.pool]), "train"
        )
        stuck = unsealable(round, list(failed.values()), up, self.min_peers)
        if stuck is not None:
            raise stuck
        return failed

    def _log_failures(
        self,
        round: int,
        by_host: Iterable[tuple[tuple[int, AppFailure], ...]],
        task: str,
    ) -> dict[int, AppFailure]:
        """The hosts' failed ClientApp calls by site, each logged once."""
        failed = {k: failure for pairs in by_host for k, failure in pairs}
        for k in sorted(failed):
            log_failure(self.names[k], round, failed[k], task)
        return failed

    def _crash_if_planned(
        self, round: int, view: int, proposer: int, up: set[int]
    ) -> None:
        """The fault plan's leader crash: the leader dies before sealing."""
        if view == 0 and proposer in up and self.faults.crashes_while_leading(round):
            self.availability.crash(proposer, round, "leader crash before sealing")
            up.discard(proposer)

    def _validate(
        self, round: int, view: int, block: bytes, batches: list, started: float
    ) -> list[Verdict]:
        """Every host's verdict on `block`; they must agree."""
        sealed_at = time.perf_counter()
        pending = [h.adopt.remote(block, *batches) for h in self.pool]
        self.observer.import_block(block)  # while the hosts validate
        verdicts = ray.get(pending)
        log.info(
            "round %d view %d: trained and sealed in %.2f s, validated in %.2f s",
            round,
            view,
            sealed_at - started,
            time.perf_counter() - sealed_at,
        )
        adopted = {v.adopted for v in verdicts}
        if adopted == {True, False}:
            raise RuntimeError(
                f"round {round}: hosts disagree on the block of view {view}: "
                + "; ".join(v.reason for v in verdicts if not v.adopted)
            )
        if adopted == {False}:
            log.warning("round %d view %d refused: %s", round, view, verdicts[0].reason)
        return verdicts

    def _gather(self, round: int) -> tuple[list[int], float]:
        """The sites that train this round, and the simulated time spent waiting.

        While fewer than `min_peers` sites are up, nobody can seal: the swarm
        waits a round timeout and the missing sites are drawn again. Crashed
        sites stay down; if too few are left, the round is lost.
        """
        self.availability.begin(round)
        if self.availability.alive() < self.min_peers:
            raise RoundLost(
                f"round {round}: {self.availability.alive()} sites are not crashed, "
                f"{self.min_peers} updates are needed to seal"
            )
        for attempt in range(MAX_WAITS):
            up = self.availability.up(round, attempt)
            if len(up) >= self.min_peers:
                return up, attempt * self.round_timeout
        raise RoundLost(
            f"round {round}: fewer than {self.min_peers} sites up after "
            f"{MAX_WAITS} round timeouts of waiting"
        )

    def _seal(
        self,
        round: int,
        view: int,
        reason: Reason,
        proposer: int,
        included: tuple[int, ...],
        batches: list,
    ) -> bytes | None:
        """The proposer's actor checks the updates in time, merges and seals.

        None when none of the updates could be merged (nothing was sealed).
        """
        dishonest = view == 0 and self.faults.is_dishonest(round)
        host = self.pool[self.host_of[proposer]]
        sealed = ray.get(
            host.seal.remote(
                round, view, reason, proposer, included, dishonest, *batches
            )
        )
        for site, problem in sealed.refused:
            log.warning(
                "round %d: the leader refused site %d: %s", round, site, problem
            )
        return sealed.block
