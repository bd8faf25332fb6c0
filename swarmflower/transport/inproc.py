"""Peers as threads in one process: queues for messages, direct calls for fetches.

Used by `swarmflower simulate --engine inproc`, `run_swarm` and the tests. A
crash is simulated by cutting a peer off: it stops receiving and serving, and
its own thread stops at its next step.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence

from flwr.app import ArrayRecord

from swarmflower.ledger import BlockRef
from swarmflower.transport.base import PeerMessage, PeerServiceAPI, TransportAPI


class InProcNetwork:
    """The switchboard that connects the in-process transports."""

    def __init__(self) -> None:
        self._transports: dict[str, InProcTransport] = {}
        self._down: set[str] = set()
        self._lock = threading.Lock()

    def connect(self, address: str) -> InProcTransport:
        transport = InProcTransport(self, address)
        with self._lock:
            self._transports[address] = transport
            self._down.discard(address)
        return transport

    def crash(self, address: str) -> None:
        """Cut a peer off, as if its process had been killed."""
        with self._lock:
            self._down.add(address)

    def is_up(self, address: str) -> bool:
        with self._lock:
            return address in self._transports and address not in self._down

    def deliver(self, to: str, message: PeerMessage) -> None:
        if self.is_up(to):
            self._transports[to].inbox.put(message)

    def addresses(self) -> list[str]:
        with self._lock:
            return list(self._transports)

    def service(self, address: str) -> PeerServiceAPI | None:
        if not self.is_up(address):
            return None
        return self._transports[address].service


class InProcTransport(TransportAPI):
    """One thread-peer's end of the `InProcNetwork`."""

    def __init__(self, network: InProcNetwork, address: str) -> None:
        self.network = network
        self.address = address
        self.inbox: queue.Queue[PeerMessage] = queue.Queue()
        self.service: PeerServiceAPI | None = None

    def serve(self, service: PeerServiceAPI) -> None:
        self.service = service

    @property
    def alive(self) -> bool:
        return self.network.is_up(self.address)

    def disconnect(self) -> None:
        self.network.crash(self.address)

    def send(self, to: str, message: PeerMessage) -> None:
        if self.alive:
            self.network.deliver(to, message)

    def broadcast(self, message: PeerMessage) -> None:
        for address in self.network.addresses():
            if address != self.address:
                self.send(address, message)

    def receive(self, timeout: float) -> PeerMessage | None:
        try:
            return self.inbox.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            return None

    def _services(self, sources: Sequence[str]):
        for address in sources:
            if address != self.address and (service := self.network.service(address)):
                yield service

    def fetch_arrays(self, digest: bytes, sources: Sequence[str]) -> ArrayRecord | None:
        for service in self._services(sources):
            if (found := service.serve_arrays(digest)) is not None:
                return found
        return None

    def fetch_blob(self, digest: bytes, sources: Sequence[str]) -> bytes | None:
        for service in self._services(sources):
            if (found := service.serve_blob(digest)) is not None:
                return found
        return None

    def fetch_blocks(self, start: int, end: int) -> list[bytes]:
        best: list[bytes] = []
        for service in self._services(self.network.addresses()):
            blocks = service.serve_blocks(start, end)
            if len(blocks) > len(best):
                best = blocks
        return best

    def fetch_block(self, block_hash: bytes, sources: Sequence[str]) -> bytes | None:
        for service in self._services(sources):
            if (found := service.serve_block(block_hash)) is not None:
                return found
        return None

    def peer_head(self, peer: str) -> BlockRef | None:
        service = next(self._services([peer]), None)
        return None if service is None else service.serve_head()
