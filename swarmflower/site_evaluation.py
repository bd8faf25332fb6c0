"""A real site's evaluation of every adopted model, as Flower would run it there.

After each round's adoption the site writes down its own train metrics of
that round (what its ClientApp replied when it trained), runs the app's
`@app.evaluate` on the adopted model if the round's draw picks it (the strategy's
`fraction_evaluate`, drawn from the round's block hash, so every site agrees
who evaluates), and the ServerApp's central `evaluate_fn` if the app has
one. Metrics keep the app's own names and go to the site's `metrics.csv`
(round, source, metric, value; source `train`, `evaluate` or `central`) and
its progress lines. Aggregating the sites' train and evaluate metrics across
the swarm is left to the simulations for now: each real site reports its own.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path

from flwr.app import Context
from flwr.clientapp import ClientApp

from swarmflower.app_calls import FailureLog
from swarmflower.app_run import central_round, evaluate_round, evaluated_per_round
from swarmflower.flower_app import ServerPlan
from swarmflower.model_store import ModelStoreAPI
from swarmflower.round_rules import drawn_sites
from swarmflower.site_actions import Adoption

METRICS_FILE = "metrics.csv"
COLUMNS = ("round", "source", "metric", "value")


class SiteEvaluation:
    """Evaluates each model this site adopts and writes down the metrics."""

    def __init__(
        self,
        plan: ServerPlan,
        client_app: ClientApp,
        context: Context,
        site: tuple[int, str],  # the site's index (1-based) and address
        sites: Sequence[str],
        store: ModelStoreAPI,
        metrics_path: Path,
        report: Callable[[str], None] = print,
        own_training: Callable[[int], dict[str, float] | None] = lambda round: None,
    ) -> None:
        self.plan, self.client_app, self.context = plan, client_app, context
        self.index, self.address = site
        self.sites, self.store = list(sites), store
        self.metrics_path, self.report = metrics_path, report
        self.own_training = own_training  # round -> this site's train metrics
        self.failures = FailureLog()
        # round -> metrics, for the ServerApp's ending (Flower's Result)
        self.trained: dict[int, dict[str, float]] = {}
        self.evaluated: dict[int, dict[str, float]] = {}
        self.central: dict[int, dict[str, float]] = {}
        self.evaluators = evaluated_per_round(plan, len(self.sites))

    def evaluates(self, adoption: Adoption) -> bool:
        """Whether the round's draw picks this site to evaluate its model."""
        drawn = drawn_sites(
            adoption.block_hash, adoption.round, self.sites, self.evaluators
        )
        return drawn is None or self.address in drawn

    def __call__(self, adoption: Adoption) -> None:
        arrays = self.store.get_arrays(adoption.model_hash)
        if arrays is None:  # adopted models are stored before adoption
            return
        rows: list[tuple[str, dict[str, float]]] = []
        rows.append(("train", self.own_training(adoption.round) or {}))
        if self.evaluates(adoption):
            own = {self.index - 1: self.context}
            metrics = evaluate_round(
                self.plan, self.client_app, own, adoption.round, arrays, self.failures
            )
            rows.append(("evaluate", metrics))
        rows.append(("central", central_round(self.plan, adoption.round, arrays)))
        rows = [(source, metrics) for source, metrics in rows if metrics]
        for source, metrics in rows:
            kept = {"train": self.trained, "evaluate": self.evaluated}
            kept.get(source, self.central)[adoption.round] = metrics
        if rows:
            self._write(adoption.round, rows)
            shown = "; ".join(
                f"{source} " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())
                for source, metrics in rows
            )
            self.report(f"round {adoption.round} metrics: {shown}")

    def _write(self, round: int, rows: list[tuple[str, dict[str, float]]]) -> None:
        new = not self.metrics_path.exists()
        with self.metrics_path.open("a", newline="") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(COLUMNS)
            for source, metrics in rows:
                for name, value in metrics.items():
                    writer.writerow((round, source, name, repr(value)))
