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
  built-in tasks read `label-flip` from the train config);
- `alie[:Z]`, `ipm:EPS`, `mimic:SITE`: computed from the honest sites'
  changes of the round, which the attackers see (`collusion.py`); ALIE's `Z`
  defaults to the largest that keeps the attackers inside the crowd, mimic
  copies honest site SITE (counted from 1).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MetricRecord,
)
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from swarmflower.collusion import (
    Change,
    CollusionBoard,
    alie,
    alie_z,
    change_of,
    ipm,
)
from swarmflower.errors import ConfigError

ATTACKS = ("sign-flip", "scale", "gaussian", "label-flip", "alie", "ipm", "mimic")
WITH_PARAMETER = {"scale": "K", "gaussian": "SIGMA", "ipm": "EPS", "mimic": "SITE"}
OPTIONAL_PARAMETER = {"alie": "Z"}
COLLUDING = frozenset({"alie", "ipm", "mimic"})  # need the honest changes
LABEL_FLIP_KEY = "label-flip"
PARTITION_KEY = "partition-id"  # Flower's node config key for a site
SITE_RECORD = "swarmflower.site"  # a reply's site, for colluding attackers


@dataclass(frozen=True)
class Attack:
    """One attack, played by the sites (indices from 0) in `sites`."""

    kind: str
    parameter: float = 0.0
    sites: frozenset[int] = frozenset()
    has_parameter: bool = False  # alie: Z given (else computed per round)
    board: CollusionBoard = field(
        default_factory=CollusionBoard, compare=False, repr=False
    )

    @classmethod
    def parse(
        cls, spec: str, sites: Iterable[int], num_sites: int | None = None
    ) -> Attack:
        """`KIND[:PARAM]` (see the module docstring), played by `sites` of
        `num_sites` (when known, mimic's SITE is checked against it)."""
        kind, _, value = spec.strip().partition(":")
        if kind not in ATTACKS:
            raise ConfigError(
                f"unknown attack {kind!r}; choose one of: {', '.join(ATTACKS)} "
                "(scale:K, gaussian:SIGMA, alie[:Z], ipm:EPS, mimic:SITE)"
            )
        chosen = frozenset(sites)
        if not chosen or min(chosen) < 0:
            raise ConfigError("an attack needs at least one attacking site")
        parameter = _parameter(kind, value)
        if kind == "mimic":
            target = int(parameter) - 1
            if parameter != int(parameter) or target < 0:
                raise ConfigError("attack mimic: SITE is a site number from 1")
            if target in chosen:
                raise ConfigError(f"attack mimic:{target + 1}: that site attacks")
            if num_sites is not None and target >= num_sites:
                raise ConfigError(f"attack mimic:{target + 1}: only {num_sites} sites")
        return cls(kind, parameter, chosen, bool(value))

    def plays(self, site: int) -> bool:
        return site in self.sites

    @property
    def spec(self) -> str:
        """`KIND[:PARAM]` as `parse` reads it."""
        if self.kind in WITH_PARAMETER or self.has_parameter:
            return f"{self.kind}:{self.parameter:g}"
        return self.kind

    @property
    def colludes(self) -> bool:
        """Whether the attackers need the honest changes of the round."""
        return self.kind in COLLUDING

    def train_config(self, site: int) -> dict[str, bool]:
        """What an attacker's ClientApp is told besides the strategy's config."""
        return (
            {LABEL_FLIP_KEY: True}
            if self.kind == "label-flip" and self.plays(site)
            else {}
        )

    def poison(
        self,
        site: int,
        round: int,
        current: ArrayRecord,
        trained: ArrayRecord,
        honest: Mapping[int, Change] | None = None,
    ) -> ArrayRecord:
        """What site `site` sends in `round` instead of `trained`; a
        colluding attack is computed from `honest` (site index -> change),
        and with none seen the attacker sends its own update unchanged."""
        if not self.plays(site) or self.kind == "label-flip":
            return trained
        if self.colludes:
            if not honest:
                return trained
            sent = self._colluded(honest, len(honest) + len(self.sites))
        else:
            sent = self._alone(site, round, change_of(current, trained))
        start = {k: a.numpy().astype(np.float64) for k, a in current.items()}
        return ArrayRecord(
            {
                key: Array(np.asarray((start[key] + sent[key]).astype(a.numpy().dtype)))
                for key, a in trained.items()
            }
        )

    def _alone(self, site: int, round: int, change: Change) -> Change:
        if self.kind == "sign-flip":
            return {k: -c for k, c in change.items()}
        if self.kind == "scale":
            return {k: self.parameter * c for k, c in change.items()}
        rng = np.random.default_rng([site, round])  # gaussian
        return {
            k: rng.normal(0.0, self.parameter, size=c.shape) for k, c in change.items()
        }

    def _colluded(self, honest: Mapping[int, Change], num_sites: int) -> Change:
        ordered = [honest[k] for k in sorted(honest)]
        if self.kind == "alie":
            z = (
                self.parameter
                if self.has_parameter
                else alie_z(num_sites, len(self.sites))
            )
            return alie(ordered, z)
        if self.kind == "ipm":
            return ipm(ordered, self.parameter)
        target = int(self.parameter) - 1  # mimic
        return honest.get(target, ordered[0])


