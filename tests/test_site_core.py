"""The site's protocol core driven by hand: every message, fetch and tick chosen
by the test, at the time the test says, so each race is played exactly."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from flwr.app import Array, ArrayRecord

from swarmflower.faults import FaultPlan
from swarmflower.identity import simulated_identities
from swarmflower.ledger import Ledger, Reason, SwarmParams
from swarmflower.model_store import MemoryModelStore
from swarmflower.site_actions import (
    Crash,
    FetchArrays,
    FetchBlob,
    FetchBlock,
    FetchChain,
    PeerConfig,
    Send,
    Train,
)
from swarmflower.site_core import SiteCore
from swarmflower.strategies import leader_strategy
from swarmflower.swarm_setup import make_genesis
from swarmflower.transport.base import BlockAnnouncement, UpdateOffer

NAMES = ["north", "east", "south", "west"]


class Swarm:
    """Four cores and a hand-driven network: sends wait in `outbox` until the
    test delivers them; fetches and training are answered at once."""

    def __init__(
        self,
        strategy="FedAvg",
        faults=None,
        rounds=3,
        backups=2,
        train_sites=0,
        start_grace=0.0,
    ):
        self.initial = ArrayRecord({"w": Array(np.zeros(3, dtype=np.float32))})
        identities = simulated_identities(NAMES, 0)
        self.genesis = make_genesis(
            identities,
            self.initial,
            SwarmParams(rounds, 10, 2, "FedAvg", train_sites=train_sites),
        )
        self.addresses = [i.address for i in identities]
        self.config = PeerConfig(
            rounds=rounds,
            round_timeout=10.0,
            min_peers=2,
            update_wait=8.0,
            backups=backups,
            start_grace=start_grace,
        )
        self.identities, self.faults = identities, faults or FaultPlan()
        self.strategy = leader_strategy(strategy)
        self.cores = [self.new_core(k, Ledger.create(self.genesis)) for k in range(4)]
        self.outbox: list[tuple[int, Send]] = []
        self.down: set[int] = set()

    def new_core(self, k: int, ledger, store=None) -> SiteCore:
        return SiteCore(
            self.identities[k],
            self.addresses,
            ledger,
            self.strategy,
            store or MemoryModelStore(),
            self.config,
            self.initial,
            self.faults,
        )

    def index(self, address: str) -> int:
        return self.addresses.index(address)

    def leader(self, round: int, view: int = 0, seen_by: int = 0) -> int:
        return self.index(self.cores[seen_by].ledger.proposer(round, view))

    def run(self, k: int, actions, now: float) -> None:
        """Carry out core `k`'s actions: train at once, hold sends, answer fetches."""
        todo = list(actions)
        while todo:
            action = todo.pop(0)
            core = self.cores[k]
            if isinstance(action, Train):
                update = ArrayRecord(
                    {"w": Array(np.full(3, k + action.round, dtype=np.float32))}
                )
                todo += core.trained(action.round, (10 * (k + 1), update), now)
            elif isinstance(action, Send):
                self.outbox.append((k, action))
            elif isinstance(action, FetchChain):
                blocks = self.best_chain(k, action)
                todo += core.chain_fetched(blocks, now)
            elif isinstance(action, FetchBlock):
                block = self.find(
                    action, lambda c, a=action: c.chain.block(a.block_hash)
                )
                todo += core.block_fetched(
                    action.block_hash, block, action.sources, now
                )
            elif isinstance(action, FetchArrays):
                found = self.find(
                    action, lambda c, a=action: c.store.get_arrays(a.digest)
                )
                todo += core.arrays_fetched(action.digest, found, now)
            elif isinstance(action, FetchBlob):
                found = self.find(
                    action, lambda c, a=action: c.store.get_blob(a.digest)
                )
                todo += core.blob_fetched(action.digest, found, now)
            elif isinstance(action, Crash):
                self.down.add(k)

    def find(self, action, read):
        """What the first source up holds for `action`, as `read` reads it."""
        for address in action.sources:
            j = self.index(address)
            if j in self.down:
                continue
            if (found := read(self.cores[j], action)) is not None:
                return found
        return None

    def best_chain(self, k: int, action: FetchChain) -> list[bytes]:
        others = [c for j, c in enumerate(self.cores) if j != k and j not in self.down]
        best = max(others, key=lambda c: c.ledger.head().height)
        return best.chain.canonical(action.start, action.end)

    def start(self, now: float = 0.0, sites=range(4)) -> None:
        for k in sites:
            self.run(k, self.cores[k].start(now), now)

    def deliver(self, now: float, keep=lambda sender, send: False) -> None:
        """Deliver every held message (except those `keep` holds back)."""
        held, self.outbox = self.outbox, []
        for sender, send in held:
            to = self.index(send.to)
            if keep(sender, send):
                self.outbox.append((sender, send))
            elif to not in self.down:
                self.run(to, self.cores[to].received(send.message, now), now)

    def tick(self, now: float, sites=range(4)) -> None:
        for k in sites:
            if k not in self.down:
                self.run(k, self.cores[k].tick(now), now)

    def blocks(self) -> list[tuple[int, BlockAnnouncement]]:
        return [
            (s, send.message)
            for s, send in self.outbox
            if isinstance(send.message, BlockAnnouncement)
        ]


