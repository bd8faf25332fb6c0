"""Peers as separate processes: gRPC over mutual TLS pinned to the swarm's CA.

Each site runs one gRPC server and keeps one channel per peer. Both sides
present a certificate issued by the swarm CA and check the other's against
it, so a machine whose certificate the CA did not issue fails at the TLS
handshake, before any swarmflower byte is read. An optional `authorize` hook
then maps the caller's certificate to its address, or refuses it (e.g. when
the ledger does not list it as enrolled).

No generated protobuf code: seven methods under `/swarmflower.Peer/` carry
the raw bytes of `wire.py`. A site with no listen address runs no server:
it reaches the swarm through the members it dials (`relay.py`). Messages
are fire-and-forget from a per-peer sender thread, so a slow or dead peer
never stalls the round loop, and fetches are streamed in chunks and checked
against the requested hash, so corrupted bytes are fetched again instead of
being returned.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TypeVar

import grpc
from flwr.app import ArrayRecord

from swarmflower.codec import content_hash
from swarmflower.errors import ConfigError, TransportError, WireFormatError
from swarmflower.ledger import BlockRef
from swarmflower.transport import wire
from swarmflower.transport.base import (
    JoinRequest,
    LeaveRequest,
    PeerMessage,
    PeerServiceAPI,
    TransportAPI,
    UpdateOffer,
)
from swarmflower.transport.relay import RelayHub, RelayLinks

log = logging.getLogger(__name__)

SERVICE = "swarmflower.Peer"
DELIVER = f"/{SERVICE}/Deliver"
FETCH_ARRAYS = f"/{SERVICE}/FetchArrays"
FETCH_BLOB = f"/{SERVICE}/FetchBlob"
FETCH_BLOCKS = f"/{SERVICE}/FetchBlocks"
FETCH_BLOCK = f"/{SERVICE}/FetchBlock"
HEAD = f"/{SERVICE}/Head"
RELAY = f"/{SERVICE}/Relay"

Authorize = Callable[[bytes], "str | None"]
"""Certificate PEM of a caller -> its address, or None to refuse it."""

Members = Callable[[], "Collection[str]"]
"""The swarm's members now: the only callers whose messages are heard (any
CA-issued caller may still fetch blocks, and ask to join)."""

Departed = Callable[[], "Collection[str]"]
"""Sites that left the swarm: they may still read the chain (to learn that
they left), never a model or an update."""

ChunkFilter = Callable[[str, int, bytes], bytes]
"""(kind, chunk index, bytes) -> bytes sent; kind is arrays, blob or blocks."""

T = TypeVar("T")

CHUNK_OVERHEAD = 64  # a chunk's envelope and header, with room to spare
MIN_CHUNK = 16 << 10


@dataclass(frozen=True)
class TlsMaterial:
    """PEM bytes: the swarm CA's certificate, this site's certificate and key."""

    ca_cert: bytes
    cert: bytes
    key: bytes


@dataclass(frozen=True)
class GrpcSettings:
    """Limits, timeouts and retries; the defaults suit hospital links."""

    chunk_bytes: int = 1 << 20
    # One Deliver carries a whole update, so this bounds the model size a peer
    # accepts from others; fetches are chunked and bounded by max_fetch_bytes.
    max_message_bytes: int = 256 << 20
    max_fetch_bytes: int = 8 << 30
    call_timeout_s: float = 30.0
    head_timeout_s: float = 3.0  # a head query is tiny: a peer slower is "down"
    # A Deliver may also take its size at this rate: big updates, slow links.
    slowest_link_bytes_s: float = float(1 << 20)
    fetch_timeout_s: float = 300.0
    attempts: int = 3  # per call, for UNAVAILABLE only
    backoff_s: float = 0.1  # doubled after each UNAVAILABLE, with jitter
    backoff_max_s: float = 2.0
    fetch_passes: int = 2  # how often a source that sent bad bytes is asked
    server_workers: int = 16
    inbox_size: int = 10_000
    reconnect_backoff_ms: int = 100
    max_reconnect_backoff_ms: int = 2_000
    cache_payloads: int = 4  # encoded models kept for serving many fetchers
    keepalive_ms: int = 10_000  # a silent link is dead after twice this

    def __post_init__(self) -> None:
        if self.chunk_bytes + CHUNK_OVERHEAD > self.max_message_bytes:
            raise ConfigError(
                f"chunks of {self.chunk_bytes} bytes do not fit in messages of "
                f"{self.max_message_bytes} bytes"
            )
        if self.attempts < 1 or self.fetch_passes < 1:
            raise ConfigError("attempts and fetch_passes must be at least 1")


def server_credentials(tls: TlsMaterial) -> grpc.ServerCredentials:
    """Serve with our certificate; demand a client certificate from the CA."""
    return grpc.ssl_server_credentials(
        [(tls.key, tls.cert)], root_certificates=tls.ca_cert, require_client_auth=True
    )


def channel_credentials(tls: TlsMaterial) -> grpc.ChannelCredentials:
    """Trust only servers the CA issued; present our certificate to them."""
    return grpc.ssl_channel_credentials(tls.ca_cert, tls.key, tls.cert)


def grpc_options(settings: GrpcSettings) -> list[tuple[str, int]]:
    """Message limits, reconnect pace and keepalive for servers and channels.

    Not `grpc.min_reconnect_backoff_ms`: gRPC also uses it as the time a
    connection attempt (TCP and TLS) may take, too short for a distant site.
    Keepalive pings end a relay stream whose link died silently (a cut
    cable sends no reset), so the site dials again and its relay stops
    claiming it; servers accept those pings.
    """
    return [
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.initial_reconnect_backoff_ms", settings.reconnect_backoff_ms),
        ("grpc.max_reconnect_backoff_ms", settings.max_reconnect_backoff_ms),
        ("grpc.keepalive_time_ms", settings.keepalive_ms),
        ("grpc.keepalive_timeout_ms", settings.keepalive_ms),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", settings.keepalive_ms),
        ("grpc.http2.max_ping_strikes", 0),
    ]


class _PeerServer:
    """The serving half: answers Deliver and the fetches of other peers."""

    def __init__(
        self,
        inbox: queue.Queue[PeerMessage],
        settings: GrpcSettings,
        authorize: Authorize | None,
        chunk_filter: ChunkFilter | None,
        members: Members | None = None,
        departed: Departed | None = None,
    ) -> None:
        self.inbox = inbox
        self.members = members
        self.departed = departed
        self.settings = settings
        self.authorize = authorize
        self.chunk_filter = chunk_filter
        self.service: PeerServiceAPI | None = None
        self.hub: RelayHub | None = None  # set by a transport that serves
        self._cache: OrderedDict[bytes, bytes] = OrderedDict()
        self._cache_lock = threading.Lock()

    def handler(self) -> grpc.GenericRpcHandler:
        # No (de)serializers: requests and responses are wire.py bytes.
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Deliver": grpc.unary_unary_rpc_method_handler(self.deliver),
                "FetchArrays": grpc.unary_stream_rpc_method_handler(self.fetch_arrays),
                "FetchBlob": grpc.unary_stream_rpc_method_handler(self.fetch_blob),
                "FetchBlocks": grpc.unary_stream_rpc_method_handler(self.fetch_blocks),
                "FetchBlock": grpc.unary_unary_rpc_method_handler(self.fetch_block),
                "Head": grpc.unary_unary_rpc_method_handler(self.head),
                "Relay": grpc.stream_stream_rpc_method_handler(self.relay),
            },
        )

    def _caller(self, context: grpc.ServicerContext) -> str | None:
        """The caller's address per `authorize`; aborts if it is refused."""
        if self.authorize is None:
            return None
        certs = context.auth_context().get("x509_pem_cert") or [b""]
        address = self.authorize(certs[0])
        if address is None:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "certificate refused")
        return address

    @staticmethod
    def _decode(context: grpc.ServicerContext, decode: Callable[[], T]) -> T:
        try:
            return decode()
        except WireFormatError as err:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
            raise  # abort raises; this keeps type checkers honest

    def deliver(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        caller = self._caller(context)
        try:
            self._take(caller, request, upstream=False)
        except Refused as err:
            context.abort(err.status, str(err))
        except WireFormatError as err:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        return b""

    def _is_member(self, site: str | None) -> bool:
        return site is None or self.members is None or site in self.members()

    def _take(self, caller: str | None, frame: bytes, upstream: bool) -> None:
        """Check one incoming message and act on it: into the inbox, or on
        through the relay hub. `upstream`: it came up `caller`'s relay stream."""
        kind = wire.message_kind(frame)
        if kind == wire.ROUTES:
            relay, sites = wire.decode_routes(frame)
            if not self._is_member(caller) or (caller and caller != relay):
                raise Refused(f"{caller} cannot say which sites {relay} relays")
            if self.hub is not None:
                self.hub.learn_routes(relay, sites)
            return
        if kind != wire.FORWARD:
            if kind != wire.JOIN and not self._is_member(caller):  # before decoding
                raise Refused(
                    f"{caller} is not a member of the swarm: it may only ask to join"
                )
            message = _checked(caller, wire.decode_message(frame), self._is_member)
            self.put(message)
            return
        forward = wire.decode_forward(frame)
        if upstream and forward.origin != caller:
            raise Refused(f"{caller} cannot speak for {forward.origin}")
        if not upstream and not self._is_member(caller):
            raise Refused(f"{caller} is not a member of the swarm: it relays nothing")
        message = _checked(
            forward.origin, wire.decode_message(forward.inner), self._is_member
        )
        if self.hub is None:
            raise Refused("this site relays nothing", grpc.StatusCode.UNIMPLEMENTED)
        self.hub.forwarded(frame, forward, upstream, lambda: self.put(message))

    def put(self, message: PeerMessage) -> None:
        """Into the inbox the round loop reads (Refused when it is full)."""
        try:
            self.inbox.put_nowait(message)
        except queue.Full:
            raise Refused("inbox full", grpc.StatusCode.RESOURCE_EXHAUSTED) from None

    def relay(self, frames: Iterator[bytes], context) -> Iterator[bytes]:
        """A site that only dials out attaches: what it sends comes up
        `frames`; what the swarm sends it goes down the returned stream."""
        caller = self._caller(context)
        if caller is None or self.hub is None:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                "relaying needs a site that serves and knows its callers",
            )
        assert caller is not None and self.hub is not None
        hub = self.hub
        outbox = hub.attach(caller)
        reader = threading.Thread(
            target=self._read_upstream, args=(caller, frames), daemon=True
        )
        reader.start()
        try:
            while context.is_active() and not hub.closed:
                try:
                    frame = outbox.get(timeout=0.5)
                except queue.Empty:
                    continue
                if frame is None:
                    return
                yield frame
        finally:
            hub.detach(caller, outbox)

    def _read_upstream(self, caller: str, frames: Iterator[bytes]) -> None:
        try:
            for frame in frames:
                try:
                    self._take(caller, frame, upstream=True)
                except (Refused, WireFormatError) as err:
                    log.warning("relayed frame from %s refused: %s", caller, err)
        except grpc.RpcError:
            pass  # the stream ended: `relay` detaches the site

    def _service(self, context: grpc.ServicerContext) -> PeerServiceAPI:
        if self.service is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "this peer serves nothing yet")
        assert self.service is not None
        return self.service

    def _arrays_payload(self, service: PeerServiceAPI, digest: bytes) -> bytes | None:
        with self._cache_lock:
            if (payload := self._cache.get(digest)) is not None:
                self._cache.move_to_end(digest)
                return payload
        arrays = service.serve_arrays(digest)
        if arrays is None:
            return None
        payload = wire.encode_arrays(arrays)
        with self._cache_lock:
            self._cache[digest] = payload
            while len(self._cache) > self.settings.cache_payloads:
                self._cache.popitem(last=False)
        return payload

    def _stream(
        self, kind: str, payload: bytes | None, request: tuple[bytes, int], context
    ) -> Iterator[bytes]:
        digest, max_chunk = request
        if payload is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no {kind} {digest.hex()}")
        assert payload is not None
        # The asker's limit decides, down to a floor that keeps framing cheap.
        size = max(min(self.settings.chunk_bytes, max_chunk), MIN_CHUNK)
        for chunk in wire.split_chunks(payload, digest, size):
            if self.chunk_filter is not None:
                data = self.chunk_filter(kind, chunk.index, chunk.data)
                chunk = replace(chunk, data=data)
            yield wire.encode_chunk(chunk)

    def _model_reader(self, context: grpc.ServicerContext) -> None:
        """A caller that may read models and updates: not a site that left."""
        caller = self._caller(context)
        if caller is not None and self.departed and caller in self.departed():
            context.abort(
                grpc.StatusCode.PERMISSION_DENIED, f"{caller} has left the swarm"
            )

    def fetch_arrays(self, request: bytes, context) -> Iterator[bytes]:
        self._model_reader(context)
        asked = self._decode(
            context, lambda: wire.decode_fetch(request, wire.FETCH_ARRAYS)
        )
        payload = self._arrays_payload(self._service(context), asked[0])
        yield from self._stream("arrays", payload, asked, context)

    def fetch_blob(self, request: bytes, context) -> Iterator[bytes]:
        self._model_reader(context)
        asked = self._decode(
            context, lambda: wire.decode_fetch(request, wire.FETCH_BLOB)
        )
        payload = self._service(context).serve_blob(asked[0])
        yield from self._stream("blob", payload, asked, context)

    def fetch_blocks(self, request: bytes, context) -> Iterator[bytes]:
        self._caller(context)
        start, end = self._decode(context, lambda: wire.decode_block_range(request))
        blocks = self._service(context).serve_blocks(start, end)
        for index, block in enumerate(blocks):
            if self.chunk_filter is not None:
                block = self.chunk_filter("blocks", index, block)
            yield wire.encode_block(start + index, block)

    def fetch_block(self, request: bytes, context) -> bytes:
        self._caller(context)
        block_hash = self._decode(context, lambda: wire.decode_block_request(request))
        block = self._service(context).serve_block(block_hash)
        if block is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no block {block_hash.hex()}")
        assert block is not None
        return block

    def head(self, request: bytes, context) -> bytes:
        self._caller(context)
        self._decode(context, lambda: wire.decode_head_request(request))
        return wire.encode_head(self._service(context).serve_head())


