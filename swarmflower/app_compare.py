"""`compare --app`: a Flower app project as a swarm and under Flower's own
simulation engine, side by side, in the app's own metrics.

Flower's run is the app's, unchanged: its `ServerApp` and `ClientApp` on
Flower's simulation engine, started as `flwr run` starts a local simulation
(Flower's `_run_simulation` with the project folder, so every node gets the
project's run config; Flower's public `run_simulation` would give none).
What the app's `strategy.start` returns (Flower's `Result`, with its
per-round metrics) is kept on the way out.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import MetricRecord
from flwr.serverapp.strategy import Result

from swarmflower.app_local import LocalRun, run_local
from swarmflower.app_run import AppRun, run_flower_app
from swarmflower.errors import SwarmflowerError
from swarmflower.flower_app import (
    FlowerApp,
    ServerPlan,
    server_context,
    strategy_start_as,
)
from swarmflower.logs import quiet_flower


@dataclass
class FlowerRun:
    """The app under Flower's simulation engine: its strategy's `Result`."""

    result: Result
    wall_s: float

    def evaluate_metrics(self) -> dict[int, dict[str, float]]:
        """Round -> the app's aggregated evaluate metrics, as Flower kept them."""
        return _by_round(self.result.evaluate_metrics_clientapp)

    def train_metrics(self) -> dict[int, dict[str, float]]:
        """Round -> the app's aggregated train metrics, as Flower kept them."""
        return _by_round(self.result.train_metrics_clientapp)


def _by_round(history: dict[int, MetricRecord]) -> dict[int, dict[str, float]]:
    return {
        r: {k: float(np.mean(v)) for k, v in record.items()}
        for r, record in history.items()
    }


@dataclass
class AppComparison:
    swarm: AppRun
    flower: FlowerRun
    local: LocalRun | None = None  # every site on its own: the yardstick

    def largest_difference(self) -> float:
        """Between the two final models, array by array."""
        ours = self.swarm.final_arrays.to_numpy_ndarrays()
        theirs = self.flower.result.arrays.to_numpy_ndarrays()
        return max(
            float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())
            for a, b in zip(ours, theirs, strict=True)
        )


def _keeping_result(results: list[Result]) -> Callable:
    """A `start` that runs Flower's and keeps what it returns (the app's
    `main` drops it)."""

    def start(original: Callable[..., Any]) -> Callable[..., Any]:
        def keeping(self, *args: Any, **kwargs: Any) -> Result:
            results.append(original(self, *args, **kwargs))
            return results[-1]

        return keeping

    return start


def run_under_flower(app: FlowerApp, sites: int, workdir: Path) -> FlowerRun:
    """The app on Flower's simulation engine, in `workdir` (where its ServerApp
    writes what it saves)."""
    from flwr.simulation.run_simulation import _run_simulation
    from flwr.supercore.telemetry import EventType

    from swarmflower.simulations.engine.ray_engine import loopback_node
    from swarmflower.simulations.experiments.fedavg import ray_backend_config

    results: list[Result] = []
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    started = time.perf_counter()
    with (
        strategy_start_as(_keeping_result(results)),
        contextlib.chdir(workdir),
        quiet_flower(logging.ERROR),
        loopback_node(),
    ):
        _run_simulation(
            num_supernodes=sites,
            exit_event=EventType.PYTHON_API_RUN_SIMULATION_LEAVE,
            client_app=app.client_app(),
            server_app=app.server_app(),
            backend_config=ray_backend_config(),
            server_app_context=server_context(app),
            app_dir=str(app.directory),
            is_app=True,
        )
    if not results:
        raise SwarmflowerError(
            f"{app.name}: Flower's simulation ended without the strategy's result"
        )
    return FlowerRun(results[0], time.perf_counter() - started)


def compare_app(
    app: FlowerApp, sites: int, plan: ServerPlan, workdir: Path, seed: int = 0
) -> AppComparison:
    """The app as a swarm of `sites`, under Flower with as many nodes, and
    with every site training on its own (local-only)."""
    swarm = run_flower_app(app, sites, plan=plan, seed=seed)
    local = run_local(app, plan, sites)
    return AppComparison(swarm, run_under_flower(app, sites, workdir), local)
