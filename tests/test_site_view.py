"""Site views over one shared replica: each answers as its own replica would."""

from __future__ import annotations

from collections import Counter

import pytest
from ledger_helpers import (
    block_hash_of,
    key_of,
    make_genesis,
    produce,
    rebuild,
    site_keys,
)

from swarmflower.ledger import (
    BadSeal,
    BadStateRoot,
    InvalidBlock,
    Ledger,
    LedgerStateError,
    MalformedBlock,
    SharedReplica,
    SiteView,
    UnknownParent,
)
from swarmflower.ledger.evm import EvmChain

KEYS = site_keys(4, "views")
GENESIS = make_genesis(KEYS)


def _blocks() -> dict[str, bytes]:
    """Rounds 1-2, then round 3 twice (late leader, backup takeover) and a
    round 4 on each branch: `late4` extends the branch that loses (one site
    built on it, so it does not make `late3` final)."""
    src = Ledger(GENESIS)
    b1, b2 = produce(src, KEYS), produce(src, KEYS)
    late3 = produce(src, KEYS, adopt=False)
    take3 = produce(src, KEYS, view=1, adopt=False)
    on_late = Ledger(GENESIS)
    for data in (b1, b2, late3):
        on_late.import_block(data)
    late4 = produce(on_late, KEYS, contributors=KEYS[:1])
    src.import_block(take3)
    take4 = produce(src, KEYS)
    return dict(b1=b1, b2=b2, late3=late3, take3=take3, late4=late4, take4=take4)


@pytest.fixture(scope="module")
def blocks() -> dict[str, bytes]:
    return _blocks()


def _feed(ledger, blocks: dict[str, bytes], names: str) -> list:
    return [ledger.import_block(blocks[name]) for name in names.split()]


def test_a_view_refuses_a_block_whose_parent_only_others_hold(blocks):
    shared = SharedReplica(Ledger(GENESIS))
    first, second = SiteView(shared), SiteView(shared)
    _feed(first, blocks, "b1 b2")
    with pytest.raises(UnknownParent) as refused:
        second.import_block(blocks["b2"])
    assert refused.value.parent_hash == block_hash_of(blocks["b1"])
    assert shared.ledger.knows(block_hash_of(blocks["b1"]))
    assert not second.knows(block_hash_of(blocks["b1"]))
    assert second.head().height == 0
    assert [o.value for o in _feed(second, blocks, "b1 b2")] == ["adopted"] * 2
    assert second.head() == first.head()


def test_two_views_differ_until_they_hold_the_same_blocks(blocks):
    shared = SharedReplica(Ledger(GENESIS))
    first, second = SiteView(shared), SiteView(shared)
    _feed(first, blocks, "b1 b2")
    _feed(second, blocks, "b1")
    assert (first.head().height, second.head().height) == (2, 1)
    assert first.block_hash(1) == second.block_hash(1)
    with pytest.raises(LedgerStateError):
        second.block_hash(2)
    assert second.import_block(blocks["b2"]).value == "adopted"
    assert second.import_block(blocks["b2"]).value == "known"
    assert first.head() == second.head()


def test_fork_choice_is_per_view(blocks):
    shared = SharedReplica(Ledger(GENESIS))
    late, both, reverse = SiteView(shared), SiteView(shared), SiteView(shared)
    _feed(late, blocks, "b1 b2 late3")
    outcomes = _feed(both, blocks, "b1 b2 late3 take3")
    assert [o.value for o in outcomes[2:]] == ["adopted", "adopted"]
    assert _feed(reverse, blocks, "b1 b2 take3 late3")[3].value == "side"
    assert late.round(3).view == 0
    assert both.round(3).view == reverse.round(3).view == 1
    assert both.head() == reverse.head() == shared.ledger.head()
    assert late.head().hash == block_hash_of(blocks["late3"])
    # a block on the losing branch extends `late` but not `both`
    assert late.import_block(blocks["late4"]).value == "adopted"
    assert both.import_block(blocks["late4"]).value == "side"
    assert both.electees(4) != late.electees(4)  # the takeover retired a site


FEEDS = [
    "b1 b2",
    "b1 b2 late3 late4",
    "b1 b2 late3 late4 take3",
    "b1 b2 take3 late3 late4 take4",
    "b1 b2 take3 take4 late3",
]