def _block(core: SiteCore, action: FetchBlock):
    return core.chain.block(action.block_hash)


def _arrays(core: SiteCore, action: FetchArrays):
    return core.store.get_arrays(action.digest)


def _blob(core: SiteCore, action: FetchBlob):
    return core.store.get_blob(action.digest)


def offers_from(sender: int):
    return lambda s, send: s == sender and isinstance(send.message, UpdateOffer)


def test_the_leader_seals_the_moment_the_last_update_is_in():
    swarm = Swarm()
    swarm.start()
    leader = swarm.leader(1)
    last = max(k for k in range(4) if k != leader)
    swarm.deliver(1.0, keep=offers_from(last))
    assert not swarm.blocks()  # three of four in, well before update_wait
    swarm.tick(7.9)
    assert not swarm.blocks()
    swarm.deliver(7.95)
    assert len(swarm.blocks()) == 3  # sealed then, and announced to the others
    assert swarm.cores[leader].log.sealed == [(1, 0, Reason.NORMAL)]
    assert len(swarm.cores[leader].ledger.round(1).commitments) == 4
    # each site knew its rank when the round began: the leader, two backups
    ranks = sorted(r for core in swarm.cores for round, r in core.log.elected)
    assert ranks == [0, 1, 2] and swarm.cores[leader].log.elected == [(1, 0)]


def test_a_straggler_drill_holds_one_sites_update_back():
    plan = FaultPlan.parse("straggler:2@1:5", num_sites=4)
    assert plan.delay(1, 1) == 5.0 and plan.delay(1, 2) == plan.delay(0, 1) == 0
    swarm = Swarm(faults=plan)
    swarm.start()
    swarm.tick(4.9)

    def senders() -> set[int]:
        return {s for s, send in swarm.outbox if isinstance(send.message, UpdateOffer)}

    assert senders() == {0, 2, 3}  # site 2 trained but holds its update back
    swarm.tick(5.0)
    assert senders() == {0, 1, 2, 3}


def test_a_late_update_after_the_seal_is_never_merged():
    swarm = Swarm()
    swarm.start()
    leader = swarm.leader(1)
    late = next(k for k in range(4) if k != leader)
    swarm.deliver(1.0, keep=offers_from(late))
    assert swarm.cores[leader].wakeup(1.0) == 8.0  # it asks to be woken then
    swarm.tick(8.0)
    record = swarm.cores[leader].ledger.round(1)
    assert swarm.addresses[late] not in record.contributors
    assert len(record.commitments) == 3
    swarm.deliver(8.5)  # the late offer arrives with the block
    # Every site holds round 1 and nobody kept the late update for any round.
    assert all(c.log.adopted[-1].round == 1 for c in swarm.cores)
    assert all(1 not in c._offers for c in swarm.cores)
    swarm.deliver(9.0)  # round 2 runs with every site again
    second = swarm.cores[swarm.leader(2)].ledger.round(2)
    assert len(second.commitments) == 4
    assert all(c.round == 2 for c in second.commitments)


