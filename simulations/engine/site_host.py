"""A Ray actor's body: the ClientApps of a block of simulated sites.

The sites' protocol runs in their `SiteCore`s (`simulated_swarm`); what is
heavy, training and scoring through each site's ClientApp on its own data,
runs here, many sites per host. Each site keeps its Flower `Context` across
rounds, as a Flower node does. The class knows nothing of Ray, so tests
drive it directly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from flwr.app import ArrayRecord
from flwr.clientapp import ClientApp

from swarmflower.app_calls import AppFailure, call_app, score_sites
from swarmflower.flower_messages import site_context
from swarmflower.logs import quiet_flower
from swarmflower.round_protocol import LocalUpdate, train_site

Trained = LocalUpdate | AppFailure


class SiteHost:
    """Sites `sites` of a swarm of `num_sites`: their ClientApp and Contexts."""

    def __init__(
        self,
        sites: Sequence[int],
        num_sites: int,
        app_factory: Callable[[], ClientApp],
        run_config: Mapping[str, bool | float | int | str] | None = None,
    ) -> None:
        self.sites = tuple(sites)
        self.contexts = {
            k: site_context(k, num_sites, run_config=run_config) for k in self.sites
        }
        with quiet_flower():
            self.app = app_factory()

    def train(
        self, round: int, model: ArrayRecord, jobs: Sequence[tuple[int, dict]]
    ) -> list[tuple[int, Trained]]:
        """Each (site, train config) of `jobs` trained on `model` through the
        site's ClientApp: (examples, update), or how the app failed."""
        done = []
        with quiet_flower():
            for k, config in jobs:
                trained = call_app(
                    train_site, self.app, self.contexts[k], model, round, k, config
                )
                done.append((k, trained))
        return done

    def score(
        self, model: ArrayRecord, round: int
    ) -> tuple[dict[int, float], dict[int, AppFailure]]:
        """The model's test accuracy at each of this host's sites (NaN where
        the ClientApp failed), and the failures."""
        with quiet_flower():
            return score_sites(self.app, model, round, self.contexts)