@pytest.mark.parametrize("feed", FEEDS)
def test_a_view_answers_as_a_standalone_replica(blocks, feed):
    shared = SharedReplica(Ledger(GENESIS))
    _feed(SiteView(shared), blocks, " ".join(blocks))  # the replica holds all
    view, alone = SiteView(shared), Ledger(GENESIS)
    assert _feed(view, blocks, feed) == _feed(alone, blocks, feed)
    head = alone.head()
    assert view.head() == head
    assert view.swarm_id == alone.swarm_id and view.genesis == alone.genesis
    for h in range(1, head.height + 1):
        assert view.round(h) == alone.round(h)
        assert view.block_hash(h) == alone.block_hash(h)
        assert view.block_bytes(h) == alone.block_bytes(h)
    assert list(view.rounds()) == list(alone.rounds())
    assert any(r.commitments for r in view.rounds())
    for r in range(1, head.height + 2):
        assert view.electees(r, 3) == alone.electees(r, 3)
        assert view.electees(r) == alone.electees(r)
        assert view.proposer(r, 1) == alone.proposer(r, 1)
    with pytest.raises(LedgerStateError):
        view.electees(head.height + 2)
    with pytest.raises(LedgerStateError):
        view.round(0)
    assert view.verify() == head


def test_seal_round_builds_on_the_views_own_block(blocks):
    shared = SharedReplica(Ledger(GENESIS))
    _feed(SiteView(shared), blocks, "b1 b2 late3 take3")
    view, alone = SiteView(shared), Ledger(GENESIS)
    _feed(view, blocks, "b1 b2 late3")
    _feed(alone, blocks, "b1 b2 late3")
    assert shared.ledger.head().hash == block_hash_of(blocks["take3"])
    data = produce(view, KEYS, contributors=KEYS[:1])
    assert Ledger.block_ids(data)[1] == block_hash_of(blocks["late3"])
    # what the site's own replica seals
    assert data == produce(alone, KEYS, contributors=KEYS[:1])
    assert view.head() == alone.head() and view.head().height == 4
    assert shared.ledger.knows(view.head().hash)
    assert shared.ledger.head().hash == block_hash_of(blocks["take3"])
    with pytest.raises(LedgerStateError):
        produce(view, KEYS, round=6)


def test_propose_on_a_given_parent_checks_its_height(blocks):
    ledger = Ledger(GENESIS)
    _feed(ledger, blocks, "b1 b2")
    args = (KEYS[0], 2, b"\x01" * 32, b"\x02" * 32, ())
    with pytest.raises(LedgerStateError, match="cannot be sealed on block #2"):
        ledger.propose(*args, parent_hash=ledger.block_hash(2))
    with pytest.raises(LedgerStateError, match="not known here"):
        ledger.propose(*args, parent_hash=b"\x33" * 32)


def _corrupted(blocks: dict[str, bytes], case: str) -> bytes:
    """Round 2's block, damaged in transit or re-sealed wrongly."""
    data = blocks["b2"]
    if case == "truncated":
        return data[:-7]
    if case == "flipped":
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0xFF
        return bytes(flipped)
    src = Ledger(GENESIS)
    src.import_block(blocks["b1"])
    sealer = key_of(src.proposer(2, 0), KEYS)
    if case == "state_root":
        return rebuild(data, sealer, state_root=b"\x11" * 32)
    return rebuild(data, next(k for k in KEYS if k != sealer))


@pytest.mark.parametrize(
    "case, error",
    [
        ("truncated", MalformedBlock),
        ("flipped", InvalidBlock),
        ("state_root", BadStateRoot),
        ("outsider", BadSeal),
    ],
)
def test_an_invalid_block_leaves_the_view_unchanged(blocks, case, error):
    shared = SharedReplica(Ledger(GENESIS))
    view = SiteView(shared)
    view.import_block(blocks["b1"])
    before = (view.head(), dict(view._held), list(view._canonical))
    bad = _corrupted(blocks, case)
    for _ in range(2):  # refused again: nothing was remembered as valid
        with pytest.raises(error):
            view.import_block(bad)
    assert (view.head(), dict(view._held), list(view._canonical)) == before
    assert shared.ledger.head() == view.head()
    assert view.import_block(blocks["b2"]).value == "adopted"


def test_a_block_reaching_fifty_views_is_decoded_and_validated_once(
    blocks, monkeypatch
):
    shared = SharedReplica(Ledger(GENESIS))
    calls: Counter[str] = Counter()

    def counted(name, fn):
        def wrapper(*args):
            calls[name] += 1
            return fn(*args)

        return wrapper

    ledger = shared.ledger
    monkeypatch.setattr(ledger, "import_block", counted("import", ledger.import_block))
    monkeypatch.setattr(ledger, "block_ids", counted("ids", ledger.block_ids))
    monkeypatch.setattr(
        EvmChain, "decode_block", staticmethod(counted("rlp", EvmChain.decode_block))
    )
    views = [SiteView(shared) for _ in range(50)]
    views[0].import_block(blocks["b1"])
    decoded = calls["rlp"]
    for view in views:  # equal bytes, distinct objects, as from a transport
        assert view.import_block(bytes(bytearray(blocks["b1"]))).value in (
            "adopted",
            "known",
        )
        assert view.electees(2, 2) == views[0].electees(2, 2)
    assert calls["import"] == calls["ids"] == 1
    assert calls["rlp"] == decoded  # no view after the first decodes it again
    assert {view.head() for view in views} == {ledger.head()}