class GrpcTransport(TransportAPI):
    """One site's end of a swarm of processes talking gRPC over mutual TLS.

    `peers` maps each site's checksum address to its `host:port`; the host
    must be a name or IP in that site's certificate. The server starts at
    construction (port 0 picks a free port, see `port`). With `listen` ""
    the site serves nothing and every peer in `peers` is one of its relays.
    """

    def __init__(
        self,
        address: str,
        listen: str,
        peers: Mapping[str, str],
        tls: TlsMaterial,
        *,
        authorize: Authorize | None = None,
        chunk_filter: ChunkFilter | None = None,
        settings: GrpcSettings | None = None,
        members: Members | None = None,
        departed: Departed | None = None,
    ) -> None:
        self.address = address
        self.settings = settings or GrpcSettings()
        self.inbox: queue.Queue[PeerMessage] = queue.Queue(self.settings.inbox_size)
        self._peers = dict(peers)
        self._credentials = channel_credentials(tls)
        self._options = grpc_options(self.settings)
        self._max_chunk = self.settings.max_message_bytes - CHUNK_OVERHEAD
        self._channels: dict[str, grpc.Channel] = {}
        self._senders: dict[str, ThreadPoolExecutor] = {}
        self._lock = threading.Lock()
        self._alive = True
        self._closing = False
        # (Unix time, peer, reachable) each time a peer that answered stops
        # answering, or one that stopped answers again: the site's event log
        self.link_changes: list[tuple[float, str, bool]] = []
        self._reachable: dict[str, bool] = {}
        self._handlers = _PeerServer(
            self.inbox, self.settings, authorize, chunk_filter, members, departed
        )
        self._members = members
        self._hub: RelayHub | None = None
        self._links: RelayLinks | None = None
        self._server: grpc.Server | None = None
        self.port, self.target = 0, ""
        if not listen:
            self._links = RelayLinks(
                address,
                list(self._peers),
                self._channel,
                RELAY,
                self._from_relay,
                on_change=self._reached,
            )
            return
        self._hub = self._handlers.hub = RelayHub(address, self._queue, self._others)
        self._workers = ThreadPoolExecutor(
            self.settings.server_workers, thread_name_prefix="swarm-serve"
        )
        self._server = grpc.server(
            self._workers,
            handlers=[self._handlers.handler()],
            options=self._options,
        )
        host = listen.rsplit(":", 1)[0]
        try:
            self.port = self._server.add_secure_port(listen, server_credentials(tls))
        except RuntimeError as err:
            raise TransportError(f"cannot listen on {listen}: {err}") from err
        if not self.port:
            raise TransportError(f"cannot listen on {listen}")
        self.target = f"{host}:{self.port}"
        self._server.start()

    @property
    def relays(self) -> list[str]:
        """For a site that only dials out: the members whose stream is open."""
        return self._links.live() if self._links is not None else []

    # -- directory -------------------------------------------------------------

    def add_peer(self, address: str, target: str) -> None:
        """Learn or update where a peer listens."""
        with self._lock:
            if self._peers.get(address) != target and address in self._channels:
                self._channels.pop(address).close()
            self._peers[address] = target

    def _others(self) -> list[str]:
        with self._lock:
            return [a for a in self._peers if a != self.address]

    def _channel(self, to: str) -> grpc.Channel | None:
        with self._lock:
            if (channel := self._channels.get(to)) is None and to in self._peers:
                channel = grpc.secure_channel(
                    self._peers[to], self._credentials, options=self._options
                )
                self._channels[to] = channel
            return channel

    # -- TransportAPI ----------------------------------------------------------

    def serve(self, service: PeerServiceAPI) -> None:
        self._handlers.service = service

    @property
    def alive(self) -> bool:
        return self._alive

    def send(self, to: str, message: PeerMessage) -> None:
        if to != self.address:
            self._post(to, wire.encode_message(message))

    def broadcast(self, message: PeerMessage) -> None:
        payload = wire.encode_message(message)  # once, for every peer
        if self._links is not None:  # the relay passes it to everyone
            if not self._links.send(wire.encode_forward(self.address, "", payload)):
                log.info("%s: no relay reachable; broadcast dropped", self.address)
            return
        everyone = dict.fromkeys(self._others())
        if self._members is not None:
            everyone.update(dict.fromkeys(self._members()))
        if self._hub is not None:
            everyone.update(dict.fromkeys(self._hub.attached()))
        for to in everyone:
            if to != self.address:
                self._post(to, payload)

    def receive(self, timeout: float) -> PeerMessage | None:
        try:
            return self.inbox.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            return None

    def fetch_arrays(self, digest: bytes, sources: Sequence[str]) -> ArrayRecord | None:
        request = wire.encode_fetch(wire.FETCH_ARRAYS, digest, self._max_chunk)
        payload = self._fetch(FETCH_ARRAYS, request, digest, sources)
        try:
            return None if payload is None else wire.decode_arrays(payload)
        except WireFormatError:  # the hash matched, so it names a blob, not arrays
            return None

    def fetch_blob(self, digest: bytes, sources: Sequence[str]) -> bytes | None:
        request = wire.encode_fetch(wire.FETCH_BLOB, digest, self._max_chunk)
        return self._fetch(FETCH_BLOB, request, digest, sources)

    def fetch_blocks(self, start: int, end: int) -> list[bytes]:
        """The longest run of blocks from `start` that any peer holds."""
        peers = self._others()
        if not self._alive or not peers or end <= start:
            return []
        request = wire.encode_block_range(start, end)
        with ThreadPoolExecutor(min(len(peers), 8)) as pool:
            found = pool.map(lambda to: self._blocks_from(to, request, start), peers)
            return max(found, key=len, default=[])

    def fetch_block(self, block_hash: bytes, sources: Sequence[str]) -> bytes | None:
        request = wire.encode_block_request(block_hash)
        timeout = self.settings.call_timeout_s
        for source in self._sources(sources):
            channel = self._channel(source) if source != self.address else None
            if channel is None or not self._alive:
                continue
            call = channel.unary_unary(FETCH_BLOCK)
            try:
                return self._retrying(lambda call=call: call(request, timeout=timeout))
            except grpc.RpcError as err:
                log.info("%s: block from %s: %s", self.address, source, _why(err))
        return None

    def peer_head(self, peer: str) -> BlockRef | None:
        channel = self._channel(peer) if peer != self.address else None
        if channel is None or not self._alive:
            return None
        try:
            reply = channel.unary_unary(HEAD)(
                wire.encode_head_request(), timeout=self.settings.head_timeout_s
            )
            head = wire.decode_head(reply)
        except (grpc.RpcError, WireFormatError) as err:
            log.debug("%s: head of %s: %s", self.address, peer, err)
            if isinstance(err, grpc.RpcError):
                self._answered(peer, err)
            return None
        self._reached(peer, True)
        return head

    def disconnect(self) -> None:
        """Drop off at once, as a killed process does: nothing is drained."""
        self._alive = False
        self._closing = True
        self._stop_relaying()
        if self._server is not None:
            self._server.stop(0)
            self._workers.shutdown(wait=False, cancel_futures=True)
        self._shut_clients(wait=False)

    def close(self) -> None:
        """Leave cleanly: deliver what is queued, finish calls being served."""
        self._closing = True
        self._shut_clients(wait=True)
        self._stop_relaying()
        if self._server is not None:
            self._server.stop(self.settings.call_timeout_s).wait()
            self._workers.shutdown(wait=True)
        self._alive = False

    def _stop_relaying(self) -> None:
        if self._links is not None:
            self._links.stop()
        if self._hub is not None:
            self._hub.close()

    # -- relaying --------------------------------------------------------------

    def _from_relay(self, relay: str, frame: bytes) -> None:
        """A frame one of this site's relays pushed down its stream."""
        try:
            kind = wire.message_kind(frame)
            if kind == wire.ROUTES:
                return  # the relay's greeting: the stream is open
            if kind == wire.FORWARD:
                forward = wire.decode_forward(frame)
                sender, message = forward.origin, wire.decode_message(forward.inner)
            else:
                sender, message = relay, wire.decode_message(frame)
            self._handlers.put(_checked(sender, message, lambda _: True))
        except (Refused, WireFormatError) as err:
            log.warning("%s: frame from relay %s refused: %s", self.address, relay, err)

    # -- sending ---------------------------------------------------------------

    def _post(self, to: str, payload: bytes) -> None:
        """Send `payload` to `to`: directly if this site dials it, else
        through a relay (this site's own, or the one that carries `to`)."""
        with self._lock:
            dialled = to in self._peers
        if dialled:
            self._queue(to, payload)
        elif self._links is not None:
            if not self._links.send(wire.encode_forward(self.address, to, payload)):
                log.info("%s: no relay reachable; message dropped", self.address)
        elif self._hub is not None and not self._closing:
            self._hub.send(to, payload)

    def _queue(self, to: str, payload: bytes) -> None:
        """Queue `payload` on `to`'s own sender thread (order kept per peer)."""
        with self._lock:
            if self._closing or to not in self._peers:
                return
            sender = self._senders.get(to)
            if sender is None:
                sender = ThreadPoolExecutor(
                    1, thread_name_prefix=f"swarm-send-{to[:8]}"
                )
                self._senders[to] = sender
            sender.submit(self._deliver, to, payload)

    def _deliver(self, to: str, payload: bytes) -> None:
        channel = self._channel(to)
        if channel is None or not self._alive:
            return
        call = channel.unary_unary(DELIVER)
        settings = self.settings
        timeout = settings.call_timeout_s + len(payload) / settings.slowest_link_bytes_s
        try:
            self._retrying(lambda: call(payload, timeout=timeout))
        except grpc.RpcError as err:
            log.warning("%s: message to %s dropped: %s", self.address, to, _why(err))
            self._answered(to, err)
            return
        self._reached(to, True)

    def _answered(self, peer: str, err: grpc.RpcError) -> None:
        """A failed call: the link is down if the peer could not be reached."""
        if err.code() in (
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.DEADLINE_EXCEEDED,
        ):
            self._reached(peer, False)

    def _reached(self, peer: str, reachable: bool) -> None:
        """Whether `peer` answered now; a change is a link event (a peer
        never reached yet is starting, not disconnected)."""
        if not self._alive or self._closing:
            return  # this site is going: its links say nothing of the peers
        with self._lock:
            before = self._reachable.get(peer)
            if before is None and not reachable:
                return
            self._reachable[peer] = reachable
            if before is not None and before != reachable:
                self.link_changes.append((time.time(), peer, reachable))
                log.info(
                    "%s: %s %s",
                    self.address,
                    peer,
                    "reachable again" if reachable else "unreachable",
                )

    def _unless_closed(self, attempt: Callable[[], T]) -> T:
        """Run `attempt`; a call on a channel this transport has already closed
        (the site is shutting down) fails like any other call, not with grpc's
        ValueError."""
        try:
            return attempt()
        except ValueError as err:
            if not (self._closing or not self._alive):
                raise
            raise ChannelClosed(str(err)) from None

    def _retrying(self, attempt: Callable[[], T]) -> T:
        """Run `attempt`, again with exponential backoff while UNAVAILABLE."""
        delay = self.settings.backoff_s
        for remaining in range(self.settings.attempts - 1, -1, -1):
            try:
                return self._unless_closed(attempt)
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.UNAVAILABLE or not remaining:
                    raise
                if not self._alive:
                    raise
            time.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self.settings.backoff_max_s)
        raise AssertionError("unreachable")

    def _shut_clients(self, wait: bool) -> None:
        with self._lock:
            senders, self._senders = list(self._senders.values()), {}
        for sender in senders:
            sender.shutdown(wait=wait, cancel_futures=not wait)
        with self._lock:
            channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            channel.close()

    # -- fetching --------------------------------------------------------------

    def _sources(self, sources: Sequence[str]) -> list[str]:
        """Where to fetch from: `sources` this site can reach, then (for a
        site that only dials out) its relays, which hold what the swarm holds."""
        with self._lock:
            reachable = [s for s in dict.fromkeys(sources) if s in self._peers]
            if self._links is not None:
                reachable += [s for s in self._peers if s not in reachable]
        return reachable

    def _fetch(
        self, method: str, request: bytes, digest: bytes, sources: Sequence[str]
    ) -> bytes | None:
        """Ask sources in turn; ask again those that sent bytes not matching."""
        candidates = [s for s in self._sources(sources) if s != self.address]
        for _ in range(self.settings.fetch_passes):
            again = []
            for source in candidates:
                if not self._alive:
                    return None
                payload, worth_retrying = self._fetch_from(
                    source, method, request, digest
                )
                if payload is not None:
                    return payload
                if worth_retrying:
                    again.append(source)
            candidates = again
        return None

    def _fetch_from(
        self, source: str, method: str, request: bytes, digest: bytes
    ) -> tuple[bytes | None, bool]:
        """The verified payload, or None and whether asking again may help."""
        channel = self._channel(source)
        if channel is None:
            return None, False
        call = channel.unary_stream(method)

        def attempt() -> bytes:
            responses = call(request, timeout=self.settings.fetch_timeout_s)
            try:
                chunks = (wire.decode_chunk(r) for r in responses)
                return wire.join_chunks(chunks, digest, self.settings.max_fetch_bytes)
            finally:
                responses.cancel()

        try:
            payload = self._retrying(attempt)
        except grpc.RpcError as err:
            log.info("%s: fetch from %s failed: %s", self.address, source, _why(err))
            return None, err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        except WireFormatError as err:
            log.warning("%s: bad stream from %s: %s", self.address, source, err)
            return None, True
        if content_hash(payload) != digest:
            log.warning(
                "%s: %s sent bytes not matching %s", self.address, source, digest.hex()
            )
            return None, True
        return payload, False

    def _blocks_from(self, source: str, request: bytes, start: int) -> list[bytes]:
        channel = self._channel(source)
        if channel is None:
            return []
        blocks: list[bytes] = []
        responses = channel.unary_stream(FETCH_BLOCKS)(
            request, timeout=self.settings.fetch_timeout_s
        )
        try:
            for response in responses:
                height, block = wire.decode_block(response)
                if height != start + len(blocks):
                    break
                blocks.append(block)
        except (grpc.RpcError, WireFormatError) as err:
            log.info("%s: blocks from %s stopped: %s", self.address, source, err)
        finally:
            responses.cancel()
        return blocks


