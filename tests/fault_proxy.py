"""A TCP fault proxy between sites, for the network-fault tests (asyncio).

`FaultProxy` listens on a loopback port and forwards every connection to one
site's real port, through faults that can change while it runs: added
latency per chunk, a bandwidth limit, connections reset (RST) after a given
number of bytes, or the link cut (new connections refused, open ones
dropped). Sites reach each other through it by naming the proxy's port in
their peer lists; TLS is end to end, so the proxy sees only ciphertext, as
a router would. Runs in a thread of its own; only loopback is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from dataclasses import dataclass

CHUNK = 16 * 1024
_START_TIMEOUT_S = 10


@dataclass
class Faults:
    """What the proxy does to traffic now (read at every chunk)."""

    latency_s: float = 0.0  # added to every chunk, each way
    bytes_per_s: float = 0.0  # 0: unlimited
    reset_after_bytes: int = 0  # reset each connection after this many (0: never)
    cut: bool = False


class FaultProxy:
    """Forwards 127.0.0.1:`port` to 127.0.0.1:`target_port`, with `faults`."""

    def __init__(self, target_port: int, faults: Faults | None = None) -> None:
        self.target_port = target_port
        self.faults = faults or Faults()
        self.resets = 0  # connections reset by the proxy
        self.forwarded = 0  # bytes, both ways
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT_S):
            raise RuntimeError("the fault proxy did not start")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._accept, "127.0.0.1", 0)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    def close(self) -> None:
        def stop() -> None:
            self._server.close()
            for writer in list(self._writers):
                _reset(writer)
            self._loop.stop()

        self._loop.call_soon_threadsafe(stop)
        self._thread.join(timeout=5)

    async def _accept(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if self.faults.cut:
            _reset(writer)
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self.target_port
            )
        except OSError:
            _reset(writer)
            return
        self._writers |= {writer, upstream_writer}
        budget = [self.faults.reset_after_bytes]  # shared by both directions
        pumps = [
            self._pump(reader, upstream_writer, budget),
            self._pump(upstream_reader, writer, budget),
        ]
        await asyncio.gather(*pumps, return_exceptions=True)
        for end in (writer, upstream_writer):
            self._writers.discard(end)
            if not end.is_closing():
                end.close()

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        budget: list[int],
    ) -> None:
        while data := await reader.read(CHUNK):
            faults = self.faults
            if faults.cut:
                break
            if faults.latency_s:
                await asyncio.sleep(faults.latency_s)
            if faults.bytes_per_s:
                await asyncio.sleep(len(data) / faults.bytes_per_s)
            if budget[0]:
                budget[0] -= len(data)
                if budget[0] <= 0:
                    self.resets += 1
                    break
            writer.write(data)
            self.forwarded += len(data)
            await writer.drain()
        _reset(writer)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST (SO_LINGER 0), as a dropped middlebox would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
    writer.close()