def test_a_block_before_its_parent_is_connected_by_fetching_the_parent():
    swarm = Swarm(backups=1)  # two electees a round: two sites hold no offers
    swarm.start()
    leader = swarm.leader(1)
    swarm.deliver(1.0)  # round 1 sealed; its block is now in the outbox
    electees = {leader, swarm.leader(1, 1), swarm.leader(2, seen_by=leader)}
    away = next(k for k in range(4) if k not in electees)
    to_away = lambda s, send: swarm.index(send.to) == away  # noqa: E731
    swarm.deliver(1.1, keep=to_away)  # everyone but `away` gets block 1
    swarm.deliver(2.0, keep=to_away)  # round 2's offers (away's waits), block 2
    swarm.tick(9.2)  # round 2's leader seals without `away`'s update
    swarm.deliver(
        9.3, keep=lambda s, send: to_away(s, send) and send.message.round == 1
    )
    core = swarm.cores[away]
    kinds = [kind for kind, _ in core.log.fetched]
    assert kinds[0] == "block"  # block 1, fetched by the hash in block 2
    assert core.log.fetched[0][1] == swarm.cores[leader].ledger.block_hash(1)
    # Both blocks connect; it adopts the head's model, fetched by its hash.
    second_leader = swarm.cores[swarm.leader(2, seen_by=leader)]
    assert core.ledger.head() == second_leader.ledger.head()
    assert [(a.round, a.recomputed) for a in core.log.adopted] == [(2, False)]
    assert sorted(kinds[1:]) == ["arrays", "blob"]
    assert core.log.trained == [1, 3]  # round 2 passed it by


def test_a_site_that_missed_two_rounds_catches_up_by_fetching():
    swarm = Swarm(rounds=4)
    away = next(k for k in range(4) if k not in (swarm.leader(1),))
    swarm.down.add(away)
    swarm.start(sites=[k for k in range(4) if k != away])
    for now in (1.0, 9.0, 9.5, 17.5, 19.5, 20.0):  # rounds 1 and 2 without it
        swarm.tick(now)
        swarm.deliver(now)
    heights = {c.ledger.head().height for j, c in enumerate(swarm.cores) if j != away}
    assert heights == {2} and swarm.cores[away].ledger.head().height == 0
    swarm.down.discard(away)
    swarm.cores[away] = swarm.new_core(
        away, swarm.cores[away].ledger, swarm.cores[away].store
    )
    swarm.start(now=20.5, sites=[away])
    core = swarm.cores[away]
    assert [(a.round, a.recomputed) for a in core.log.adopted] == [(2, False)]
    fetched = {kind: digest for kind, digest in core.log.fetched}
    record = core.ledger.round(2)
    assert fetched == {"arrays": record.model_hash, "blob": record.state_hash}
    assert core.log.trained == [3]  # and it plays round 3 at once


def test_a_backup_seals_one_round_timeout_after_a_silent_leader():
    swarm = Swarm()
    leader, backup = swarm.leader(1), swarm.leader(1, 1)
    swarm.down.add(leader)
    swarm.start(sites=[k for k in range(4) if k != leader])
    swarm.deliver(1.0)
    assert swarm.cores[backup].wakeup(1.0) == 10.0
    swarm.tick(9.99)
    assert not swarm.blocks()
    swarm.tick(10.0)
    assert swarm.cores[backup].log.sealed == [(1, 1, Reason.LEADER_TIMEOUT)]
    assert len(swarm.cores[backup].ledger.round(1).commitments) == 3