class Refused(Exception):
    """A message a peer will not take, with the gRPC status that says why."""

    def __init__(
        self, why: str, status: grpc.StatusCode = grpc.StatusCode.PERMISSION_DENIED
    ) -> None:
        super().__init__(why)
        self.status = status


def _checked(
    sender: str | None, message: PeerMessage, is_member: Callable[[str | None], bool]
) -> PeerMessage:
    """`message` if `sender` may send it: a member, or anyone asking to join,
    and never on another site's behalf (blocks speak for no one)."""
    if not isinstance(message, JoinRequest) and not is_member(sender):
        raise Refused(f"{sender} is not a member of the swarm: it may only ask to join")
    speaker = _speaker(message)
    if sender is not None and speaker and speaker.lower() != sender.lower():
        raise Refused(f"{sender} cannot speak for {speaker}")
    return message


def _speaker(message: PeerMessage) -> str:
    """The site a message speaks for ("" for blocks, which anyone relays)."""
    if isinstance(message, UpdateOffer):
        return message.commitment.site
    if isinstance(message, JoinRequest):
        return message.address
    if isinstance(message, LeaveRequest):
        return message.site
    return ""


class ChannelClosed(grpc.RpcError):
    """A call made after the site closed its own channels: no reply will come."""

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.CANCELLED

    def details(self) -> str:
        return str(self)


def _why(err: grpc.RpcError) -> str:
    details = err.details() if hasattr(err, "details") else ""
    return f"{err.code().name} {details}".strip()
