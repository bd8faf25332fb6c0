"""Sites that only dial out, and the members that relay for them.

Hospital firewalls often let a site open connections but never accept one.
Such a site (no listen address) opens one long-lived bidirectional gRPC
stream to each member it can reach, its relays, on the same mutually
authenticated connection its fetches use. Both directions carry ordinary
`wire` messages: what the site sends for others goes up as FORWARD, what the
others send it comes down. Its fetches go to its relays like any fetch.

A relay only passes bytes on; it cannot forge them. An update carries its
site's signed commitment, a block is validated on every replica, a leave is
signed, and a fetch is checked against the hash asked for. A relay can drop
traffic, as a cut link does, and the site's other relays carry it.

Forwarding at a member X, for FORWARD(origin, destination, inner):

- into X's own inbox when X is the destination (or everyone);
- down the stream of every site attached to X that it is for (never back
  to the origin);
- only when it came up the origin's own stream: on to the destination (or
  to every site X dials), directly or through the destination's relay.

So a message takes at most three hops and never loops. Relays tell the
others which sites they carry (ROUTES, when that changes and every few
seconds); a site with no known route is reached by asking every member.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Collection, Iterator

import grpc

from swarmflower.transport import wire

log = logging.getLogger(__name__)

ROUTES_EVERY_S = 5.0  # how often a relay repeats which sites it carries
ROUTE_LIFETIME_S = 3 * ROUTES_EVERY_S  # a route not repeated by then is gone
PUSH_QUEUE = 1_000  # frames waiting for an attached site; more are dropped

Post = Callable[[str, bytes], None]
"""Send bytes to a site this member dials (its own sender thread)."""


class RelayHub:
    """A member's relay side: the sites attached to it, and where the sites
    attached elsewhere can be reached."""

    def __init__(
        self,
        address: str,
        post: Post,
        dialled: Callable[[], Collection[str]],
    ) -> None:
        self.address = address
        self._post = post
        self._dialled = dialled
        self._attached: dict[str, list[queue.Queue[bytes | None]]] = {}
        self._routes: dict[str, dict[str, float]] = {}  # site -> relay -> until
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._announcer: threading.Thread | None = None

    # -- sites attached here --------------------------------------------------

    def attach(self, site: str) -> queue.Queue[bytes | None]:
        """A stream from `site` opened: what is pushed to it goes in this queue."""
        outbox: queue.Queue[bytes | None] = queue.Queue(PUSH_QUEUE)
        with self._lock:
            self._attached.setdefault(site, []).append(outbox)
            if self._announcer is None:
                self._announcer = threading.Thread(
                    target=self._announce_routes, name="swarm-routes", daemon=True
                )
                self._announcer.start()
        log.info("%s: relaying for %s", self.address, site)
        self._announce()
        # the first frame down the stream tells the site it is open
        outbox.put_nowait(wire.encode_routes(self.address, self.attached()))
        return outbox

    def detach(self, site: str, outbox: queue.Queue[bytes | None]) -> None:
        with self._lock:
            streams = self._attached.get(site, [])
            if outbox in streams:
                streams.remove(outbox)
            if not streams:
                self._attached.pop(site, None)
        log.info("%s: no longer relaying for %s", self.address, site)
        self._announce()

    def attached(self) -> list[str]:
        with self._lock:
            return list(self._attached)

    def push(self, site: str, frame: bytes) -> bool:
        """Send `frame` down `site`'s stream; False if it is not attached here."""
        with self._lock:
            streams = list(self._attached.get(site, ()))
        for outbox in streams[-1:]:  # its newest stream (an old one may be dead)
            try:
                outbox.put_nowait(frame)
            except queue.Full:
                log.warning("%s: %s is not reading; frame dropped", self.address, site)
        return bool(streams)

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            streams = [s for group in self._attached.values() for s in group]
        for outbox in streams:
            with contextlib.suppress(queue.Full):
                outbox.put_nowait(None)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    # -- routes ---------------------------------------------------------------

    def learn_routes(self, relay: str, sites: Collection[str]) -> None:
        """`relay` carries `sites` now (and no others)."""
        until = time.monotonic() + ROUTE_LIFETIME_S
        with self._lock:
            for relays in self._routes.values():
                relays.pop(relay, None)
            for site in sites:
                if site != self.address:
                    self._routes.setdefault(site, {})[relay] = until

    def relays_of(self, site: str) -> list[str]:
        """The members that said lately that they carry `site`."""
        now = time.monotonic()
        with self._lock:
            relays = self._routes.get(site, {})
            return [r for r, until in relays.items() if until > now]

    def _announce(self) -> None:
        payload = wire.encode_routes(self.address, self.attached())
        for site in self._dialled():
            self._post(site, payload)

    def _announce_routes(self) -> None:
        """Repeat the routes while this member relays, so late-comers learn them."""
        while not self._closed.wait(ROUTES_EVERY_S):
            if self.attached():
                self._announce()

    # -- forwarding -----------------------------------------------------------

    def send(self, to: str, payload: bytes) -> None:
        """A message from this member to a site it cannot dial."""
        forward = wire.encode_forward(self.address, to, payload)
        if self.push(to, forward):
            return
        relays = self.relays_of(to) or list(self._dialled())  # unknown: ask all
        for relay in relays:
            if relay != to:
                self._post(relay, forward)

    def forwarded(
        self,
        frame: bytes,
        fwd: wire.Forwarded,
        upstream: bool,
        deliver: Callable[[], None],
    ) -> None:
        """Pass on a FORWARD (the rules in the module docstring); `upstream`
        if it came up the origin's own stream; `deliver` puts its message in
        this site's inbox. The caller checked the message."""
        to = fwd.destination
        if to in ("", self.address):
            deliver()
        for site in self.attached():
            if site != fwd.origin and to in ("", site):
                self.push(site, frame)
        if not upstream or to == self.address:
            return  # a second hop goes no further than the attached sites
        dialled = self._dialled()
        if to == "":
            for site in dialled:
                if site != fwd.origin:
                    self._post(site, frame)
        elif to in dialled:
            self._post(to, frame)
        elif to not in self.attached():
            for relay in self.relays_of(to) or dialled:
                if relay not in (to, fwd.origin):
                    self._post(relay, frame)


