"""Poisoned sites for robustness runs: what an attacking site sends.

An attacker follows the protocol: it trains when drawn, signs its update
and commits to it like any site, so the ledger names it. Only what it sends
differs, computed from its honestly trained model and the round's current
one (the change `delta = trained - current`):

- `sign-flip`: it sends `current - delta` (its change reversed);
- `scale:K`: it sends `current + K * delta`;
- `gaussian:SIGMA`: it sends `current + noise`, each value drawn from
  N(0, SIGMA^2), seeded by site and round;
- `label-flip`: it trains on its data with the binary labels flipped (the
  built-in tasks read `label-flip` from the train config).

The attacks that need the honest sites' updates of the round (ALIE, IPM,
mimic) are not here yet.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message
from flwr.clientapp import ClientApp

from swarmflower.errors import ConfigError

ATTACKS = ("sign-flip", "scale", "gaussian", "label-flip")
WITH_PARAMETER = {"scale": "K", "gaussian": "SIGMA"}
LABEL_FLIP_KEY = "label-flip"
PARTITION_KEY = "partition-id"  # Flower's node config key for a site


@dataclass(frozen=True)
class Attack:
    """One attack, played by the sites (indices from 0) in `sites`."""

    kind: str
    parameter: float = 0.0
    sites: frozenset[int] = frozenset()

    @classmethod
    def parse(cls, spec: str, sites: Iterable[int]) -> Attack:
        """`KIND[:PARAM]` (see the module docstring), played by `sites`."""
        kind, _, value = spec.strip().partition(":")
        if kind not in ATTACKS:
            raise ConfigError(
                f"unknown attack {kind!r}; choose one of: "
                f"{', '.join(ATTACKS)} (scale:K, gaussian:SIGMA)"
            )
        if kind in WITH_PARAMETER:
            name = WITH_PARAMETER[kind]
            try:
                parameter = float(value)
            except ValueError:
                raise ConfigError(
                    f"attack {kind} needs its {name}: {kind}:{name}"
                ) from None
            if not np.isfinite(parameter) or (kind == "gaussian" and parameter <= 0):
                raise ConfigError(f"attack {kind}: {name} must be a positive number")
        elif value:
            raise ConfigError(f"attack {kind} takes no parameter, got {value!r}")
        else:
            parameter = 0.0
        chosen = frozenset(sites)
        if not chosen or min(chosen) < 0:
            raise ConfigError("an attack needs at least one attacking site")
        return cls(kind, parameter, chosen)

    def plays(self, site: int) -> bool:
        return site in self.sites

    def train_config(self, site: int) -> dict[str, bool]:
        """What an attacker's ClientApp is told besides the strategy's config."""
        return (
            {LABEL_FLIP_KEY: True}
            if self.kind == "label-flip" and self.plays(site)
            else {}
        )

    def poison(
        self, site: int, round: int, current: ArrayRecord, trained: ArrayRecord
    ) -> ArrayRecord:
        """What site `site` sends in `round` instead of `trained`."""
        if not self.plays(site) or self.kind == "label-flip":
            return trained
        rng = np.random.default_rng([site, round])
        poisoned = {}
        for key, array in trained.items():
            mine = array.numpy()
            start = current[key].numpy().astype(np.float64)
            change = mine.astype(np.float64) - start
            if self.kind == "sign-flip":
                sent = start - change
            elif self.kind == "scale":
                sent = start + self.parameter * change
            else:  # gaussian
                sent = start + rng.normal(0.0, self.parameter, size=mine.shape)
            poisoned[key] = Array(np.asarray(sent.astype(mine.dtype)))
        return ArrayRecord(poisoned)


def attacker_sites(attackers: str, num_sites: int) -> frozenset[int]:
    """`--attackers`: N (the first N sites) or a comma-separated list of site
    numbers counted from 1; as indices from 0."""
    text = attackers.strip()
    try:
        if "," not in text:
            count = int(text)
            if not 1 <= count < num_sites:
                raise ConfigError(
                    f"--attackers {count}: choose 1..{num_sites - 1} "
                    f"of the {num_sites} sites"
                )
            return frozenset(range(count))
        numbers = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(
            f"--attackers {attackers!r}: a count or a list of sites like 1,3,5"
        ) from None
    bad = [n for n in numbers if not 1 <= n <= num_sites]
    if bad:
        raise ConfigError(f"--attackers: sites {bad} are not among 1..{num_sites}")
    return frozenset(n - 1 for n in numbers)


def attacked_client_app(inner: ClientApp, attack: Attack) -> ClientApp:
    """`inner`, with the sites of `attack` (Flower's `partition-id`) playing
    it: for a yardstick run outside the swarm, such as Flower's own FedAvg
    on its simulation engine, so both face the same attackers."""
    app = ClientApp()

    @app.train()
    def train(message: Message, context: Context) -> Message:
        site = int(context.node_config[PARTITION_KEY])
        config = message.content["config"]
        for key, value in attack.train_config(site).items():
            config[key] = value
        reply = inner(message, context)
        if attack.plays(site) and reply.has_content():
            server_round = int(config.get("server-round", 0))
            current = message.content["arrays"]
            trained = reply.content["arrays"]
            poisoned = attack.poison(site, server_round, current, trained)
            reply.content["arrays"] = poisoned
        return reply

    @app.evaluate()
    def evaluate(message: Message, context: Context) -> Message:
        return inner(message, context)

    return app