def test_a_dishonest_merge_is_refused_and_redone_by_the_backup():
    swarm = Swarm(faults=FaultPlan(dishonest_leader_rounds=frozenset({1})))
    swarm.start()
    leader, backup = swarm.leader(1), swarm.leader(1, 1)
    swarm.deliver(1.0)  # offers in: the leader seals a tampered model
    swarm.deliver(1.1)  # its block reaches the others
    others = [k for k in range(4) if k != leader]
    for k in others:
        assert swarm.cores[k].log.refused[0][2].startswith("merged model does not")
        assert not swarm.cores[k].log.adopted
    swarm.tick(10.0)  # the backup's turn
    assert swarm.cores[backup].log.sealed == [(1, 1, Reason.BAD_MERGE)]
    swarm.deliver(10.1)
    for core in swarm.cores:
        assert core.ledger.round(1).view == 1
    assert all(swarm.cores[k].log.adopted[0].recomputed for k in others)


def test_an_update_that_breaks_its_commitment_is_refused_by_name():
    swarm = Swarm()
    swarm.start()
    leader = swarm.leader(1)
    cheat = next(k for k in range(4) if k != leader)
    for _, send in swarm.outbox:
        message = send.message
        if isinstance(message, UpdateOffer) and message.site_index == cheat:
            swapped = ArrayRecord({"w": Array(np.ones(3, dtype=np.float32))})
            object.__setattr__(message, "arrays", swapped)
    swarm.deliver(1.0)
    refused = swarm.cores[leader].log.refused_updates
    assert refused == [(1, cheat, "update does not match its commitment hash")]
    swarm.tick(8.0)
    assert (
        swarm.addresses[cheat] not in swarm.cores[leader].ledger.round(1).contributors
    )


def test_an_update_the_merge_fails_on_is_refused_and_the_rest_sealed():
    from test_update_checks import FailsOn

    leader = Swarm().leader(1)
    victim = (leader + 1) % 4
    swarm = Swarm(strategy=FailsOn(victim))
    swarm.start()
    swarm.deliver(1.0)
    core = swarm.cores[leader]
    assert [(r, site) for r, site, _ in core.log.refused_updates] == [(1, victim)]
    assert "merge failed" in core.log.refused_updates[0][2]
    committed = set(core.ledger.round(1).contributors)
    assert committed == {a for k, a in enumerate(swarm.addresses) if k != victim}


def _offer_of(swarm: Swarm, k: int, round: int) -> UpdateOffer:
    """Site k's signed update for `round`, as its core would make it."""
    from swarmflower.round_protocol import sign_offer

    update = ArrayRecord({"w": Array(np.full(3, k + round, dtype=np.float32))})
    swarm_id = swarm.cores[k].ledger.swarm_id
    parent = swarm.cores[k].ledger.block_hash(round - 1)  # trained on it
    return sign_offer(swarm.identities[k], swarm_id, round, 10, update, parent=parent)


def test_sites_not_drawn_sit_out_and_their_updates_are_refused():
    swarm = Swarm(train_sites=2)
    swarm.start()
    drawn = [k for k in range(4) if swarm.cores[k].log.trained == [1]]
    idle = [k for k in range(4) if swarm.cores[k].log.sat_out == [1]]
    assert len(drawn) == 2 and sorted(drawn + idle) == [0, 1, 2, 3]
    leader = swarm.leader(1)
    swarm.run(
        leader, swarm.cores[leader].received(_offer_of(swarm, idle[0], 1), 0.5), 0.5
    )
    (refused,) = swarm.cores[leader].log.refused_updates
    assert refused == (1, idle[0], "site not drawn to train round 1")
    swarm.deliver(1.0)  # the two drawn are in: all the leader waits for
    record = swarm.cores[leader].ledger.round(1)
    assert set(record.contributors) == {swarm.addresses[k] for k in drawn}


