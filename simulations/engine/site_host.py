"""A host for many virtual sites that share one ledger replica: the Ray actor's body.

A thousand sites cannot each keep a replica on a laptop (every replica
validates every block), so the Ray engine deals the sites out to a few hosts.
A host trains its sites through their ClientApps, signs each update with the
site's own key, seals when one of its sites is the ledger's proposer, and
validates every block on its replica, redoing the merge from the committed
updates before its sites adopt the model: the rules of `round_protocol`,
exactly as a `SwarmPeer` plays them. The class knows nothing of Ray, so
tests drive it directly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from flwr.app import ArrayRecord
from flwr.clientapp import ClientApp

from swarmflower.app_calls import AppFailure, call_app, score_sites
from swarmflower.codec import arrays_hash
from swarmflower.flower_messages import site_context
from swarmflower.identity import SiteIdentity, simulated_identity
from swarmflower.ledger import Genesis, ImportOutcome, InvalidBlock, Ledger, Reason
from swarmflower.logs import quiet_flower
from swarmflower.round_protocol import (
    UpdateLimits,
    committed_updates,
    leader_merge,
    offer_problem,
    sign_offer,
    train_site,
    verify_merge,
)
from swarmflower.round_rules import earliest_timestamp
from swarmflower.strategies import LeaderStrategy, MergeOutcome, leader_strategy
from swarmflower.swarm_setup import check_initial_model
from swarmflower.transport.base import UpdateOffer

log = logging.getLogger("swarmflower.site_host")


@dataclass(frozen=True)
class TrainedBatch:
    """One host's signed updates for a round, and the sites whose ClientApp
    failed in training (each sits the round out), with how."""

    round: int
    offers: tuple[UpdateOffer, ...]
    failed: tuple[tuple[int, AppFailure], ...]


@dataclass(frozen=True)
class Sealed:
    """A block sealed by one of the host's sites, and the offers it refused.

    `block` is None when no offer could be merged: the proposer seals nothing
    and the next backup takes over.
    """

    block: bytes | None
    refused: tuple[tuple[int, str], ...]


@dataclass(frozen=True)
class Verdict:
    """What a host's replica made of a block, and its sites' test accuracies
    (NaN where the ClientApp failed to evaluate: `failed` says how)."""

    round: int
    adopted: bool
    reason: str
    accuracies: tuple[tuple[int, float], ...]
    failed: tuple[tuple[int, AppFailure], ...] = ()


class SiteHost:
    """Virtual sites `sites` of a swarm of `num_sites`, with one ledger replica."""

    def __init__(
        self,
        genesis: Genesis,
        sites: Sequence[int],
        site_names: Sequence[str],
        app_factory: Callable[[], ClientApp],
        initial_arrays: ArrayRecord,
        strategy: str | LeaderStrategy,
        seed: int,
        ledger_path: Path | None = None,
        run_config: Mapping[str, bool | float | int | str] | None = None,
    ) -> None:
        self.num_sites = len(site_names)
        self.sites = tuple(sites)
        # Each site's Context, kept across rounds as Flower keeps a node's.
        self.contexts = {
            k: site_context(k, self.num_sites, run_config=run_config)
            for k in self.sites
        }
        self.identities: dict[int, SiteIdentity] = {
            k: simulated_identity(k, site_names[k], seed) for k in self.sites
        }
        self.ledger = Ledger.create(genesis, ledger_path)
        self.index_of = {site.address: k for k, site in enumerate(genesis.sites)}
        with quiet_flower():
            self.app = app_factory()
        self.strategy = leader_strategy(strategy)
        check_initial_model(initial_arrays, genesis, "the host's initial model")
        self.model = initial_arrays
        self.state = self.strategy.initial_state(initial_arrays)
        self.model_round = 0
        self.round_timeout = genesis.params.round_timeout
        self.limits = UpdateLimits.from_params(genesis.params)
        # The merge behind each block this host sealed: it need not redo it.
        self._own_merges: dict[bytes, MergeOutcome] = {}
        self._failed: dict[int, tuple[tuple[int, AppFailure], ...]] = {}

    # -- training --------------------------------------------------------------

    def train(self, round: int, sites: Iterable[int]) -> TrainedBatch:
        """Train each of `sites` (this host's, up this round) on the current model."""
        self._expect_round(round)
        offers, failed = [], []
        config = self.strategy.train_config(round)
        with quiet_flower():
            for k in sites:
                trained = call_app(
                    train_site,
                    self.app,
                    self.contexts[k],
                    self.model,
                    round,
                    k,
                    config,
                )
                if isinstance(trained, AppFailure):
                    failed.append((k, trained))
                    continue
                num_examples, update = trained
                offers.append(
                    sign_offer(
                        self.identities[k],
                        self.ledger.swarm_id,
                        round,
                        num_examples,
                        update,
                    )
                )
        self._failed[round] = tuple(failed)
        return TrainedBatch(round, tuple(offers), tuple(failed))

    def failed(self, round: int) -> tuple[tuple[int, AppFailure], ...]:
        """The sites whose ClientApp failed in `round`'s training, and how: what
        the driver needs of a batch, without fetching its updates."""
        return self._failed.pop(round, ())

    # -- leading ---------------------------------------------------------------

    def seal(
        self,
        round: int,
        view: int,
        reason: Reason,
        proposer: int,
        included: Sequence[int],
        dishonest: bool,
        *batches: TrainedBatch,
    ) -> Sealed:
        """Site `proposer` checks the updates it holds, merges them, and seals.

        `included` are the sites whose updates reached it in time; each is
        checked as `SwarmPeer` checks an arriving update. The block commits
        to the updates merged; those the merge refused are reported with the
        ones refused on arrival.
        """
        self._expect_round(round)
        identity = self.identities[proposer]
        expected = self.ledger.proposer(round, view)
        if expected != identity.address:
            raise ValueError(
                f"site {proposer} is not the proposer of round {round} view {view}"
            )
        wanted = set(included)
        offers, refused = [], []
        for offer in _offers_of(batches):
            if offer.site_index not in wanted:
                continue
            _, problem = offer_problem(
                offer,
                self.index_of.get(offer.commitment.site),
                self.model,
                self.ledger.swarm_id,
                self.limits,
            )
            if problem:
                refused.append((offer.site_index, problem))
            else:
                offers.append(offer)
        merge = leader_merge(
            self.strategy, round, self.model, self.state, offers, dishonest
        )
        refused = sorted([*refused, *merge.refused])
        outcome = merge.outcome
        if outcome is None:
            return Sealed(None, tuple(refused))
        block = self.ledger.seal_round(
            identity.key,
            round,
            arrays_hash(outcome.arrays),
            outcome.state_hash,
            [o.commitment for o in merge.merged],
            view=view,
            reason=reason,
            timestamp=self._logical_timestamp(round, view),
        )
        if not dishonest:
            self._own_merges[self.ledger.head().hash] = outcome
        return Sealed(block, tuple(refused))

    def _logical_timestamp(self, round: int, view: int) -> int:
        parent = (
            self.ledger.genesis.timestamp
            if round == 1
            else self.ledger.round(round - 1).timestamp
        )
        return earliest_timestamp(parent, view, self.round_timeout)

    # -- validating and adopting -----------------------------------------------

    def adopt(self, block: bytes, *batches: TrainedBatch) -> Verdict:
        """Validate `block` on this replica, redo its merge, and adopt or refuse.

        A block already imported (this host sealed it) is not imported twice.
        The host that sealed the block trusts its own merge (a dishonest
        drill's excepted). Every host then scores the adopted model on its
        own sites' test sets, through their ClientApps, as Flower's federated
        evaluation does.
        """
        try:
            imported = self.ledger.import_block(block)
        except InvalidBlock as exc:
            return self._verdict(False, f"invalid block: {exc}")
        round = self.model_round + 1
        if imported is ImportOutcome.SIDE or self.ledger.head().height != round:
            return self._verdict(False, "the block is not canonical here")
        record = self.ledger.round(round)
        outcome = self._own_merges.pop(record.block_hash, None)
        if outcome is None:
            # Offers this host never checked are fetched by hash, so each one
            # is hashed against the block's commitment before the merge.
            by_hash = {
                o.commitment.update_hash: o.arrays
                for o in _offers_of(batches)
                if o.round == round
            }
            updates = committed_updates(record, {}, self.index_of, by_hash.get)
            if updates is None:
                return self._verdict(False, "a committed update is missing")
            outcome = verify_merge(
                self.strategy, record, self.model, self.state, updates
            )
        if outcome is None:
            return self._verdict(
                False, "merged model does not match the committed updates"
            )
        self.model, self.state = outcome.arrays, outcome.state
        self.model_round = round
        scores, failed = self.evaluate()
        return self._verdict(True, "", tuple(scores.items()), tuple(failed.items()))

    def evaluate(self) -> tuple[dict[int, float], dict[int, AppFailure]]:
        """The current model's test accuracy at each of this host's sites (NaN
        where the ClientApp failed), and the failures."""
        with quiet_flower():
            return score_sites(self.app, self.model, self.model_round, self.contexts)

    def final_model(self) -> tuple[int, ArrayRecord]:
        return self.model_round, self.model

    def close(self) -> None:
        self.ledger.close()

    def _verdict(
        self,
        adopted: bool,
        reason: str,
        accuracies: tuple[tuple[int, float], ...] = (),
        failed: tuple[tuple[int, AppFailure], ...] = (),
    ) -> Verdict:
        return Verdict(
            self.model_round if adopted else self.model_round + 1,
            adopted,
            reason,
            accuracies,
            failed,
        )

    def _expect_round(self, round: int) -> None:
        if round != self.model_round + 1:
            raise ValueError(
                f"asked for round {round} but this host's model is at round "
                f"{self.model_round}"
            )


def _offers_of(batches: Iterable[TrainedBatch]) -> Iterable[UpdateOffer]:
    for batch in batches:
        yield from batch.offers
