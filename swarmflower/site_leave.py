"""`swarmflower leave`: a site asks the running swarm to let it go.

The request is one signature by the site's own key (`sign_leave`), sent to
every member over the site's mutual-TLS identity. Whoever leads next puts
it in its block, every replica checks the signature, and from that block on
the site is neither counted, elected nor let in. The command follows the
members' chain until a block carries the leave, so it can say which round.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from swarmflower.errors import ConfigError, TransportError
from swarmflower.ledger import InvalidBlock, Ledger
from swarmflower.ledger.commitments import sign_leave
from swarmflower.site_config import load_site_config
from swarmflower.site_files import load_genesis, load_identity
from swarmflower.transport import GrpcTransport
from swarmflower.transport.base import LeaveRequest

RESEND_S = 2.0  # the request again, in case a member was away
OWN_PEER = "own peer"


@dataclass(frozen=True)
class Departure:
    """The block that took the site's leave."""

    round: int
    block_hash: bytes


def leave_swarm(
    config_path: str | Path,
    wait_s: float = 60.0,
    report: Callable[[str], None] = print,
) -> Departure:
    """Send the site's signed leave to its peers and wait for the block that
    carries it; ConfigError if none has after `wait_s` seconds."""
    config = load_site_config(config_path)
    genesis = load_genesis(config)
    own = load_identity(config, genesis)
    address = own.key.public_key.to_checksum_address()
    chain = Ledger(genesis)  # the members' blocks, each checked again here
    request = LeaveRequest(address, sign_leave(own.key, chain.swarm_id))
    peers = {p.eth_address: p.address for p in config.peers}
    # The site's own peer hears it too, and stops training and sealing: a
    # block it sealed now could outlive the leave (keyed apart from the
    # site's address, which the transport never sends to).
    if config.dialled_address:  # a site that only dials out hears it from relays
        peers[OWN_PEER] = config.dialled_address
    try:
        # it only sends and fetches: a server on a free port, never dialled
        listen = f"{config.host or '127.0.0.1'}:0"
        transport = GrpcTransport(address, listen, peers, config.tls_material())
    except TransportError as exc:
        raise ConfigError(f"{config.folder}: cannot reach the swarm: {exc}") from None
    report(
        f"site {config.name} ({address}) asks its {len(config.peers)} peers "
        "to let it go"
    )
    deadline = time.monotonic() + wait_s
    sent_at = -RESEND_S
    try:
        while time.monotonic() < deadline:
            if time.monotonic() - sent_at >= RESEND_S:
                transport.broadcast(request)
                sent_at = time.monotonic()
            departure = _follow(chain, transport, address)
            if departure is not None:
                return departure
            time.sleep(0.2)
    finally:
        transport.close()
        chain.close()
    raise ConfigError(
        f"no block took the leave of site {config.name} within {wait_s:.0f} s: "
        "are its peers running? (run `swarmflower leave` again: it is safe)"
    )


def _follow(chain: Ledger, transport: GrpcTransport, site: str) -> Departure | None:
    """Import the members' new blocks; the canonical block that carries the
    leave, if any. A block that does not connect means this copy followed a
    branch the swarm left (a cut-off site's backup block, say): the whole
    chain is fetched again and the fork rule picks the swarm's branch."""
    for start in (chain.head().height + 1, 1):
        try:
            for block in transport.fetch_blocks(start, start + 1000):
                chain.import_block(block)
            break
        except InvalidBlock:
            continue
    for height in range(chain.head().height, 0, -1):  # a leave is recent
        record = chain.round(height)
        if site in record.left:
            return Departure(record.round, record.block_hash)
    return None