def _parameter(kind: str, value: str) -> float:
    """The number after `KIND:`, checked; 0 where the kind takes none."""
    name = WITH_PARAMETER.get(kind) or OPTIONAL_PARAMETER.get(kind)
    if name is None:
        if value:
            raise ConfigError(f"attack {kind} takes no parameter, got {value!r}")
        return 0.0
    if not value and kind in OPTIONAL_PARAMETER:
        return 0.0
    try:
        parameter = float(value)
    except ValueError:
        raise ConfigError(f"attack {kind} needs its {name}: {kind}:{name}") from None
    if not np.isfinite(parameter) or (kind != "scale" and parameter <= 0):
        raise ConfigError(f"attack {kind}: {name} must be a positive number")
    return parameter


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
    on its simulation engine, so both face the same attackers. A colluding
    attack is crafted where the replies meet (`ColludingFedAvg`): each reply
    says whose it is."""
    app = ClientApp()

    @app.train()
    def train(message: Message, context: Context) -> Message:
        site = int(context.node_config[PARTITION_KEY])
        config = message.content["config"]
        for key, value in attack.train_config(site).items():
            config[key] = value
        reply = inner(message, context)
        if attack.colludes and reply.has_content():  # `ColludingFedAvg` crafts
            reply.content[SITE_RECORD] = ConfigRecord({PARTITION_KEY: site})
        elif attack.plays(site) and reply.has_content():
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


class ColludingFedAvg(FedAvg):
    """Flower's FedAvg with the colluding attackers' updates crafted from the
    honest replies of the round before it averages them, as the attackers
    would if they saw those replies (`collusion.py`). Needs the replies of
    `attacked_client_app`, which name their site."""

    def __init__(self, attack: Attack, **options: Any) -> None:
        super().__init__(**options)
        self.attack = attack
        self._current: ArrayRecord | None = None

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self._current = arrays
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        if self._current is not None:
            self._craft(server_round, [r for r in replies if r.has_content()])
        return super().aggregate_train(server_round, replies)

    def _craft(self, server_round: int, replies: list[Message]) -> None:
        current = self._current
        sites = {id(r): int(r.content[SITE_RECORD][PARTITION_KEY]) for r in replies}
        honest = {
            sites[id(r)]: change_of(current, r.content["arrays"])
            for r in replies
            if not self.attack.plays(sites[id(r)])
        }
        for reply in replies:
            site = sites[id(reply)]
            if self.attack.plays(site):
                reply.content["arrays"] = self.attack.poison(
                    site, server_round, current, reply.content["arrays"], honest
                )