def test_a_block_merging_a_site_not_drawn_is_refused():
    swarm = Swarm(train_sites=2)
    leader = swarm.leader(1)
    rogue = swarm.cores[leader]
    rogue._drawn = lambda round: None  # a leader that ignores the draw
    swarm.start()
    idle = [k for k in range(4) if swarm.cores[k].log.sat_out == [1]]
    for k in idle:  # the rogue takes their updates (its own too, if idle)
        swarm.run(leader, rogue.received(_offer_of(swarm, k, 1), 0.5), 0.5)
    swarm.deliver(1.0)
    swarm.deliver(1.1)  # its block, with updates of sites not drawn
    assert len(rogue.ledger.round(1).commitments) > 2
    for k in range(4):
        if k != leader:
            (entry,) = swarm.cores[k].log.refused
            assert entry[2] == "it merges a site not drawn to train the round"


def test_a_leader_short_of_min_peers_says_once_whom_the_round_waits_for(caplog):
    swarm = Swarm()
    leader = swarm.leader(1)
    up = next(k for k in range(4) if k != leader)
    swarm.start(sites=[leader, up])  # the two others never start
    swarm.deliver(1.0, keep=offers_from(up))  # and this one's update is lost
    swarm.tick(9.9, sites=[leader])
    assert swarm.cores[leader].log.waiting == {}  # its time has not come yet
    for now in (10.0, 12.0, 15.0):
        swarm.tick(now, sites=[leader])
    missing = tuple(a for k, a in enumerate(swarm.addresses) if k != leader)
    assert swarm.cores[leader].log.waiting == {1: missing}
    said = [r.getMessage() for r in caplog.records if "round 1 waits" in r.message]
    assert len(said) == 1
    assert f"site {up + 1} ({swarm.addresses[up]})" in said[0]
    assert "1 of the 2 updates needed to seal are in" in said[0]
    assert not swarm.blocks()  # and nothing was sealed short of min_peers


def test_round_one_waits_the_start_up_grace_then_starts_naming_who_is_missing(
    caplog,
):
    swarm = Swarm(start_grace=20.0)
    leader, backup = swarm.leader(1), swarm.leader(1, view=1)
    up = [leader, backup]
    swarm.start(sites=up)  # two sites have not started their processes yet
    swarm.deliver(1.0)
    # Not at update_wait (8 s), and no backup steps in at the round timeout.
    for now in (8.0, 10.0, 19.9):
        swarm.tick(now, sites=up)
        assert not swarm.blocks()
    swarm.tick(20.0, sites=up)
    assert swarm.cores[leader].log.sealed == [(1, 0, Reason.NORMAL)]
    late = [a for k, a in enumerate(swarm.addresses) if k not in up]
    said = [r.getMessage() for r in caplog.records if "start-up grace" in r.message]
    assert len(said) == 1
    assert all(address in said[0] for address in late)
    # Round 2 has no grace: its leader's usual wait applies.
    assert swarm.cores[leader]._deadline(0, 2) == 8.0


def test_a_real_sites_leader_keeps_its_stamps_near_its_clock():
    """Whole-second stamps rise by one a block: eight rounds in half a second
    would stamp the last blocks seconds ahead of every clock. The leader
    waits once its stamp would lead its clock by 5 s (replicas refuse 15 s)."""
    swarm = Swarm(rounds=8)
    for core in swarm.cores:  # wall-clock stamps, as at real sites
        core.config = replace(core.config, logical_time=False)

    def run_until_quiet(now: float) -> int:
        for _ in range(40):
            if not swarm.outbox:
                swarm.tick(now)
            if not swarm.outbox:
                break
            swarm.deliver(now)
        return swarm.cores[0].ledger.head().height

    swarm.start(0.0)
    assert run_until_quiet(0.5) == 5  # stamps 1..5; the sixth would be 6 > 5.5
    assert all(swarm.cores[0].ledger.round(r).timestamp == r for r in range(1, 6))
    assert run_until_quiet(1.0) == 6  # a second later, one more
    assert run_until_quiet(3.0) == 8