class RelayLinks:
    """An outbound-only site's side: one stream to each of its relays, opened
    again with backoff when it breaks."""

    def __init__(
        self,
        address: str,
        relays: Collection[str],
        channel: Callable[[str], grpc.Channel | None],
        method: str,
        receive: Callable[[str, bytes], None],
        backoff_s: float = 0.2,
        backoff_max_s: float = 5.0,
        on_change: Callable[[str, bool], None] | None = None,
    ) -> None:
        self.address = address
        self._relays = tuple(relays)
        self._channel = channel
        self._method = method
        self._receive = receive  # (relay, frame) for each frame pushed to us
        self._on_change = on_change  # (relay, open) when a stream opens or breaks
        self._backoff = (backoff_s, backoff_max_s)
        self._live: dict[str, queue.Queue[bytes | None]] = {}
        self._calls: dict[str, grpc.Future] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._threads = [
            threading.Thread(
                target=self._keep_open, args=(relay,), name="swarm-link", daemon=True
            )
            for relay in self._relays
        ]
        for thread in self._threads:
            thread.start()

    def live(self) -> list[str]:
        """The relays whose stream is open now."""
        with self._lock:
            return list(self._live)

    def send(self, frame: bytes) -> bool:
        """Send `frame` up one open stream (a random one); False if none is."""
        with self._lock:
            outboxes = list(self._live.values())
        if not outboxes:
            return False
        random.choice(outboxes).put(frame)
        return True

    def stop(self) -> None:
        self._stopped.set()
        with self._lock:
            outboxes, calls = list(self._live.values()), list(self._calls.values())
        for outbox in outboxes:
            outbox.put(None)
        for call in calls:
            call.cancel()

    def _keep_open(self, relay: str) -> None:
        delay, longest = self._backoff
        while not self._stopped.is_set():
            opened = self._stream(relay)
            if self._stopped.is_set():
                return
            delay = self._backoff[0] if opened else min(delay * 2, longest)
            self._stopped.wait(delay * random.uniform(0.5, 1.0))

    def _stream(self, relay: str) -> bool:
        """One stream to `relay`, until it breaks; True if it was ever open."""
        channel = self._channel(relay)
        if channel is None:
            return False
        outbox: queue.Queue[bytes | None] = queue.Queue()

        def frames() -> Iterator[bytes]:
            while (frame := outbox.get()) is not None:
                yield frame

        call = channel.stream_stream(self._method)(frames())
        with self._lock:
            self._calls[relay] = call
        opened = False
        try:
            for frame in call:  # the relay's first frame says the stream is up
                if not opened:
                    opened = True
                    with self._lock:
                        self._live[relay] = outbox
                    log.info("%s: relayed by %s", self.address, relay)
                    if self._on_change is not None:
                        self._on_change(relay, True)
                self._receive(relay, frame)
        except grpc.RpcError as err:
            log.info("%s: link to relay %s: %s", self.address, relay, err.code().name)
        finally:
            with self._lock:
                self._live.pop(relay, None)
                self._calls.pop(relay, None)
            outbox.put(None)
            call.cancel()
            if opened and self._on_change is not None:
                self._on_change(relay, False)
        return opened
