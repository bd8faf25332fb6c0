"""gRPC over mutual TLS between real servers on 127.0.0.1: messages, fetches, faults.

Certificates are made here with `cryptography` (a test CA and EC P-256 site
keys); nothing is mocked: the bytes cross real sockets and real TLS, and the
corruption tests flip real bits in the chunks on the wire.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import grpc
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from eth_keys.datatypes import PrivateKey
from eth_utils import keccak
from flwr.app import Array, ArrayRecord

from swarmflower.codec import arrays_hash, record_items
from swarmflower.errors import ConfigError, WireFormatError
from swarmflower.flower_messages import site_context
from swarmflower.identity import simulated_identities
from swarmflower.ledger import BlockRef, Commitment, Ledger, SwarmParams
from swarmflower.logs import quiet_flower
from swarmflower.model_store import MemoryModelStore
from swarmflower.peer import PeerConfig, SwarmPeer
from swarmflower.strategies import build_strategy
from swarmflower.swarm import run_swarm
from swarmflower.swarm_setup import make_genesis
from swarmflower.tasks import TaskSpec, initial_model, make_client_app
from swarmflower.transport import (
    BlockAnnouncement,
    GrpcSettings,
    GrpcTransport,
    PeerServiceAPI,
    TlsMaterial,
    UpdateOffer,
    wire,
)
from swarmflower.transport.grpc_transport import DELIVER, channel_credentials

SWARM_ID = keccak(b"swarmflower/test-grpc-swarm")
FAST = GrpcSettings(call_timeout_s=2.0, fetch_timeout_s=5.0, backoff_s=0.02)


# --- a test PKI ---------------------------------------------------------------


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    ca: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        ).add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


class SwarmPki:
    """A swarm CA that issues site certificates whose CN is the site address."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cert = _certificate("swarm test CA", self.key, None, self.key, ca=True)
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, address: str) -> TlsMaterial:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(address, key, self.cert, self.key)
        return TlsMaterial(
            self.pem, cert.public_bytes(serialization.Encoding.PEM), _pem(key)
        )

    def self_signed(self, address: str) -> TlsMaterial:
        """A certificate the swarm CA never issued (trusting the real CA)."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(address, key, None, key)
        return TlsMaterial(
            self.pem, cert.public_bytes(serialization.Encoding.PEM), _pem(key)
        )


def common_name(cert_pem: bytes) -> str:
    cert = x509.load_pem_x509_certificate(cert_pem)
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


# --- peers --------------------------------------------------------------------


class Store(PeerServiceAPI):
    """A dict-backed model store, as a peer serves it."""

    def __init__(self) -> None:
        self.arrays: dict[bytes, ArrayRecord] = {}
        self.blobs: dict[bytes, bytes] = {}
        self.blocks: list[bytes] = []

    def add_arrays(self, record: ArrayRecord) -> bytes:
        digest = arrays_hash(record)
        self.arrays[digest] = record
        return digest

    def serve_arrays(self, digest: bytes) -> ArrayRecord | None:
        return self.arrays.get(digest)

    def serve_blob(self, digest: bytes) -> bytes | None:
        return self.blobs.get(digest)

    def serve_blocks(self, start: int, end: int) -> list[bytes]:
        return self.blocks[start:end]

    def serve_block(self, block_hash: bytes) -> bytes | None:
        return next((b for b in self.blocks if keccak(b) == block_hash), None)

    def serve_head(self) -> BlockRef:
        return BlockRef(
            len(self.blocks), keccak(self.blocks[-1]) if self.blocks else b"\0" * 32, 1
        )


KEYS = [PrivateKey(keccak(f"grpc-test-site-{i}".encode())) for i in range(4)]
ADDRESSES = [key.public_key.to_checksum_address() for key in KEYS]


@pytest.fixture(scope="module")
def pki() -> SwarmPki:
    return SwarmPki()


@pytest.fixture
def swarm(pki: SwarmPki) -> Iterator[list[GrpcTransport]]:
    with running(pki, {}) as transports:
        yield transports


@contextlib.contextmanager
def running(pki: SwarmPki, options: dict[int, dict]) -> Iterator[list[GrpcTransport]]:
    """Three transports on free ports that know each other."""
    transports = [
        GrpcTransport(
            ADDRESSES[i],
            "127.0.0.1:0",
            {},
            pki.issue(ADDRESSES[i]),
            **{"settings": FAST, **options.get(i, {})},
        )
        for i in range(3)
    ]
    for transport in transports:
        transport.serve(Store())
        for other in transports:
            transport.add_peer(other.address, other.target)
    try:
        yield transports
    finally:
        for transport in transports:
            transport.disconnect()


def store(transport: GrpcTransport) -> Store:
    return transport._handlers.service  # type: ignore[return-value]


def model(megabytes: float = 0.01, seed: int = 0) -> ArrayRecord:
    rng = np.random.default_rng(seed)
    n = int(megabytes * (1 << 20) / 4)
    return ArrayRecord(
        {
            "w": Array(rng.standard_normal(n).astype(np.float32)),
            "b": Array(np.arange(7, dtype=np.int64).reshape(7, 1)),
            "mask": Array(np.array([True, False, True])),
        }
    )


def offer(site: int, round: int = 3, arrays: ArrayRecord | None = None) -> UpdateOffer:
    arrays = arrays if arrays is not None else model(seed=site)
    commitment = Commitment.sign(
        KEYS[site], SWARM_ID, round, arrays_hash(arrays), 42, keccak(b"parent")
    )
    return UpdateOffer(round, commitment, arrays, site_index=site)


def same_arrays(a: ArrayRecord, b: ArrayRecord) -> bool:
    left, right = record_items(a), record_items(b)
    return [k for k, _ in left] == [k for k, _ in right] and all(
        x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
        for (_, x), (_, y) in zip(left, right, strict=False)
    )


def raw_deliver(target: str, tls: TlsMaterial, payload: bytes) -> grpc.StatusCode:
    """Call Deliver with raw bytes; the status code it ends with."""
    with grpc.secure_channel(target, channel_credentials(tls)) as channel:
        try:
            channel.unary_unary(DELIVER)(payload, timeout=3)
        except grpc.RpcError as err:
            return err.code()
    return grpc.StatusCode.OK


# --- wire ---------------------------------------------------------------------


def test_wire_round_trip_and_every_truncation_is_refused():
    message = offer(0, arrays=model(0.0005))
    data = wire.encode_message(message)
    decoded = wire.decode_message(data)
    assert decoded.commitment == message.commitment
    assert same_arrays(decoded.arrays, message.arrays)
    for cut in range(len(data)):
        with pytest.raises(WireFormatError):
            wire.decode_message(data[:cut])
    with pytest.raises(WireFormatError):
        wire.decode_message(data + b"\x00")
    with pytest.raises(WireFormatError):
        wire.decode_message(data[:4] + b"\x02" + data[5:])  # another version
    announcement = BlockAnnouncement(7, b"\xf9rlp")
    assert wire.decode_message(wire.encode_message(announcement)) == announcement


# --- messages -----------------------------------------------------------------


def test_offer_and_block_reach_peers_intact(swarm):
    a, b, c = swarm
    sent = offer(0)
    a.send(b.address, sent)
    a.broadcast(BlockAnnouncement(3, b"\xf9\x01sealed-block"))
    got = b.receive(5)
    assert isinstance(got, UpdateOffer)
    assert (got.round, got.site_index, got.commitment) == (3, 0, sent.commitment)
    got.commitment.verify(SWARM_ID)
    assert same_arrays(got.arrays, sent.arrays)
    assert arrays_hash(got.arrays) == got.commitment.update_hash
    for peer in (b, c):
        assert peer.receive(5) == BlockAnnouncement(3, b"\xf9\x01sealed-block")
    assert a.receive(0.2) is None  # a broadcast skips its sender


def test_fetch_multi_chunk_model_blob_and_blocks(swarm):
    a, b, c = swarm
    big = model(3.0)
    digest = store(b).add_arrays(big)
    fetched = a.fetch_arrays(digest, [c.address, b.address])  # c lacks it
    assert fetched is not None and same_arrays(fetched, big)
    store(c).blobs[keccak(b"state")] = b"state"
    assert a.fetch_blob(keccak(b"state"), [b.address, c.address]) == b"state"
    assert a.fetch_blob(keccak(b"nobody"), [b.address, c.address]) is None
    store(b).blocks = [b"g", b"b1"]
    store(c).blocks = [b"g", b"b1", b"b2"]
    assert a.fetch_blocks(1, 10) == [b"b1", b"b2"]


def test_block_by_hash_and_head_of_a_peer(swarm):
    a, b, c = swarm
    store(c).blocks = [b"g", b"b1", b"b2"]
    assert a.fetch_block(keccak(b"b2"), [b.address, c.address]) == b"b2"
    assert a.fetch_block(keccak(b"b9"), [b.address, c.address]) is None
    assert a.peer_head(c.address) == BlockRef(3, keccak(b"b2"), 1)
    c.disconnect()
    assert a.peer_head(c.address) is None  # down: no answer, no exception


# --- identity -----------------------------------------------------------------


def test_certificate_not_from_the_ca_fails_the_handshake(pki, swarm):
    a, b, _ = swarm
    rogue = pki.self_signed(ADDRESSES[3])
    payload = wire.encode_message(offer(3))
    assert raw_deliver(b.target, rogue, payload) == grpc.StatusCode.UNAVAILABLE
    assert b.receive(0.3) is None
    # nor does a server with such a certificate get anything out of a site
    fake = GrpcTransport(ADDRESSES[3], "127.0.0.1:0", {}, rogue, settings=FAST)
    try:
        store_ = Store()
        store_.blobs[keccak(b"x")] = b"x"
        fake.serve(store_)
        a.add_peer(fake.address, fake.target)
        assert a.fetch_blob(keccak(b"x"), [fake.address]) is None
    finally:
        fake.disconnect()


def test_authorize_hook_refuses_and_binds_offers_to_their_sender(pki):
    enrolled = set(ADDRESSES[:2])

    def authorize(cert_pem: bytes) -> str | None:
        name = common_name(cert_pem)
        return name if name in enrolled else None

    with running(pki, {1: {"authorize": authorize}}) as (a, b, c):
        assert raw_deliver(
            b.target, pki.issue(c.address), wire.encode_message(offer(2))
        ) == (grpc.StatusCode.PERMISSION_DENIED)
        # a is enrolled but cannot pass off c's update as its own message
        forged = wire.encode_message(offer(2))
        assert raw_deliver(b.target, pki.issue(a.address), forged) == (
            grpc.StatusCode.PERMISSION_DENIED
        )
        assert b.receive(0.3) is None
        own = wire.encode_message(offer(0))
        assert raw_deliver(b.target, pki.issue(a.address), own) == grpc.StatusCode.OK
        assert isinstance(b.receive(2), UpdateOffer)
        # fetches are refused as well: models stay within enrolled sites
        store(b).blobs[keccak(b"state")] = b"state"
        assert c.fetch_blob(keccak(b"state"), [b.address]) is None
        assert a.fetch_blob(keccak(b"state"), [b.address]) == b"state"


def test_malformed_deliver_is_invalid_argument(pki, swarm):
    a, b, _ = swarm
    good = wire.encode_message(offer(0))
    for payload in (b"", b"garbage", good[:-3], good[:4] + b"\x09" + good[5:]):
        assert raw_deliver(b.target, pki.issue(a.address), payload) == (
            grpc.StatusCode.INVALID_ARGUMENT
        )
    assert b.receive(0.3) is None


# --- corruption and failures --------------------------------------------------


class Corrupter:
    """Flips one bit of one model chunk in the first `times` streams."""

    def __init__(self, times: int) -> None:
        self.times = times
        self.streams = 0
        self.lock = threading.Lock()

    def __call__(self, kind: str, index: int, data: bytes) -> bytes:
        if index != 0:
            return data
        with self.lock:
            self.streams += 1
            corrupt = self.streams <= self.times
        return bytes([data[0] ^ 0x01]) + data[1:] if corrupt else data


def test_corrupt_chunks_are_detected_and_fetched_again(pki):
    once, always = Corrupter(1), Corrupter(10**6)
    big = model(2.5)
    with running(pki, {1: {"chunk_filter": once}}) as (a, b, c):
        digest = store(b).add_arrays(big)
        # b corrupts, c has nothing, then b again: correct bytes
        fetched = a.fetch_arrays(digest, [b.address, c.address])
        assert fetched is not None and same_arrays(fetched, big)
        assert once.streams == 2
    both = {1: {"chunk_filter": always}, 2: {"chunk_filter": always}}
    with running(pki, both) as (a, b, c):
        digest = store(b).add_arrays(big)
        store(c).add_arrays(big)
        store(b).blobs[keccak(b"state")] = b"state"
        assert a.fetch_arrays(digest, [b.address, c.address]) is None
        assert a.fetch_blob(keccak(b"state"), [b.address]) is None
        assert always.streams == 2 * FAST.fetch_passes + FAST.fetch_passes


def test_a_down_peer_blocks_nobody(swarm):
    a, b, c = swarm
    c.disconnect()
    assert not c.alive
    big = model(1.5)
    digest = store(b).add_arrays(big)
    started = time.monotonic()
    a.send(c.address, offer(0))
    a.broadcast(BlockAnnouncement(1, b"block"))
    assert time.monotonic() - started < 0.5
    fetched = a.fetch_arrays(digest, [c.address, b.address])
    assert fetched is not None and same_arrays(fetched, big)
    assert b.receive(3) == BlockAnnouncement(1, b"block")
    assert time.monotonic() - started < 5


def test_a_hanging_peer_costs_at_most_the_timeout(pki, swarm):
    """A peer that accepts TCP but never answers TLS is given up on in time."""
    a, b, _ = swarm
    held: list[socket.socket] = []

    def hold_connections(server: socket.socket) -> None:
        while True:
            try:
                held.append(server.accept()[0])  # read nothing, answer nothing
            except OSError:
                return

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        threading.Thread(target=hold_connections, args=(silent,), daemon=True).start()
        impatient = replace(FAST, fetch_timeout_s=0.5)
        x = GrpcTransport(
            ADDRESSES[3], "127.0.0.1:0", {}, pki.issue(ADDRESSES[3]), settings=impatient
        )
        try:
            x.add_peer("silent", f"127.0.0.1:{silent.getsockname()[1]}")
            x.add_peer(b.address, b.target)
            digest = store(b).add_arrays(model())
            started = time.monotonic()
            x.send("silent", offer(3))
            assert time.monotonic() - started < 0.2
            assert x.fetch_arrays(digest, ["silent", b.address]) is not None
            # once per pass: a deadline may be a slow link, worth one more try
            assert x.fetch_blob(digest, ["silent"]) is None
            assert time.monotonic() - started < 4 * impatient.fetch_timeout_s
        finally:
            x.disconnect()
            silent.shutdown(socket.SHUT_RDWR)
            for connection in held:
                connection.close()


def test_close_delivers_what_is_queued(pki, swarm):
    a, b, _ = swarm
    a.send(b.address, offer(0))
    a.close()
    assert not a.alive
    assert isinstance(b.receive(3), UpdateOffer)
    a.send(b.address, offer(0))  # after close: dropped, no error
    assert b.receive(0.3) is None


def test_message_limit_drops_big_offers_but_fetches_stay_chunked(pki):
    small = replace(FAST, max_message_bytes=1 << 20, chunk_bytes=256 << 10)
    with running(pki, {1: {"settings": small}}) as (a, b, c):
        big = model(2.0)
        a.send(b.address, offer(0, arrays=big))
        assert b.receive(1) is None
        digest = store(a).add_arrays(big)
        fetched = b.fetch_arrays(digest, [a.address])
        assert fetched is not None and same_arrays(fetched, big)
    with pytest.raises(ConfigError):
        GrpcSettings(max_message_bytes=1 << 20, chunk_bytes=1 << 20)


# --- one protocol, two transports -----------------------------------------------


def test_swarm_over_grpc_seals_the_same_rounds_as_in_process(pki):
    """SwarmPeer threads talking real gRPC seal the in-process swarm's blocks:
    same genesis, same commitments, logical timestamps, same bytes."""
    spec = TaskSpec(local_steps=5)
    data = spec.load()
    initial = ArrayRecord(initial_model(spec, data.num_features).state_dict())
    names = [s.name for s in data.sites]
    rounds = 3
    majority = len(names) // 2 + 1
    reference = heart_reference(spec, initial, names, rounds, majority)
    assert len({model for model, _ in reference}) == rounds

    identities = simulated_identities(names, seed=0)
    strategy = build_strategy("FedAvg")
    genesis = make_genesis(
        identities, initial, SwarmParams(rounds, 10, majority, "FedAvg")
    )
    config = PeerConfig(
        rounds=rounds,
        round_timeout=10.0,
        min_peers=majority,
        update_wait=8.0,
        backups=2,
    )
    transports = [
        GrpcTransport(i.address, "127.0.0.1:0", {}, pki.issue(i.address), settings=FAST)
        for i in identities
    ]
    for transport in transports:
        for other in transports:
            transport.add_peer(other.address, other.target)
    ledgers = [Ledger.create(genesis, None) for _ in identities]
    peers = [
        SwarmPeer(
            identity=identity,
            sites=[i.address for i in identities],
            ledger=ledgers[k],
            client_app=make_client_app(spec),
            context=site_context(k, len(names)),
            strategy=strategy,
            transport=transports[k],
            store=MemoryModelStore(),
            config=config,
            initial_arrays=initial,
        )
        for k, identity in enumerate(identities)
    ]
    try:
        with quiet_flower(), ThreadPoolExecutor(len(peers)) as pool:
            list(pool.map(lambda peer: peer.run(), peers))
        for ledger in ledgers:
            sealed = [(r.model_hash, r.block_hash) for r in ledger.rounds()]
            assert sealed == reference
    finally:
        for transport in transports:
            transport.disconnect()
        for ledger in ledgers:
            ledger.close()


def heart_reference(spec, initial, names, rounds, min_peers):
    """(model hash, block hash) of each round of the in-process swarm."""
    result = run_swarm(
        make_client_app(spec),
        len(names),
        initial,
        rounds,
        site_names=names,
        min_peers=min_peers,
    )
    return [(record.model_hash, record.block_hash) for record in result.rounds]


def test_a_call_on_a_channel_closed_by_shutdown_fails_quietly(pki):
    """A site stopped mid-fetch: grpc refuses calls on its closed channels with
    ValueError; the fetch must end like any failed fetch, not in a traceback."""
    with running(pki, {}) as (a, b, _):
        digest = store(b).add_arrays(model())
        closed = grpc.secure_channel(b.target, a._credentials)
        closed.close()
        a._channel = lambda to: closed  # the channel it held when shutdown began
        a._closing = True
        assert a.fetch_arrays(digest, [b.address]) is None
        assert a.fetch_blob(digest, [b.address]) is None
