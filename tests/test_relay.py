"""A site that only dials out, relayed by members: real gRPC streams over
mutual TLS on 127.0.0.1, no mocks.

Sites a, b, c serve; site d has no listen address and dials only its relays.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

import grpc
import pytest
from eth_utils import keccak
from test_grpc_transport import (
    ADDRESSES,
    FAST,
    Store,
    SwarmPki,
    common_name,
    model,
    offer,
    raw_deliver,
    same_arrays,
    store,
)

from swarmflower.transport import BlockAnnouncement, GrpcTransport, UpdateOffer, wire

MEMBERS = set(ADDRESSES)


def authorize(cert_pem: bytes) -> str | None:
    name = common_name(cert_pem)
    return name if name in MEMBERS else None


def eventually(check: Callable[[], object], timeout: float = 10.0) -> object:
    """Poll `check` until it is truthy (bounded in time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {check}")


def receive_all(transport: GrpcTransport, want: int, timeout: float = 5.0) -> list:
    got, deadline = [], time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        if (message := transport.receive(0.1)) is not None:
            got.append(message)
    return got


@pytest.fixture(scope="module")
def pki() -> SwarmPki:
    return SwarmPki()


@contextlib.contextmanager
def swarm_with_relayed_site(
    pki: SwarmPki, relays: int
) -> Iterator[tuple[list[GrpcTransport], GrpcTransport]]:
    """a, b, c serve and dial each other; d dials only the first `relays`."""
    members = lambda: MEMBERS  # noqa: E731
    served = [
        GrpcTransport(
            ADDRESSES[i],
            "127.0.0.1:0",
            {},
            pki.issue(ADDRESSES[i]),
            settings=FAST,
            authorize=authorize,
            members=members,
        )
        for i in range(3)
    ]
    for transport in served:
        transport.serve(Store())
        for other in served:
            transport.add_peer(other.address, other.target)
    relayed = GrpcTransport(
        ADDRESSES[3],
        "",
        {t.address: t.target for t in served[:relays]},
        pki.issue(ADDRESSES[3]),
        settings=FAST,
        authorize=authorize,
        members=members,
    )
    relayed.serve(Store())
    try:
        eventually(lambda: len(relayed.relays) == relays)
        yield served, relayed
    finally:
        relayed.disconnect()
        for transport in served:
            transport.disconnect()


def test_a_relayed_site_sends_receives_broadcasts_and_fetches(pki):
    with swarm_with_relayed_site(pki, relays=1) as ((a, b, c), d):
        assert d.target == "" and d.port == 0  # nothing listens
        # every member learns which relay carries d
        for member in (b, c):
            eventually(lambda m=member: m._hub.relays_of(d.address) == [a.address])

        # a member's update reaches d through a
        b.send(d.address, offer(1))
        (got,) = receive_all(d, 1)
        assert isinstance(got, UpdateOffer) and got.commitment.site == b.address
        assert same_arrays(got.arrays, offer(1).arrays)

        # d's update reaches a member it does not dial, speaking for d only
        d.send(c.address, offer(3))
        (got,) = receive_all(c, 1)
        assert got.commitment.site == d.address

        # d's block reaches every member once; a member's block reaches d
        d.broadcast(BlockAnnouncement(5, b"block of d"))
        for member in (a, b, c):
            assert [m.block for m in receive_all(member, 2, 1.5)] == [b"block of d"]
        c.broadcast(BlockAnnouncement(6, b"block of c"))
        assert [m.block for m in receive_all(d, 2, 1.5)] == [b"block of c"]

        # fetches by hash go to the relay, checked against the hash
        digest = store(a).add_arrays(model(0.5))
        assert same_arrays(d.fetch_arrays(digest, [b.address]), model(0.5))
        store(a).blocks.append(b"genesis child")
        assert d.fetch_blocks(0, 5) == [b"genesis child"]
        assert d.fetch_blob(keccak(b"nobody has it"), [c.address]) is None


def test_a_relay_cannot_speak_for_another_site_and_strangers_relay_nothing(pki):
    with swarm_with_relayed_site(pki, relays=1) as ((a, b, c), d):
        # a relays for d, but an update that is c's cannot come as d's
        forged = wire.encode_forward(
            d.address, b.address, wire.encode_message(offer(2))
        )
        assert raw_deliver(b.target, pki.issue(a.address), forged) == (
            grpc.StatusCode.PERMISSION_DENIED
        )
        # a site that is no member cannot have anything relayed
        stranger = keccak(b"stranger")[:20]
        outsider = "0x" + stranger.hex()
        honest = wire.encode_forward(
            d.address, b.address, wire.encode_message(offer(3))
        )
        assert raw_deliver(b.target, pki.issue(outsider), honest) == (
            grpc.StatusCode.PERMISSION_DENIED
        )
        # nor announce routes for another relay
        routes = wire.encode_routes(c.address, [d.address])
        assert raw_deliver(b.target, pki.issue(a.address), routes) == (
            grpc.StatusCode.PERMISSION_DENIED
        )
        assert b.receive(0.3) is None
        assert b._hub.relays_of(d.address) == [a.address]
        # while a may relay d's own update
        assert raw_deliver(b.target, pki.issue(a.address), honest) == grpc.StatusCode.OK
        assert b.receive(2).commitment.site == d.address


def test_with_two_relays_a_dead_relay_costs_nothing(pki):
    with swarm_with_relayed_site(pki, relays=2) as ((a, b, c), d):
        eventually(lambda: set(c._hub.relays_of(d.address)) == {a.address, b.address})
        assert c.peer_head(a.address) is not None and not c.link_changes
        a.disconnect()  # as a killed process: its stream breaks
        eventually(lambda: d.relays == [b.address])
        # both ends that knew a say it went away, once
        assert [(p, up) for _, p, up in d.link_changes] == [(a.address, False)]
        assert c.peer_head(a.address) is None
        assert [(p, up) for _, p, up in c.link_changes] == [(a.address, False)]
        c.send(d.address, offer(2))
        got = receive_all(d, 2, 3.0)
        assert [m.commitment.site for m in got] == [c.address]
        d.send(c.address, offer(3))
        assert receive_all(c, 1)[0].commitment.site == d.address


def test_wire_forward_and_routes_round_trip_and_refuse_truncation():
    inner = wire.encode_message(BlockAnnouncement(3, b"b"))
    data = wire.encode_forward(ADDRESSES[0], "", inner)
    assert wire.decode_forward(data) == wire.Forwarded(ADDRESSES[0], "", inner)
    routes = wire.encode_routes(ADDRESSES[1], ADDRESSES[2:])
    assert wire.decode_routes(routes) == (ADDRESSES[1], tuple(ADDRESSES[2:]))
    for cut in (7, 30, 6 + 40 + 3):  # in either address, in the inner envelope
        with pytest.raises(wire.WireFormatError):
            wire.decode_forward(data[:cut])
    for cut in (7, 30, len(routes) - 1):
        with pytest.raises(wire.WireFormatError):
            wire.decode_routes(routes[:cut])
